"""Catalog aliases: the identifiers channels know a product by (a GTIN/EAN/UPC barcode, a marketplace listing id,
a POS item code, a shelf label's QR code) mapped to stocksync's SKU, per channel or for every channel ("*").

A movement may name an alias instead of a SKU; the SKU's owner resolves it (the channel's own alias first, then
an alias for every channel). Pure data: where the catalog comes from and how it is followed is the wiring's."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from streams.domain.errors import DomainError
from streams.domain.movements import SKU_PATTERN
from streams.domain.network import ID_PATTERN

ANY_CHANNEL = "*"
ALIAS_PATTERN = re.compile(r"^[^\x00-\x1f]{1,128}$")


class CatalogError(DomainError):
    """A catalog entry that cannot be used; the message names the field."""


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    channel: str  # a channel id, or "*": every channel
    alias: str
    sku: str

    @property
    def key(self) -> str:
        return f"{self.channel}|{self.alias}"


def catalog_entry(channel: str, alias: str, sku: str, where: str = "") -> CatalogEntry:
    """A validated entry; CatalogError naming `where` (e.g. "line 7") and the field otherwise."""
    at = f"{where}: " if where else ""
    channel, alias, sku = channel.strip(), alias.strip(), sku.strip()
    if channel != ANY_CHANNEL and not ID_PATTERN.match(channel):
        raise CatalogError(f"{at}channel {channel!r}: a channel id, or * for every channel")
    if not ALIAS_PATTERN.match(alias):
        raise CatalogError(f"{at}alias {alias!r}: 1 to 128 characters, no control characters")
    if not SKU_PATTERN.match(sku):
        raise CatalogError(f"{at}sku {sku!r} is not a SKU (letters, digits, ._/-; max 64)")
    return CatalogEntry(channel, alias, sku)


class Catalog:
    """Which SKU an alias names, and which alias a channel knows a SKU by."""

    def __init__(self, entries: Iterable[CatalogEntry] = ()) -> None:
        self._sku: dict[tuple[str, str], str] = {}
        # (channel, sku) -> its aliases, oldest first (a dict as an ordered set): removing one scans nothing
        self._aliases: dict[tuple[str, str], dict[str, None]] = {}
        for entry in entries:
            self.put(entry)

    def __len__(self) -> int:
        return len(self._sku)

    def put(self, entry: CatalogEntry) -> None:
        self.remove(entry.channel, entry.alias)
        self._sku[(entry.channel, entry.alias)] = entry.sku
        self._aliases.setdefault((entry.channel, entry.sku), {})[entry.alias] = None

    def remove(self, channel: str, alias: str) -> None:
        sku = self._sku.pop((channel, alias), None)
        if sku is None:
            return
        aliases = self._aliases[(channel, sku)]
        del aliases[alias]
        if not aliases:
            del self._aliases[(channel, sku)]

    def resolve(self, channel: str, alias: str) -> str | None:
        """The SKU `alias` names for `channel`: its own entry, else one for every channel; None if unknown."""
        return self._sku.get((channel, alias)) or self._sku.get((ANY_CHANNEL, alias))

    def alias_of(self, channel: str, sku: str) -> str | None:
        """The identifier `channel` knows `sku` by (its own alias first, else one for every channel)."""
        for key in ((channel, sku), (ANY_CHANNEL, sku)):
            aliases = self._aliases.get(key)
            if aliases:
                return next(iter(aliases))
        return None

    def entries(self) -> list[CatalogEntry]:
        return [CatalogEntry(c, a, s) for (c, a), s in sorted(self._sku.items())]
