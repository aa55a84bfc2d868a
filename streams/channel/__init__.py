"""The channel client SDK: report movements, request reservations, follow the ATS feed (see ChannelClient)."""

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
from streams.channel.replies import Decision
from streams.domain import InvalidMovement, Kind, Movement

__all__ = ["AtsSubscription", "AtsUpdate", "ChannelAccessDenied", "ChannelClient", "ChannelError",
           "ChannelTopicMissing", "ClientClosed", "Decision", "DecisionTimeout", "DeliveryError", "InvalidMovement",
           "Kind", "Movement"]
