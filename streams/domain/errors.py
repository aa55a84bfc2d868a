"""Errors of the domain: a movement or a network description that cannot be valid."""

from streams.errors import StocksyncError


class DomainError(StocksyncError):
    """Root of the domain's errors."""


class InvalidMovement(DomainError, ValueError):
    """A movement that no state could apply (e.g. a non-positive quantity); the message names the field."""


class NetworkError(DomainError, ValueError):
    """A network description (locations, channels) that is inconsistent; the message names the field."""
