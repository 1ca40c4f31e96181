"""The overview read from request_hourly and the rollups against the same figures from raw rows."""

from __future__ import annotations

import math
import random
import sqlite3
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from hauswacht.writer import compaction, histogram, schema
from hauswacht.writer.events import RequestEvent
from hauswacht.writer.queries import (
    HOUR_MS,
    SLOWEST_SHOWN,
    Window,
    fill_percentiles,
    read_endpoint_history,
    read_endpoints,
    read_overview,
)
from tests.test_writer_hourly import write_in_batches

BASE_TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z, the start of an hour
FIRST_HOUR = BASE_TS // HOUR_MS
# 14 endpoints, so the slowest list (10) leaves some out; each has its own latency scale.
ENDPOINTS = [(f"/api/r{n}/{{id}}", "POST" if n % 4 == 0 else "GET", 2.0 + 3.0 * n)
             for n in range(14)]  # fmt: skip
STATUSES = [200] * 12 + [201, 304, 400, 404, 404, 500, 502]
# Estimates from the histogram are within ALPHA of the exact nearest-rank value;
# the small extra margin is for float rounding at bucket edges.
RELATIVE_ERROR = histogram.ALPHA * 1.0001


def synthetic_events(seed: int) -> list[RequestEvent]:
    """Requests over 30 hours: 24 inside the tested window and 3 on each side of it."""
    rng = random.Random(seed)
    events = []
    for _ in range(6000):
        ts = BASE_TS + rng.randrange(30 * HOUR_MS)
        route, method, scale = ENDPOINTS[min(int(rng.expovariate(0.25)), len(ENDPOINTS) - 1)]
        duration = None if rng.random() < 0.05 else scale * rng.lognormvariate(0.0, 0.8)
        events.append(
            RequestEvent(ts, method, route, route, rng.choice(STATUSES), duration, None, 100,
                         None, None, None)
        )  # fmt: skip
    return events


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def naive_figures(conn: sqlite3.Connection, window: Window) -> dict[str, Any]:
    """Compute the overview figures by reading every raw row of the window."""
    rows = conn.execute(
        "SELECT ts, route, method, status, duration_ms FROM requests WHERE ts >= ? AND ts < ?",
        (window.start_ms, window.end_ms),
    ).fetchall()
    statuses: Counter[int] = Counter()
    per_hour: dict[int, list[Any]] = defaultdict(list)
    per_endpoint: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for ts, route, method, status, duration in rows:
        statuses[status] += 1
        per_hour[ts // HOUR_MS].append((status, duration))
        per_endpoint[(route, method)].append((status, duration))
    durations = [row[4] for row in rows if row[4] is not None]
    return {
        "rows": rows,
        "statuses": statuses,
        "durations": durations,
        "per_hour": per_hour,
        "per_endpoint": per_endpoint,
    }


def compact_before(path: Path, before_hour: int) -> list[int]:
    """Compact every hour before `before_hour` that needs it, as the writer does; return them."""
    conn = sqlite3.connect(path, isolation_level=None)
    hours = []
    try:
        conn.execute("BEGIN IMMEDIATE")
        while (hour := compaction.compact_newest(conn, before_hour, BASE_TS)) is not None:
            hours.append(hour)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return hours


# "rollups": nothing compacted, every hour is read from request_rollups.
# "compacted": every hour compacted. "mixed": hours 0-19 compacted, then hours
# 5-8 get more events (stale compactions), and hours 20-29 are never compacted.
@pytest.fixture(scope="module", params=["rollups", "compacted", "mixed"])
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("overview") / "events.db"
    schema.prepare_database(path)
    write_in_batches(path, synthetic_events(seed=3), batch_size=250)
    if request.param == "compacted":
        assert len(compact_before(path, FIRST_HOUR + 30)) == 30
    elif request.param == "mixed":
        assert len(compact_before(path, FIRST_HOUR + 20)) == 20
        late = [
            RequestEvent(BASE_TS + (5 + n % 4) * HOUR_MS + n * 7919, "GET", "/api/r1/{id}",
                         "/api/r1/7", 200 if n % 3 else 503, 1.0 + n, None, 100, None, None,
                         None)
            for n in range(40)
        ]  # fmt: skip
        write_in_batches(path, late, batch_size=250)
    return path


WINDOW = Window((FIRST_HOUR + 3) * HOUR_MS, (FIRST_HOUR + 27) * HOUR_MS)


def read(path: Path, function: Any, *args: Any) -> Any:
    conn = schema.open_readonly(path)
    try:
        return function(conn, *args)
    finally:
        conn.close()


def test_overview_totals_match_raw_rows(database: Path) -> None:
    overview = read(database, read_overview, WINDOW)
    naive = read(database, naive_figures, WINDOW)
    statuses = naive["statuses"]
    durations = naive["durations"]

    assert overview.requests == len(naive["rows"])
    assert overview.client_errors == sum(n for s, n in statuses.items() if 400 <= s <= 499)
    assert overview.server_errors == sum(n for s, n in statuses.items() if 500 <= s <= 599)
    assert overview.status_codes == dict(sorted(statuses.items()))
    assert overview.latency_ms.avg == pytest.approx(sum(durations) / len(durations), rel=1e-12)
    assert overview.latency_ms.max == max(durations)
    for q, estimate in ((0.5, overview.latency_ms.p50), (0.95, overview.latency_ms.p95),
                        (0.99, overview.latency_ms.p99)):  # fmt: skip
        assert estimate == pytest.approx(nearest_rank(durations, q), rel=RELATIVE_ERROR), q


def test_overview_hours_match_raw_rows(database: Path) -> None:
    overview = read(database, read_overview, WINDOW)
    per_hour = read(database, naive_figures, WINDOW)["per_hour"]

    assert [point.hour for point in overview.timeseries] == list(
        range(FIRST_HOUR + 3, FIRST_HOUR + 27)
    )
    for point in overview.timeseries:
        rows = per_hour[point.hour]
        durations = [duration for _, duration in rows if duration is not None]
        assert point.requests == len(rows), point.hour
        assert point.client_errors == sum(1 for s, _ in rows if 400 <= s <= 499), point.hour
        assert point.server_errors == sum(1 for s, _ in rows if 500 <= s <= 599), point.hour
        assert point.avg_ms == pytest.approx(sum(durations) / len(durations), rel=1e-12)
        assert point.p50_ms == pytest.approx(nearest_rank(durations, 0.5), rel=RELATIVE_ERROR)
        assert point.p95_ms == pytest.approx(nearest_rank(durations, 0.95), rel=RELATIVE_ERROR)


def test_overview_endpoints_match_raw_rows(database: Path) -> None:
    overview = read(database, read_overview, WINDOW)
    per_endpoint = read(database, naive_figures, WINDOW)["per_endpoint"]

    assert {(e.route, e.method) for e in overview.endpoints} == set(per_endpoint)
    counts = [e.requests for e in overview.endpoints]
    assert counts == sorted(counts, reverse=True)
    for endpoint in overview.endpoints:
        rows = per_endpoint[(endpoint.route, endpoint.method)]
        durations = [duration for _, duration in rows if duration is not None]
        assert endpoint.requests == len(rows), endpoint.route
        assert endpoint.client_errors == sum(1 for s, _ in rows if 400 <= s <= 499)
        assert endpoint.server_errors == sum(1 for s, _ in rows if 500 <= s <= 599)
        assert endpoint.latency_ms.avg == pytest.approx(sum(durations) / len(durations), rel=1e-12)


def test_overview_slowest_by_average(database: Path) -> None:
    overview = read(database, read_overview, WINDOW)
    per_endpoint = read(database, naive_figures, WINDOW)["per_endpoint"]
    averages = {}
    for key, rows in per_endpoint.items():
        durations = [duration for _, duration in rows if duration is not None]
        averages[key] = sum(durations) / len(durations)
    expected = sorted(averages, key=lambda key: -averages[key])[:SLOWEST_SHOWN]

    assert len(ENDPOINTS) > SLOWEST_SHOWN
    assert [(e.route, e.method) for e in overview.slowest] == expected
    for endpoint in overview.slowest:
        rows = per_endpoint[(endpoint.route, endpoint.method)]
        durations = [duration for _, duration in rows if duration is not None]
        assert endpoint.latency_ms.p95 == pytest.approx(
            nearest_rank(durations, 0.95), rel=RELATIVE_ERROR
        ), endpoint.route
        assert endpoint.latency_ms.p50 == pytest.approx(
            nearest_rank(durations, 0.5), rel=RELATIVE_ERROR
        ), endpoint.route
    shown = {(e.route, e.method) for e in overview.slowest}
    others = [e for e in overview.endpoints if (e.route, e.method) not in shown]
    assert others
    assert all(e.latency_ms.p95 is None for e in others)


def test_fill_percentiles_for_chosen_endpoints(database: Path) -> None:
    def chosen(conn: sqlite3.Connection) -> list[Any]:
        endpoints = read_endpoints(conn, WINDOW)
        fill_percentiles(conn, WINDOW, endpoints[-2:])
        return endpoints

    endpoints = read(database, chosen)
    per_endpoint = read(database, naive_figures, WINDOW)["per_endpoint"]

    assert all(e.latency_ms.p95 is None for e in endpoints[:-2])
    for endpoint in endpoints[-2:]:
        rows = per_endpoint[(endpoint.route, endpoint.method)]
        durations = [duration for _, duration in rows if duration is not None]
        assert endpoint.latency_ms.p95 == pytest.approx(
            nearest_rank(durations, 0.95), rel=RELATIVE_ERROR
        )


def test_endpoint_history_matches_raw_rows(database: Path) -> None:
    route, method, _ = ENDPOINTS[2]
    stats, points = read(database, read_endpoint_history, WINDOW, route, method)
    rows = read(database, naive_figures, WINDOW)["per_endpoint"][(route, method)]
    durations = [duration for _, duration in rows if duration is not None]
    missing, no_points = read(database, read_endpoint_history, WINDOW, "/nowhere", "GET")

    assert stats is not None
    assert stats.requests == len(rows)
    assert stats.latency_ms.p95 == pytest.approx(nearest_rank(durations, 0.95),
                                                 rel=RELATIVE_ERROR)  # fmt: skip
    assert sum(point.requests for point in points) == len(rows)
    assert len(points) == 24
    assert missing is None
    assert [point.requests for point in no_points] == [0] * 24
