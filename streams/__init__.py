"""stocksync: one live stock truth per SKU and location, streamed to every sales channel."""

__version__ = "0.1.0"
