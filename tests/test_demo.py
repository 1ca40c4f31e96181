"""`hauswacht demo`: a real uvicorn server on 127.0.0.1, real client threads, a real events file."""

from __future__ import annotations

import os
import queue
import re
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.test_cli import HAUSWACHT, run_cli

TEMPLATED_ROUTES = {
    "/api/tours",
    "/api/tours/{tour_id}",
    "/api/tours/{tour_id}/optimize",
    "/api/drivers/{driver_id}/route",
    "/api/reports/daily",
    "/api/positions",
}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the demo once for 3 s in an empty folder, with the default database path."""
    folder = tmp_path_factory.mktemp("demo")
    result = run_cli("demo", "--duration", "3", cwd=folder, timeout=90)
    return {"result": result, "database": folder / "hauswacht-data" / "events.db"}


def query(database: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(database)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_demo_prints_traffic_and_stats(demo_run: dict) -> None:
    result = demo_run["result"]

    assert result.returncode == 0, result.stderr
    assert "Demo: example API on 127.0.0.1 with events in hauswacht-data/events.db" in result.stdout
    assert re.search(
        r"Sent [\d,]+ requests from 4 clients to http://127\.0\.0\.1:\d+", result.stdout
    )
    assert "Hauswacht stats: hauswacht-data/events.db" in result.stdout
    assert "Top routes" in result.stdout
    assert "/api/drivers/{driver_id}/route" in result.stdout
    assert "Traceback" not in result.stderr  # the intended errors are not logged as tracebacks


def test_demo_stores_every_answered_request(demo_run: dict) -> None:
    stdout = demo_run["result"].stdout
    sent = int(re.search(r"Sent ([\d,]+) requests", stdout).group(1).replace(",", ""))
    answered = sum(
        int(count.replace(",", ""))
        for count in re.findall(r"\d{3}: ([\d,]+)", stdout.split("Responses by status:")[1])
    )
    rows = query(demo_run["database"], "SELECT count(*) FROM requests")

    assert "got no response" not in stdout
    assert answered == sent
    assert sent > 50
    assert rows == [(sent,)]


def test_demo_records_templated_routes(demo_run: dict) -> None:
    routes = {
        route for (route,) in query(demo_run["database"], "SELECT DISTINCT route FROM requests")
    }
    rolled_up = {
        route
        for (route,) in query(demo_run["database"], "SELECT DISTINCT route FROM request_rollups")
    }

    assert len(routes & TEMPLATED_ROUTES) >= 5
    assert "/api/tours/{tour_id}" in routes
    assert "/api/drivers/{driver_id}/route" in routes
    assert routes == rolled_up
    assert all("d-" not in route for route in routes)  # no raw driver id leaked into a route


def test_demo_records_error_group(demo_run: dict) -> None:
    groups = query(demo_run["database"], "SELECT type, count FROM error_groups")
    failed = query(
        demo_run["database"],
        "SELECT count(*) FROM requests WHERE route = '/api/tours/{tour_id}/optimize' "
        "AND status = 500",
    )

    assert len(groups) == 1
    assert groups[0][0].endswith("RoutingEngineError")
    assert groups[0][1] >= 1
    assert groups[0][1] == failed[0][0]  # one error event per failed request


def test_demo_records_metrics(demo_run: dict) -> None:
    names = {name for (name,) in query(demo_run["database"], "SELECT DISTINCT name FROM metrics")}

    assert "demo.positions_per_batch" in names
    assert "demo.route_planning" in names


@pytest.mark.parametrize(
    ("option", "value"),
    [("--duration", "0"), ("--duration", "ten"), ("--requests", "-5"), ("--clients", "100")],
)
def test_demo_rejects_bad_limits(tmp_path: Path, option: str, value: str) -> None:
    result = run_cli("demo", option, value, "--db", str(tmp_path / "events.db"))

    assert result.returncode == 2
    assert option in result.stderr
    assert repr(value) in result.stderr
    assert not (tmp_path / "events.db").exists()


# --- demo --dashboard ----------------------------------------------------------------

DASHBOARD_START_SECONDS = 60.0  # traffic, stats and both servers, on a busy machine


class DemoProcess:
    """`hauswacht demo --dashboard` in a subprocess, with its stdout read line by line."""

    def __init__(self, folder: Path, extra_env: dict[str, str], *args: str) -> None:
        env = {key: value for key, value in os.environ.items() if key != "HAUSWACHT_DB"}
        env["HAUSWACHT_LANG"] = "en"
        env.pop("HAUSWACHT_DEMO_PASSWORD", None)
        env.update(extra_env)
        self.process = subprocess.Popen(
            [str(HAUSWACHT), "demo", "--dashboard", *args],
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = DASHBOARD_START_SECONDS) -> re.Match:
        """Return the match of the first stdout line matching `pattern`; fail on exit or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no line matching {pattern!r} in {left + timeout:.0f} s: {self.lines}")
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                stderr = self.process.stderr.read() if self.process.stderr else ""
                pytest.fail(f"demo exited before {pattern!r}: {self.lines} {stderr}")
            self.lines.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def stop(self, signal_number: int) -> tuple[int, str]:
        """Send `signal_number`, wait for the exit and return the exit code and stderr."""
        self.process.send_signal(signal_number)
        code = self.process.wait(timeout=30)
        remaining = self._queue
        while True:
            line = remaining.get(timeout=5)
            if line is None:
                break
            self.lines.append(line)
        stderr = self.process.stderr.read() if self.process.stderr else ""
        return code, stderr

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def read_dashboard_stats(url: str, user: str, password: str) -> httpx.Response:
    """Log in to the dashboard at `url` over HTTP and return its /api/stats?hours=24 response."""
    with httpx.Client(base_url=url, timeout=10) as client:
        response = client.post("/login", data={"user": user, "password": password})
        assert response.status_code == 303, response.text[:300]
        return client.get("/api/stats", params={"hours": "24"})


