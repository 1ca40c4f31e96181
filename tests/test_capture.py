"""capture_exception(), record_metric() and measure() from the loop and threads, into SQLite."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
import traceback
from collections import Counter
from pathlib import Path

import pytest

from hauswacht import capture_exception, measure, record_metric
from hauswacht.collector import capture
from hauswacht.collector.collector import Collector, LogLimiter, active_collector
from hauswacht.collector.errors import FRAMES_HEAD, MAX_CHAIN, MAX_FRAMES, MAX_MESSAGE

THREADS = 4
PER_THREAD = 50


def db_rows(db: Path, sql: str) -> list[sqlite3.Row]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def app_metrics(db: Path) -> list[sqlite3.Row]:
    return db_rows(db, "SELECT * FROM metrics WHERE name NOT LIKE 'hauswacht.%' ORDER BY id")


def block(seconds: float) -> None:
    """Block the calling thread, as synchronous work on the event loop would."""
    time.sleep(seconds)


def run_in_threads(target, count: int = THREADS) -> None:
    threads = [threading.Thread(target=target, args=(number,)) for number in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_record_metric_from_loop_and_threads(db_path: Path) -> None:
    def from_thread(number: int) -> None:
        for i in range(PER_THREAD):
            assert record_metric("jobs.size", number * 1000 + i, unit="items", tags={"w": number})

    async def scenario() -> None:
        async with Collector(database=db_path, flush_interval=0.05):
            for i in range(PER_THREAD):
                record_metric("loop.lag", i / 4, tags={"b": 2, "a": "x"})
            await asyncio.to_thread(run_in_threads, from_thread)

    asyncio.run(scenario())
    stored = app_metrics(db_path)
    loop_rows = [row for row in stored if row["name"] == "loop.lag"]
    assert [row["value"] for row in loop_rows] == [i / 4 for i in range(PER_THREAD)]
    assert {row["tags"] for row in loop_rows} == {'{"a":"x","b":2}'}
    assert {row["unit"] for row in loop_rows} == {None}
    thread_rows = [row for row in stored if row["name"] == "jobs.size"]
    assert sorted(row["value"] for row in thread_rows) == sorted(
        float(number * 1000 + i) for number in range(THREADS) for i in range(PER_THREAD)
    )
    assert Counter(row["tags"] for row in thread_rows) == {
        f'{{"w":{number}}}': PER_THREAD for number in range(THREADS)
    }
    assert {row["unit"] for row in thread_rows} == {"items"}


def test_measure_context_managers_and_decorators(db_path: Path) -> None:
    @measure("sync.decorated")
    def sync_work(seconds: float) -> str:
        time.sleep(seconds)
        return "sync result"

    @measure("async.decorated", unit="s", tags={"engine": "osrm"})
    async def async_work(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "async result"

    def thread_work(number: int) -> None:
        with measure("thread.block", unit="us"):
            time.sleep(0.01)
        assert sync_work(0.01) == "sync result"

    async def scenario() -> None:
        async with Collector(database=db_path, flush_interval=0.05):
            with measure("loop.block"):
                block(0.02)
            async with measure("loop.async_block"):
                await asyncio.sleep(0.02)
            assert await async_work(0.02) == "async result"
            assert sync_work(0.01) == "sync result"
            await asyncio.to_thread(run_in_threads, thread_work, 3)

    asyncio.run(scenario())
    by_name: dict[str, list[sqlite3.Row]] = {}
    for row in app_metrics(db_path):
        by_name.setdefault(row["name"], []).append(row)
    assert {name: len(rows) for name, rows in by_name.items()} == {
        "loop.block": 1,
        "loop.async_block": 1,
        "async.decorated": 1,
        "sync.decorated": 4,
        "thread.block": 3,
    }
    # Lower bounds only: a sleep lasts at least as long as asked.
    assert by_name["loop.block"][0]["value"] >= 20.0
    assert by_name["loop.block"][0]["unit"] == "ms"
    assert by_name["loop.async_block"][0]["value"] >= 20.0
    decorated = by_name["async.decorated"][0]
    assert (decorated["unit"], decorated["tags"]) == ("s", '{"engine":"osrm"}')
    assert decorated["value"] >= 0.02
    assert all(row["value"] >= 10_000 and row["unit"] == "us" for row in by_name["thread.block"])
    assert all(row["value"] >= 10.0 for row in by_name["sync.decorated"])


def test_measure_shared_object_nested_and_concurrent(db_path: Path) -> None:
    timer = measure("shared")

    async def timed(seconds: float) -> None:
        async with timer:
            await asyncio.sleep(seconds)

    async def scenario() -> None:
        async with Collector(database=db_path, flush_interval=0.05):
            with timer:  # outer
                with timer:  # inner
                    block(0.01)
                block(0.01)
            await asyncio.gather(timed(0.05), timed(0.01))

    asyncio.run(scenario())
    values = [row["value"] for row in app_metrics(db_path)]
    assert len(values) == 4
    inner, outer, short, long = values
    assert outer >= inner + 10.0
    assert inner >= 10.0
    # The shorter task exits first; each got its own start time.
    assert short >= 10.0
    assert long >= 50.0
    assert short < long


def test_measure_records_when_block_raises(db_path: Path) -> None:
    @measure("failing.call")
    def failing() -> None:
        raise ValueError("bad input")

    async def scenario() -> None:
        async with Collector(database=db_path):
            with pytest.raises(ValueError, match="bad input"):
                failing()
            with pytest.raises(KeyError), measure("failing.block"):
                raise KeyError("k")

    asyncio.run(scenario())
    assert [row["name"] for row in app_metrics(db_path)] == ["failing.call", "failing.block"]


def raise_with_context() -> None:
    try:
        int("not a number")
    except ValueError:
        raise RuntimeError("geocoder returned garbage")  # noqa: B904 (implicit context on purpose)


def test_capture_exception_from_loop_and_thread(db_path: Path) -> None:
    results: dict[str, object] = {}

    def from_thread(number: int) -> None:
        try:
            raise_with_context()
        except RuntimeError:
            results[f"thread{number}"] = capture_exception(worker=number)

    async def scenario() -> None:
        async with Collector(database=db_path):
            try:
                raise_with_context()
            except RuntimeError:
                results["loop"] = capture_exception(api_token="tok-123", user="ann")
            results["explicit"] = capture_exception(LookupError("no depot"))
            results["outside"] = capture_exception()
            await asyncio.to_thread(run_in_threads, from_thread, 2)

    asyncio.run(scenario())
    # Outside a request there is no trace id; "" means queued, None means nothing captured.
    assert results == {"loop": "", "explicit": "", "outside": None, "thread0": "", "thread1": ""}

    errors = db_rows(db_path, "SELECT * FROM errors ORDER BY id")
    assert len(errors) == 4
    first = json.loads(errors[0]["data"])
    assert errors[0]["type"] == "builtins.RuntimeError"
    assert errors[0]["trace_id"] is None
    assert first["tags"] == {"api_token": "[Filtered]", "user": "ann"}
    assert "tok-123" not in errors[0]["data"]
    assert first["request"] is None
    assert [(item["type"], item["relation"]) for item in first["exceptions"]] == [
        ("builtins.RuntimeError", None),
        ("builtins.ValueError", "context"),
    ]
    outer_frames = first["exceptions"][0]["frames"]
    assert [frame["function"] for frame in outer_frames] == [
        "test_capture_exception_from_loop_and_thread.<locals>.scenario",
        "raise_with_context",
    ]
    assert all(frame["in_app"] for frame in outer_frames)
    assert outer_frames[1]["line"].startswith('raise RuntimeError("geocoder returned garbage")')
    assert outer_frames[1]["module"] == "tests.test_capture"
    assert outer_frames[1]["filename"] == __file__

    explicit = json.loads(errors[1]["data"])
    assert explicit["type"] == "builtins.LookupError"
    assert explicit["exceptions"][0]["frames"] == []  # never raised: no traceback
    thread_tags = sorted(json.loads(row["data"])["tags"]["worker"] for row in errors[2:])
    assert thread_tags == [0, 1]


def test_library_frames_are_not_in_app(db_path: Path) -> None:
    async def scenario() -> None:
        async with Collector(database=db_path):
            try:
                json.loads("{broken")
            except json.JSONDecodeError:
                capture_exception()

    asyncio.run(scenario())
    (error,) = db_rows(db_path, "SELECT data FROM errors")
    frames = json.loads(error["data"])["exceptions"][0]["frames"]
    assert frames[0]["in_app"] is True
    assert frames[0]["module"] == "tests.test_capture"
    library = frames[1:]
    assert library
    assert all(not frame["in_app"] for frame in library)
    assert {frame["module"] for frame in library} == {"json", "json.decoder"}


def recurse(depth: int) -> None:
    if depth == 0:
        raise RecursionError("too deep on purpose")
    recurse(depth - 1)


def test_frames_chain_and_message_are_bounded(db_path: Path) -> None:
    depth = 80

    def chained(levels: int) -> BaseException:
        exc: BaseException = OSError("root")
        for level in range(levels):
            outer = RuntimeError(f"while handling level {level}")
            outer.__context__ = exc
            exc = outer
        return exc

    async def scenario() -> int:
        async with Collector(database=db_path):
            try:
                recurse(depth)
            except RecursionError as exc:
                total = len(traceback.extract_tb(exc.__traceback__))
                capture_exception()
            capture_exception(chained(MAX_CHAIN + 5))
            capture_exception(ValueError("x" * (MAX_MESSAGE * 2)))
        return total

    total_frames = asyncio.run(scenario())
    deep, chain, long_message = (
        json.loads(row["data"]) for row in db_rows(db_path, "SELECT data FROM errors ORDER BY id")
    )
    (deep_exception,) = deep["exceptions"]
    assert total_frames > MAX_FRAMES
    assert len(deep_exception["frames"]) == MAX_FRAMES
    assert deep_exception["frames_omitted"] == total_frames - MAX_FRAMES
    kept = [frame["function"] for frame in deep_exception["frames"]]
    assert kept[0] == "test_frames_chain_and_message_are_bounded.<locals>.scenario"
    assert kept[1:FRAMES_HEAD] == ["recurse"] * (FRAMES_HEAD - 1)
    assert kept[-1] == "recurse"  # the innermost frame, where the raise happened

    assert len(chain["exceptions"]) == MAX_CHAIN
    assert [item["relation"] for item in chain["exceptions"][1:]] == ["context"] * (MAX_CHAIN - 1)

    assert long_message["message"] == "x" * MAX_MESSAGE + "…"
    assert long_message["exceptions"][0]["message"] == long_message["message"]


def test_full_queue_drops_are_counted_and_stored(db_path: Path) -> None:
    collector = Collector(database=db_path, queue_size=3)
    accepted = [record_metric("burst", float(i)) for i in range(5)]
    assert accepted == [True, True, True, False, False]
    assert collector.queue.dropped == 2

    async def scenario() -> None:
        await collector.start()
        await collector.stop()

    asyncio.run(scenario())
    assert [row["value"] for row in app_metrics(db_path)] == [0.0, 1.0, 2.0]
    (dropped,) = db_rows(db_path, "SELECT reason, count FROM dropped_rollups")
    assert (dropped["reason"], dropped["count"]) == ("queue_full", 2)


def test_full_queue_drops_are_logged_rate_limited(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    collector = Collector(database=db_path, queue_size=2)
    with caplog.at_level(logging.WARNING, logger="hauswacht.collector.collector"):
        accepted = [record_metric("burst", float(i)) for i in range(6)]
        # Once the rate limit's period has passed, the next drop logs the count since.
        collector._queue_full_log._last -= collector._queue_full_log.period
        accepted.append(record_metric("burst", 6.0))
    assert accepted == [True, True] + [False] * 5
    assert collector.queue.dropped == 5
    assert [record.getMessage() for record in caplog.records] == [
        "Hauswacht event queue is full (queue_size=2): 1 events dropped since the last "
        "warning; raise queue_size or lower flush_interval if this repeats",
        "Hauswacht event queue is full (queue_size=2): 4 events dropped since the last "
        "warning; raise queue_size or lower flush_interval if this repeats",
    ]


def test_without_collector_events_are_discarded_and_counted(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with Collector(database=db_path):
            pass

    asyncio.run(scenario())  # the collector stops, so none is active
    assert active_collector() is None
    before = capture.discarded_without_collector()
    capture._discarded = 0  # so the first-discard warning is logged in this test
    with caplog.at_level(logging.WARNING, logger="hauswacht.collector.capture"):
        assert record_metric("orphan", 1.0) is False
        with measure("orphan.timer"):
            pass
        try:
            raise ValueError("nobody listens")
        except ValueError:
            assert capture_exception() is None
    assert capture.discarded_without_collector() == 3
    capture._discarded += before
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "no active collector" in warnings[0].getMessage()


INVALID_METRIC_CALLS = [
    (lambda: record_metric("", 1.0), "metric ''", "name must be a non-empty str"),
    (lambda: record_metric(None, 1.0), "metric with a name of type NoneType", "name must be"),
    (lambda: record_metric("m", "12"), "metric 'm'", "must be an int or float, got str"),
    (lambda: record_metric("m", None), "metric 'm'", "must be an int or float, got NoneType"),
    (lambda: record_metric("m", True), "metric 'm'", "must be an int or float, got bool"),
    (lambda: record_metric("m", float("nan")), "metric 'm'", "must be finite"),
    (lambda: record_metric("m", float("inf")), "metric 'm'", "must be finite"),
    (lambda: record_metric("m", 1, unit=5), "metric 'm'", "unit must be a str"),
    (lambda: record_metric("m", 1, tags=["a"]), "metric 'm'", "tags must be a mapping"),
    (lambda: record_metric("m", 1, tags={1: "a"}), "metric 'm'", "tag names must be str"),
]


def test_invalid_arguments_dropped_not_raised(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    collector = Collector(database=db_path)
    capture._invalid_log = LogLimiter()  # a fresh limiter: the first warning is logged
    with caplog.at_level(logging.WARNING, logger="hauswacht.collector.capture"):
        results = [call() for call, _what, _problem in INVALID_METRIC_CALLS]
        results.append(capture_exception("boom"))
    assert results == [False] * len(INVALID_METRIC_CALLS) + [None]
    assert collector.queue.dropped == len(INVALID_METRIC_CALLS) + 1

    warnings = [record.getMessage() for record in caplog.records]
    # Rate-limited: one warning for the first call, the rest only counted.
    assert len(warnings) == 1
    assert warnings[0].startswith("Hauswacht dropped metric '': the name must be a non-empty str")
    assert warnings[0].endswith("(1 calls with invalid arguments since the last warning)")

    async def scenario() -> None:
        await collector.start()
        await collector.stop()

    asyncio.run(scenario())
    assert app_metrics(db_path) == []
    (dropped,) = db_rows(db_path, "SELECT reason, count FROM dropped_rollups")
    assert (dropped["reason"], dropped["count"]) == ("invalid", len(INVALID_METRIC_CALLS) + 1)


@pytest.mark.parametrize(("call", "what", "problem"), INVALID_METRIC_CALLS)
def test_invalid_metric_warning_names_metric_and_type(
    call, what: str, problem: str, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    Collector(database=db_path)
    capture._invalid_log = LogLimiter()
    with caplog.at_level(logging.WARNING, logger="hauswacht.collector.capture"):
        assert call() is False
    (record,) = caplog.records
    assert record.getMessage().startswith(f"Hauswacht dropped {what}: ")
    assert problem in record.getMessage()


def test_capture_exception_with_non_exception_is_dropped(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    collector = Collector(database=db_path)
    capture._invalid_log = LogLimiter()
    with caplog.at_level(logging.WARNING, logger="hauswacht.collector.capture"):
        assert capture_exception(42) is None
    (record,) = caplog.records
    assert record.getMessage().startswith(
        "Hauswacht dropped an error event: capture_exception() takes an exception, got int"
    )
    assert collector.queue.dropped == 1


@pytest.mark.parametrize(
    ("call", "error", "text"),
    [
        (lambda: measure(5), TypeError, "metric name must be a non-empty str"),
        (lambda: measure(""), ValueError, "metric name must be a non-empty str"),
        (lambda: measure("m", unit="min"), ValueError, "unit must be one of"),
        (lambda: measure("m", tags=["a"]), TypeError, "tags must be a mapping"),
        (lambda: measure("m", tags={1: "a"}), TypeError, "tag names must be str, got int"),
    ],
)
def test_measure_bad_arguments_raise_at_creation(call, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        call()


def test_capture_exception_stores_release_and_environment(db_path: Path) -> None:
    collector = Collector(database=db_path, release="tours@2.4.1", environment="staging")
    try:
        raise KeyError("depot")
    except KeyError:
        assert capture_exception() == ""

    async def scenario() -> None:
        await collector.start()
        await collector.stop()

    asyncio.run(scenario())
    (error,) = db_rows(db_path, "SELECT data FROM errors")
    data = json.loads(error["data"])
    assert data["release"] == "tours@2.4.1"
    assert data["environment"] == "staging"
