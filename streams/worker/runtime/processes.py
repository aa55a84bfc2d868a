"""Several worker processes on one host under one parent: Python runs a worker's pipeline on one core, so a host
with more cores runs one worker process per core to use them.

Each process is an ordinary worker (its own group member, transactional producers and state directory
DATA_DIR/process-N, its HTTP server on WEB_PORT+N). The parent starts them, restarts one that exits (after a
growing pause, so a worker that cannot start does not spin), stops them all on SIGTERM or Ctrl-C, and answers on
WEB_PORT for all of them: /ready when every process is ready, /live, /metrics (every process's metrics, each
sample labelled with its `process`), and the query API passed on to a running process (which answers, or asks the
SKU's owner)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from streams.api_access import ApiAccess
from streams.errors import ConfigError
from streams.settings import Settings
from streams.worker.ops.logs import use_format
from streams.worker.runtime.process import duration

log = logging.getLogger("stocksync.worker")

FIRST_RESTART_PAUSE_S = 1.0
LONGEST_RESTART_PAUSE_S = 30.0
STEADY_AFTER_S = 60.0  # a process that ran this long before exiting is restarted after the first pause again
STOP_TIMEOUT_S = 60.0  # a process still running this long after SIGTERM is killed
ASK_TIMEOUT_S = 5.0  # for a process's /ready, /live and /metrics
FORWARD_TIMEOUT_S = 15.0  # for a query (the process may ask the SKU's owner, which has 10 s)
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a child gets when its parent dies


def process_count(setting: str, cpus: int | None = None) -> int:
    """The number of worker processes a `worker_processes` setting (or --processes) asks for."""
    if setting == "auto":
        return max(1, cpus if cpus is not None else usable_cpus())
    try:
        count = int(setting)
    except ValueError:
        raise ConfigError(f"--processes: {setting!r} is neither a number nor auto") from None
    if not 1 <= count <= 999:
        raise ConfigError(f"--processes: {count} is not between 1 and 999")
    return count


def usable_cpus(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The cores this process may run on, fewer where its container's CPU limit (cgroup v2 `cpu.max`, e.g. a
    Kubernetes limit of 2 CPUs on a 16-core node) allows less."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()
        return max(1, min(cores, int(quota) // int(period)))  # a part of a core runs no process of its own
    except (OSError, ValueError):  # no cgroup v2 file, or "max": no limit
        return cores


@dataclass(frozen=True)
class ProcessPlace:
    """Where worker process `number` (from 1) keeps its state and serves HTTP."""

    number: int
    port: int
    data_dir: str
    advertised_url: str | None  # None: WEB_HOST:port

    def environment(self) -> dict[str, str]:
        env = {"STOCKSYNC_WORKER_PROCESSES": "1", "STOCKSYNC_WEB_PORT": str(self.port),
               "STOCKSYNC_DATA_DIR": self.data_dir}
        if self.advertised_url:
            env["STOCKSYNC_ADVERTISED_URL"] = self.advertised_url
        return env


def places(settings: Settings, count: int) -> list[ProcessPlace]:
    """Each process's port (WEB_PORT+N), state directory and the URL other workers reach it at (the advertised
    URL's port + N, when one is set)."""
    if settings.web_port == 0:
        raise ConfigError("STOCKSYNC_WEB_PORT: several worker processes need a fixed port (0 picks any), since "
                          "process N serves on WEB_PORT+N")
    if settings.web_port + count > 65535:
        raise ConfigError(f"STOCKSYNC_WEB_PORT: {settings.web_port} + {count} processes passes port 65535")
    advertised = URL(settings.advertised_url) if settings.advertised_url else None
    return [ProcessPlace(n, settings.web_port + n, str(settings.data_dir / f"process-{n}"),
                         str(advertised.with_port((advertised.port or 80) + n)).rstrip("/") if advertised else None)
            for n in range(1, count + 1)]


def merged_metrics(pages: Mapping[int, str]) -> Iterator[Metric]:
    """Every process's metrics as one set of families, each sample labelled with the process it came from."""
    families: dict[str, Metric] = {}
    for number, text in sorted(pages.items()):
        for family in text_string_to_metric_families(text):
            merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type,
                                                             family.unit))
            for sample in family.samples:
                merged.add_sample(sample.name, {**sample.labels, "process": str(number)}, sample.value,
                                  sample.timestamp, sample.exemplar)
    yield from families.values()


