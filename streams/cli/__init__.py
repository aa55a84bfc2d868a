"""The `stocksync` command line, one module per command group; every error is one line naming what is wrong."""

from streams.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
