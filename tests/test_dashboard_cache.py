"""The dashboard's hour cache: the same overview as an uncached read, and never stale.

Events are written by the real Writer into real SQLite files, so request_hourly
and request_rollups are what the pipeline produces. The cache's clock is fixed
in these tests, so which hours count as "current" does not depend on today's date.
"""

from __future__ import annotations

import logging
import math
import re
import sqlite3
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from hauswacht.dashboard import create_app
from hauswacht.dashboard.auth import UserStore
from hauswacht.dashboard.cache import OverviewCache
from hauswacht.writer import schema
from hauswacht.writer.events import RequestEvent
from hauswacht.writer.queries import HOUR_MS, Overview, Window, read_overview
from tests.test_dashboard_http import PASSWORD, USER, login, serve, write_events
from tests.test_dashboard_overview import BASE_TS, FIRST_HOUR, synthetic_events
from tests.test_writer_hourly import write_in_batches

WINDOW = Window((FIRST_HOUR + 3) * HOUR_MS, (FIRST_HOUR + 27) * HOUR_MS)
WINDOW_HOURS = 24
# After all synthetic data, so every hour of it may be cached.
LATER_MS = BASE_TS + 40 * HOUR_MS


def fixed_clock(now_ms: int = LATER_MS) -> Any:
    return lambda: now_ms


def event(ts: int, route: str, status: int, duration: float | None) -> RequestEvent:
    return RequestEvent(ts, "GET", route, route, status, duration, None, 100, None, None, None)


def make_database(folder: Path) -> Path:
    path = folder / "events.db"
    schema.prepare_database(path)
    write_in_batches(path, synthetic_events(seed=5), batch_size=400)
    return path


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return make_database(tmp_path)


def read(path: Path, function: Any, *args: Any) -> Any:
    conn = schema.open_readonly(path)
    try:
        return function(conn, *args)
    finally:
        conn.close()


