"""`stocksync query`: ask a worker's query API (any worker: it routes by SKU)."""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from streams.errors import ConfigError
from streams.settings import Settings


def add_parser(commands: Any) -> None:
    query = commands.add_parser("query", help="ask a worker's query API (any worker: it routes by SKU)",
                                description="Positions, a channel's available-to-sell, a catalog alias, transfer "
                                            "suggestions or a sourcing plan, as JSON from a running worker.")
    query.add_argument("--url", help="a worker's API (default http://127.0.0.1:STOCKSYNC_WEB_PORT)")
    what = query.add_subparsers(dest="what", required=True, metavar="WHAT")
    positions = what.add_parser("positions", help="a SKU's positions, or one position",
                                description="Every location's figures for a SKU, or one location's.")
    positions.add_argument("sku")
    positions.add_argument("location", nargs="?")
    ats = what.add_parser("ats", help="a channel's available-to-sell for a SKU (or for its own identifier)",
                          description="What the channel may sell of the SKU now; with --alias, SKU is the "
                                      "channel's own identifier of the product (its catalog alias).")
    ats.add_argument("channel")
    ats.add_argument("sku")
    ats.add_argument("--alias", action="store_true", help="SKU is the channel's alias of the product")
    alias = what.add_parser("alias", help="the SKU a channel's identifier names",
                            description="The SKU the catalog maps a channel's alias (or an every-channel alias) to.")
    alias.add_argument("channel")
    alias.add_argument("alias")
    suggestions = what.add_parser("transfer-suggestions", help="transfer suggestions for a SKU or to a location",
                                  description="The transfers in force that would move spare units to where they "
                                              "run short: for one SKU, or (--location) to one location.")
    suggestions.add_argument("sku", nargs="?")
    suggestions.add_argument("--location", help="the suggestions whose destination is this location")
    source = what.add_parser("source", help="where to fill an order line from",
                             description="A ranked fulfilment plan for an order line and a customer position, "
                                         "split across locations when one cannot fill it; with --alias, SKU is "
                                         "the channel's own identifier of the product (a scanned barcode).")
    source.add_argument("sku")
    source.add_argument("--alias", action="store_true", help="SKU is the channel's alias of the product")
    source.add_argument("--channel", required=True)
    source.add_argument("--quantity", type=int, required=True)
    source.add_argument("--lat", type=float, required=True, help="customer latitude")
    source.add_argument("--lon", type=float, required=True, help="customer longitude")
    source.add_argument("--mode", choices=["ship", "pickup"], default="ship")
    query.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    access = settings.api_access()
    scheme = "https" if access.cert_file else "http"
    base = (args.url or settings.advertised_url or f"{scheme}://127.0.0.1:{settings.web_port}").rstrip("/")
    quote = urllib.parse.quote
    if args.what == "positions":
        path = f"/skus/{quote(args.sku, safe='')}/positions"
        if args.location:
            path += f"/{quote(args.location, safe='')}"
    elif args.what == "ats" and args.alias:
        path = f"/channels/{quote(args.channel, safe='')}/aliases/{quote(args.sku, safe='')}/ats"
    elif args.what == "ats":
        path = f"/channels/{quote(args.channel, safe='')}/ats/{quote(args.sku, safe='')}"
    elif args.what == "alias":
        path = f"/channels/{quote(args.channel, safe='')}/aliases/{quote(args.alias, safe='')}"
    elif args.what == "transfer-suggestions":
        if (args.sku is None) == (args.location is None):
            raise ConfigError("query transfer-suggestions: give a SKU or --location LOCATION (one of them)")
        path = (f"/skus/{quote(args.sku, safe='')}/transfer-suggestions" if args.sku is not None else
                f"/locations/{quote(args.location, safe='')}/transfer-suggestions")
    elif args.alias:
        params = {"quantity": args.quantity, "lat": args.lat, "lon": args.lon, "mode": args.mode}
        path = (f"/channels/{quote(args.channel, safe='')}/aliases/{quote(args.sku, safe='')}/sourcing?"
                f"{urllib.parse.urlencode(params)}")
    else:
        params = {"channel": args.channel, "quantity": args.quantity, "lat": args.lat, "lon": args.lon,
                  "mode": args.mode}
        path = f"/skus/{quote(args.sku, safe='')}/sourcing?{urllib.parse.urlencode(params)}"
    try:
        request = urllib.request.Request(base + path, headers=access.headers())
        context = access.client_context() if base.startswith("https:") else None
        with urllib.request.urlopen(request, timeout=15, context=context) as response:
            print(json.dumps(json.loads(response.read()), indent=2))
            return 0
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            message = exc.reason
        raise ConfigError(f"query {args.what}: {message} (HTTP {exc.code})") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ConfigError(f"query: no worker answers at {base} ({getattr(exc, 'reason', exc)}); is one "
                          "running? (--url or STOCKSYNC_WEB_PORT)") from None
