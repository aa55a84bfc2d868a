"""The worker's HTTP pages as named handlers: readiness, liveness, Prometheus metrics, OpenAPI, and the query API,
answered by the worker that owns the SKU (a request reaching another worker is forwarded to the owner once).
Each handler takes the aiohttp request (and the path's parameters) and returns an aiohttp response; the runtime
mounts them on faust's web server, every request checked against the API's access rules first."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from yarl import URL

from streams.api_access import ApiAccess
from streams.domain.catalog import Catalog
from streams.wire.partitioner import sku_partition
from streams.worker.api.query import OPENAPI, ApiError, QueryService, check_sku
from streams.worker.flow.reader import InputReader
from streams.worker.ops.health import Health
from streams.worker.reference.network_in_force import NetworkInForce
from streams.worker.reference.suggestions import SuggestionIndex
from streams.worker.state.table import StockTable

ROUTED_HEADER = "X-Stocksync-Routed"

# Every page: its path, and the Api method that answers it.
ROUTES = {
    "/ready": "ready",
    "/live": "live",
    "/skus/{sku}/positions": "sku_positions",
    "/skus/{sku}/positions/{location}": "one_position",
    "/channels/{channel}/ats/{sku}": "ats_of_channel",
    "/channels/{channel}/aliases/{alias}": "alias_of_channel",
    "/channels/{channel}/aliases/{alias}/ats": "ats_by_alias",
    "/channels/{channel}/aliases/{alias}/sourcing": "sourcing_by_alias",
    "/skus/{sku}/sourcing": "sourcing",
    "/skus/{sku}/transfer-suggestions": "sku_suggestions",
    "/locations/{location}/transfer-suggestions": "location_suggestions",
    "/openapi.json": "openapi",
    "/metrics": "prometheus",
}

Handler = Callable[..., Awaitable[web.Response]]


class Membership(Protocol):
    """What the API asks of the worker's place in its group (the runtime answers from faust)."""

    def ready(self) -> bool:
        """Recovered and reading: the worker announced itself ready."""

    def rebalancing(self) -> bool: ...

    def owner_of(self, partition: int) -> str | None:
        """The URL of the worker that owns the table partition (None: not known now)."""

    def is_me(self, url: str) -> bool: ...

    def http_client(self) -> aiohttp.ClientSession: ...


def _json(body: Any, status: int = 200, **headers: str) -> web.Response:
    return web.json_response(body, status=status, headers=headers or None)


def _refused(exc: ApiError) -> web.Response:
    return _json({"error": exc.message}, status=exc.status)


