"""What a channel client raises: every error is a StocksyncError, and says which channel it is about."""

from __future__ import annotations

from streams.errors import AccessDenied, StocksyncError


class ChannelError(StocksyncError):
    """Root of the channel client's errors."""


class ChannelTopicMissing(ChannelError):
    """A topic of the channel does not exist: the channel is not in the network, or its topics were not made."""


class ChannelAccessDenied(ChannelError, AccessDenied):
    """The cluster's ACLs do not let the channel's principal use one of its topics."""


class ClientClosed(ChannelError):
    """The client was closed; nothing more can be sent with it."""


class DeliveryError(ChannelError):
    """The broker refused or never acknowledged reported movements."""


class DecisionTimeout(ChannelError, TimeoutError):
    """No decision on a reservation request arrived in time (it may still be decided: ask again, same id)."""
