"""Available-to-sell per channel: what each channel may offer of a SKU, and which channels a change touches."""

from __future__ import annotations

from collections.abc import Iterable

from streams.domain.network import Channel, Network
from streams.domain.order_sourcing import LineStock
from streams.domain.stock import SkuStock


def channel_ats(stock: SkuStock, channel: Channel) -> int:
    """max(0, sum of available over the channel's selling locations - buffer); 0 for an excluded SKU."""
    if stock.sku in channel.excluded_skus:
        return 0
    selling = channel.selling_locations
    # Over the SKU's positions, not the channel's locations: a SKU is stocked at a few of a network's many.
    return max(0, sum(p.available for location, p in stock.positions.items() if location in selling)
               - channel.buffer)


def affected_channels(network: Network, locations: Iterable[str]) -> frozenset[str]:
    """The channels whose ATS can change when positions at `locations` change."""
    channels: set[str] = set()
    for location in locations:
        channels |= network.channels_selling_from(location)
    return frozenset(channels)



def line_figures(stock: SkuStock, channel: Channel) -> LineStock:
    """An order line's figures, as its SKU's owner sees them: the units available at each location the channel
    sells from, and what the channel may sell of the SKU (its ATS)."""
    available = {location: p.available for location, p in stock.positions.items()
                 if location in channel.selling_locations and p.available > 0}
    return LineStock(available, channel_ats(stock, channel))
