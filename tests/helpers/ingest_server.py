"""Run `hauswacht serve` in a subprocess on a free 127.0.0.1 port, for the ingest tests."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from hauswacht.writer.tokens import create_token

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 20.0  # seconds until /healthz returns 200
STOP_TIMEOUT = 30.0  # seconds for a graceful stop
CLI = "import sys; from hauswacht.cli import main; sys.exit(main())"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class IngestServer:
    url: str
    db: Path
    token: str
    process: subprocess.Popen
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def sentry_auth(self) -> dict[str, str]:
        return {"X-Sentry-Auth": f"Sentry sentry_key={self.token}, sentry_version=7"}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HAUSWACHT_")}
    environment["HAUSWACHT_LANG"] = "en"
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def stop(server: IngestServer) -> int:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        pytest.fail(f"hauswacht serve did not stop within {STOP_TIMEOUT} s:\n{server.output()}")


@contextmanager
def ingest_server(folder: Path, *args: str, **env: str) -> Iterator[IngestServer]:
    """Start `hauswacht serve` on a new database in `folder` with one token; SIGTERM at the end."""
    db = folder / "events.db"
    token = create_token(db, "test-client")
    port = free_port()
    log_path = folder / f"serve-{port}.log"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HAUSWACHT_")}
    environment.update({"HAUSWACHT_FLUSH_INTERVAL": "0.1", "HAUSWACHT_LANG": "en", **env})
    command = [sys.executable, "-c", CLI, "serve", "--port", str(port), "--db", str(db), *args]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=environment, stdout=log, stderr=log)
    server = IngestServer(f"http://127.0.0.1:{port}", db, token, process, log_path)
    try:
        wait_until_healthy(server)
        yield server
    finally:
        stop(server)


def wait_until_healthy(server: IngestServer) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(
                f"hauswacht serve exited with {server.process.returncode}:\n{server.output()}"
            )
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    pytest.fail(f"hauswacht serve was not healthy within {STARTUP_TIMEOUT} s:\n{server.output()}")


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def wait_for_count(db: Path, table: str, expected: int, timeout: float = 10.0) -> int:
    """Poll `table` until it has `expected` rows and return the count (flushes come every 0.1 s)."""
    deadline = time.monotonic() + timeout
    count = -1
    while time.monotonic() < deadline:
        count = query(db, f"SELECT count(*) FROM {table}")[0][0]
        if count >= expected:
            # One more flush interval, so a count above the expected one shows up too.
            time.sleep(0.25)
            return query(db, f"SELECT count(*) FROM {table}")[0][0]
        time.sleep(0.05)
    return count


def send_raw(url: str, request: bytes, timeout: float = 15.0) -> bytes:
    """Send raw HTTP `request` on a new connection; return the answer's bytes.

    Reading stops at the end of a JSON body or when the server closes; a server
    that sends nothing within `timeout` seconds fails the test.
    """
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
            if b"\r\n\r\n" in received and received.rstrip().endswith(b"}"):
                break
        return received
