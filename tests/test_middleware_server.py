"""HauswachtMiddleware under a real uvicorn in a subprocess, stopped with SIGTERM.

Every test sends a known list of requests with httpx (or a raw socket for
the client that goes away), stops the server gracefully and then reads the
SQLite file the server wrote.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hauswacht.writer.events import UNMATCHED_ROUTE
from tests.apps.basic_app import STREAM_CHUNK, STREAM_CHUNKS

REPO_ROOT = Path(__file__).resolve().parents[1]
APP = "tests.apps.basic_app:app"
STARTUP_TIMEOUT = 20.0  # seconds for uvicorn to accept connections
STOP_TIMEOUT = 30.0  # seconds for a graceful stop
TRACEPARENT_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SECRETS = ("s3cr3t-bearer", "session-abc123", "key-9876", "hunter2")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_until_listening(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"uvicorn exited with {server.process.returncode}:\n{server.output()}")
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"uvicorn did not listen within {STARTUP_TIMEOUT} s:\n{server.output()}")


def stop(server: Server) -> int:
    """Send SIGTERM and wait for the graceful stop; return the exit status."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        pytest.fail(f"uvicorn did not stop within {STOP_TIMEOUT} s:\n{server.output()}")


@contextmanager
def uvicorn(tmp_path: Path, db: Path, *args: str, **env: str) -> Iterator[Server]:
    """Run APP under uvicorn on a free 127.0.0.1 port with HAUSWACHT_DB=db; SIGTERM at the end."""
    port = free_port()
    log_path = tmp_path / f"uvicorn-{port}.log"
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("HAUSWACHT_")
    }
    environment.update({"HAUSWACHT_DB": str(db), "HAUSWACHT_FLUSH_INTERVAL": "0.2", **env})
    # uvicorn's own --proxy-headers (on by default, trusting 127.0.0.1) would
    # rewrite scope["client"] before the middleware reads it.
    command = [
        *[sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1", "--port", str(port)],
        "--no-proxy-headers",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*command, *args], cwd=REPO_ROOT, env=environment, stdout=log, stderr=log
        )
    server = Server(f"http://127.0.0.1:{port}", port, process, log_path)
    try:
        wait_until_listening(server)
        yield server
    finally:
        stop(server)


def rows(db: Path, sql: str, *params: object) -> list[sqlite3.Row]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def request_rows(db: Path) -> list[sqlite3.Row]:
    return rows(db, "SELECT * FROM requests ORDER BY id")


# The route table of tests/apps/basic_app.py as (method, path, status, route).
ROUTE_CASES = [
    ("GET", "/", 200, "/"),
    ("GET", "/tours/7", 200, "/tours/{tour_id}"),
    ("GET", "/tours/8", 200, "/tours/{tour_id}"),
    ("POST", "/tours", 201, "/tours"),
    ("HEAD", "/tours/9", 200, "/tours/{tour_id}"),
    ("POST", "/tours/10", 405, "/tours/{tour_id}"),
    ("GET", "/api/tours/abc", 200, "/api/tours/{tour_id}"),
    ("GET", "/api/ping", 200, "/api/ping"),
    ("GET", "/orgs/acme/users/5", 200, "/orgs/{org_id}/users/{user_id}"),
    ("GET", "/orgs/acme/nothing", 404, UNMATCHED_ROUTE),
    ("GET", "/api/nothing", 404, UNMATCHED_ROUTE),
    ("GET", "/no/such/page", 404, UNMATCHED_ROUTE),
    ("GET", "/stream", 200, "/stream"),
    ("GET", "/background", 200, "/background"),
    ("GET", "/metrics", 200, "/metrics"),
    ("GET", "/captured", 200, "/captured"),
]


def send_route_cases(client: httpx.Client) -> dict[tuple[str, str], int]:
    """Send ROUTE_CASES; return the body length the client received per (method, path)."""
    received = {}
    for method, path, status, _route in ROUTE_CASES:
        response = client.request(method, path)
        assert response.status_code == status, (method, path, response.text)
        received[method, path] = len(response.content)
    return received


def check_route_rows(db: Path, extra: int = 0) -> list[sqlite3.Row]:
    """Check one row per ROUTE_CASES request (plus `extra` others) with its route and status."""
    stored = request_rows(db)
    assert len(stored) == len(ROUTE_CASES) + extra
    by_request = Counter(
        (row["method"], row["path"], row["status"], row["route"]) for row in stored
    )
    for case in ROUTE_CASES:
        assert by_request[case] == 1, case
    return stored