def test_demo_dashboard_serves_until_sigint(tmp_path: Path) -> None:
    demo = DemoProcess(tmp_path, {}, "--duration", "2")
    try:
        sent = int(demo.wait_for(r"Sent ([\d,]+) requests").group(1).replace(",", ""))
        login = demo.wait_for(r"Dashboard login: user (\S+), password (\S+) \(shown once")
        example_url = demo.wait_for(r"^Example API: (http://127\.0\.0\.1:\d+/)$").group(1)
        dashboard_url = demo.wait_for(r"^Dashboard: (http://127\.0\.0\.1:\d+/)$").group(1)
        demo.wait_for(r"^Serving both until Ctrl-C\.$")

        stats = read_dashboard_stats(dashboard_url, login.group(1), login.group(2))
        extra = httpx.get(example_url + "api/tours", timeout=10)
        code, stderr = demo.stop(signal.SIGINT)
    finally:
        demo.kill()

    assert login.group(1) == "demo"
    assert stats.status_code == 200
    assert stats.json()["requests"] == sent
    assert stats.json()["status"]["5xx"] >= 1
    assert extra.status_code == 200
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert demo.lines[-1] == "Stopped the dashboard and the example API."
    users = (tmp_path / "hauswacht-data" / "dashboard-users.json").read_text()
    assert login.group(2) not in users  # only the hash is stored
    # The example app drained its writer on SIGINT: the request sent after the stats is stored.
    rows = query(tmp_path / "hauswacht-data" / "events.db", "SELECT count(*) FROM requests")
    assert rows == [(sent + 1,)]


def test_demo_dashboard_password_from_environment(tmp_path: Path) -> None:
    password = "demo password from env"
    demo = DemoProcess(tmp_path, {"HAUSWACHT_DEMO_PASSWORD": password}, "--duration", "1",
                       "--requests", "50")  # fmt: skip
    try:
        user = demo.wait_for(r"Dashboard login: user (\S+) with the password from "
                             r"HAUSWACHT_DEMO_PASSWORD$").group(1)  # fmt: skip
        dashboard_url = demo.wait_for(r"^Dashboard: (http://127\.0\.0\.1:\d+/)$").group(1)
        stats = read_dashboard_stats(dashboard_url, user, password)
        code, stderr = demo.stop(signal.SIGTERM)
    finally:
        demo.kill()

    assert stats.json()["requests"] == 50
    assert code == 0, stderr
    assert all(password not in line for line in demo.lines)
    assert password not in stderr


def test_demo_dashboard_rejects_short_password(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "HAUSWACHT_DB"}
    env.update(HAUSWACHT_LANG="en", HAUSWACHT_DEMO_PASSWORD="short")
    result = subprocess.run(
        [str(HAUSWACHT), "demo", "--dashboard", "--duration", "1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert result.returncode == 1
    assert "invalid HAUSWACHT_DEMO_PASSWORD: password too short" in result.stderr
    assert "Sent" not in result.stdout
