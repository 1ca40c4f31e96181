"""Dashboard overview time from the rollups against the same figures from the raw rows.

Two events files, each with 90 days of traffic: 100,000 and 10,000,000 raw
request events (plus one error event per 500 response). The raw rows are
generated inside SQLite with one `WITH RECURSIVE` INSERT, and the rollups,
error groups and error rollups are then computed from those raw rows in
SQL, with the same bucket keys as `histogram.bucket_key`. request_hourly is
summed from request_rollups by the statement its schema migration runs. The
files are kept in bench/out/ (git-ignored) and reused by later runs; a kept
file with an older schema is migrated first. Delete them to generate them
again.

Measured per file and range (the last 24 hours and the last 30 days of the
data):
- rollups, data: `queries.read_overview` on a fresh read-only connection,
  what the overview page reads;
- rollups, page: a whole `GET /` of the dashboard app in process (no
  socket): session check, connection, queries, SVG charts and template.
  "warm" is the steady state under auto-refresh, with every hour of the
  window in the dashboard's hour cache (hauswacht/dashboard/cache.py);
  "cold" empties that cache before each request, like the first load after
  a start;
- naive: the same figures (totals by status class, avg, exact p95, hourly
  requests/4xx/5xx/p50/p95, per-route count/avg/p95, error count) by
  grouping and sorting the raw rows of the window.
Every hour of the files is compacted (endpoint_hourly, status_hourly), as a
running writer does for each finished hour.
Each value is the median of several runs, in milliseconds.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx

from hauswacht.dashboard import create_app
from hauswacht.dashboard.auth import UserStore
from hauswacht.writer import compaction, histogram, schema
from hauswacht.writer.queries import HOUR_MS, Window, read_overview

OUT = Path(__file__).resolve().parent / "out"
SIZES = (100_000, 1_000_000, 10_000_000)
DAYS = 90
END_MS = 1_780_000_000_000 - 1_780_000_000_000 % HOUR_MS  # an hour boundary in 2026
START_MS = END_MS - DAYS * 24 * HOUR_MS
RANGES = {"24 h": 24, "30 d": 720}
TARGET_MS = 20.0
USER = "bench"
PASSWORD = "bench password"

# 20 routes with Zipf-like weights (the first gets most traffic), GET and POST.
ROUTES = [(f"/api/r{n}/{{id}}", "GET" if n % 4 else "POST") for n in range(20)]

# Deterministic pseudo-random picks from multiplicative hashes of the row number,
# so every run generates the same file.
GENERATE_SQL = """
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < :count)
INSERT INTO requests (ts, method, route, path, status, duration_ms, ttfb_ms, response_bytes,
                      client, user_agent, trace_id)
SELECT :start + i * :span / :count,
       r.method, r.route, r.route, s.status,
       round(exp(2.0 + ((i * 40503 + 7) % 100003) / 100003.0 * 5.0), 3),
       NULL, 512, '10.0.0.1', 'bench', NULL
FROM n
JOIN bench_route_picks AS r ON r.pick = (i * 2654435761 + 12345) % 4294967291 % 210
JOIN bench_status_rolls AS s ON s.roll = (i * 2246822519 + 3266489917) % 4294967279 % 100
"""

ERRORS_SQL = """
INSERT INTO errors (ts, fingerprint, type, message, level, trace_id, data)
SELECT ts, 'fp-' || route, 'RuntimeError', 'failed in ' || route, 'error', NULL, '{}'
FROM requests WHERE status = 500
"""

REQUEST_ROLLUPS_SQL = """
INSERT INTO request_rollups
SELECT hour, route, method, status, sum(n), sum(n), sum(total), min(low), max(high),
       512 * sum(n), json_group_object(bucket, n)
