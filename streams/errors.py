"""The exception root of stocksync and the errors the wiring raises (the domain has its own)."""


class StocksyncError(Exception):
    """Root of every error stocksync raises on purpose; the CLI prints these as one line."""


class ConfigError(StocksyncError):
    """A setting, a CLI argument or a network file is wrong; the message names what."""


class BrokerError(StocksyncError):
    """The local Kafka broker cannot be fetched, started, reached or stopped."""


class AccessDenied(StocksyncError):
    """The cluster's ACLs do not let this principal read or write a topic (see 'stocksync acl apply')."""


class TopicMismatch(StocksyncError):
    """An existing topic differs from the registry (partition count or a pinned config)."""
