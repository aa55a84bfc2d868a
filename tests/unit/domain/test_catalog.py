"""Catalog aliases: a channel's own alias wins over one for every channel; the reverse lookup gives the
identifier a channel knows a SKU by; a removed alias is gone from both directions; bad entries are named."""

from __future__ import annotations

import pytest

from streams.domain import Kind, Movement
from streams.domain.catalog import Catalog, CatalogEntry, CatalogError, catalog_entry
from streams.domain.errors import InvalidMovement


def test_a_channels_own_alias_wins_over_one_for_every_channel() -> None:
    catalog = Catalog([CatalogEntry("*", "4006381333931", "SKU-1"), CatalogEntry("market", "B00X1", "SKU-1"),
                       CatalogEntry("market", "4006381333931", "SKU-2")])
    assert catalog.resolve("web", "4006381333931") == "SKU-1"  # the barcode, for everyone
    assert catalog.resolve("market", "4006381333931") == "SKU-2"  # the marketplace's own listing of it
    assert catalog.resolve("market", "B00X1") == "SKU-1" and catalog.resolve("web", "B00X1") is None
    assert catalog.alias_of("market", "SKU-1") == "B00X1" and catalog.alias_of("web", "SKU-1") == "4006381333931"
    assert catalog.alias_of("web", "SKU-9") is None


def test_a_removed_or_moved_alias_leaves_no_trace() -> None:
    catalog = Catalog([CatalogEntry("market", "L-1", "SKU-1"), CatalogEntry("market", "L-2", "SKU-1")])
    catalog.remove("market", "L-1")
    assert catalog.resolve("market", "L-1") is None and catalog.alias_of("market", "SKU-1") == "L-2"
    catalog.put(CatalogEntry("market", "L-2", "SKU-3"))  # the listing now names another SKU
    assert catalog.alias_of("market", "SKU-1") is None and catalog.alias_of("market", "SKU-3") == "L-2"
    assert len(catalog) == 1


@pytest.mark.parametrize(("channel", "alias", "sku", "message"), [
    ("Web Shop", "A1", "SKU-1", "a channel id, or \\*"), ("web", "", "SKU-1", "1 to 128 characters"),
    ("web", "A\t1", "SKU-1", "no control characters"), ("web", "A1", "not a sku!", "is not a SKU")])
def test_a_bad_entry_names_its_field(channel: str, alias: str, sku: str, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        catalog_entry(channel, alias, sku, "line 3")


def test_a_movement_may_name_an_alias_instead_of_a_sku_but_not_nothing() -> None:
    assert not Movement(Kind.SALE, "e1", "market", "", "w1", 1, 1, alias="B00X1").resolved
    with pytest.raises(InvalidMovement, match="is not a SKU"):
        Movement(Kind.SALE, "e1", "market", "", "w1", 1, 1)