FROM (
    SELECT ts / 3600000 AS hour, route, method, status,
           'p' || CAST(ceil(ln(duration_ms) * :inverse_log_gamma) AS INTEGER) AS bucket,
           count(*) AS n, sum(duration_ms) AS total, min(duration_ms) AS low,
           max(duration_ms) AS high
    FROM requests
    GROUP BY 1, 2, 3, 4, 5
)
GROUP BY hour, route, method, status
"""

ERROR_ROLLUPS_SQL = """
INSERT INTO error_rollups
SELECT ts / 3600000, fingerprint, count(*) FROM errors GROUP BY 1, 2
"""

ERROR_GROUPS_SQL = """
INSERT INTO error_groups (fingerprint, scheme, type, message, count, first_seen, last_seen,
                          latest_event)
SELECT fingerprint, 1, 'RuntimeError', min(message), count(*), min(ts), max(ts), '{}'
FROM errors GROUP BY fingerprint
"""

NAIVE_TOTALS_SQL = """
SELECT status / 100, count(*), avg(duration_ms) FROM requests
WHERE ts >= :start AND ts < :end GROUP BY 1
"""
NAIVE_HOURS_SQL = """
SELECT ts / 3600000, count(*),
       sum(status BETWEEN 400 AND 499), sum(status BETWEEN 500 AND 599)