def test_server_records_every_request(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    boom_headers = {
        "Authorization": "Bearer s3cr3t-bearer",
        "Cookie": "session=session-abc123",
        "X-Api-Key": "key-9876",
        "User-Agent": "hauswacht-test/1.0",
    }
    with uvicorn(tmp_path, db) as server, httpx.Client(base_url=server.url) as client:
        received = send_route_cases(client)
        # uvicorn closes the connection after an unhandled exception, so this goes last.
        response = client.get(
            "/boom", params={"id": "77", "password": "hunter2"}, headers=boom_headers
        )
        assert response.status_code == 500

    assert "database is locked" not in server.output()
    assert server.process.returncode == -signal.SIGTERM
    stored = check_route_rows(db, extra=1)

    by_path = {(row["method"], row["path"]): row for row in stored}
    for key, length in received.items():
        assert by_path[key]["response_bytes"] == length, key
    assert by_path["GET", "/stream"]["response_bytes"] == STREAM_CHUNKS * len(STREAM_CHUNK)
    assert by_path["HEAD", "/tours/9"]["response_bytes"] == 0
    assert by_path["GET", "/boom"]["status"] == 500
    assert by_path["GET", "/boom"]["route"] == "/boom"
    assert by_path["GET", "/boom"]["path"] == "/boom"  # the query string is not stored by default
    assert by_path["GET", "/boom"]["user_agent"] == "hauswacht-test/1.0"
    assert all(row["client"] == "127.0.0.1" for row in stored)
    assert by_path["GET", "/boom"]["ttfb_ms"] is None  # no response was started
    for row in stored:
        if row["path"] != "/boom":
            assert 0 <= row["ttfb_ms"] <= row["duration_ms"]

    # The background task records a metric when it ends; the request's
    # duration stopped at the last body chunk, before that.
    (done,) = rows(db, "SELECT ts FROM metrics WHERE name = 'background.done'")
    background = by_path["GET", "/background"]
    assert background["ts"] + background["duration_ms"] < done["ts"]

    errors = rows(db, "SELECT * FROM errors ORDER BY id")
    assert [error["type"] for error in errors] == [
        "builtins.RuntimeError",
        "tests.apps.basic_app.TourNotFound",
    ]
    boom = errors[1]
    assert boom["message"] == "tour 77 not found"
    assert boom["trace_id"] == by_path["GET", "/boom"]["trace_id"]
    for secret in SECRETS:
        assert secret not in boom["data"]
    data = json.loads(boom["data"])
    request = data["request"]
    assert request["headers"]["authorization"] == "[Filtered]"
    assert request["headers"]["cookie"] == "[Filtered]"
    assert request["headers"]["x-api-key"] == "[Filtered]"
    assert request["headers"]["user-agent"] == "hauswacht-test/1.0"
    assert request["query"] == "id=77&password=[Filtered]"
    assert request["route"] == "/boom"
    assert request["method"] == "GET"
    assert request["client"] == "127.0.0.1"
    chain = data["exceptions"]
    assert [(item["type"], item["relation"]) for item in chain] == [
        ("tests.apps.basic_app.TourNotFound", None),
        ("builtins.KeyError", "cause"),
    ]
    app_frames = [frame for frame in chain[0]["frames"] if frame["in_app"]]
    assert [frame["function"] for frame in app_frames] == ["boom"]
    assert app_frames[0]["module"] == "tests.apps.basic_app"
    assert any(
        not frame["in_app"] and frame["module"].startswith("starlette")
        for frame in chain[0]["frames"]
    )

    captured = json.loads(errors[0]["data"])
    assert captured["tags"] == {"area": "checkout"}
    assert captured["request"]["route"] == "/captured"
    assert errors[0]["trace_id"] == by_path["GET", "/captured"]["trace_id"]

    metrics = rows(
        db, "SELECT name, value, unit, tags FROM metrics WHERE name NOT LIKE 'hauswacht.%'"
    )
    values = {(row["name"], row["value"], row["unit"], row["tags"]) for row in metrics}
    assert ("loop.value", 1.5, "items", '{"a":1,"where":"loop"}') in values
    assert ("thread.value", 2.5, None, '{"where":"thread"}') in values
    assert ("background.done", 1.0, None, "{}") in values
    assert [row["name"] for row in metrics].count("loop.block") == 1


def test_server_without_lifespan_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    # A long flush interval: every event is still queued when SIGTERM arrives.
    with (
        uvicorn(tmp_path, db, "--lifespan", "off", HAUSWACHT_FLUSH_INTERVAL="60") as server,
        httpx.Client(base_url=server.url) as client,
    ):
        send_route_cases(client)
        assert client.get("/boom").status_code == 500

    assert "Waiting for application startup" not in server.output()
    assert server.process.returncode == -signal.SIGTERM  # the signal was re-raised after the drain
    check_route_rows(db, extra=1)
    assert len(rows(db, "SELECT id FROM errors")) == 2
    assert len(rows(db, "SELECT id FROM metrics WHERE name = 'background.done'")) == 1


def test_two_workers_store_each_request_once(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    count = 120
    with (
        uvicorn(tmp_path, db, "--workers", "2") as server,
        httpx.Client(base_url=server.url) as client,
    ):
        for number in range(count):
            # A new connection each time spreads the requests over both workers.
            response = client.get(f"/tours/{number}", headers={"Connection": "close"})
            assert response.status_code == 200

    output = server.output()
    assert "database is locked" not in output
    assert "Traceback" not in output
    stored = request_rows(db)
    assert len(stored) == count
    assert sorted(row["path"] for row in stored) == sorted(f"/tours/{n}" for n in range(count))
    assert {row["route"] for row in stored} == {"/tours/{tour_id}"}


def test_client_disconnect_before_response_is_499(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    with uvicorn(tmp_path, db) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            time.sleep(0.3)
        with httpx.Client(base_url=server.url) as client:
            assert client.get("/").status_code == 200

    stored = {row["path"]: row for row in request_rows(db)}
    assert set(stored) == {"/slow", "/"}
    assert stored["/slow"]["status"] == 499
    assert stored["/slow"]["route"] == "/slow"
    assert stored["/slow"]["ttfb_ms"] is None
    assert stored["/"]["status"] == 200


def read_status(sock: socket.socket) -> int | None:
    """Read a whole HTTP/1.1 response from `sock` until it closes; return its status code."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    if not data:
        return None
    return int(data.split(b" ", 2)[1])


def test_client_gone_without_app_receive_is_499(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    with uvicorn(tmp_path, db) as server:
        # /sleep never calls receive(), and responds after the watch delay.
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"GET /sleep?seconds=1.5 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            time.sleep(0.1)
        with httpx.Client(base_url=server.url) as client:
            assert client.get("/sleep", params={"seconds": "0.7"}).status_code == 200

    # Rows are stored in the order the requests ended, and the request that got
    # its response ends first.
    answered, gone = request_rows(db)
    assert (gone["path"], gone["route"], gone["status"]) == ("/sleep", "/sleep", 499)
    assert gone["ttfb_ms"] is None
    assert gone["response_bytes"] == 0
    assert (answered["path"], answered["status"]) == ("/sleep", 200)


def test_graceful_shutdown_timeout_records_500(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    with (
        uvicorn(tmp_path, db, "--timeout-graceful-shutdown", "1") as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=STOP_TIMEOUT) as sock,
    ):
        sock.sendall(b"GET /sleep?seconds=8 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        time.sleep(0.3)  # the request is running when SIGTERM arrives
        server.process.send_signal(signal.SIGTERM)
        status = read_status(sock)

    assert status == 500
    (row,) = request_rows(db)
    assert (row["path"], row["status"]) == ("/sleep", 500)
    assert rows(db, "SELECT id FROM errors") == []  # a cancellation is not an app error


def test_base_exception_route_is_500_with_error(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    with uvicorn(tmp_path, db) as server, httpx.Client(base_url=server.url) as client:
        assert client.get("/abort").status_code == 500

    (row,) = request_rows(db)
    assert (row["route"], row["status"]) == ("/abort", 500)
    (error,) = rows(db, "SELECT * FROM errors")
    assert error["type"] == "tests.apps.basic_app.Abort"
    assert error["message"] == "request aborted by the view"
    assert error["trace_id"] == row["trace_id"]


def test_unusable_database_without_lifespan_logs_drops(tmp_path: Path) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    with (
        uvicorn(tmp_path, folder, "--lifespan", "off") as server,
        httpx.Client(base_url=server.url) as client,
    ):
        for number in range(3):
            assert client.get(f"/tours/{number}").status_code == 200

    output = server.output()
    assert output.count("Hauswacht failed to start") == 1
    # Rate-limited: the first drop is logged at once, the next two only counted.
    drops = [line for line in output.splitlines() if "Hauswacht dropped" in line]
    assert len(drops) == 1
    assert f"because the database cannot be used: {folder}" in drops[0]
    assert "Traceback" not in output


def test_unknown_variable_warned_once(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    with (
        uvicorn(tmp_path, db, HAUSWACHT_BACTH_SIZE="10") as server,
        httpx.Client(base_url=server.url) as client,
    ):
        assert client.get("/").status_code == 200

    output = server.output()
    warning = (
        "environment variable HAUSWACHT_BACTH_SIZE is not a Hauswacht setting and is ignored; "
        "did you mean HAUSWACHT_BATCH_SIZE?"
    )
    assert output.count(warning) == 1


def test_trace_id_sources_and_echo(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    cases = {
        "/tours/1": {"traceparent": f"00-{TRACEPARENT_ID}-00f067aa0ba902b7-01"},
        "/tours/2": {"X-Request-ID": "req-42_a.b:c"},
        "/tours/3": {"X-Request-ID": "bad<script>id"},
        "/tours/4": {
            "traceparent": "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "X-Request-ID": "fallback-id",
        },
        "/tours/5": {"X-Request-ID": "r" * 300},
        "/tours/6": {},
    }
    echoed = {}
    with uvicorn(tmp_path, db) as server, httpx.Client(base_url=server.url) as client:
        for path, headers in cases.items():
            response = client.get(path, headers=headers)
            assert response.status_code == 200
            assert len(response.headers.get_list("x-request-id")) == 1
            echoed[path] = response.headers["x-request-id"]

    stored = {row["path"]: row["trace_id"] for row in request_rows(db)}
    assert stored == echoed
    assert stored["/tours/1"] == TRACEPARENT_ID
    assert stored["/tours/2"] == "req-42_a.b:c"
    assert stored["/tours/3"] == "badscriptid"
    assert stored["/tours/4"] == "fallback-id"
    assert stored["/tours/5"] == "r" * 64
    generated = stored["/tours/6"]
    assert len(generated) == 32
    assert set(generated) <= set("0123456789abcdef")


def test_root_path_and_trusted_proxy(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    with (
        uvicorn(
            tmp_path,
            db,
            "--root-path",
            "/dispatch",
            HAUSWACHT_TRUSTED_PROXIES="127.0.0.1, 10.0.0.0/8",
        ) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        # The proxy strips /dispatch; uvicorn puts root_path back in front of the path.
        client.get("/tours/1", headers={"X-Forwarded-For": "198.51.100.7, 10.1.2.3"})
        client.get("/tours/2", headers={"X-Forwarded-For": "203.0.113.50, 198.51.100.8"})
        client.get("/api/ping", headers={"Forwarded": 'for="[2001:db8::5]:4711";proto=https'})
        client.get("/orgs/acme/users/1", headers={"X-Forwarded-For": "10.9.9.9"})
        client.get("/nothing")

    stored = {row["path"]: row for row in request_rows(db)}
    assert stored["/dispatch/tours/1"]["route"] == "/dispatch/tours/{tour_id}"
    assert stored["/dispatch/tours/1"]["client"] == "198.51.100.7"
    # The right-most untrusted hop wins: the left one was written by the client.
    assert stored["/dispatch/tours/2"]["client"] == "198.51.100.8"
    assert stored["/dispatch/api/ping"]["route"] == "/dispatch/api/ping"
    assert stored["/dispatch/api/ping"]["client"] == "2001:db8::5"
    member = stored["/dispatch/orgs/acme/users/1"]
    assert member["route"] == "/dispatch/orgs/{org_id}/users/{user_id}"
    assert member["client"] == "10.9.9.9"  # every hop trusted: the left-most
    assert stored["/dispatch/nothing"]["route"] == UNMATCHED_ROUTE
    assert stored["/dispatch/nothing"]["client"] == "127.0.0.1"


def test_untrusted_peer_forwarding_ignored(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    with uvicorn(tmp_path, db) as server, httpx.Client(base_url=server.url) as client:
        client.get("/tours/1", headers={"X-Forwarded-For": "198.51.100.7"})
        client.get("/tours/2", headers={"Forwarded": "for=198.51.100.8"})

    assert [row["client"] for row in request_rows(db)] == ["127.0.0.1", "127.0.0.1"]


def test_server_bad_setting_stops_startup(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    port = free_port()
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("HAUSWACHT_")
    }
    environment.update({"HAUSWACHT_DB": str(db), "HAUSWACHT_QUEUE_SIZE": "lots"})
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=STOP_TIMEOUT,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    # uvicorn logs the lifespan.startup.failed message; Hauswacht adds no second copy.
    assert output.count("HAUSWACHT_QUEUE_SIZE='lots'") == 1
    assert "expected an integer from 1 to 10,000,000" in output
    assert "Application startup failed" in output
    assert "Traceback" not in output


def test_server_foreign_database_stops_startup(tmp_path: Path) -> None:
    db = tmp_path / "not-events.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    port = free_port()
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("HAUSWACHT_")
    }
    environment["HAUSWACHT_DB"] = str(db)
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=STOP_TIMEOUT,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"Hauswacht failed to start: {db}: not a Hauswacht events database" in output
    assert output.count("not a Hauswacht events database") == 1
    assert "Traceback" not in output
