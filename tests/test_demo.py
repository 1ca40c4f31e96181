"""`hauswacht demo`: a real uvicorn server on 127.0.0.1, real client threads, a real events file."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from tests.test_cli import run_cli

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