FROM requests WHERE ts >= :start AND ts < :end GROUP BY 1
"""
NAIVE_DURATIONS_SQL = """
SELECT ts / 3600000, route, method, duration_ms FROM requests
WHERE ts >= :start AND ts < :end AND duration_ms IS NOT NULL
"""
NAIVE_ERRORS_SQL = "SELECT count(*) FROM errors WHERE ts >= :start AND ts < :end"


def _route_picks() -> list[tuple[int, str, str]]:
    """Spread 210 pick values over the routes with weight 20, 19, ..., 1."""
    picks = []
    pick = 0
    for rank, (route, method) in enumerate(ROUTES):
        for _ in range(len(ROUTES) - rank):
            picks.append((pick, route, method))
            pick += 1
    return picks


def _status_rolls() -> list[tuple[int, int]]:
    weights = ((200, 88), (201, 3), (304, 3), (400, 2), (404, 3), (500, 1))
    rolls = []
    for status, weight in weights:
        for _ in range(weight):
            rolls.append((len(rolls), status))
    return rolls


def build_database(path: Path, count: int) -> None:
    """Generate `count` raw request events over DAYS days and their rollups at `path`."""
    temporary = path.with_suffix(".partial")
    temporary.unlink(missing_ok=True)
    schema.prepare_database(temporary)
    conn = sqlite3.connect(temporary, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -262144")  # 256 MiB for the GROUP BY sorts
    conn.execute("CREATE TEMP TABLE bench_route_picks (pick INTEGER PRIMARY KEY, route, method)")
    conn.executemany("INSERT INTO bench_route_picks VALUES (?, ?, ?)", _route_picks())
    conn.execute("CREATE TEMP TABLE bench_status_rolls (roll INTEGER PRIMARY KEY, status)")
    conn.executemany("INSERT INTO bench_status_rolls VALUES (?, ?)", _status_rolls())
    conn.execute("BEGIN")
    conn.execute(GENERATE_SQL, {"count": count, "start": START_MS, "span": END_MS - START_MS})
    conn.execute(ERRORS_SQL)
    conn.execute(REQUEST_ROLLUPS_SQL, {"inverse_log_gamma": 1 / math.log(histogram.GAMMA)})
    conn.execute(schema.BACKFILL_REQUEST_HOURLY_SQL)
    conn.execute(ERROR_ROLLUPS_SQL)
    conn.execute(ERROR_GROUPS_SQL)
    conn.execute("COMMIT")
    compact_all(conn)
    conn.execute("ANALYZE")
    conn.close()
    temporary.rename(path)


def compact_all(conn: sqlite3.Connection) -> None:
    """Compact every hour, as the writer does for each finished hour (writer/compaction.py)."""
    conn.execute("BEGIN IMMEDIATE")
    while compaction.compact_newest(conn, END_MS // HOUR_MS + 1, END_MS) is not None:
        pass
    conn.execute("COMMIT")


def database_for(count: int) -> Path:
    """Return the cached events file with `count` raw events, generating it when missing."""
    OUT.mkdir(exist_ok=True)
    path = OUT / f"dashboard_{count}.db"
    if path.exists() and _schema_version(path) < schema.SCHEMA_VERSION:
        started = time.perf_counter()
        schema.prepare_database(path)
        conn = sqlite3.connect(path, isolation_level=None)
        compact_all(conn)
        conn.close()
        print(f"  migrated {path.name} in {time.perf_counter() - started:.0f} s", flush=True)
    if not path.exists():
        started = time.perf_counter()
        build_database(path, count)
        print(f"  generated {path.name} in {time.perf_counter() - started:.0f} s", flush=True)
    return path


def _schema_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


def naive_overview(conn: sqlite3.Connection, window: Window) -> dict[str, Any]:
    """Compute the overview figures from the raw rows: group, sort, nearest-rank quantiles."""
    params = {"start": window.start_ms, "end": window.end_ms}
    totals = conn.execute(NAIVE_TOTALS_SQL, params).fetchall()
    hours = conn.execute(NAIVE_HOURS_SQL, params).fetchall()
    per_hour: dict[int, list[float]] = defaultdict(list)
    per_route: dict[tuple[str, str], list[float]] = defaultdict(list)
    everything: list[float] = []
    for hour, route, method, duration in conn.execute(NAIVE_DURATIONS_SQL, params):
        per_hour[hour].append(duration)
        per_route[(route, method)].append(duration)
        everything.append(duration)

    def quantile(values: list[float], q: float) -> float | None:
        if not values:
            return None
        values.sort()
        return values[max(1, math.ceil(q * len(values))) - 1]

    return {
        "totals": totals,
        "hours": hours,
        "p95": quantile(everything, 0.95),
        "hour_quantiles": {h: (quantile(v, 0.5), quantile(v, 0.95)) for h, v in per_hour.items()},
        "routes": {
            key: (len(v), sum(v) / len(v), quantile(v, 0.95)) for key, v in per_route.items()
        },
        "errors": conn.execute(NAIVE_ERRORS_SQL, params).fetchone()[0],
    }


def _median_ms(function: Any, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def _page_times(
    path: Path, hours_by_range: dict[str, int], repeats: int
) -> dict[str, dict[str, float]]:
    """Time `GET /` per range with a warm hour cache and with an emptied one; median ms."""
    users = path.with_name("dashboard-users.json")
    if not users.exists():
        UserStore(users).set_password(USER, PASSWORD)
    app = create_app(path, users_file=users, secret_key_file=path.with_name("bench.key"),
                     timezone="UTC")  # fmt: skip
    transport = httpx.ASGITransport(app=app)
    cache = app.state.dashboard.overview_cache
    results = {}
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        await client.post("/login", data={"user": USER, "password": PASSWORD})
        for label, hours in hours_by_range.items():
            params = {"from": str(END_MS - hours * HOUR_MS), "to": str(END_MS)}
            response = await client.get("/", params=params)
            assert response.status_code == 200, response.text[:200]
            warm = []
            for _ in range(repeats):
                started = time.perf_counter()
                response = await client.get("/", params=params)
                warm.append((time.perf_counter() - started) * 1000)
            cold = []
            for _ in range(repeats):
                cache.clear()
                started = time.perf_counter()
                response = await client.get("/", params=params)
                cold.append((time.perf_counter() - started) * 1000)
            results[label] = {"warm": statistics.median(warm), "cold": statistics.median(cold)}
    return results


def measure(count: int) -> dict[str, Any]:
    path = database_for(count)
    conn = sqlite3.connect(path)
    raw_rows = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
    rollup_rows = conn.execute("SELECT count(*) FROM request_rollups").fetchone()[0]
    conn.close()

    # Buckets per endpoint and hour in the last 24 hours: how full the histograms
    # are that the overview merges.
    conn = sqlite3.connect(path)
    (fill,) = conn.execute(
        "SELECT avg((SELECT count(*) FROM json_each(buckets))) FROM endpoint_hourly"
        " WHERE hour >= ?",
        (END_MS // HOUR_MS - 24,),
    ).fetchone()
    conn.close()
    result: dict[str, Any] = {
        "raw_rows": raw_rows,
        "rollup_rows": rollup_rows,
        "bucket_fill": fill,
        "ranges": {},
    }
    pages = asyncio.run(_page_times(path, RANGES, repeats=15))
    for label, hours in RANGES.items():
        window = Window(END_MS - hours * HOUR_MS, END_MS)

        def read_rollups(window: Window = window) -> None:
            conn = schema.open_readonly(path)
            try:
                read_overview(conn, window)
            finally:
                conn.close()

        def read_raw(window: Window = window) -> None:
            conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
            try:
                naive_overview(conn, window)
            finally:
                conn.close()

        read_rollups()
        naive_repeats = 5 if count <= 1_000_000 or hours <= 24 else 2
        result["ranges"][label] = {
            "rollups_ms": _median_ms(read_rollups, 15),
            "page_ms": pages[label]["warm"],
            "cold_page_ms": pages[label]["cold"],
            "naive_ms": _median_ms(read_raw, naive_repeats),
        }
    return result


def run() -> dict[str, Any]:
    """Measure every size; return {size: {raw_rows, rollup_rows, ranges: {label: times}}}."""
    return {count: measure(count) for count in SIZES}


def markdown(results: dict[str, Any]) -> str:
    """Return the results as the BENCHMARKS.md section."""
    lines = [
        "## Dashboard overview",
        "",
        f"{DAYS} days of request events with their hourly rollups; the overview read from "
        "the rollups (data only, and the whole page in process) against the same figures "
        "by grouping and sorting the raw rows (naive). The page is timed with the "
        "dashboard's hour cache warm (steady state under auto-refresh; a dashboard fills it "
        "for the preset ranges when it starts) and emptied before each request (cold). "
        "Median ms (`bench/dashboard_bench.py`).",
        "",
        "| raw events | rollup rows | range | rollups, data | page, warm | page, cold | naive "
        "| target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    small, large = results[SIZES[0]], results[SIZES[-1]]
    for size in SIZES:
        entry = results[size]
        for label, times in entry["ranges"].items():
            verdict = ""
            if label == "24 h":
                ok = times["page_ms"] < TARGET_MS
                verdict = f"warm page < {TARGET_MS:.0f} ms: {'met' if ok else '**missed**'}"
            lines.append(
                f"| {entry['raw_rows']:,} | {entry['rollup_rows']:,} | {label} | "
                f"{times['rollups_ms']:.1f} | {times['page_ms']:.1f} | "
                f"{times['cold_page_ms']:.1f} | {times['naive_ms']:.1f} | {verdict} |"
            )
    ratio = large["ranges"]["24 h"]["page_ms"] / small["ranges"]["24 h"]["page_ms"]
    cold_ratio = large["ranges"]["24 h"]["cold_page_ms"] / small["ranges"]["24 h"]["cold_page_ms"]
    verdict = "met" if ratio <= 1.1 else "**missed**"
    lines += [
        "",
        f"24 h page with a warm cache at {SIZES[-1]:,} raw events is {ratio:.2f}× the time at "
        f"{SIZES[0]:,} (target: no slower; within 10 % counts as run-to-run noise): {verdict}. "
        f"With a cold cache it is {cold_ratio:.2f}×: the page then merges the histograms of "
        "the window's endpoints, and those hold more buckets when more requests fill them "
        f"(on average {small['bucket_fill']:.0f} per endpoint and hour at {SIZES[0]:,} "
        f"events, {large['bucket_fill']:.0f} at {SIZES[-1]:,}). That count stops growing "
        "once every bucket of an endpoint's latency range is used; the raw rows are never read.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(run()))
