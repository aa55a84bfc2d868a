"""The network description: validated, with errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from streams.domain import Network, NetworkError
from streams.domain.network import distance_km
from tests.unit.domain.helpers import NETWORK

STORE = {"id": "s1", "kind": "store", "latitude": 1.0, "longitude": 2.0}


@pytest.mark.parametrize(("data", "message"), [
    ({"locations": [{**STORE, "latitude": 91}]}, "locations.s1.latitude: 91.0 is outside -90..90"),
    ({"locations": [{**STORE, "kind": "shop"}]}, "locations.s1.kind: 'shop' is not one of"),
    ({"locations": [{**STORE, "id": "S 1"}]}, "locations[0].id: 'S 1' is not an id"),
    ({"locations": [STORE, STORE]}, "locations: duplicate id 's1'"),
    ({"locations": [STORE], "channels": [{"id": "web", "locations": ["s1"], "buffer": -1}]},
     "channels.web.buffer: expected a whole number >= 0, got -1"),
    ({"locations": [STORE], "channels": [{"id": "web", "locations": ["s9"]}]},
     "channels.web.locations: unknown location 's9'"),
    ({"locations": [STORE], "channels": [{"id": "web", "locations": []}]},
     "channels.web.locations: a channel needs at least one location"),
    ({"locations": [{**STORE, "ship_from": "yes"}]}, "locations.s1.ship_from: expected true or false"),
    ({"locations": "s1"}, "locations: expected a list"),
    ([], "network: expected a mapping"),
])
def test_invalid_network_names_the_field(data: Any, message: str) -> None:
    with pytest.raises(NetworkError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Network.from_dict(data)


def test_round_trip_and_index() -> None:
    assert Network.from_dict(NETWORK.to_dict()) == NETWORK
    assert NETWORK.channels_selling_from("wh-1") == {"web", "market", "wms"}
    assert NETWORK.owns("pos-a", "store-a") and not NETWORK.owns("pos-a", "store-b")


def test_distance() -> None:
    assert distance_km(52.52, 13.40, 48.14, 11.58) == pytest.approx(504, abs=2)  # Berlin - Munich
    assert distance_km(1, 1, 1, 1) == 0