class Api:
    """The pages of one worker."""

    def __init__(self, membership: Membership, table: StockTable, network: NetworkInForce, reader: InputReader,
                 health: Health, access: ApiAccess, suggestions: SuggestionIndex, catalog: Catalog) -> None:
        self.membership, self.table, self.network, self.reader = membership, table, network, reader
        self.health, self.access, self.suggestions, self.catalog = health, access, suggestions, catalog
        self.query = QueryService(lookup=table.stock, network=lambda: (network.network, network.version))

    def pages(self) -> dict[str, Handler]:
        """Every page by its path, each checked against the access rules first."""
        return {path: self._guarded(path, getattr(self, name)) for path, name in ROUTES.items()}

    def _guarded(self, path: str, handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def checked(request: web.Request, **params: str) -> web.Response:
            refused = self.access.refusal(path, request.headers.get("Authorization"))
            if refused:
                return _json({"error": refused}, status=401, **{"WWW-Authenticate": "Bearer"})
            return await handler(request, **params)
        return checked

    # --- health and metrics ----------------------------------------------------------------------------------
    async def ready(self, request: web.Request) -> web.Response:
        """200 when the worker does its job now: recovered, not rebalancing, Kafka answering, the inputs read and
        progressing; else 503 with the reasons."""
        reasons = self.health.not_ready(self.membership.ready(), self.membership.rebalancing())
        return _json({"ready": not reasons, "reasons": reasons, "network_version": self.network.version,
                      "assigned_inputs": self.reader.assigned_topics(),
                      "assigned_partitions": self.reader.assigned_partitions(), "input_lag": self.health.lag},
                     status=503 if reasons else 200)

    async def live(self, request: web.Request) -> web.Response:
        """200 while the worker can recover by itself (answering at all means its event loop runs); 503 with the
        reasons when only a restart helps."""
        reasons = self.health.not_live(self.reader.running())
        return _json({"live": not reasons, "reasons": reasons}, status=503 if reasons else 200)

    async def openapi(self, request: web.Request) -> web.Response:
        """The API described in OpenAPI 3."""
        return _json(OPENAPI)

    async def prometheus(self, request: web.Request) -> web.Response:
        """The worker's Prometheus metrics."""
        return web.Response(body=generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    # --- answered by the SKU's owner -------------------------------------------------------------------------
    async def sku_positions(self, request: web.Request, sku: str) -> web.Response:
        """Every location's figures for the SKU (answered by its owner)."""
        return await self._at_owner(request, sku, lambda: self.query.positions(sku))

    async def one_position(self, request: web.Request, sku: str, location: str) -> web.Response:
        """One location's figures for the SKU (answered by its owner)."""
        return await self._at_owner(request, sku, lambda: self.query.position(sku, location))

    async def ats_of_channel(self, request: web.Request, channel: str, sku: str) -> web.Response:
        """What the channel may sell of the SKU now (answered by its owner)."""
        return await self._at_owner(request, sku, lambda: self.query.channel_ats(channel, sku))

    async def ats_by_alias(self, request: web.Request, channel: str, alias: str) -> web.Response:
        """What the channel may sell of the product its alias names (answered by the SKU's owner)."""
        try:
            sku = self._aliased(channel, alias)
        except ApiError as exc:
            return _refused(exc)
        return await self._at_owner(request, sku, lambda: {**self.query.channel_ats(channel, sku), "alias": alias})

    async def sourcing(self, request: web.Request, sku: str) -> web.Response:
        """Where to fill an order line from, ranked by cost (answered by the SKU's owner)."""
        return await self._at_owner(request, sku, lambda: self.query.sourcing(sku, dict(request.query)))

    async def sourcing_by_alias(self, request: web.Request, channel: str, alias: str) -> web.Response:
        """Where to fill an order line of the product the channel's alias names (a scanned barcode, a listing
        id), ranked by cost (answered by the SKU's owner)."""
        try:
            sku = self._aliased(channel, alias)
        except ApiError as exc:
            return _refused(exc)
        query = {**request.query, "channel": channel}
        return await self._at_owner(request, sku, lambda: {**self.query.sourcing(sku, query), "alias": alias})

    # --- answered by any worker (every worker follows the catalog and all suggestions) ---------------------------
    async def alias_of_channel(self, request: web.Request, channel: str, alias: str) -> web.Response:
        """The SKU a channel's identifier names (any worker)."""
        try:
            return _json({"channel": channel, "alias": alias, "sku": self._aliased(channel, alias)})
        except ApiError as exc:
            return _refused(exc)

    async def sku_suggestions(self, request: web.Request, sku: str) -> web.Response:
        """The transfer suggestions in force for the SKU (any worker)."""
        try:
            return _json({"sku": check_sku(sku), "suggestions": self.suggestions.for_sku(sku)})
        except ApiError as exc:
            return _refused(exc)

    async def location_suggestions(self, request: web.Request, location: str) -> web.Response:
        """The transfer suggestions from or to the location (any worker)."""
        if location not in self.network.network.locations:
            return _json({"error": f"location: {location!r} is not in the network"}, status=404)
        return _json({"location": location, "suggestions": self.suggestions.for_location(location)})

    # --- helpers ---------------------------------------------------------------------------------------------
    def _aliased(self, channel: str, alias: str) -> str:
        sku = self.catalog.resolve(channel, alias)
        if sku is None:
            raise ApiError(404, f"alias: {alias!r} is in no catalog entry of {channel} or of every channel")
        return sku

    async def _at_owner(self, request: web.Request, sku: str, compute: Callable[[], dict[str, Any]]
                        ) -> web.Response:
        """Answer here if this worker owns the SKU's partition, else ask the owner (once)."""
        try:
            check_sku(sku)
            owner = self.membership.owner_of(sku_partition(sku, self.table.partitions))
            if owner is None or not self.membership.ready():
                raise ApiError(503, "the SKU's owner is not known right now (workers rebalancing); retry")
            if not self.membership.is_me(owner):
                if request.headers.get(ROUTED_HEADER):
                    raise ApiError(503, "ownership of the SKU is moving between workers; retry")
                return await self._forward(request, owner)
            return _json(compute())
        except ApiError as exc:
            return _refused(exc)

    async def _forward(self, request: web.Request, owner: str) -> web.Response:
        """Ask the owning worker the same question and pass its answer on."""
        url = URL(owner).with_path(request.url.path).with_query(request.url.query)
        access = self.access
        try:
            async with self.membership.http_client().get(
                    url, headers={ROUTED_HEADER: "1", **access.headers()},
                    ssl=access.client_context() if url.scheme == "https" else True,
                    timeout=aiohttp.ClientTimeout(total=10)) as response:
                body = await response.read()
                return web.Response(body=body, content_type="application/json", status=response.status)
        except (TimeoutError, aiohttp.ClientError) as exc:
            return _json({"error": f"the SKU's owner at {owner} did not answer ({exc!r}); retry"}, status=503)
