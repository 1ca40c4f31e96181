"""An example dispatch API with HauswachtMiddleware, and a bounded traffic driver for it.

`run_demo()` serves the app under uvicorn on 127.0.0.1 (a free port), sends
requests from a few client threads until the duration passes or the request
budget is spent, whichever comes first, then stops uvicorn gracefully. The
graceful stop runs the lifespan shutdown, in which the middleware drains its
writer, so every recorded event is in the database when `run_demo()` returns.

The app has templated routes (`/api/tours/{tour_id}`,
`/api/drivers/{driver_id}/route`), a route that raises on every fifth call,
a slow route, a route that records a custom metric and one timed with
`measure()`. Unknown paths are requested too, and land on the shared
unmatched-route label.

`serve_demo_and_dashboard()` drives the same traffic but keeps the example
app running afterwards and starts a dashboard app beside it on 127.0.0.1
(port DASHBOARD_PORT, or a free port when that one is taken). Both serve
until SIGINT or SIGTERM, which stop the dashboard and then the example app
gracefully, so its writer drains as in `run_demo()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import http.client
import itertools
import logging
import random
import secrets
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from hauswacht.collector import HauswachtMiddleware, measure, record_metric
from hauswacht.collector.collector import Collector

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
SLOW_ROUTE_SECONDS = 0.25
FAILURE_EVERY = 5  # the optimize route raises on every fifth call
KNOWN_TOURS = 40  # tour ids above this get a 404 response
CLIENT_TIMEOUT_SECONDS = 10.0
THINK_TIME_SECONDS = (0.002, 0.018)  # pause of each client between requests, uniform
STARTUP_TIMEOUT_SECONDS = 15.0
DASHBOARD_PORT = 8111


class RoutingEngineError(RuntimeError):
    """The simulated routing engine timed out."""


class DemoError(RuntimeError):
    """The demo server could not be started."""


def build_app(database: str | Path) -> Starlette:
    """Return the example API with HauswachtMiddleware writing to `database`."""
    optimize_calls = itertools.count(1)

    async def list_tours(request: Request) -> Response:
        tours = [{"id": n, "stops": 8 + n % 5} for n in range(1, 6)]
        return JSONResponse(tours)

    async def get_tour(request: Request) -> Response:
        tour_id = request.path_params["tour_id"]
        if tour_id > KNOWN_TOURS:
            return JSONResponse({"detail": f"tour {tour_id} not found"}, status_code=404)
        return JSONResponse({"id": tour_id, "driver": f"d-{tour_id % 7}", "stops": 12})

    async def driver_route(request: Request) -> Response:
        driver_id = request.path_params["driver_id"]
        async with measure("demo.route_planning", tags={"engine": "local"}):
            stops = [{"seq": n, "eta_min": 9 * n} for n in range(1, 9)]
            await asyncio.sleep(0.002)
        return JSONResponse({"driver": driver_id, "stops": stops})

    async def optimize_tour(request: Request) -> Response:
        tour_id = request.path_params["tour_id"]
        call = next(optimize_calls)
        if call % FAILURE_EVERY == 0:
            raise RoutingEngineError(f"routing engine timed out after 3000 ms for tour {tour_id}")
        return JSONResponse({"id": tour_id, "saved_km": round(1.5 + call % 4, 1)})

    async def daily_report(request: Request) -> Response:
        await asyncio.sleep(SLOW_ROUTE_SECONDS)
        return JSONResponse({"tours": 40, "km": 2150.5})

    async def post_positions(request: Request) -> Response:
        try:
            positions = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return JSONResponse({"detail": "body must be a JSON list"}, status_code=400)
        if not isinstance(positions, list):
            return JSONResponse({"detail": "body must be a JSON list"}, status_code=400)
        record_metric("demo.positions_per_batch", len(positions), unit="positions")
        return JSONResponse({"accepted": len(positions)}, status_code=202)

    app = Starlette(
        routes=[
            Route("/api/tours", list_tours),
            Route("/api/tours/{tour_id:int}", get_tour),
            Route("/api/tours/{tour_id:int}/optimize", optimize_tour, methods=["POST"]),
            Route("/api/drivers/{driver_id}/route", driver_route),
            Route("/api/reports/daily", daily_report),
            Route("/api/positions", post_positions, methods=["POST"]),
        ]
    )
    app.add_middleware(HauswachtMiddleware, database=str(database))
    return app


# (weight, method, path template, has body); {n} is filled with a random number.
TRAFFIC_MIX = (
    (20, "GET", "/api/tours", False),
    (30, "GET", "/api/tours/{n}", False),
    (20, "GET", "/api/drivers/d-{n}/route", False),
    (10, "POST", "/api/tours/{n}/optimize", False),
    (15, "POST", "/api/positions", True),
    (3, "GET", "/api/reports/daily", False),
    (2, "GET", "/wp-login.php", False),
)


@dataclass
class DemoResult:
    url: str
    seconds: float
    clients: int
    statuses: Counter[int] = field(default_factory=Counter)
    failures: int = 0  # requests that got no HTTP response (connection errors)

    @property
    def sent(self) -> int:
        return sum(self.statuses.values()) + self.failures


class _Budget:
    """A request budget shared by the client threads."""

    def __init__(self, requests: int, deadline: float, stop: threading.Event) -> None:
        self._left = requests
        self._deadline = deadline
        self._stop = stop
        self._lock = threading.Lock()

    def take(self) -> bool:
        if self._stop.is_set() or time.monotonic() >= self._deadline:
            return False
        with self._lock:
            if self._left <= 0:
                return False
            self._left -= 1
            return True


def _client(
    port: int, budget: _Budget, seed: int, result: DemoResult, lock: threading.Lock
) -> None:
    rng = random.Random(seed)
    weights = [entry[0] for entry in TRAFFIC_MIX]
    statuses: Counter[int] = Counter()
    failures = 0
    connection = http.client.HTTPConnection(HOST, port, timeout=CLIENT_TIMEOUT_SECONDS)
    try:
        while budget.take():
            _, method, template, has_body = rng.choices(TRAFFIC_MIX, weights)[0]
            path = template.format(n=rng.randint(1, 45))
            body = None
            headers = {}
            if has_body:
                positions = [
                    {"lat": 52.5 + rng.random(), "lon": 13.4} for _ in range(rng.randint(1, 20))
                ]
                body = orjson.dumps(positions)
                headers["Content-Type"] = "application/json"
            status = _send(connection, method, path, body, headers)
            if status is None:
                failures += 1
            else:
                statuses[status] += 1
            time.sleep(rng.uniform(*THINK_TIME_SECONDS))
    finally:
        connection.close()
    with lock:
        result.statuses.update(statuses)
        result.failures += failures


def _send(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
) -> int | None:
    """Send one request and return its status, or None when no response came.

    A request on a kept-alive connection that the server has closed fails at
    once, so it is sent a second time on a new connection.
    """
    for attempt in (1, 2):
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException) as exc:
            connection.close()  # the next request opens a new connection
            logger.debug("demo request %s %s failed (attempt %d): %s", method, path, attempt, exc)
    return None


def drive_traffic(
    port: int, result: DemoResult, duration: float, max_requests: int, stop: threading.Event
) -> None:
    """Send requests from `result.clients` threads until the time or the budget runs out."""
    budget = _Budget(max_requests, time.monotonic() + duration, stop)
    lock = threading.Lock()
    threads = [
        threading.Thread(
            target=_client, args=(port, budget, seed, result, lock), name=f"demo-client-{seed}"
        )
        for seed in range(result.clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


class _HideIntendedErrors(logging.Filter):
    """Hide uvicorn's traceback for the demo's own failing route; it shows up in the stats."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, RoutingEngineError)


