"""The writer on real SQLite files: rollups, percentiles, round trips, error groups, shutdown."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from hauswacht.writer import histogram
from hauswacht.writer.aggregate import (
    INSERT_METRICS,
    INSERT_REQUESTS,
    STATEMENT_ORDER,
    register_functions,
)
from hauswacht.writer.events import ErrorEvent, MetricEvent, RequestEvent
from hauswacht.writer.fingerprint import SCHEME, SCHEME_CLIENT
from hauswacht.writer.queue import EventQueue
from hauswacht.writer.schema import DatabaseError
from hauswacht.writer.writer import HEALTH_METRICS, Writer

HELPERS = Path(__file__).parent / "helpers"
HOUR_MS = 3_600_000
BASE_TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z, the start of an hour


def request(
    ts: int,
    route: str = "/tours/{tour_id}",
    *,
    method: str = "GET",
    status: int = 200,
    duration: float | None = 12.5,
    size: int | None = 100,
    path: str = "/tours/1",
) -> RequestEvent:
    return RequestEvent(ts, method, route, path, status, duration, None, size, None, None, None)


def error(
    ts: int,
    message: str,
    *,
    error_type: str = "LookupError",
    function: str = "load_tour",
    module: str = "dispatch.tours",
    lineno: int = 10,
    fingerprint: str | None = None,
) -> ErrorEvent:
    data = {
        "type": error_type,
        "message": message,
        "level": "error",
        "exceptions": [
            {
                "type": error_type,
                "message": message,
                "relation": None,
                "frames": [
                    {
                        "filename": "starlette/routing.py",
                        "module": "starlette.routing",
                        "function": "handle",
                        "lineno": 70 + lineno,
                        "line": "await self.app(scope, receive, send)",
                        "in_app": False,
                    },
                    {
                        "filename": f"{module.replace('.', '/')}.py",
                        "module": module,
                        "function": function,
                        "lineno": lineno,
                        "line": "raise LookupError(...)",
                        "in_app": True,
                    },
                ],
            }
        ],
        "trace_id": None,
        "tags": {},
    }
    return ErrorEvent(ts, error_type, message, "error", None, fingerprint, data)


def query(db_path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def new_writer(db_path: Path, queue: EventQueue, **settings: Any) -> Writer:
    settings.setdefault("flush_interval", 60.0)
    settings.setdefault("health_interval", 3600.0)
    return Writer(db_path, queue, **settings)


async def write_events(db_path: Path, events: list[Any], **settings: Any) -> Writer:
    """Start a writer, queue `events`, flush and stop; return the stopped writer."""
    queue = EventQueue(maxsize=max(1, len(events)), wake_at=10**9)
    writer = new_writer(db_path, queue, **settings)
    await writer.start()
    for event in events:
        assert queue.put(event)
    await writer.flush()
    await writer.stop()
    return writer


def nearest_rank(sorted_values: list[float], q: float) -> float:
    return sorted_values[max(1, math.ceil(q * len(sorted_values))) - 1]


# -- the basic path ------------------------------------------------------------------


def test_stop_stores_every_queued_event(db_path: Path) -> None:
    events = [request(BASE_TS + i, path=f"/tours/{i}") for i in range(2500)]

    async def scenario() -> None:
        queue = EventQueue(maxsize=5000, wake_at=10**9)
        writer = new_writer(db_path, queue, batch_size=300)
        await writer.start()
        for event in events:
            queue.put(event)
        await writer.stop()
        assert writer.health()["events_written"] == 2500

    asyncio.run(scenario())

    assert query(db_path, "SELECT count(*) FROM requests") == [(2500,)]
    assert query(db_path, "SELECT sum(count) FROM request_rollups") == [(2500,)]


def test_raw_rows_keep_event_fields(db_path: Path) -> None:
    event = RequestEvent(
        BASE_TS + 5, "PUT", "/tours/{tour_id}", "/tours/7", 204, 3.25, 1.5, 0,
        "10.0.0.7", "curl/8.5", "0af7651916cd43dd8448eb211c80319c",
    )  # fmt: skip
    metric = MetricEvent(BASE_TS + 6, "routing.eta_ms", 812.5, "ms", '{"engine":"osrm"}')

    asyncio.run(write_events(db_path, [event, metric]))

    columns = ", ".join(RequestEvent._fields)
    assert query(db_path, f"SELECT {columns} FROM requests") == [tuple(event)]
    assert query(db_path, "SELECT ts, name, value, unit, tags FROM metrics") == [tuple(metric)]


def test_insert_statements_follow_event_fields() -> None:
    assert "(" + ", ".join(RequestEvent._fields) + ")" in INSERT_REQUESTS
    assert "(" + ", ".join(MetricEvent._fields) + ")" in INSERT_METRICS


def test_background_flush_writes_full_batch(db_path: Path) -> None:
    async def scenario() -> None:
        queue = EventQueue(maxsize=1000, wake_at=50)
        writer = new_writer(db_path, queue, batch_size=50, flush_interval=60.0)
        await writer.start()
        for i in range(50):
            queue.put(request(BASE_TS + i))
        # The 50th put wakes the flush task long before its 60 s interval.
        for _ in range(500):
            if writer.health()["events_written"] == 50:
                break
            await asyncio.sleep(0.01)
        assert writer.health()["events_written"] == 50
        await writer.stop()

    asyncio.run(scenario())
    assert query(db_path, "SELECT count(*) FROM requests") == [(50,)]


def test_background_flush_runs_on_interval(db_path: Path) -> None:
    async def scenario() -> None:
        queue = EventQueue(maxsize=1000, wake_at=1000)
        writer = new_writer(db_path, queue, batch_size=1000, flush_interval=0.05)
        await writer.start()
        queue.put(request(BASE_TS))
        for _ in range(500):
            if writer.health()["events_written"] == 1:
                break
            await asyncio.sleep(0.01)
        assert writer.health()["events_written"] == 1
        await writer.stop()

    asyncio.run(scenario())


def test_start_and_stop_are_idempotent(db_path: Path) -> None:
    async def scenario() -> None:
        queue = EventQueue(maxsize=10, wake_at=10)
        writer = new_writer(db_path, queue)
        assert not writer.running
        await writer.start()
        await writer.start()
        assert writer.running
        queue.put(request(BASE_TS))
        await writer.stop()
        assert not writer.running
        await writer.stop()
        await writer.flush()

        # A stopped writer starts again on the same queue.
        queue.put(request(BASE_TS + 1))
        await writer.start()
        assert writer.running
        await writer.stop()

    asyncio.run(scenario())
    assert query(db_path, "SELECT count(*) FROM requests") == [(2,)]


def test_start_rejects_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are not the events you are looking for" * 100)
    writer = Writer(path, EventQueue(maxsize=10, wake_at=10))

    with pytest.raises(DatabaseError) as raised:
        asyncio.run(writer.start())

    assert str(path) in str(raised.value)
    assert not writer.running


def test_start_rejects_path_below_file(tmp_path: Path) -> None:
    blocker = tmp_path / "plain-file"
    blocker.write_text("x")
    path = blocker / "events.db"
    writer = Writer(path, EventQueue(maxsize=10, wake_at=10))

    with pytest.raises(DatabaseError) as raised:
        asyncio.run(writer.start())

    assert str(blocker) in str(raised.value)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("batch_size", 0),
        ("batch_size", 2.5),
        ("flush_interval", 0),
        ("flush_interval", float("nan")),
        ("busy_timeout_ms", -1),
        ("max_pending", -5),
        ("max_db_mb", 0),
        ("health_interval", "10"),
    ],
)
def test_invalid_setting_names_itself(db_path: Path, setting: str, value: Any) -> None:
    with pytest.raises(ValueError) as raised:
        Writer(db_path, EventQueue(maxsize=10, wake_at=10), **{setting: value})
    assert setting in str(raised.value)


# -- rollups -------------------------------------------------------------------------


def mixed_events(rng: random.Random, count: int) -> list[Any]:
    routes = ["/tours/{tour_id}", "/drivers", "/routes/plan"]
    events: list[Any] = []
    for _ in range(count):
        ts = BASE_TS + rng.randrange(5) * HOUR_MS + rng.randrange(HOUR_MS)
        if rng.random() < 0.8:
            duration = None if rng.random() < 0.1 else round(rng.lognormvariate(3, 1), 3)
            size = None if rng.random() < 0.1 else rng.randrange(50_000)
            events.append(
                request(
                    ts,
                    rng.choice(routes),
                    method=rng.choice(["GET", "POST"]),
                    status=rng.choice([200, 200, 201, 404, 500]),
                    duration=duration,
                    size=size,
                )
            )
        else:
            name = rng.choice(["routing.eta_ms", "tours.open"])
            tags = rng.choice(["{}", '{"engine":"osrm"}'])
            unit = "ms" if name.endswith("_ms") else None
            events.append(MetricEvent(ts, name, rng.uniform(-5, 500), unit, tags))
    return events


def test_rollups_match_raw_rows(db_path: Path) -> None:
    rng = random.Random(20260101)
    chunks = [mixed_events(rng, 700) for _ in range(4)]

    async def scenario() -> None:
        queue = EventQueue(maxsize=1000, wake_at=10**9)
        writer = new_writer(db_path, queue, batch_size=128)
        await writer.start()
        for chunk in chunks:
            for event in chunk:
                queue.put(event)
            await writer.flush()
        await writer.stop()

    asyncio.run(scenario())

    conn = sqlite3.connect(db_path)
    register_functions(conn)
    expected_requests = conn.execute(
        """
        SELECT ts / 3600000, route, method, status, count(*), count(duration_ms),
               coalesce(sum(duration_ms), 0), min(duration_ms), max(duration_ms),
               sum(coalesce(response_bytes, 0))
        FROM requests GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        """
    ).fetchall()
    actual_requests = conn.execute(
        """
        SELECT hour, route, method, status, count, timed_count, sum_ms, min_ms, max_ms,
               response_bytes
        FROM request_rollups ORDER BY 1, 2, 3, 4
        """
    ).fetchall()
    assert len(actual_requests) == len(expected_requests)
    assert len(actual_requests) > 50  # several hours, routes, methods and statuses
    for actual, expected in zip(actual_requests, expected_requests, strict=True):
        assert actual[:6] == expected[:6]
        assert actual[6] == pytest.approx(expected[6], rel=1e-9)
        assert actual[7:] == expected[7:]

    durations: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for hour, route, method, status, duration in conn.execute(
        "SELECT ts / 3600000, route, method, status, duration_ms FROM requests"
        " WHERE duration_ms IS NOT NULL"
    ):
        durations[(hour, route, method, status)].append(duration)
    for hour, route, method, status, buckets in conn.execute(
        "SELECT hour, route, method, status, buckets FROM request_rollups"
    ):
        expected_buckets: dict[str, int] = {}
        histogram.add_values(expected_buckets, durations[(hour, route, method, status)])
        assert histogram.decode(buckets) == expected_buckets

    expected_metrics = conn.execute(
        """
        SELECT ts / 3600000, name, tags, count(*), sum(value), min(value), max(value)
        FROM metrics GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        """
    ).fetchall()
    actual_metrics = conn.execute(
        "SELECT hour, name, tags, count, sum, min, max FROM metric_rollups ORDER BY 1, 2, 3"
    ).fetchall()
    assert len(actual_metrics) == len(expected_metrics)
    for actual, expected in zip(actual_metrics, expected_metrics, strict=True):
        assert actual[:4] == expected[:4]
        assert actual[4] == pytest.approx(expected[4], rel=1e-9)
        assert actual[5:] == expected[5:]
    conn.close()


def test_request_without_duration_counts_only_in_count(db_path: Path) -> None:
    events = [
        request(BASE_TS, duration=None, size=None),
        request(BASE_TS + 1, duration=8.0, size=10),
        request(BASE_TS + 2, duration=None, size=5),
    ]

    asyncio.run(write_events(db_path, events))

    rows = query(
        db_path,
        "SELECT count, timed_count, sum_ms, min_ms, max_ms, response_bytes, buckets"
        " FROM request_rollups",
    )
    assert rows == [(3, 1, 8.0, 8.0, 8.0, 15, histogram.encode({histogram.bucket_key(8.0): 1}))]


def test_untimed_rollup_merges_with_timed_one(db_path: Path) -> None:
    async def scenario() -> None:
        queue = EventQueue(maxsize=10, wake_at=10)
        writer = new_writer(db_path, queue)
        await writer.start()
        queue.put(request(BASE_TS, duration=None))
        await writer.flush()
        queue.put(request(BASE_TS + 1, duration=4.0))
        await writer.flush()
        queue.put(request(BASE_TS + 2, duration=2.0))
        await writer.flush()
        await writer.stop()

    asyncio.run(scenario())

    rows = query(db_path, "SELECT count, timed_count, sum_ms, min_ms, max_ms FROM request_rollups")
    assert rows == [(3, 2, 6.0, 2.0, 4.0)]


def lognormal_sample(rng: random.Random, count: int) -> list[float]:
    return [rng.lognormvariate(3.0, 1.2) for _ in range(count)]


def bimodal_sample(rng: random.Random, count: int) -> list[float]:
    # 85 % fast cache hits around 4 ms, 15 % routing-engine calls around 900 ms.
    values = []
    for _ in range(count):
        if rng.random() < 0.85:
            values.append(max(0.05, rng.gauss(4.0, 1.0)))
        else:
            values.append(max(0.05, rng.gauss(900.0, 150.0)))
    return values


@pytest.mark.parametrize("kind", ["requests", "metrics"])
@pytest.mark.parametrize("sample", [lognormal_sample, bimodal_sample], ids=["lognormal", "bimodal"])
def test_percentiles_within_five_percent(db_path: Path, kind: str, sample: Any) -> None:
    rng = random.Random(42)
    values = sample(rng, 20_000)
    if kind == "requests":
        events = [
            request(BASE_TS + (i % 2) * HOUR_MS + i, duration=v) for i, v in enumerate(values)
        ]
    else:
        events = [
            MetricEvent(BASE_TS + (i % 2) * HOUR_MS + i, "routing.eta_ms", v, "ms", "{}")
            for i, v in enumerate(values)
        ]

    # Batches of 500 make the SQL bucket merge run 40 times per rollup row.
    asyncio.run(write_events(db_path, events, batch_size=500))

    if kind == "requests":
        raw = [row[0] for row in query(db_path, "SELECT duration_ms FROM requests")]
        rollups = query(db_path, "SELECT buckets, min_ms, max_ms FROM request_rollups")
    else:
        raw = [row[0] for row in query(db_path, "SELECT value FROM metrics")]
        rollups = query(db_path, "SELECT buckets, min, max FROM metric_rollups")
    assert len(raw) == 20_000
    assert len(rollups) == 2  # two hours, merged below as a dashboard would

    buckets: dict[str, int] = {}
    for text, _, _ in rollups:
        histogram.merge(buckets, histogram.decode(text))
    low = min(row[1] for row in rollups)
    high = max(row[2] for row in rollups)
    estimates = histogram.quantiles(buckets, [0.5, 0.95, 0.99], low, high)

    raw.sort()
    for q, estimate in zip([0.5, 0.95, 0.99], estimates, strict=True):
        exact = nearest_rank(raw, q)
        assert estimate is not None
        assert abs(estimate - exact) <= 0.05 * exact, (q, estimate, exact)


# -- round trips per flush -------------------------------------------------------------


def one_of_each_kind(count: int) -> list[Any]:
    events: list[Any] = []
    for i in range(count):
        ts = BASE_TS + i
        if i % 3 == 0:
            events.append(request(ts, duration=float(i % 97)))
        elif i % 3 == 1:
            events.append(MetricEvent(ts, "tours.open", float(i), None, "{}"))
        else:
            events.append(error(ts, f"tour {i} not found"))
    return events


def test_flush_calls_constant_in_batch_size(db_path: Path) -> None:
    async def calls_for(count: int) -> list[str]:
        queue = EventQueue(maxsize=count, wake_at=10**9)
        writer = new_writer(db_path, queue, batch_size=1000)
        await writer.start()

        # Every aiosqlite operation is one hop to its thread through _execute.
        connection = writer._db
        assert connection is not None
        original = connection._execute
        calls: list[str] = []

        async def counting_execute(fn: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append(args[0].split()[0] if args and isinstance(args[0], str) else repr(fn))
            return await original(fn, *args, **kwargs)

        connection._execute = counting_execute  # type: ignore[method-assign]
        for event in one_of_each_kind(count):
            queue.put(event)
        await writer.flush()
        connection._execute = original  # type: ignore[method-assign]
        await writer.stop()
        return calls

    small = asyncio.run(calls_for(10))
    large = asyncio.run(calls_for(1000))

    # BEGIN, three raw inserts, four rollup upserts (no drops), COMMIT.
    assert len(small) == len(STATEMENT_ORDER) - 1 + 2
    assert small == large
    assert small[0] == "BEGIN"
    assert small[-1] == "COMMIT"
    assert query(db_path, "SELECT count(*) FROM requests") == [(4 + 334,)]


# -- error groups --------------------------------------------------------------------


def groups(db_path: Path) -> list[tuple[Any, ...]]:
    return query(
        db_path,
        "SELECT type, count, first_seen, last_seen, status, regressions, scheme"
        " FROM error_groups ORDER BY first_seen",
    )


def test_errors_differing_in_ids_share_group(db_path: Path) -> None:
    messages = [
        "tour 123 not found for driver 550e8400-e29b-41d4-a716-446655440000 at 0x7f3a2b10",
        "tour 98765 not found for driver 123e4567-e89b-12d3-a456-426614174000 at 0xdead",
        "tour 7 not found for driver 00000000-0000-0000-0000-000000000000 at 0x1",
    ]
    hex_messages = ["cache key a3f9c2e81b7d missing", "cache key 0b1c2d3e4f5a6978 missing"]
    events = [error(BASE_TS + i, m, lineno=10 + i) for i, m in enumerate(messages)]
    events += [error(BASE_TS + 10 + i, m, function="cached") for i, m in enumerate(hex_messages)]

    asyncio.run(write_events(db_path, events))

    assert groups(db_path) == [
        ("LookupError", 3, BASE_TS, BASE_TS + 2, "unresolved", 0, SCHEME),
        ("LookupError", 2, BASE_TS + 10, BASE_TS + 11, "unresolved", 0, SCHEME),
    ]
    assert query(db_path, "SELECT count(DISTINCT fingerprint) FROM errors") == [(2,)]


def test_errors_with_other_type_or_function_split(db_path: Path) -> None:
    events = [
        error(BASE_TS, "tour 1 not found"),
        error(BASE_TS + 1, "tour 2 not found", error_type="KeyError"),
        error(BASE_TS + 2, "tour 3 not found", function="plan_route"),
        error(BASE_TS + 3, "tour 4 not found", module="dispatch.drivers"),
        error(BASE_TS + 4, "driver 5 not found"),
    ]

    asyncio.run(write_events(db_path, events))

    assert [row[1] for row in groups(db_path)] == [1, 1, 1, 1, 1]


def test_client_fingerprint_groups_events(db_path: Path) -> None:
    events = [
        error(BASE_TS, "first wording", fingerprint="routing-engine-down"),
        error(
            BASE_TS + 1, "other wording", error_type="OSError", fingerprint="routing-engine-down"
        ),
    ]

    asyncio.run(write_events(db_path, events))

    assert query(db_path, "SELECT fingerprint, count, scheme FROM error_groups") == [
        ("routing-engine-down", 2, SCHEME_CLIENT)
    ]


def test_group_keeps_newest_event(db_path: Path) -> None:
    async def scenario() -> None:
        queue = EventQueue(maxsize=10, wake_at=10)
        writer = new_writer(db_path, queue)
        await writer.start()
        # Within one batch the later timestamp wins, whatever the order.
        queue.put(error(BASE_TS + 50, "tour 50 not found"))
        queue.put(error(BASE_TS + 10, "tour 10 not found"))
        await writer.flush()
        # An older event arriving late counts but does not replace the newest.
        queue.put(error(BASE_TS + 5, "tour 5 not found"))
        await writer.flush()
        await writer.stop()

    asyncio.run(scenario())

    rows = query(db_path, "SELECT count, first_seen, last_seen, latest_event FROM error_groups")
    assert len(rows) == 1
    count, first_seen, last_seen, latest = rows[0]
    assert (count, first_seen, last_seen) == (3, BASE_TS + 5, BASE_TS + 50)
    assert json.loads(latest)["message"] == "tour 50 not found"
    hours = query(db_path, "SELECT hour, count FROM error_rollups")
    assert hours == [(BASE_TS // HOUR_MS, 3)]


def set_status(db_path: Path, status: str, resolved_at: int | None) -> None:
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute("UPDATE error_groups SET status = ?, resolved_at = ?", (status, resolved_at))
    conn.close()


def test_resolved_group_reopens_on_newer_event(db_path: Path) -> None:
    async def scenario() -> None:
        queue = EventQueue(maxsize=10, wake_at=10)
        writer = new_writer(db_path, queue)
        await writer.start()
        queue.put(error(BASE_TS, "tour 1 not found"))
        await writer.flush()

        set_status(db_path, "resolved", BASE_TS + 1000)
        # Older than the resolution: late delivery of a known event, no regression.
        queue.put(error(BASE_TS + 500, "tour 2 not found"))
        await writer.flush()
        assert groups(db_path)[0][4:6] == ("resolved", 0)

        queue.put(error(BASE_TS + 2000, "tour 3 not found"))
        queue.put(error(BASE_TS + 2001, "tour 4 not found"))
        await writer.flush()
        await writer.stop()

    asyncio.run(scenario())

    assert groups(db_path) == [
        ("LookupError", 4, BASE_TS, BASE_TS + 2001, "unresolved", 1, SCHEME),
    ]


def test_ignored_group_stays_ignored(db_path: Path) -> None:
    async def scenario() -> None:
        queue = EventQueue(maxsize=10, wake_at=10)
        writer = new_writer(db_path, queue)
        await writer.start()
        queue.put(error(BASE_TS, "tour 1 not found"))
        await writer.flush()
        set_status(db_path, "ignored", None)
        queue.put(error(BASE_TS + 5000, "tour 2 not found"))
        await writer.flush()
        await writer.stop()

    asyncio.run(scenario())

    assert groups(db_path)[0][1:6] == (2, BASE_TS, BASE_TS + 5000, "ignored", 0)


# -- drops and health ----------------------------------------------------------------


def test_queue_drops_stored_as_rollup(db_path: Path) -> None:
    async def scenario() -> None:
        queue = EventQueue(maxsize=5, wake_at=5)
        for i in range(8):
            queue.put(request(BASE_TS + i))
        writer = new_writer(db_path, queue)
        await writer.start()
        await writer.stop()

    before = time.time_ns() // 1_000_000 // HOUR_MS
    asyncio.run(scenario())
    after = time.time_ns() // 1_000_000 // HOUR_MS

    assert query(db_path, "SELECT count(*) FROM requests") == [(5,)]
    rows = query(db_path, "SELECT hour, reason, count FROM dropped_rollups")
    assert len(rows) == 1
    hour, reason, count = rows[0]
    assert before <= hour <= after
    assert (reason, count) == ("queue_full", 3)


def metric_rows(db_path: Path, prefix: str = "hauswacht.writer.") -> list[tuple[Any, ...]]:
    return query(db_path, "SELECT name, value FROM metrics WHERE name LIKE ? || '%'", (prefix,))


def test_health_metrics_written_only_with_events(db_path: Path) -> None:
    async def scenario() -> None:
        queue = EventQueue(maxsize=100, wake_at=100)
        writer = Writer(db_path, queue, flush_interval=0.02, health_interval=0.05)
        await writer.start()
        for i in range(3):
            queue.put(request(BASE_TS + i))
            await writer.flush()
            await asyncio.sleep(0.06)

        names = {name for name, _ in metric_rows(db_path)}
        assert names == set(HEALTH_METRICS)
        written = len(metric_rows(db_path))

        # Idle: the flush task keeps running but finds nothing to write.
        await asyncio.sleep(0.2)
        await writer.flush()
        assert len(metric_rows(db_path)) == written
        await writer.stop()
        assert len(metric_rows(db_path)) == written

    asyncio.run(scenario())

    rollup_names = {row[0] for row in query(db_path, "SELECT name FROM metric_rollups")}
    assert rollup_names == set(HEALTH_METRICS)
    # Health rows are not counted as application events.
    assert query(db_path, "SELECT count(*) FROM requests") == [(3,)]


def test_health_snapshot_counts_flushes(db_path: Path) -> None:
    async def scenario() -> dict[str, Any]:
        queue = EventQueue(maxsize=3, wake_at=3)
        writer = new_writer(db_path, queue, batch_size=2)
        await writer.start()
        for i in range(5):
            queue.put(request(BASE_TS + i))
        await writer.flush()
        snapshot = writer.health()
        await writer.stop()
        return snapshot

    snapshot = asyncio.run(scenario())

    assert snapshot["running"] is True
    assert snapshot["queue_depth"] == 0
    assert snapshot["queue_max"] == 3
    assert snapshot["pending"] == 0
    assert snapshot["dropped_total"] == 2
    assert snapshot["events_written"] == 3
    assert snapshot["flushes"] == 2
    assert snapshot["retries"] == 0
    assert snapshot["last_error"] is None
    assert snapshot["last_flush_ms"] is not None


# -- processes -----------------------------------------------------------------------


def test_cancelled_flush_task_drains(db_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, str(HELPERS / "writer_no_stop.py"), str(db_path), "3000"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert completed.returncode == 0, completed.stderr
    assert query(db_path, "SELECT count(*) FROM requests") == [(3000,)]
    assert query(db_path, "SELECT sum(count) FROM request_rollups") == [(3000,)]


@pytest.mark.parametrize("delay", [0.0, 0.005, 0.02])
def test_cancel_during_writes_stores_each_event_once(db_path: Path, delay: float) -> None:
    # main() returns while the flush task writes batches of 4000, so the exit
    # cancellation lands before, inside or between transactions.
    completed = subprocess.run(
        [sys.executable, str(HELPERS / "writer_no_stop.py"), str(db_path), "20000", "4000",
         str(delay)],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip

    assert completed.returncode == 0, completed.stderr
    assert query(db_path, "SELECT count(*), count(DISTINCT path) FROM requests") == [(20000, 20000)]
    assert query(db_path, "SELECT sum(count) FROM request_rollups") == [(20000,)]
    assert "ERROR" not in completed.stderr


def test_two_processes_write_one_file(db_path: Path, tmp_path: Path) -> None:
    count = 15_000
    go_file = tmp_path / "go"
    script = str(HELPERS / "writer_produce.py")
    workers = [
        subprocess.Popen(
            [sys.executable, script, str(db_path), str(count), label, str(go_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for label in ("a", "b")
    ]
    go_file.touch()
    outputs = [worker.communicate(timeout=60) for worker in workers]

    for worker, (stdout, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr
        assert "locked" not in stderr
        assert "WARNING" not in stderr
        assert "ERROR" not in stderr
        health = json.loads(stdout)
        assert health["dropped_total"] == 0
        assert health["retries"] == 0
        assert health["events_written"] == count

    assert query(db_path, "SELECT trace_id, count(*) FROM requests GROUP BY 1 ORDER BY 1") == [
        ("a", count),
        ("b", count),
    ]
    assert query(
        db_path, "SELECT route, sum(count) FROM request_rollups GROUP BY 1 ORDER BY 1"
    ) == [
        ("/a", count),
        ("/b", count),
    ]
    assert query(db_path, "PRAGMA integrity_check") == [("ok",)]


def test_writer_logs_start_and_stop(db_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hauswacht.writer.writer")

    asyncio.run(write_events(db_path, [request(BASE_TS)]))

    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("writer started: ") and str(db_path) in m for m in messages)
    assert any(m.startswith("writer stopped: ") and "1 events written" in m for m in messages)
