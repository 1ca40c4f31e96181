"""Ingest throughput over loopback: a real `hauswacht serve` subprocess fed by one httpx client.

- ndjson: request events in NDJSON bodies of `batch_size` events, sent one
  after another on one keep-alive connection. The time runs from the first
  POST until the server's writer reports every event written (its
  `/healthz` counter), so it is end to end into the database.
- single: one request event per POST, sequentially; POSTs per second.
- envelopes: Sentry envelopes with one error event each, sequentially.
- limit: `writer_bench.run_limit`, a bare executemany of the same events in
  the same batch size into one unindexed table, measured in the same run.

The client runs in this process and the server in another, so on a
two-core machine they share the cores with each other and with the writer
thread. Every phase stops at its event count or at PHASE_TIMEOUT seconds.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from bench.writer_bench import make_events, run_limit
from hauswacht.writer.tokens import create_token

REPO_ROOT = Path(__file__).resolve().parents[1]
PHASE_TIMEOUT = 120.0  # seconds per phase
CLI = "import sys; from hauswacht.cli import main; sys.exit(main())"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _native(event: tuple) -> dict:
    ts, method, route, path, status, duration, ttfb, size, client, agent, trace = event
    return {
        "type": "request",
        "timestamp": ts,
        "http.request.method": method,
        "http.route": route,
        "url.path": path,
        "http.response.status_code": status,
        "duration_ms": duration,
        "ttfb_ms": ttfb,
        "http.response.body.size": size,
        "client.address": client,
        "user_agent.original": agent,
        "trace_id": trace,
    }


def _envelope(index: int) -> bytes:
    event_id = f"{index:032x}"
    event = {
        "event_id": event_id,
        "timestamp": 1_780_000_000.0 + index,
        "level": "error",
        "platform": "python",
        "exception": {
            "values": [
                {
                    "type": "LookupError",
                    "value": f"tour {index} not found",
                    "stacktrace": {
                        "frames": [
                            {
                                "function": "dispatch",
                                "module": "app.api",
                                "lineno": 10,
                                "in_app": True,
                            },
                            {
                                "function": "load_tour",
                                "module": "app.tours",
                                "lineno": 42,
                                "in_app": True,
                            },
                        ]
                    },
                }
            ]
        },
    }
    payload = orjson.dumps(event)
    header = orjson.dumps({"event_id": event_id})
    item = orjson.dumps({"type": "event", "length": len(payload)})
    return b"\n".join([header, item, payload]) + b"\n"


class _Server:
    def __init__(self, folder: Path) -> None:
        self.db = folder / "ingest.db"
        self.token = create_token(self.db, "bench")
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("HAUSWACHT_")}
        environment["HAUSWACHT_FLUSH_INTERVAL"] = "0.05"
        self.log = open(folder / "serve.log", "wb")  # noqa: SIM115 (closed in stop())
        command = [sys.executable, "-c", CLI, "serve", "--port", str(port), "--db", str(self.db)]
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=environment, stdout=self.log, stderr=self.log
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"hauswacht serve did not start; see {folder / 'serve.log'}")

    def written(self, client: httpx.Client) -> int:
        return client.get("/healthz").json()["writer"]["events_written"]

    def wait_written(self, client: httpx.Client, target: int, deadline: float) -> int:
        written = self.written(client)
        while written < target and time.monotonic() < deadline:
            time.sleep(0.01)
            written = self.written(client)
        return written

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def _ndjson_rate(server: _Server, bodies: list[bytes], count: int) -> float:
    headers = {
        "Authorization": f"Bearer {server.token}",
        "Content-Type": "application/x-ndjson",
    }
    with httpx.Client(base_url=server.url, timeout=60) as client:
        base = server.written(client)
        deadline = time.monotonic() + PHASE_TIMEOUT
        start = time.perf_counter()
        for body in bodies:
            while True:
                response = client.post("/ingest", content=body, headers=headers)
                if response.status_code != 429:
                    break
                time.sleep(0.01)  # the queue is full: the writer is the bottleneck
            if response.status_code != 202:
                raise RuntimeError(f"ingest returned {response.status_code}: {response.text}")
        written = server.wait_written(client, base + count, deadline) - base
        elapsed = time.perf_counter() - start
    if written < count:
        raise RuntimeError(f"only {written} of {count} events written in {PHASE_TIMEOUT} s")
    return count / elapsed


def _posts_per_second(server: _Server, path: str, bodies: list[bytes], headers: dict) -> float:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        deadline = time.monotonic() + PHASE_TIMEOUT
        sent = 0
        start = time.perf_counter()
        for body in bodies:
            response = client.post(path, content=body, headers=headers)
            if response.status_code not in (200, 202):
                raise RuntimeError(f"{path} returned {response.status_code}: {response.text}")
            sent += 1
            if time.monotonic() > deadline:
                break
        elapsed = time.perf_counter() - start
    return sent / elapsed


def run(
    events_count: int = 100_000,
    batch_size: int = 1_000,
    single_posts: int = 2_000,
    envelopes: int = 2_000,
) -> dict:
    """Measure the three ingest paths and the writer's limit; return rates and ratios."""
    events = make_events(events_count, seed=11)
    bodies = [
        b"\n".join(orjson.dumps(_native(event)) for event in events[start : start + batch_size])
        for start in range(0, events_count, batch_size)
    ]
    singles = [orjson.dumps(_native(event)) for event in events[:single_posts]]
    envelope_bodies = [_envelope(index) for index in range(envelopes)]

    results: dict = {
        "events": events_count,
        "batch_size": batch_size,
        "single_posts": single_posts,
        "envelopes": envelopes,
    }
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        results["limit"] = run_limit(base / "limit.db", events, batch_size)
        server = _Server(base)
        try:
            results["ndjson"] = _ndjson_rate(server, bodies, events_count)
            bearer = {
                "Authorization": f"Bearer {server.token}",
                "Content-Type": "application/x-ndjson",
            }
            results["single"] = _posts_per_second(server, "/ingest", singles, bearer)
            sentry = {"X-Sentry-Auth": f"Sentry sentry_key={server.token}, sentry_version=7"}
            results["envelope"] = _posts_per_second(
                server, "/api/1/envelope/", envelope_bodies, sentry
            )
        finally:
            server.stop()
    for name in ("ndjson", "single", "envelope"):
        results[f"{name}_share_of_limit"] = results[name] / results["limit"]
    return results


if __name__ == "__main__":
    print(run(events_count=50_000, single_posts=500, envelopes=500))
