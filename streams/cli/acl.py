"""`stocksync acl`: least-privilege ACLs (and channel users) derived from the network."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from streams.cli.connection import connect
from streams.control import acls
from streams.control.network import load_network_file
from streams.settings import Settings


def add_parser(commands: Any) -> None:
    acl = commands.add_parser("acl", help="least-privilege ACLs (and channel users) derived from the network",
                              description="apply: make the cluster's ACLs on this deployment's topics, groups "
                              "and transactional ids exactly those the network needs (a channel writes only its "
                              "sales and restock topics and reads only its ATS feed and replies); ACLs of channels "
                              "no longer in the network are removed. show: the ACLs in force.")
    acl.add_argument("action", choices=["apply", "show"])
    acl.add_argument("file", nargs="?", help="the network YAML (default: the network in force)")
    acl.add_argument("--passwords", metavar="DIR", help="also create a SCRAM user for each channel that has none "
                     "(its password in DIR/<user>.password) and delete those of removed channels")
    acl.add_argument("--dry-run", action="store_true", help="print what would be added (+) and removed (-)")
    acl.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    connection = connect(settings)
    registry, admin = connection.registry, connection.admin
    principals = acls.Principals(settings.workers_principal, settings.admin_principal, settings.channel_principal)
    if args.action == "show":
        found = acls.in_force(admin, registry, principals)
        for grant in found.grants:
            print(grant)
        for line in found.foreign:
            print(f"# not managed by stocksync: {line}")
        print(f"# {len(found.grants)} ACLs on {registry.prefix}.* and {settings.app_id}*", file=sys.stderr)
        return 0
    if args.file:
        channels = load_network_file(Path(args.file)).channels
    else:
        channels = connection.network_in_force(
            "give the network FILE, or run 'stocksync network apply' first").channels
    done = acls.changes(admin, registry, channels, principals) if args.dry_run else \
        acls.apply(admin, registry, channels, principals, Path(args.passwords) if args.passwords else None)
    for grant in done.added:
        print(f"+ {grant}")
    for grant in done.removed:
        print(f"- {grant}")
    for user in done.users_created:
        print(f"user {user} created (SCRAM-SHA-512 and -256), its password in {Path(args.passwords) / user}.password")
    for user in done.users_deleted:
        print(f"user {user} deleted")
    if args.dry_run:
        return 0
    print(f"{len(done.added)} ACLs added, {len(done.removed)} removed, for {len(channels)} channels",
          file=sys.stderr)
    return 0
