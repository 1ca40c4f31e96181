"""One batch, one transaction: a failed, stalled or cancelled step commits nothing of the batch.

These tests make BEGIN or one statement of a batch fail or stall on a real
SQLite file and check that nothing of the batch commits and that the batch is
retried. A statement that ran after a failed BEGIN, or after an error that
made SQLite end the transaction, would run in autocommit mode and commit on
its own. The ROLLBACK case and the failed BEGIN test detect that.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from hauswacht.writer.events import RequestEvent
from hauswacht.writer.queue import EventQueue
from hauswacht.writer.writer import Writer

BASE_TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z, the start of an hour
EVENTS = 300


def request(i: int) -> RequestEvent:
    return RequestEvent(
        BASE_TS + i, "GET", "/tours/{tour_id}", f"/tours/{i}", 200, 5.0, None, 10, None, None, None
    )


def query(db_path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db_path, timeout=10)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def stored_counts(db_path: Path) -> dict[str, Any]:
    """Return the raw rows, the counts in both request rollups and the drop count rows."""
    (rollups,) = query(db_path, "SELECT coalesce(sum(count), 0) FROM request_rollups")[0]
    (hourly,) = query(db_path, "SELECT coalesce(sum(count), 0) FROM request_hourly")[0]
    return {
        "requests": query(db_path, "SELECT count(*), count(DISTINCT path) FROM requests")[0],
        "request_rollups": rollups,
        "request_hourly": hourly,
        "dropped": query(db_path, "SELECT count(*) FROM dropped_rollups")[0][0],
    }


NOTHING_STORED = {"requests": (0, 0), "request_rollups": 0, "request_hourly": 0, "dropped": 0}
ALL_STORED_ONCE = {
    "requests": (EVENTS, EVENTS),
    "request_rollups": EVENTS,
    "request_hourly": EVENTS,
    "dropped": 0,
}


def new_writer(db_path: Path, queue: EventQueue, **settings: Any) -> Writer:
    settings.setdefault("batch_size", 1000)
    settings.setdefault("flush_interval", 60.0)
    settings.setdefault("health_interval", 3600.0)
    return Writer(db_path, queue, **settings)


def fill_queue(count: int = EVENTS) -> EventQueue:
    # wake_at is capped at maxsize: with room left, the flush task stays asleep
    # and only the test's own flush() writes.
    queue = EventQueue(maxsize=2 * count, wake_at=10**9)
    for i in range(count):
        assert queue.put(request(i))
    return queue


@pytest.mark.parametrize("action", ["ABORT", "ROLLBACK"])
def test_failed_middle_statement_commits_nothing(db_path: Path, action: str) -> None:
    # request_rollups is the second of the batch's three statements. RAISE(ROLLBACK)
    # also ends the transaction, as SQLite does by itself on some errors (SQLITE_FULL
    # may), so a request_hourly statement run after it would be in autocommit mode.
    async def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        queue = fill_queue()
        writer = new_writer(db_path, queue)
        await writer.start()
        conn = sqlite3.connect(db_path, timeout=10)
        conn.execute(
            "CREATE TRIGGER block_rollups BEFORE INSERT ON request_rollups "
            f"BEGIN SELECT RAISE({action}, 'rollup insert blocked by test'); END"
        )
        conn.commit()

        await writer.flush()
        failed = writer.health()
        stored_after_failure = stored_counts(db_path)

        conn.execute("DROP TRIGGER block_rollups")
        conn.commit()
        conn.close()
        await writer.flush()
        await writer.stop()
        return failed, stored_after_failure, writer.health()

    failed, stored_after_failure, final = asyncio.run(scenario())

    assert stored_after_failure == NOTHING_STORED
    assert failed["failures"] == 1
    assert failed["pending"] == EVENTS
    # The failure reported is the first in statement order.
    assert "rollup insert blocked by test" in failed["last_error"]
    assert stored_counts(db_path) == ALL_STORED_ONCE
    assert final["events_written"] == EVENTS
    assert final["dropped_total"] == 0


def test_failed_begin_starts_no_statement(db_path: Path) -> None:
    # Another connection holds the write lock, so BEGIN IMMEDIATE fails at once
    # (busy timeout 0). The trace callback releases the lock as soon as any
    # INSERT of the writer starts, so an INSERT run after the failed BEGIN would
    # commit on its own in autocommit mode. On the retry it releases the lock
    # when BEGIN starts.
    blocker = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    inserts_while_locked = 0
    begins = 0

    def release() -> None:
        if blocker.in_transaction:
            blocker.execute("COMMIT")

    def on_statement(sql: str) -> None:
        # Runs on aiosqlite's thread when a statement of the writer starts.
        nonlocal inserts_while_locked, begins
        first_word = sql.split(None, 1)[0].upper()
        if first_word == "INSERT":
            if blocker.in_transaction:
                inserts_while_locked += 1
            release()
        elif first_word == "BEGIN":
            begins += 1
            if begins == 2:
                release()

    async def scenario() -> dict[str, Any]:
        writer = new_writer(db_path, fill_queue(), busy_timeout_ms=0)
        await writer.start()
        blocker.execute("BEGIN IMMEDIATE")
        assert writer._db is not None
        await writer._db.set_trace_callback(on_statement)

        await writer.flush()
        health = writer.health()
        await writer.stop()
        return health

    try:
        health = asyncio.run(scenario())
    finally:
        blocker.close()

    assert inserts_while_locked == 0
    assert begins == 2
    assert health["retries"] == 1
    assert health["failures"] == 0
    assert stored_counts(db_path) == ALL_STORED_ONCE


def test_cancel_mid_batch_rolls_back(db_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The raw INSERT stalls on aiosqlite's thread. Cancelling the batch then (as
    # asyncio.run() does at exit) must roll the whole batch back and keep its
    # events for the final flush.
    caplog.set_level(logging.INFO, logger="hauswacht.writer")
    insert_started = threading.Event()
    resume_insert = threading.Event()

    def on_statement(sql: str) -> None:
        if sql.startswith("INSERT INTO requests") and not insert_started.is_set():
            insert_started.set()
            resume_insert.wait(10)

    async def scenario() -> tuple[bool, bool, int]:
        writer = new_writer(db_path, fill_queue())
        await writer.start()
        assert writer._db is not None
        await writer._db.set_trace_callback(on_statement)

        flush = asyncio.create_task(writer.flush())
        started = await asyncio.to_thread(insert_started.wait, 10)
        in_flight = writer._in_flight
        assert in_flight is not None
        in_flight.cancel()
        resume_insert.set()
        with pytest.raises(asyncio.CancelledError):
            await flush
        pending = writer.health()["pending"]

        await writer._db.set_trace_callback(None)
        await writer.stop()
        return started, in_flight.cancelled(), pending

    started, cancelled, pending = asyncio.run(scenario())

    assert started
    assert cancelled
    assert pending == EVENTS
    assert any("rolled back and kept" in r.getMessage() for r in caplog.records)
    assert stored_counts(db_path) == ALL_STORED_ONCE


def test_background_checkpoints_keep_wal_small(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hauswacht.writer.writer as writer_module

    monkeypatch.setattr(writer_module, "CHECKPOINT_INTERVAL", 0.0)  # after every batch

    async def scenario() -> dict[str, Any]:
        queue = EventQueue(maxsize=100_000, wake_at=100_000)
        writer = Writer(db_path, queue, batch_size=500)
        await writer.start()
        for round_number in range(40):
            for i in range(500):
                queue.put(request(round_number * 500 + i))
            await writer.flush()
            await asyncio.sleep(0.01)  # time for the checkpoint thread
        health = writer.health()
        wal_bytes = os.stat(f"{db_path}-wal").st_size
        await writer.stop()
        return {**health, "wal_bytes": wal_bytes}

    result = asyncio.run(scenario())
    database_bytes = db_path.stat().st_size

    assert result["events_written"] == 20_000
    assert result["checkpoints"] >= 20
    # Without the background checkpoints the WAL would hold every page written
    # (the writer's own connection checkpoints only at WAL_SAFETY_PAGES).
    assert result["wal_bytes"] < database_bytes / 4
    assert query(db_path, "SELECT count(*) FROM requests") == [(20_000,)]
    assert query(db_path, "PRAGMA integrity_check") == [("ok",)]
