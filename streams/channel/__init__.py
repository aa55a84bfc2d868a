"""The channel client SDK: report movements, request reservations and orders, follow the ATS feed (see
ChannelClient)."""

from streams.channel.aio import AsyncAtsFeed, AsyncChannelClient
from streams.channel.client import ChannelClient
from streams.channel.errors import (
           ChannelAccessDenied,
           ChannelError,
           ChannelTopicMissing,
           ClientClosed,
           DecisionTimeout,
           DeliveryError,
)
from streams.channel.feed import AtsSubscription, AtsUpdate
from streams.channel.orders import HeldLine, InvalidOrder, Line, OrderDecision, Parcel
from streams.channel.replies import Decision
from streams.domain import InvalidMovement, Kind, Movement

__all__ = ["AsyncAtsFeed", "AsyncChannelClient", "AtsSubscription", "AtsUpdate", "ChannelAccessDenied",
           "ChannelClient", "ChannelError", "ChannelTopicMissing", "ClientClosed", "Decision", "DecisionTimeout",
           "DeliveryError", "HeldLine", "InvalidMovement", "InvalidOrder", "Kind", "Line", "Movement",
           "OrderDecision", "Parcel"]
