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
"""

from __future__ import annotations

import asyncio
import http.client
import itertools
import logging
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hauswacht.collector import HauswachtMiddleware, measure, record_metric

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
SLOW_ROUTE_SECONDS = 0.25
FAILURE_EVERY = 5  # the optimize route raises on every fifth call
KNOWN_TOURS = 40  # tour ids above this get a 404 response
CLIENT_TIMEOUT_SECONDS = 10.0
THINK_TIME_SECONDS = (0.002, 0.018)  # pause of each client between requests, uniform
STARTUP_TIMEOUT_SECONDS = 15.0


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


async def serve_and_drive(
    database: str | Path, duration: float, max_requests: int, clients: int
) -> DemoResult:
    """Serve the demo app on a free port, drive traffic at it, then stop the server gracefully."""
    # IPPROTO_TCP explicitly, because asyncio sets TCP_NODELAY only on sockets whose
    # protocol is IPPROTO_TCP. Without it each response waited ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
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
