"""Compaction of finished hours: endpoint_hourly and status_hourly equal request_rollups summed,
readers use them only while valid, and the writer and replay compact by themselves.

Events go through the real Writer into real SQLite files. The figures read
from compacted hours are compared with the figures read from request_rollups
alone, which tests/test_dashboard_overview.py compares with the raw rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import shutil
import sqlite3
import threading
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from hauswacht.dashboard.cache import OverviewCache
from hauswacht.ops.replay import import_log
from hauswacht.writer import compaction, histogram, schema
from hauswacht.writer.events import RequestEvent
from hauswacht.writer.queries import (
    HOUR_MS,
    Window,
    read_endpoints,
    read_overview,
    read_stats,
    window_compaction,
)
from hauswacht.writer.queue import EventQueue
from hauswacht.writer.writer import Writer
from tests.test_dashboard_cache import assert_same, fixed_clock, make_database, read
from tests.test_dashboard_overview import BASE_TS, FIRST_HOUR, compact_before
from tests.test_writer_hourly import write_in_batches

WINDOWS = {
    "24h": Window((FIRST_HOUR + 3) * HOUR_MS, (FIRST_HOUR + 27) * HOUR_MS),
    "open": Window(),
    "partial-hours": Window(BASE_TS + 5 * HOUR_MS + 1234, BASE_TS + 9 * HOUR_MS - 99),
}


def request(ts: int, route: str = "/late", status: int = 200, duration: float = 5.0) -> Any:
    return RequestEvent(ts, "GET", route, route, status, duration, None, 10, None, None, None)


def overviews(path: Path) -> dict[str, dict[str, Any]]:
    """The overview of each window, read without and with the hour cache."""
    results = {}
    for name, window in WINDOWS.items():
        results[name] = asdict(read(path, read_overview, window))
        cached = read(path, OverviewCache(clock=fixed_clock()).read_overview, window)
        results[f"{name}, cached"] = asdict(cached)
    return results


def compaction_marks(path: Path) -> dict[int, int]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT hour, request_count FROM compacted_hours"))
    finally:
        conn.close()


def test_compacted_rows_equal_rollups_summed(tmp_path: Path) -> None:
    path = make_database(tmp_path)
    hours = compact_before(path, FIRST_HOUR + 30)
    assert sorted(hours) == list(range(FIRST_HOUR, FIRST_HOUR + 30))

    conn = sqlite3.connect(path)
    expected: dict[tuple[int, str, str], dict[str, Any]] = {}
    statuses: dict[tuple[int, int], int] = defaultdict(int)
    for row in conn.execute(
        "SELECT hour, route, method, status, count, timed_count, sum_ms, min_ms, max_ms,"
        " response_bytes, buckets FROM request_rollups"
    ):
        hour, route, method, status, count, timed, sum_ms, low, high, size, text = row
        entry = expected.setdefault(
            (hour, route, method),
            {"count": 0, "4xx": 0, "5xx": 0, "timed": 0, "sum": 0.0, "min": None,
             "max": None, "bytes": 0, "buckets": {}},
        )  # fmt: skip
        entry["count"] += count
        entry["4xx"] += count if 400 <= status <= 499 else 0
        entry["5xx"] += count if 500 <= status <= 599 else 0
        entry["timed"] += timed
        entry["sum"] += sum_ms
        if low is not None:
            entry["min"] = low if entry["min"] is None else min(entry["min"], low)
            entry["max"] = high if entry["max"] is None else max(entry["max"], high)
        entry["bytes"] += size
        histogram.merge(entry["buckets"], histogram.decode(text))
        statuses[(hour, status)] += count

    actual = {}
    for row in conn.execute("SELECT * FROM endpoint_hourly"):
        hour, route, method, count, client, server, timed, sum_ms, low, high, size, text = row
        actual[(hour, route, method)] = {
            "count": count, "4xx": client, "5xx": server, "timed": timed, "sum": sum_ms,
            "min": low, "max": high, "bytes": size, "buckets": orjson.loads(text),
        }  # fmt: skip
    stored_statuses = {(hour, status): count for hour, status, count in conn.execute(
        "SELECT hour, status, count FROM status_hourly")}  # fmt: skip
    marks = dict(conn.execute("SELECT hour, request_count FROM compacted_hours"))
    hourly = dict(conn.execute("SELECT hour, count FROM request_hourly"))
    conn.close()

    assert actual.keys() == expected.keys()
    for key, entry in expected.items():
        assert actual[key]["sum"] == pytest.approx(entry["sum"], rel=1e-12), key
        assert {**actual[key], "sum": 0} == {**entry, "sum": 0}, key
    assert stored_statuses == dict(statuses)
    assert marks == hourly
    assert sum(hourly.values()) == 6000


@pytest.mark.parametrize("name", list(WINDOWS))
def test_compacted_reads_equal_rollup_reads(tmp_path: Path, name: str) -> None:
    path = make_database(tmp_path)
    before = overviews(path)
    compact_before(path, FIRST_HOUR + 30)
    conn = schema.open_readonly(path)
    split = window_compaction(conn, WINDOWS[name])
    conn.close()
    assert orjson.loads(split["compacted"])
    assert orjson.loads(split["uncompacted"]) == []
    after = overviews(path)
    assert_same(after[name], before[name])
    assert_same(after[f"{name}, cached"], before[f"{name}, cached"])


def test_event_after_compaction_makes_hour_stale(tmp_path: Path) -> None:
    path = make_database(tmp_path)
    compact_before(path, FIRST_HOUR + 30)
    window = WINDOWS["24h"]
    hour = FIRST_HOUR + 6
    before = read(path, read_overview, window)

    # A late event in a compacted hour, with a new endpoint and a new status code.
    write_in_batches(path, [request(hour * HOUR_MS + 10, "/late", 418, 4321.0)], batch_size=10)
    conn = schema.open_readonly(path)
    split = window_compaction(conn, window)
    conn.close()
    assert orjson.loads(split["uncompacted"]) == [hour]

    stale = read(path, read_overview, window)
    assert stale.requests == before.requests + 1
    assert stale.status_codes[418] == 1
    late = next(e for e in stale.endpoints if e.route == "/late")
    assert (late.requests, late.client_errors, late.latency_ms.max) == (1, 1, 4321.0)
    assert stale.slowest[0].route == "/late"
    assert stale.slowest[0].latency_ms.p50 == 4321.0  # clamped to the exact maximum

    # Compaction reads it from request_rollups until compacted again, with the same figures.
    assert compact_before(path, FIRST_HOUR + 30) == [hour]
    requests_before = next(point.requests for point in before.timeseries if point.hour == hour)
    assert compaction_marks(path)[hour] == requests_before + 1
    assert_same(asdict(read(path, read_overview, window)), asdict(stale))


def test_stale_hours_newest_first_within_bounds(tmp_path: Path) -> None:
    path = make_database(tmp_path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        newest = compaction.stale_hours(conn, FIRST_HOUR + 10, limit=3)
        assert newest == [FIRST_HOUR + 9, FIRST_HOUR + 8, FIRST_HOUR + 7]
        assert compaction.stale_hours(conn, FIRST_HOUR + 10, first_hour=FIRST_HOUR + 8) == [
            FIRST_HOUR + 9,
            FIRST_HOUR + 8,
        ]
        conn.execute("BEGIN IMMEDIATE")
        done = [compaction.compact_newest(conn, FIRST_HOUR + 10, BASE_TS) for _ in range(3)]
        conn.execute("COMMIT")
        assert done == newest
        assert compaction.stale_hours(conn, FIRST_HOUR + 10, limit=3) == [
            FIRST_HOUR + 6,
            FIRST_HOUR + 5,
            FIRST_HOUR + 4,
        ]
        # Hours without any stored request are never listed, compacted or marked.
        conn.execute("BEGIN IMMEDIATE")
        assert compaction.compact_newest(conn, FIRST_HOUR, BASE_TS) is None
        conn.execute("COMMIT")
        marks = conn.execute("SELECT count(*) FROM compacted_hours").fetchone()[0]
        assert marks == 3
    finally:
        conn.close()


def test_sums_same_whatever_is_compacted(db_path: Path) -> None:
    # Durations whose float sum depends on the order of addition.
    durations = [2447.758, 1179.0, 876.071, 1068.802, 2174.806, 2503.397, 380.533, 1377.0,
                 619.633, 919.556, 96.0, 2108.59]  # fmt: skip
    first = FIRST_HOUR
    write_in_batches(
        db_path,
        [request((first + n) * HOUR_MS + 1, "/r", 200, ms) for n, ms in enumerate(durations)],
        batch_size=100,
    )

    def results() -> tuple[Any, ...]:
        window = Window(first * HOUR_MS, (first + 12) * HOUR_MS)
        stats = read(db_path, read_stats, window).to_json()
        endpoints = read(db_path, read_endpoints, window)
        return stats, [asdict(endpoint) for endpoint in endpoints]

    nothing_compacted = results()
    compact_before(db_path, first + 12)
    late = [request(first * HOUR_MS + 2, "/other", 200, 1.0),
            request((first + 1) * HOUR_MS + 2, "/other", 200, 1.0)]  # fmt: skip
    write_in_batches(db_path, late, batch_size=10)  # hours 0 and 1 are stale now
    ten_of_twelve = results()
    conn = sqlite3.connect(db_path)
    conn.execute("DELETE FROM compacted_hours")
    conn.commit()
    conn.close()
    none_after_late = results()
    compact_before(db_path, first + 12)
    all_after_late = results()

    assert ten_of_twelve == none_after_late
    assert all_after_late == none_after_late
    route = next(r for r in nothing_compacted[0]["routes"] if r["route"] == "/r")
    assert route["avg_ms"] == round(math.fsum(durations) / 12, 3)
    endpoint = next(e for e in ten_of_twelve[1] if e["route"] == "/r")
    assert endpoint["latency_ms"]["avg"] == math.fsum(durations) / 12


def test_cancel_during_compaction_loses_nothing(db_path: Path) -> None:
    old_hour = time.time_ns() // 1_000_000 // HOUR_MS - 2

    def hold_lock(seconds: float, held: threading.Event) -> None:
        conn = sqlite3.connect(db_path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    async def run() -> None:
        queue = EventQueue(maxsize=1000, wake_at=500)
        writer = Writer(db_path, queue, flush_interval=0.05, compact_interval=0.3,
                        busy_timeout_ms=3000)  # fmt: skip
        await writer.start()
        for n in range(10):
            queue.put(request(old_hour * HOUR_MS + n))
        await writer.flush()
        held = threading.Event()
        locker = threading.Thread(target=hold_lock, args=(1.5, held))
        locker.start()
        held.wait()
        await asyncio.sleep(0.6)  # the compaction is due now and waits for the lock
        now_ms = time.time_ns() // 1_000_000
        for n in range(5):
            queue.put(request(now_ms + n))
        task = writer._task
        assert task is not None
        task.cancel()  # what asyncio.run() does to an app without lifespan events
        with contextlib.suppress(asyncio.CancelledError):
            await task
        locker.join()

    asyncio.run(run())
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT count(*) FROM requests").fetchone() == (15,)
    assert conn.execute("SELECT count(*) FROM dropped_rollups").fetchone() == (0,)
    conn.close()


def test_writer_compacts_finished_hours_only(db_path: Path) -> None:
    now_hour = time.time_ns() // 1_000_000 // HOUR_MS
    past = [request((now_hour - back) * HOUR_MS + 5, f"/r{back}") for back in (1, 2, 30)]
    current = [request(now_hour * HOUR_MS + 5, "/now")]

    async def run() -> None:
        queue = EventQueue(maxsize=100, wake_at=1)
        writer = Writer(db_path, queue, flush_interval=0.02, compact_interval=0.05)
        await writer.start()
        for event in past + current:
            queue.put(event)
        for _ in range(100):
            await asyncio.sleep(0.02)
            if len(compaction_marks(db_path)) == 3:
                break
        await writer.stop()

    asyncio.run(run())
    assert compaction_marks(db_path) == {now_hour - 1: 1, now_hour - 2: 1, now_hour - 30: 1}


def test_failed_compaction_logged_and_writing_goes_on(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    schema.prepare_database(db_path)
    conn = sqlite3.connect(db_path)
    conn.execute("DROP TABLE status_hourly")
    conn.commit()
    conn.close()
    past_hour = FIRST_HOUR

    async def run() -> None:
        queue = EventQueue(maxsize=100, wake_at=1)
        writer = Writer(db_path, queue, flush_interval=0.02, compact_interval=0.02)
        await writer.start()
        queue.put(request(past_hour * HOUR_MS))
        await asyncio.sleep(0.3)
        queue.put(request(past_hour * HOUR_MS + 1))
        await writer.stop()

    with caplog.at_level(logging.WARNING, logger="hauswacht.writer.writer"):
        asyncio.run(run())
    assert any("compacting finished hours failed" in r.getMessage() for r in caplog.records)
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT count(*) FROM requests").fetchone() == (2,)
    assert conn.execute("SELECT count(*) FROM compacted_hours").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM endpoint_hourly").fetchone() == (0,)
    assert not conn.in_transaction
    conn.close()


def test_replay_compacts_the_hours_of_the_log(shared_data: Path, tmp_path: Path) -> None:
    log = shared_data / "access_logs" / "apache_logs"
    path = tmp_path / "events.db"
    import_log(log, path)

    conn = sqlite3.connect(path)
    hourly = dict(conn.execute("SELECT hour, count FROM request_hourly"))
    conn.close()
    assert len(hourly) > 24
    assert compaction_marks(path) == hourly

    plain = tmp_path / "plain.db"
    shutil.copy(path, plain)
    conn = sqlite3.connect(plain)
    conn.execute("DELETE FROM compacted_hours")
    conn.commit()
    conn.close()
    for window in (Window(), Window(min(hourly) * HOUR_MS, (min(hourly) + 24) * HOUR_MS)):
        assert_same(asdict(read(path, read_overview, window)),
                    asdict(read(plain, read_overview, window)))  # fmt: skip
        assert_same([asdict(e) for e in read(path, read_endpoints, window)],
                    [asdict(e) for e in read(plain, read_endpoints, window)])  # fmt: skip
        assert read(path, read_stats, window).to_json() == read(plain, read_stats, window).to_json()


def test_migration_from_version_5_leaves_hours_uncompacted(db_path: Path) -> None:
    schema.prepare_database(db_path)
    write_in_batches(db_path, [request(BASE_TS + n * 1000) for n in range(5)], batch_size=10)
    conn = sqlite3.connect(db_path, isolation_level=None)
    for table in ("endpoint_hourly", "status_hourly", "compacted_hours"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("PRAGMA user_version = 5")
    conn.close()

    schema.prepare_database(db_path)
    overview = read(db_path, read_overview, Window())
    assert overview.requests == 5
    assert compaction_marks(db_path) == {}


def test_stats_read_from_one_snapshot(tmp_path: Path) -> None:
    path = make_database(tmp_path)
    late = [request(BASE_TS + 6 * HOUR_MS + n, "/late", 503, 2.0) for n in range(7)]
    conn = schema.open_readonly(path)
    statements: list[str] = []

    def write_after_first_select(sql: str) -> None:
        # A writer commits between the statements of one read_stats call: after
        # BEGIN and the first SELECT, which starts the read snapshot.
        statements.append(sql)
        if len(statements) == 3:
            write_in_batches(path, late, batch_size=10)

    conn.set_trace_callback(write_after_first_select)
    try:
        stats = read_stats(conn, WINDOWS["24h"], 100).to_json()
    finally:
        conn.close()

    assert len(statements) > 3
    assert stats["requests"] == sum(stats["status"].values())
    assert stats["requests"] == sum(route["requests"] for route in stats["routes"])
    assert all(route["route"] != "/late" for route in stats["routes"])
    assert read(path, read_stats, WINDOWS["24h"], 100).to_json()["status"]["5xx"] == (
        stats["status"]["5xx"] + 7
    )
