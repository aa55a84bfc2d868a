"""The worker's HTTP pages: readiness, Prometheus metrics, OpenAPI, and the query API, answered by the worker
that owns the SKU (a request reaching another worker is forwarded to the owner once)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from yarl import URL

from streams.api_access import ApiAccess
from streams.domain.catalog import Catalog
from streams.wire.partitioner import sku_partition
from streams.worker.api.query import OPENAPI, ApiError, QueryService, check_sku
from streams.worker.flow.reader import InputReader
from streams.worker.ops.health import Health
from streams.worker.reference.network import NetworkInForce
from streams.worker.reference.suggestions import SuggestionIndex
from streams.worker.runtime.app import StocksyncApp
from streams.worker.state.table import StockTable

ROUTED_HEADER = "X-Stocksync-Routed"


Handler = Callable[..., Awaitable[Any]]


def guarded(app: StocksyncApp, access: ApiAccess) -> Callable[[str], Callable[[Handler], Any]]:
    """`app.page`, with every request checked against the API's access rules first (401 when refused)."""
    def page(path: str) -> Callable[[Handler], Any]:
        def register(handler: Handler) -> Any:
            @functools.wraps(handler)
            async def checked(web: Any, request: Any, **params: Any) -> Any:
                refused = access.refusal(path, request.headers.get("Authorization"))
                if refused:
                    return web.json({"error": refused}, status=401, headers={"WWW-Authenticate": "Bearer"})
                return await handler(web, request, **params)
            return app.page(path)(checked)
        return register
    return page


def add_routes(app: StocksyncApp, table: StockTable, network: NetworkInForce, partitions: int, reader: InputReader,
               health: Health, access: ApiAccess, suggestions: SuggestionIndex, catalog: Catalog) -> None:
    """Register the worker's pages on its faust app (handlers get faust's view and the aiohttp request)."""
    query = QueryService(lookup=table.stock, network=lambda: (network.network, network.version))
    changelog = table.changelog
    page = guarded(app, access)

    @page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        """200 when the worker does its job now: recovered, not rebalancing, Kafka answering, the inputs read and
        progressing; else 503 with the reasons."""
        reasons = health.not_ready(app.worker_state.ready, app.rebalancing)
        return web.json({"ready": not reasons, "reasons": reasons, "network_version": network.version,
                         "assigned_inputs": reader.assigned_topics(),
                         "assigned_partitions": reader.assigned_partitions(), "input_lag": health.lag},
                        status=503 if reasons else 200)

    @page("/live")
    async def live(web: Any, request: Any) -> Any:
        """200 while the worker can recover by itself (answering at all means its event loop runs); 503 with the
        reasons when only a restart helps."""
        reasons = health.not_live(reader.running())
        return web.json({"live": not reasons, "reasons": reasons}, status=503 if reasons else 200)

    async def answer(web: Any, request: Any, sku: str, compute: Callable[[], dict[str, Any]]) -> Any:
        """Answer here if this worker owns the SKU's partition, else ask the owner (once)."""
        try:
            check_sku(sku)
            partition = sku_partition(sku, partitions)
            owner = next((url for url, topics in app.router.table_metadata("stock").items()
                          if partition in topics.get(changelog, ())), None)
            if owner is None or not app.worker_state.ready:
                raise ApiError(503, "the SKU's owner is not known right now (workers rebalancing); retry")
            if URL(owner) != URL(str(app.conf.canonical_url)):
                if request.headers.get(ROUTED_HEADER):
                    raise ApiError(503, "ownership of the SKU is moving between workers; retry")
                return await _forward(app, web, request, owner, access)
            return web.json(compute())
        except ApiError as exc:
            return web.json({"error": exc.message}, status=exc.status)

    @page("/skus/{sku}/positions")
    async def sku_positions(web: Any, request: Any, sku: str) -> Any:
        return await answer(web, request, sku, lambda: query.positions(sku))

    @page("/skus/{sku}/positions/{location}")
    async def one_position(web: Any, request: Any, sku: str, location: str) -> Any:
        return await answer(web, request, sku, lambda: query.position(sku, location))

    @page("/channels/{channel}/ats/{sku}")
    async def ats_of_channel(web: Any, request: Any, channel: str, sku: str) -> Any:
        return await answer(web, request, sku, lambda: query.channel_ats(channel, sku))

    def aliased(channel: str, alias: str) -> str:
        sku = catalog.resolve(channel, alias)
        if sku is None:
            raise ApiError(404, f"alias: {alias!r} is in no catalog entry of {channel} or of every channel")
        return sku

    @page("/channels/{channel}/aliases/{alias}")
    async def alias_of_channel(web: Any, request: Any, channel: str, alias: str) -> Any:
        """The SKU a channel's identifier names (any worker: every worker follows the catalog)."""
        try:
            return web.json({"channel": channel, "alias": alias, "sku": aliased(channel, alias)})
        except ApiError as exc:
            return web.json({"error": exc.message}, status=exc.status)

    @page("/channels/{channel}/aliases/{alias}/ats")
    async def ats_by_alias(web: Any, request: Any, channel: str, alias: str) -> Any:
        try:
            sku = aliased(channel, alias)
        except ApiError as exc:
            return web.json({"error": exc.message}, status=exc.status)
        return await answer(web, request, sku, lambda: {**query.channel_ats(channel, sku), "alias": alias})

    @page("/skus/{sku}/sourcing")
    async def sourcing(web: Any, request: Any, sku: str) -> Any:
        return await answer(web, request, sku, lambda: query.sourcing(sku, dict(request.query)))

    @page("/skus/{sku}/transfer-suggestions")
    async def sku_suggestions(web: Any, request: Any, sku: str) -> Any:
        """Answered by any worker: every worker follows all suggestions."""
        try:
            return web.json({"sku": check_sku(sku), "suggestions": suggestions.for_sku(sku)})
        except ApiError as exc:
            return web.json({"error": exc.message}, status=exc.status)

    @page("/locations/{location}/transfer-suggestions")
    async def location_suggestions(web: Any, request: Any, location: str) -> Any:
        if location not in network.network.locations:
            return web.json({"error": f"location: {location!r} is not in the network"}, status=404)
        return web.json({"location": location, "suggestions": suggestions.for_location(location)})

    @page("/openapi.json")
    async def openapi(web: Any, request: Any) -> Any:
        return web.json(OPENAPI)

    @page("/metrics")
    async def prometheus(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


async def _forward(app: StocksyncApp, web: Any, request: Any, owner: str, access: ApiAccess) -> Any:
    """Ask the owning worker the same question and pass its answer on."""
    url = URL(owner).with_path(request.url.path).with_query(request.url.query)
    try:
        async with app.http_client.get(url, headers={ROUTED_HEADER: "1", **access.headers()},
                                       ssl=access.client_context() if url.scheme == "https" else True,
                                       timeout=aiohttp.ClientTimeout(total=10)) as response:
            body = await response.read()
            return web.bytes(body, content_type="application/json", status=response.status)
    except (TimeoutError, aiohttp.ClientError) as exc:
        return web.json({"error": f"the SKU's owner at {owner} did not answer ({exc!r}); retry"}, status=503)