def assert_same(actual: Any, expected: Any, where: str = "overview") -> None:
    """Compare two overviews (as dicts) exactly, except floats to 1e-9 relative.

    Float sums of durations are added in another order with the cache, so
    they may differ in the last bits.
    """
    if isinstance(expected, float) and isinstance(actual, float):
        assert math.isclose(actual, expected, rel_tol=1e-9), f"{where}: {actual} != {expected}"
    elif isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: {actual!r} is not a dict"
        assert list(actual) == list(expected), f"{where}: keys differ"
        for key in expected:
            assert_same(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: {actual!r} is not a list"
        assert len(actual) == len(expected), f"{where}: length {len(actual)} != {len(expected)}"
        for index, (left, right) in enumerate(zip(actual, expected, strict=True)):
            assert_same(left, right, f"{where}[{index}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def compare(path: Path, cache: OverviewCache, window: Window) -> Overview:
    """Read `window` with and without the cache; assert they agree and return the cached one."""
    cached = read(path, cache.read_overview, window)
    uncached = read(path, read_overview, window)
    assert_same(asdict(cached), asdict(uncached))
    assert cached.error_rate == uncached.error_rate
    return cached


@pytest.mark.parametrize(
    "window",
    [
        WINDOW,
        Window(),
        Window(BASE_TS + 5 * HOUR_MS + 1234, BASE_TS + 9 * HOUR_MS - 99),
        Window(BASE_TS + 100 * HOUR_MS, BASE_TS + 124 * HOUR_MS),  # no data
    ],
    ids=["24h", "open", "partial-hours", "empty"],
)
def test_cached_overview_equals_uncached(database: Path, window: Window) -> None:
    cache = OverviewCache(clock=fixed_clock())

    cold = compare(database, cache, window)
    warm = compare(database, cache, window)

    assert asdict(warm) == asdict(cold)


def test_warm_read_uses_cached_hours(database: Path) -> None:
    cache = OverviewCache(clock=fixed_clock())

    read(database, cache.read_overview, WINDOW)
    assert (cache.hits, cache.misses) == (0, WINDOW_HOURS)
    assert len(cache) == WINDOW_HOURS

    read(database, cache.read_overview, WINDOW)
    assert (cache.hits, cache.misses) == (WINDOW_HOURS, WINDOW_HOURS)


def test_new_events_in_cached_hour_shown(database: Path) -> None:
    cache = OverviewCache(clock=fixed_clock())
    before = compare(database, cache, WINDOW)
    hour = FIRST_HOUR + 10
    events = [event(hour * HOUR_MS + 60_000 * minute, "/api/new", 503, 9000.0 + minute)
              for minute in range(5)]  # fmt: skip

    write_events(database, events)
    after = compare(database, cache, WINDOW)

    assert cache.misses == WINDOW_HOURS + 1  # only the changed hour was read again
    assert after.requests == before.requests + 5
    assert after.server_errors == before.server_errors + 5
    assert after.status_codes[503] == 5
    point_before = next(point for point in before.timeseries if point.hour == hour)
    point_after = next(point for point in after.timeseries if point.hour == hour)
    assert point_after.requests == point_before.requests + 5
    assert point_after.server_errors == point_before.server_errors + 5
    new_endpoint = next(e for e in after.endpoints if e.route == "/api/new")
    assert new_endpoint.requests == 5
    assert new_endpoint.latency_ms.max == 9004.0
    assert after.slowest[0].route == "/api/new"  # far slower than every synthetic endpoint


def test_replayed_old_hour_read_again(database: Path) -> None:
    cache = OverviewCache(clock=fixed_clock())
    compare(database, cache, WINDOW)
    old_hour = FIRST_HOUR + 3  # the window's first hour
    before = read(database, read_overview, Window(old_hour * HOUR_MS, (old_hour + 1) * HOUR_MS))

    write_events(database, [event(old_hour * HOUR_MS + 5, "/old", 200, 1.0)])
    after = compare(database, cache, WINDOW)

    assert cache.misses == WINDOW_HOURS + 1
    first = after.timeseries[0]
    assert first.hour == old_hour
    assert first.requests == before.requests + 1
    assert [e.requests for e in after.endpoints if e.route == "/old"] == [1]


def test_current_hour_never_stored(database: Path) -> None:
    current_hour = FIRST_HOUR + 20
    cache = OverviewCache(clock=fixed_clock(current_hour * HOUR_MS + 1))

    compare(database, cache, WINDOW)
    compare(database, cache, WINDOW)

    stored = current_hour - (FIRST_HOUR + 3)  # the window's hours before the current one
    assert len(cache) == stored
    assert cache.hits == stored
    assert cache.misses == WINDOW_HOURS + (WINDOW_HOURS - stored)


def test_current_hour_events_shown(database: Path) -> None:
    current_hour = FIRST_HOUR + 26  # the window's last hour
    cache = OverviewCache(clock=fixed_clock(current_hour * HOUR_MS + 1))
    before = compare(database, cache, WINDOW)

    write_events(database, [event(current_hour * HOUR_MS + 7, "/now", 200, 3.0)])
    after = compare(database, cache, WINDOW)

    assert after.requests == before.requests + 1
    assert after.timeseries[-1].requests == before.timeseries[-1].requests + 1


def test_cache_stays_within_bound(database: Path) -> None:
    cache = OverviewCache(max_hours=5, max_spans=2, clock=fixed_clock())

    for first in (0, 3, 6):
        window = Window((FIRST_HOUR + first) * HOUR_MS, (FIRST_HOUR + first + 24) * HOUR_MS)
        compare(database, cache, window)
        assert len(cache) == 5
        assert len(cache._spans) <= 2

    # The least recently used hours went first: the last window's last five stay.
    assert sorted(cache._hours) == list(range(FIRST_HOUR + 25, FIRST_HOUR + 30))


def test_invalid_cache_size_rejected() -> None:
    with pytest.raises(ValueError, match="max_hours=0"):
        OverviewCache(max_hours=0)


def test_cache_shared_between_threads(database: Path) -> None:
    cache = OverviewCache(max_hours=20, clock=fixed_clock())
    expected = asdict(read(database, read_overview, WINDOW))
    windows = [WINDOW, Window((FIRST_HOUR + 1) * HOUR_MS, (FIRST_HOUR + 25) * HOUR_MS)]
    expected_other = asdict(read(database, read_overview, windows[1]))
    failures: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            for step in range(6):
                window = windows[(offset + step) % 2]
                result = asdict(read(database, cache.read_overview, window))
                assert_same(result, expected if window == WINDOW else expected_other)
        except BaseException as exc:  # reported by the main thread below
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert failures == []
    assert len(cache) <= 20


def test_dashboard_page_shows_new_events(tmp_path: Path) -> None:
    """The overview page over a real server: warm cache, then events written into a cached hour."""
    path = tmp_path / "events.db"
    schema.prepare_database(path)
    hour = 400_000  # 2015-08-19T16:00:00Z, long past, so the cache keeps it
    write_events(path, [event(hour * HOUR_MS + 1000 * n, "/a", 200, 10.0) for n in range(3)])
    UserStore(tmp_path / "dashboard-users.json").set_password(USER, PASSWORD)
    app = create_app(path, timezone="UTC")
    window = {"from": "2015-08-19T16:00:00Z", "to": "2015-08-19T17:00:00Z"}
    card = re.compile(r'id="card-requests".*?<span class="value">([^<]*)</span>', re.S)

    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert login(client).status_code == 303
        first = client.get("/", params=window)
        assert card.search(first.text).group(1) == "3"
        assert len(app.state.dashboard.overview_cache) == 1

        write_events(path, [event(hour * HOUR_MS + 9000, "/a", 500, 20.0)])
        second = client.get("/", params=window)

    assert card.search(second.text).group(1) == "4"
    assert re.search(r'id="card-5xx".*?<span class="value">1</span>', second.text, re.S)


def test_cache_reads_no_raw_tables(database: Path) -> None:
    tables_read: set[str] = set()
    conn = schema.open_readonly(database)

    def authorizer(action: int, table: str | None, *_: Any) -> int:
        if action == sqlite3.SQLITE_READ and table:
            tables_read.add(table)
        return sqlite3.SQLITE_OK

    conn.set_authorizer(authorizer)
    try:
        OverviewCache(clock=fixed_clock()).read_overview(conn, WINDOW)
    finally:
        conn.close()

    # sqlite_master is read to load the schema; json_each is a table-valued function.
    rollups = {"request_hourly", "request_rollups", "error_rollups", "dropped_rollups",
               "endpoint_hourly", "status_hourly", "compacted_hours"}  # fmt: skip
    assert tables_read - {"sqlite_master", "json_each"} == rollups


def wait_for(condition: Any, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def test_startup_fills_cache_for_presets(tmp_path: Path) -> None:
    now_hour = time.time_ns() // 1_000_000 // HOUR_MS
    hours_back = [0, 1, 2, 30, 24 * 6, 24 * 29, 24 * 40]  # the last one is outside every preset
    path = tmp_path / "events.db"
    write_events(path, [event((now_hour - back) * HOUR_MS + 60_000, "/tours", 200, 5.0)
                        for back in hours_back])  # fmt: skip
    UserStore(tmp_path / "users.json").set_password(USER, PASSWORD)
    app = create_app(path, users_file=tmp_path / "users.json",
                     secret_key_file=tmp_path / "secret.key")  # fmt: skip
    cache = app.state.dashboard.overview_cache

    with serve(app, lifespan="on") as base, httpx.Client(base_url=base) as client:
        # Every finished hour with events in the last 30 days; the current hour is never kept.
        wait_for(lambda: len(cache) == 5)
        misses = cache.misses
        assert login(client).status_code == 303
        for range_key in ("1h", "24h", "7d", "30d"):
            page = client.get("/", params={"range": range_key})
            assert page.status_code == 200
        assert cache.misses - misses == 4  # only the current hour, once per page


def test_startup_with_missing_database_serves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    UserStore(tmp_path / "users.json").set_password(USER, PASSWORD)
    app = create_app(tmp_path / "missing.db", users_file=tmp_path / "users.json",
                     secret_key_file=tmp_path / "secret.key")  # fmt: skip
    with (
        caplog.at_level(logging.INFO, logger="hauswacht.dashboard.app"),
        serve(app, lifespan="on") as base,
        httpx.Client(base_url=base) as client,
    ):
        wait_for(lambda: "not filled at startup" in caplog.text)
        assert client.get("/login").status_code == 200
    assert "missing.db: no such file" in caplog.text
