"""Per-request cost of the middleware, measured by calling the ASGI app in process.

Every variant serves the same Starlette app (a templated JSON route) and is
called the same way: a prepared HTTP scope, a `receive` that returns the empty
request body, a `send` that discards messages. No server or socket is
involved, so the figures are the middleware's own cost.

- bare: no middleware.
- hauswacht: HauswachtMiddleware with its writer running (events go to a
  real SQLite file; flushes share the event loop, as in production).
- instrumentator: prometheus-fastapi-instrumentator's middleware.
- sqlite_per_request: a BaseHTTPMiddleware that inserts one SQLite row and
  commits per request, the simplest do-it-yourself approach.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_fastapi_instrumentator import Instrumentator
from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import JSONResponse
from starlette.routing import Route

from hauswacht import HauswachtMiddleware


async def show_tour(request):
    return JSONResponse({"tour": request.path_params["tour_id"], "stops": 12})


def make_app() -> Starlette:
    return Starlette(routes=[Route("/api/tours/{tour_id}", show_tour)])


class SQLitePerRequestMiddleware(BaseHTTPMiddleware):
    """Insert one row per request and commit, on one shared connection."""

    def __init__(self, app, database: str) -> None:
        super().__init__(app)
        self.conn = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS requests (ts REAL, method TEXT, path TEXT, "
            "status INTEGER, duration_ms REAL)"
        )

    async def dispatch(self, request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        self.conn.execute(
            "INSERT INTO requests VALUES (?, ?, ?, ?, ?)",
            (
                time.time(),
                request.method,
                request.url.path,
                response.status_code,
                (time.perf_counter() - start) * 1000,
            ),
        )
        return response


def build_variants(folder: Path) -> dict[str, Callable[[], Starlette]]:
    def bare() -> Starlette:
        return make_app()

    def hauswacht() -> Starlette:
        app = make_app()
        app.add_middleware(
            HauswachtMiddleware,
            database=str(folder / "hauswacht.db"),
            queue_size=1_000_000,
            batch_size=1_000,
        )
        return app

    def instrumentator() -> Starlette:
        app = make_app()
        Instrumentator(registry=CollectorRegistry()).instrument(app)
        return app

    def sqlite_per_request() -> Starlette:
        app = make_app()
        app.add_middleware(SQLitePerRequestMiddleware, database=str(folder / "diy.db"))
        return app

    return {
        "bare": bare,
        "hauswacht": hauswacht,
        "instrumentator": instrumentator,
        "sqlite_per_request": sqlite_per_request,
    }


def _scope(i: int) -> dict:
    path = f"/api/tours/{i % 5000}"
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0"),
            (b"accept", b"application/json"),
            (b"accept-encoding", b"gzip, deflate"),
            (b"connection", b"keep-alive"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _receive() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict) -> None:
    return None


async def _measure(app: Starlette, requests: int, rounds: int) -> list[float]:
    """Return the mean µs per request of each round, after a warm-up round."""
    inbox: asyncio.Queue = asyncio.Queue()
    startup_done = asyncio.Event()
    shutdown_done = asyncio.Event()

    async def receive() -> dict:
        return await inbox.get()

    async def send(message: dict) -> None:
        if message["type"] == "lifespan.startup.complete":
            startup_done.set()
        elif message["type"] == "lifespan.shutdown.complete":
            shutdown_done.set()

    lifespan = asyncio.create_task(app({"type": "lifespan", "state": {}}, receive, send))
    await inbox.put({"type": "lifespan.startup"})
    await startup_done.wait()

    scopes = [_scope(i) for i in range(requests)]
    results = []
    for round_index in range(rounds + 1):
        start = time.perf_counter()
        for scope in scopes:
            await app(dict(scope), _receive, _send)
        elapsed = time.perf_counter() - start
        if round_index > 0:
            results.append(elapsed / requests * 1e6)

    await inbox.put({"type": "lifespan.shutdown"})
    await shutdown_done.wait()
    await lifespan
    return results


def run(requests: int = 5_000, rounds: int = 5) -> dict[str, float]:
    """Return the median µs per request of each variant, measured in one process."""
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        variants = build_variants(Path(folder))
        samples: dict[str, list[float]] = {name: [] for name in variants}
        # Interleave the variants across repeats so machine drift hits each alike.
        for _ in range(3):
            for name, build in variants.items():
                samples[name] += asyncio.run(_measure(build(), requests, rounds))
        for name, values in samples.items():
            results[name] = statistics.median(values)
    return results


if __name__ == "__main__":
    print(run(requests=2_000, rounds=3))
