"""The pure stock domain: positions, movements, channel ATS and sourcing. No Kafka, no faust, no I/O."""

from streams.domain.ats import affected_channels, channel_ats
from streams.domain.errors import DomainError, InvalidMovement, NetworkError
from streams.domain.movements import Kind, Movement
from streams.domain.network import Channel, Location, Network
from streams.domain.sourcing import Allocation, FulfilmentPlan, plan_fulfilment
from streams.domain.stock import (
    Outcome,
    Position,
    PositionChange,
    Reservation,
    ReservationDecision,
    SkuStock,
    Status,
    StockRules,
)

__all__ = [
    "Allocation", "Channel", "DomainError", "FulfilmentPlan", "InvalidMovement", "Kind", "Location", "Movement",
    "Network", "NetworkError", "Outcome", "Position", "PositionChange", "Reservation", "ReservationDecision",
    "SkuStock", "Status", "StockRules", "affected_channels", "channel_ats", "plan_fulfilment",
]
