"""The worker's HTTP API (streams.worker.api) on faust's web server: its pages mounted as faust views, and what
the API asks of the group answered from faust (readiness, rebalancing, which worker owns a table partition)."""

from __future__ import annotations

import functools
from typing import Any

import aiohttp
from yarl import URL

from streams.worker.api.routes import Handler
from streams.worker.runtime.app import StocksyncApp


class AppMembership:
    """The API's Membership, from the faust app."""

    def __init__(self, app: StocksyncApp, changelog: str) -> None:
        self.app, self.changelog = app, changelog

    def ready(self) -> bool:
        return self.app.worker_state.ready

    def rebalancing(self) -> bool:
        return bool(self.app.rebalancing)

    def owner_of(self, partition: int) -> str | None:
        return next((url for url, topics in self.app.router.table_metadata("stock").items()
                     if partition in topics.get(self.changelog, ())), None)

    def is_me(self, url: str) -> bool:
        return URL(url) == URL(str(self.app.conf.canonical_url))

    def http_client(self) -> aiohttp.ClientSession:
        client: aiohttp.ClientSession = self.app.http_client
        return client


def mount(app: StocksyncApp, pages: dict[str, Handler]) -> None:
    """Register each page as a faust view (faust calls a view's handler with the view first)."""
    for path, handler in pages.items():
        app.page(path)(_view(handler))


def _view(handler: Handler) -> Any:
    @functools.wraps(handler)
    async def get(view: Any, request: Any, **params: str) -> Any:
        return await handler(request, **params)
    return get
