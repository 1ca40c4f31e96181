"""request_hourly: kept equal to request_rollups by the writer, and backfilled by its migration."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from hauswacht.writer import histogram, schema
from hauswacht.writer.events import ErrorEvent, MetricEvent, RequestEvent
from hauswacht.writer.queue import EventQueue
from hauswacht.writer.writer import Writer

HOUR_MS = 3_600_000
BASE_TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z, the start of an hour
ROUTES = [("/tours/{tour_id}", "GET"), ("/tours", "POST"), ("/drivers/{driver_id}", "GET")]
STATUSES = [200, 200, 200, 201, 304, 404, 422, 500, 503]

HOURLY_SQL = """
    SELECT hour, count, timed_count, sum_ms, min_ms, max_ms, response_bytes,
           client_errors, server_errors, buckets
    FROM request_hourly ORDER BY hour
"""


def mixed_events(seed: int, count: int) -> list[Any]:
    """Requests over 5 hours in random time order, some without duration or size, plus others."""
    rng = random.Random(seed)
    events: list[Any] = []
    for i in range(count):
        ts = BASE_TS + rng.randrange(5 * HOUR_MS)
        route, method = rng.choice(ROUTES)
        status = rng.choice(STATUSES)
        duration = None if rng.random() < 0.15 else rng.lognormvariate(3.0, 1.2)
        if route == "/tours" and ts >= BASE_TS + 4 * HOUR_MS:
            duration = None  # an hour where one route is never timed
        size = None if rng.random() < 0.1 else rng.randrange(50_000)
        events.append(
            RequestEvent(ts, method, route, f"/p/{i}", status, duration, None, size, None, None,
                         None)
        )  # fmt: skip
        if i % 50 == 0:
            events.append(MetricEvent(ts, "db.query_ms", rng.random() * 20, "ms", "{}"))
        if i % 70 == 0:
            events.append(ErrorEvent(ts, "KeyError", f"key {i % 3}", "error", None, None, {}))
    # Only timeless requests in the sixth hour: its buckets stay empty.
    for i in range(3):
        ts = BASE_TS + 5 * HOUR_MS + i
        events.append(
            RequestEvent(ts, "GET", "/health", "/health", 200, None, None, 2, None, None, None)
        )
    return events


def write_in_batches(path: Path, events: list[Any], batch_size: int) -> None:
    """Store `events` through the real Writer in several flushes of `batch_size` events."""

    async def run() -> None:
        queue = EventQueue(maxsize=len(events) + 1, wake_at=10**9)
        writer = Writer(path, queue, batch_size=batch_size)
        await writer.start()
        for offset in range(0, len(events), batch_size * 3):
            for event in events[offset : offset + batch_size * 3]:
                assert queue.put(event)
            await writer.flush()
        await writer.stop()

    asyncio.run(run())


def expected_hourly(conn: sqlite3.Connection) -> dict[int, dict[str, Any]]:
    """Sum request_rollups per hour in Python, the reference for request_hourly."""
    hours: dict[int, dict[str, Any]] = {}
    for row in conn.execute(
        "SELECT hour, status, count, timed_count, sum_ms, min_ms, max_ms, response_bytes, buckets"
        " FROM request_rollups"
    ):
        hour, status, count, timed, sum_ms, min_ms, max_ms, size, text = row
        entry = hours.setdefault(
            hour,
            {"count": 0, "timed_count": 0, "sum_ms": 0.0, "min_ms": None, "max_ms": None,
             "response_bytes": 0, "client_errors": 0, "server_errors": 0, "buckets": {}},
        )  # fmt: skip
        entry["count"] += count
        entry["timed_count"] += timed
        entry["sum_ms"] += sum_ms
        entry["response_bytes"] += size
        if 400 <= status <= 499:
            entry["client_errors"] += count
        if 500 <= status <= 599:
            entry["server_errors"] += count
        if min_ms is not None:
            entry["min_ms"] = min_ms if entry["min_ms"] is None else min(entry["min_ms"], min_ms)
            entry["max_ms"] = max_ms if entry["max_ms"] is None else max(entry["max_ms"], max_ms)
        histogram.merge(entry["buckets"], histogram.decode(text))
    return hours


def stored_hourly(conn: sqlite3.Connection) -> dict[int, dict[str, Any]]:
    names = ("count", "timed_count", "sum_ms", "min_ms", "max_ms", "response_bytes",
             "client_errors", "server_errors", "buckets")  # fmt: skip
    hours = {}
    for hour, *values in conn.execute(HOURLY_SQL):
        entry = dict(zip(names, values, strict=True))
        entry["buckets"] = histogram.decode(entry["buckets"])
        hours[hour] = entry
    return hours


def assert_hourly_equal(
    stored: dict[int, dict[str, Any]], expected: dict[int, dict[str, Any]]
) -> None:
    assert sorted(stored) == sorted(expected)
    for hour, entry in expected.items():
        row = stored[hour]
        for name in ("count", "timed_count", "response_bytes", "client_errors", "server_errors",
                     "min_ms", "max_ms", "buckets"):  # fmt: skip
            assert row[name] == entry[name], (hour, name)
        assert row["sum_ms"] == pytest.approx(entry["sum_ms"], rel=1e-12), hour


def hourly_migration_version() -> int:
    """Return the schema version that the request_hourly migration moves to."""
    for index, script in enumerate(schema.MIGRATIONS):
        if "CREATE TABLE request_hourly" in script:
            return index + 1
    raise AssertionError("no migration creates request_hourly")


def test_hourly_equals_rollups_after_mixed_flushes(db_path: Path) -> None:
    events = mixed_events(seed=7, count=3000)
    schema.prepare_database(db_path)
    write_in_batches(db_path, events, batch_size=137)

    conn = sqlite3.connect(db_path)
    try:
        expected = expected_hourly(conn)
        stored = stored_hourly(conn)
        raw_requests = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
        stored_sizes = conn.execute("SELECT coalesce(sum(response_bytes), 0) FROM requests")
        raw_sizes = stored_sizes.fetchone()[0]
    finally:
        conn.close()

    requests = [event for event in events if isinstance(event, RequestEvent)]
    assert raw_requests == len(requests)
    assert_hourly_equal(stored, expected)
    assert sum(entry["count"] for entry in stored.values()) == len(requests)
    assert sum(entry["response_bytes"] for entry in stored.values()) == raw_sizes
    assert sum(entry["timed_count"] for entry in stored.values()) == sum(
        1 for event in requests if event.duration_ms is not None
    )
    untimed_hour = stored[BASE_TS // HOUR_MS + 5]
    assert untimed_hour["count"] == 3
    assert untimed_hour["timed_count"] == 0
    assert untimed_hour["min_ms"] is None
    assert untimed_hour["buckets"] == {}


def test_hourly_counts_statuses_per_hour(db_path: Path) -> None:
    hour = BASE_TS // HOUR_MS
    events = [
        RequestEvent(BASE_TS + 1, "GET", "/a", "/a", 404, 10.0, None, 5, None, None, None),
        RequestEvent(BASE_TS + 2, "GET", "/b", "/b", 503, 30.0, None, None, None, None, None),
        RequestEvent(BASE_TS + 3, "GET", "/a", "/a", 200, None, None, 7, None, None, None),
        RequestEvent(BASE_TS + HOUR_MS, "GET", "/a", "/a", 499, 2.0, None, 1, None, None, None),
    ]
    schema.prepare_database(db_path)
    write_in_batches(db_path, events[:2], batch_size=1)
    write_in_batches(db_path, events[2:], batch_size=10)

    conn = sqlite3.connect(db_path)
    try:
        rows = conn.execute(HOURLY_SQL).fetchall()
    finally:
        conn.close()

    first, second = rows
    assert first[:9] == (hour, 3, 2, 40.0, 10.0, 30.0, 12, 1, 1)
    assert histogram.decode(first[9]) == {
        histogram.bucket_key(10.0): 1,
        histogram.bucket_key(30.0): 1,
    }
    assert second[:9] == (hour + 1, 1, 1, 2.0, 2.0, 2.0, 1, 1, 0)


def create_file_before_hourly(path: Path) -> None:
    """Create an events file with every migration before the request_hourly one applied."""
    version = hourly_migration_version()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for script in schema.MIGRATIONS[: version - 1]:
            conn.executescript(script)
        conn.execute(f"PRAGMA application_id = {schema.APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {version - 1}")
    finally:
        conn.close()


def test_migration_backfills_existing_file(tmp_path: Path) -> None:
    current = tmp_path / "current.db"
    schema.prepare_database(current)
    write_in_batches(current, mixed_events(seed=11, count=1500), batch_size=200)
    older = tmp_path / "older.db"
    create_file_before_hourly(older)
    conn = sqlite3.connect(older)
    try:
        with conn:
            conn.execute("ATTACH DATABASE ? AS current", (str(current),))
            conn.execute("INSERT INTO request_rollups SELECT * FROM current.request_rollups")
    finally:
        conn.close()
    conn = sqlite3.connect(current)
    try:
        written_by_writer = stored_hourly(conn)
    finally:
        conn.close()

    schema.prepare_database(older)

    conn = sqlite3.connect(older)
    try:
        found_version = conn.execute("PRAGMA user_version").fetchone()[0]
        backfilled = stored_hourly(conn)
        expected = expected_hourly(conn)
    finally:
        conn.close()
    assert found_version == schema.SCHEMA_VERSION
    assert len(backfilled) == 6
    assert_hourly_equal(backfilled, expected)
    assert_hourly_equal(backfilled, written_by_writer)
    assert backfilled[BASE_TS // HOUR_MS + 5]["buckets"] == {}


def test_migration_on_file_without_requests(db_path: Path) -> None:
    create_file_before_hourly(db_path)

    schema.prepare_database(db_path)

    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("SELECT count(*) FROM request_hourly").fetchone() == (0,)
        assert conn.execute("PRAGMA user_version").fetchone() == (schema.SCHEMA_VERSION,)
    finally:
        conn.close()