def _listening_socket(port: int) -> socket.socket:
    """Bind a TCP socket to HOST and `port` (0: a free port); raises OSError when taken."""
    # IPPROTO_TCP explicitly, because asyncio sets TCP_NODELAY only on sockets whose
    # protocol is IPPROTO_TCP. Without it each response waited ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError:
        sock.close()
        raise
    return sock


async def serve_and_drive(
    database: str | Path, duration: float, max_requests: int, clients: int
) -> DemoResult:
    """Serve the demo app on a free port, drive traffic at it, then stop the server gracefully."""
    sock = _listening_socket(0)
    port = sock.getsockname()[1]

    config = uvicorn.Config(
        build_app(database), lifespan="on", log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    error_filter = _HideIntendedErrors()
    logging.getLogger("uvicorn.error").addFilter(error_filter)
    result = DemoResult(url=f"http://{HOST}:{port}", seconds=0.0, clients=clients)
    stop = threading.Event()
    try:
        serve_task = asyncio.create_task(server.serve(sockets=[sock]))
        started_by = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not server.started:
            if serve_task.done() or time.monotonic() > started_by:
                server.should_exit = True
                await serve_task
                raise DemoError(f"the demo server on {result.url} did not start; see the log above")
            await asyncio.sleep(0.02)

        logger.info("demo server listening on %s", result.url)
        began = time.monotonic()
        drive_task = asyncio.create_task(
            asyncio.to_thread(drive_traffic, port, result, duration, max_requests, stop)
        )
        # Ctrl-C makes uvicorn set should_exit; then the clients stop too.
        while not drive_task.done():
            await asyncio.wait({drive_task, serve_task}, timeout=0.1)
            if server.should_exit or serve_task.done():
                stop.set()
        await drive_task
        result.seconds = time.monotonic() - began

        server.should_exit = True
        await serve_task
    finally:
        stop.set()
        logging.getLogger("uvicorn.error").removeFilter(error_filter)
        sock.close()
    return result


def run_demo(
    database: str | Path, duration: float = 10.0, max_requests: int = 5000, clients: int = 4
) -> DemoResult:
    """Run the demo server and traffic for at most `duration` s and `max_requests` requests."""
    return asyncio.run(serve_and_drive(database, duration, max_requests, clients))


# --- the demo with the dashboard -----------------------------------------------------


class _CallerSignalsServer(uvicorn.Server):
    """A uvicorn server that leaves SIGINT and SIGTERM to its caller.

    uvicorn's own handlers would stop only the server started last, and then
    raise the signal again after it stopped, which kills the process on SIGTERM.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class DashboardDemo:
    """URLs of a running demo with dashboard; `port_taken` when DASHBOARD_PORT was in use."""

    result: DemoResult
    dashboard_url: str
    port_taken: bool


def _dashboard_socket(port: int) -> tuple[socket.socket, bool]:
    """Bind `port` on HOST, or a free port when it is in use; return the socket and whether."""
    try:
        return _listening_socket(port), False
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise DemoError(f"cannot listen on {HOST}:{port} ({exc.strerror})") from exc
    logger.info("port %d on %s is in use; the demo dashboard takes a free port", port, HOST)
    return _listening_socket(0), True


def _find_collector(app: Any) -> Collector | None:
    """Return the collector of the HauswachtMiddleware in a started Starlette app's stack."""
    layer = getattr(app, "middleware_stack", None)
    while layer is not None:
        if isinstance(layer, HauswachtMiddleware):
            return layer.collector
        layer = getattr(layer, "app", None)
    return None


async def _start(server: uvicorn.Server, sock: socket.socket, url: str) -> asyncio.Task:
    """Start `server` on `sock` and wait until it accepts connections."""
    task = asyncio.create_task(server.serve(sockets=[sock]))
    started_by = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not server.started:
        if task.done() or time.monotonic() > started_by:
            server.should_exit = True
            await task
            raise DemoError(f"the server on {url} did not start; see the log above")
        await asyncio.sleep(0.02)
    return task


async def serve_demo_and_dashboard(
    database: str | Path,
    duration: float,
    max_requests: int,
    clients: int,
    dashboard_app: ASGIApp,
    on_ready: Callable[[DashboardDemo], None],
    dashboard_port: int = DASHBOARD_PORT,
) -> DemoResult:
    """Drive traffic at the demo app, then serve it and `dashboard_app` until SIGINT or SIGTERM.

    `on_ready` is called once both serve, after the traffic's events are
    written. A signal during the traffic run stops both servers without
    starting the dashboard, and `on_ready` is not called.
    Raises DemoError when a server cannot start.
    """
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop_requested.set)

    app_sock = _listening_socket(0)
    port = app_sock.getsockname()[1]
    app = build_app(database)
    config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False)
    app_server = _CallerSignalsServer(config)
    dashboard_server: uvicorn.Server | None = None
    dashboard_task: asyncio.Task | None = None
    dashboard_sock: socket.socket | None = None
    error_filter = _HideIntendedErrors()
    logging.getLogger("uvicorn.error").addFilter(error_filter)
    result = DemoResult(url=f"http://{HOST}:{port}", seconds=0.0, clients=clients)
    stop_clients = threading.Event()
    app_task: asyncio.Task | None = None
    try:
        app_task = await _start(app_server, app_sock, result.url)
        logger.info("demo server listening on %s", result.url)
        began = time.monotonic()
        drive_task = asyncio.create_task(
            asyncio.to_thread(drive_traffic, port, result, duration, max_requests, stop_clients)
        )
        stop_wait = asyncio.create_task(stop_requested.wait())
        await asyncio.wait({drive_task, stop_wait, app_task}, return_when=asyncio.FIRST_COMPLETED)
        stop_clients.set()
        await drive_task
        result.seconds = time.monotonic() - began
        if stop_requested.is_set() or app_task.done():
            stop_wait.cancel()
            return result

        collector = _find_collector(app)
        if collector is not None:
            await collector.flush()  # so the dashboard shows every request sent

        dashboard_sock, port_taken = _dashboard_socket(dashboard_port)
        dashboard_url = f"http://{HOST}:{dashboard_sock.getsockname()[1]}/"
        # No proxy in front of the demo: a forwarded-for header from a local
        # client must not change the address the login throttle uses.
        dashboard_config = uvicorn.Config(
            dashboard_app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            proxy_headers=False,
        )
        dashboard_server = _CallerSignalsServer(dashboard_config)
        dashboard_task = await _start(dashboard_server, dashboard_sock, dashboard_url)
        logger.info("demo dashboard listening on %s", dashboard_url)
        on_ready(DashboardDemo(result, dashboard_url, port_taken))

        running = {stop_wait, app_task, dashboard_task}
        await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
    finally:
        stop_clients.set()
        # The dashboard first, then the example app, whose lifespan shutdown drains its writer.
        if dashboard_server is not None and dashboard_task is not None:
            dashboard_server.should_exit = True
            await dashboard_task
        if app_task is not None:
            app_server.should_exit = True
            await app_task
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signal_number)
        logging.getLogger("uvicorn.error").removeFilter(error_filter)
        app_sock.close()
        if dashboard_sock is not None:
            dashboard_sock.close()
    return result