class _Collected:
    """A prometheus_client collector over already collected families."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


@dataclass
class Child:
    place: ProcessPlace
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    restarts: int = 0
    pause_s: float = FIRST_RESTART_PAUSE_S

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


@dataclass
class Supervisor:
    settings: Settings
    count: int
    loglevel: str
    access: ApiAccess = field(init=False)

    def __post_init__(self) -> None:
        self.access = self.settings.api_access()
        self.children = [Child(place) for place in places(self.settings, self.count)]
        self.stopping = asyncio.Event()
        self.registry = CollectorRegistry()
        self.restarts = Counter("stocksync_worker_process_restarts", "Worker processes started again after they "
                                "exited", ["process"], registry=self.registry)
        self.running_gauge = Gauge("stocksync_worker_processes_running", "Worker processes running",
                                   registry=self.registry)
        self.running_gauge.set_function(lambda: sum(child.running for child in self.children))
        self._turn = itertools.count()

    # --- the processes -----------------------------------------------------------------------------------------
    async def _start(self, child: Child) -> None:
        env = {**os.environ, **child.place.environment()}
        child.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "streams.cli", "worker", "--loglevel", self.loglevel, env=env,
            preexec_fn=_die_with_parent)
        child.started_at = time.monotonic()
        log.info("worker process %d started (pid %d, port %d, state in %s)", child.place.number, child.proc.pid,
                 child.place.port, child.place.data_dir)

    async def _watch(self, child: Child) -> None:
        """Keep the process running until the parent stops."""
        while not self.stopping.is_set():
            try:
                await self._start(child)
            except OSError as exc:  # the interpreter could not be started (a full process table, no memory)
                log.error("worker process %d could not be started (%s); trying again in %.0f s", child.place.number,
                          exc, child.pause_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), child.pause_s)
                child.pause_s = min(LONGEST_RESTART_PAUSE_S, child.pause_s * 2)
                continue
            assert child.proc is not None
            code = await child.proc.wait()
            if self.stopping.is_set():
                return
            ran = time.monotonic() - child.started_at
            if ran >= STEADY_AFTER_S:
                child.pause_s = FIRST_RESTART_PAUSE_S
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
            log.warning("worker process %d (pid %d) %s after %s; starting it again in %.0f s",
                        child.place.number, child.proc.pid, how, duration(ran), child.pause_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), child.pause_s)
            child.pause_s = min(LONGEST_RESTART_PAUSE_S, child.pause_s * 2)
            child.restarts += 1
            self.restarts.labels(str(child.place.number)).inc()

    async def _stop_all(self) -> None:
        for child in self.children:
            if child.running:
                assert child.proc is not None
                child.proc.send_signal(signal.SIGTERM)
        for child in self.children:
            if child.proc is None:
                continue
            try:
                await asyncio.wait_for(child.proc.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                log.error("worker process %d (pid %d) did not stop within %.0f s; killing it", child.place.number,
                          child.proc.pid, STOP_TIMEOUT_S)
                child.proc.kill()
                await child.proc.wait()

    # --- the parent's pages ------------------------------------------------------------------------------------
    def _url(self, child: Child, path: str, query: Mapping[str, str] | None = None) -> URL:
        scheme = "https" if self.access.cert_file else "http"
        base = URL(child.place.advertised_url) if child.place.advertised_url else \
            URL.build(scheme=scheme, host=_reachable(self.settings.web_host), port=child.place.port)
        return base.with_path(path).with_query(query or {})

    async def _ask(self, session: aiohttp.ClientSession, child: Child, path: str,
                   query: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None,
                   timeout_s: float = ASK_TIMEOUT_S) -> tuple[int, bytes, str]:
        url = self._url(child, path, query)
        async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s),
                               ssl=self.access.client_context() if url.scheme == "https" else True) as response:
            return response.status, await response.read(), response.content_type

    async def _ready(self, request: web.Request) -> web.Response:
        """200 when every process is ready; the processes' own pages in `processes`."""
        async def one(child: Child) -> dict[str, Any]:
            status: dict[str, Any] = {"process": child.place.number, "pid": child.proc.pid if child.proc else None}
            if not child.running:
                return {**status, "ready": False, "reasons": ["not running (restarting)"]}
            try:
                _, body, _ = await self._ask(request.app["session"], child, "/ready")
                return {**status, **json_loads(body)}
            except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                return {**status, "ready": False, "reasons": [f"not answering ({exc.__class__.__name__})"]}

        processes = await asyncio.gather(*(one(child) for child in self.children))
        reasons = [f"process {p['process']}: {reason}" for p in processes for reason in p.get("reasons", [])]
        ready = all(p.get("ready") for p in processes)
        assigned = sorted({n for p in processes for n in p.get("assigned_partitions", [])})
        return web.json_response({"ready": ready, "reasons": reasons, "assigned_partitions": assigned,
                                  "processes": processes}, status=200 if ready else 503)

    async def _live(self, request: web.Request) -> web.Response:
        """200 while the parent runs: it restarts a process that exits by itself."""
        return web.json_response({"live": True, "reasons": [], "processes": [
            {"process": child.place.number, "pid": child.proc.pid if child.proc else None,
             "running": child.running, "restarts": child.restarts, "port": child.place.port}
            for child in self.children]})

    async def _metrics(self, request: web.Request) -> web.Response:
        async def one(child: Child) -> tuple[int, str] | None:
            if not child.running:
                return None
            try:
                status, body, _ = await self._ask(request.app["session"], child, "/metrics")
            except (TimeoutError, aiohttp.ClientError):
                return None
            return (child.place.number, body.decode()) if status == 200 else None

        pages = dict(page for page in await asyncio.gather(*(one(child) for child in self.children)) if page)
        registry = CollectorRegistry()
        registry.register(_Collected(merged_metrics(pages)))
        body = generate_latest(registry) + generate_latest(self.registry)
        return web.Response(body=body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    async def _pass_on(self, request: web.Request) -> web.Response:
        """A query answered by a running process (it asks the SKU's owner if that is another one); the next one is
        tried if it does not answer."""
        start = next(self._turn)
        order = [self.children[(start + i) % len(self.children)] for i in range(len(self.children))]
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "accept")}
        failure = "no worker process is running"
        for child in order:
            if not child.running:
                continue
            try:
                status, body, content_type = await self._ask(request.app["session"], child, request.path,
                                                             request.query, headers, FORWARD_TIMEOUT_S)
            except (TimeoutError, aiohttp.ClientError) as exc:
                failure = f"worker process {child.place.number} did not answer ({exc!r})"
                continue
            response = web.Response(body=body, status=status, content_type=content_type or "application/json")
            if status == 401:
                response.headers["WWW-Authenticate"] = "Bearer"
            return response
        return web.json_response({"error": f"{failure}; retry"}, status=503)

    def web_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ready", self._ready)
        app.router.add_get("/live", self._live)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/{path:.*}", self._pass_on)
        app.cleanup_ctx.append(_client_session)
        return app

    # --- running -----------------------------------------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        runner = web.AppRunner(self.web_app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.web_host, self.settings.web_port,
                           ssl_context=self.access.server_context())
        await site.start()
        log.info("stocksync worker: %d processes on this host; their API, /ready, /live and /metrics on port %d",
                 self.count, self.settings.web_port)
        watchers = [asyncio.create_task(self._watch(child)) for child in self.children]
        await self.stopping.wait()
        await self._stop_all()
        await asyncio.gather(*watchers, return_exceptions=True)
        await runner.cleanup()


async def _client_session(app: web.Application) -> Any:
    async with aiohttp.ClientSession() as session:
        app["session"] = session
        yield


def json_loads(body: bytes) -> dict[str, Any]:
    found = json.loads(body)
    if not isinstance(found, dict):
        raise ValueError("not a JSON object")
    return found


def _reachable(host: str) -> str:
    """The address to reach a server bound to `host` from this host."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:
    """In the child before it runs: Linux sends it SIGTERM when the parent dies, even by SIGKILL, so no worker
    process is left behind writing as a member nobody supervises."""
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def run_processes(settings: Settings, count: int, loglevel: str) -> int:
    """Run `count` worker processes until SIGTERM or Ctrl-C; 0 after a clean stop."""
    handler = logging.StreamHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel({"crit": logging.CRITICAL, "warn": logging.WARNING}.get(loglevel, loglevel.upper()))
    use_format(root, settings.log_format)
    supervisor = Supervisor(settings, count, loglevel)
    began = time.monotonic()
    asyncio.run(supervisor.run())
    restarts = sum(child.restarts for child in supervisor.children)
    log.info("stocksync worker stopped after %s: %d processes, %d restarts", duration(time.monotonic() - began),
             count, restarts)
    return 0