DEMO_USER = "demo"
DEMO_PASSWORD_VARIABLE = "HAUSWACHT_DEMO_PASSWORD"


@dataclass
class DemoLogin:
    """The dashboard login of the demo: `password` is set only when it was generated now."""

    user: str | None  # None when the users file already had users
    password: str | None
    from_environment: bool
    users_file: Path


def ensure_demo_user(users_file: Path, environment_password: str | None) -> DemoLogin:
    """Create the user DEMO_USER in `users_file` unless the file already has users.

    The password is `environment_password` when given, else a generated one.
    Raises ValueError for a password the users file rejects (too short or too
    long) and AuthFileError for an unusable users file.
    """
    from hauswacht.dashboard import auth

    store = auth.UserStore(users_file)
    if store.users():
        return DemoLogin(None, None, False, users_file)
    if environment_password is not None:
        store.set_password(DEMO_USER, environment_password)
        return DemoLogin(DEMO_USER, None, True, users_file)
    password = secrets.token_urlsafe(12)
    store.set_password(DEMO_USER, password)
    return DemoLogin(DEMO_USER, password, False, users_file)


def run_demo_with_dashboard(
    database: str | Path,
    duration: float,
    max_requests: int,
    clients: int,
    dashboard_app: ASGIApp,
    on_ready: Callable[[DashboardDemo], None],
) -> DemoResult:
    """Run `serve_demo_and_dashboard` in a new event loop; call it from the main thread only."""
    return asyncio.run(
        serve_demo_and_dashboard(database, duration, max_requests, clients, dashboard_app,
                                 on_ready)
    )  # fmt: skip
