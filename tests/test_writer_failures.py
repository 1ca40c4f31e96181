"""The writer under failure: overload, a held lock, a full disk, kill -9, invalid events."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hauswacht.writer.events import MetricEvent, RequestEvent
from hauswacht.writer.queue import EventQueue
from hauswacht.writer.writer import Writer

HELPERS = Path(__file__).parent / "helpers"
BASE_TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def request(ts: int, path: str = "/tours/1", user_agent: str | None = None) -> RequestEvent:
    return RequestEvent(
        ts, "GET", "/tours/{tour_id}", path, 200, 5.0, None, 10, None, user_agent, None
    )


def query(db_path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db_path, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def stored_and_dropped(db_path: Path) -> tuple[int, dict[str, int]]:
    """Return the number of requests in the rollups and the stored drop counts by reason."""
    (stored,) = query(db_path, "SELECT coalesce(sum(count), 0) FROM request_rollups")[0]
    dropped = dict(query(db_path, "SELECT reason, sum(count) FROM dropped_rollups GROUP BY 1"))
    return stored, dropped


def test_overload_burst_counts_every_drop(db_path: Path) -> None:
    threads, per_thread = 4, 1250
    accepted = [0] * threads

    def produce(index: int) -> None:
        for i in range(per_thread):
            if queue.put(request(BASE_TS + i, f"/tours/{index}-{i}")):
                accepted[index] += 1

    queue = EventQueue(maxsize=10, wake_at=5)

    async def scenario() -> None:
        writer = Writer(db_path, queue, batch_size=5, flush_interval=0.01, health_interval=3600)
        await writer.start()
        await asyncio.gather(*(asyncio.to_thread(produce, k) for k in range(threads)))
        await writer.stop()

    asyncio.run(scenario())

    stored, dropped = stored_and_dropped(db_path)
    sent = threads * per_thread
    assert stored + sum(dropped.values()) == sent
    assert query(db_path, "SELECT count(*) FROM requests") == [(stored,)]
    assert stored == sum(accepted)
    assert set(dropped) == {"queue_full"}
    assert dropped["queue_full"] == queue.dropped
    assert dropped["queue_full"] > 0


def test_lock_held_by_other_process(db_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hauswacht.writer")
    queue = EventQueue(maxsize=10_000, wake_at=100)
    sent = 0

    async def scenario() -> dict[str, Any]:
        nonlocal sent
        writer = Writer(
            db_path,
            queue,
            batch_size=100,
            flush_interval=0.05,
            busy_timeout_ms=500,
            health_interval=3600,
        )
        await writer.start()
        holder = await asyncio.create_subprocess_exec(
            sys.executable,
            str(HELPERS / "writer_lock_holder.py"),
            str(db_path),
            "3",
            stdout=asyncio.subprocess.PIPE,
        )
        assert holder.stdout is not None
        assert await holder.stdout.readline() == b"locked\n"

        # Produce through the lock and a little after it.
        for round_number in range(40):
            for i in range(50):
                assert queue.put(request(BASE_TS + sent, f"/tours/{round_number}-{i}"))
                sent += 1
            await asyncio.sleep(0.1)

        assert await holder.stdout.readline() == b"released\n"
        assert await holder.wait() == 0
        await writer.stop()
        return writer.health()

    health = asyncio.run(scenario())

    assert query(db_path, "SELECT count(*) FROM requests") == [(sent,)]
    assert stored_and_dropped(db_path) == (sent, {})
    assert health["retries"] > 0
    assert health["dropped_total"] == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("database locked" in r.getMessage() for r in warnings)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("writes work again" in r.getMessage() for r in caplog.records)


def test_disk_full_counts_drops_and_resumes(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hauswacht.writer")
    queue = EventQueue(maxsize=40, wake_at=10**9)
    user_agent = "Mozilla/5.0 " + "x" * 1000  # about four rows fill a 4 KiB page
    sent = 0

    def put_round(count: int) -> None:
        nonlocal sent
        for _ in range(count):
            queue.put(request(BASE_TS + sent, f"/tours/{sent}", user_agent))
            sent += 1

    async def scenario() -> None:
        writer = Writer(
            db_path,
            queue,
            batch_size=20,
            flush_interval=60.0,
            max_pending=50,
            max_db_mb=0.25,
            health_interval=3600,
        )
        await writer.start()

        # Fill the 256 KiB cap; writes then fail with SQLITE_FULL.
        for _ in range(40):
            put_round(20)
            await writer.flush()
        full = writer.health()
        assert full["failures"] > 0
        assert "full" in full["last_error"]
        assert full["pending"] == 50
        assert full["unstored_drops"] > 0

        # Another process frees space by deleting raw rows (retention would).
        conn = sqlite3.connect(db_path, timeout=10)
        with conn:
            conn.execute("DELETE FROM requests")
        conn.close()

        await writer.flush()
        resumed = writer.health()
        assert resumed["pending"] == 0
        assert resumed["unstored_drops"] == 0

        put_round(20)
        await writer.stop()

    asyncio.run(scenario())

    stored, dropped = stored_and_dropped(db_path)
    assert stored + sum(dropped.values()) == sent
    assert dropped["write_failed"] > 0
    assert query(db_path, "SELECT count(*) FROM requests")[0][0] == 50 + 20
    assert query(db_path, "PRAGMA integrity_check") == [("ok",)]
    full_warnings = [r for r in caplog.records if "full" in r.getMessage()]
    # One warning per minute and error kind, however many flushes failed.
    assert len([r for r in full_warnings if r.levelno == logging.WARNING]) == 1


def test_kill_9_keeps_committed_events(db_path: Path) -> None:
    flush_interval = 0.1
    margin = 0.5  # seconds for the commit on a busy machine
    worker = subprocess.Popen(
        [sys.executable, str(HELPERS / "writer_kill_target.py"), str(db_path), str(flush_interval)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    progress: list[tuple[int, int]] = []
    started = threading.Event()

    def read_progress() -> None:
        assert worker.stdout is not None
        for line in worker.stdout:
            if line.strip() == "started":
                started.set()
                continue
            last_id, ts = line.split()
            progress.append((int(last_id), int(ts)))

    reader = threading.Thread(target=read_progress)
    reader.start()
    assert started.wait(timeout=30), "the writer subprocess did not start"
    time.sleep(1.5)
    killed_at = time.time_ns() // 1_000_000
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    reader.join(timeout=10)
    assert worker.returncode == -signal.SIGKILL

    assert query(db_path, "PRAGMA integrity_check") == [("ok",)]
    stored = {
        int(path.rsplit("/", 1)[1]) for (path,) in query(db_path, "SELECT path FROM requests")
    }
    cutoff = killed_at - (flush_interval + margin) * 1000
    must_be_stored = max((last_id for last_id, ts in progress if ts < cutoff), default=-1)
    assert must_be_stored > 1000
    missing = set(range(must_be_stored + 1)) - stored
    assert not missing, f"{len(missing)} events queued before the cutoff are missing"
    # Rollups were committed in the same transactions as the raw rows.
    assert query(db_path, "SELECT sum(count) FROM request_rollups") == [(len(stored),)]


def test_invalid_events_dropped_without_blocking_batch(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hauswacht.writer")
    good = [request(BASE_TS + i, f"/tours/{i}") for i in range(10)]
    bad: list[Any] = [
        RequestEvent(float(BASE_TS), "GET", "/x", "/x", 200, 1.0, None, 0, None, None, None),
        RequestEvent(BASE_TS, "GET", "/x", "/x", "200", 1.0, None, 0, None, None, None),
        RequestEvent(BASE_TS, "GET", "/x", "/x", 200, float("nan"), None, 0, None, None, None),
        # These pass aggregation; SQLite rejects them on insert.
        RequestEvent(BASE_TS, "GET", "/x", "/x", 200, 1.0, None, 0, b"10.0.0.1", None, None),
        RequestEvent(BASE_TS, "GET", "/x", "/x", 200, 1.0, None, 2**70, None, None, None),
        MetricEvent(BASE_TS, "m", "fast", None, "{}"),
        "not an event",
    ]

    async def scenario() -> None:
        queue = EventQueue(maxsize=100, wake_at=100)
        writer = Writer(db_path, queue, batch_size=100, flush_interval=60, health_interval=3600)
        await writer.start()
        for event in [*good[:5], *bad, *good[5:]]:
            queue.put(event)
        await writer.flush()
        assert writer.health()["pending"] == 0
        await writer.stop()

    asyncio.run(scenario())

    paths = [row[0] for row in query(db_path, "SELECT path FROM requests ORDER BY ts")]
    assert paths == [f"/tours/{i}" for i in range(10)]
    assert stored_and_dropped(db_path) == (10, {"write_failed": len(bad)})
    assert any("invalid event" in r.getMessage() for r in caplog.records)


PREPARE_SCRIPT = """
import sys, time
from pathlib import Path
from hauswacht.writer.schema import prepare_database
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
prepare_database(sys.argv[1])
"""


def test_processes_prepare_new_file_at_once(tmp_path: Path) -> None:
    # Several workers starting on one new file all switch it to WAL at once.
    for attempt in range(5):
        db = tmp_path / f"events{attempt}.db"
        go_file = tmp_path / f"go{attempt}"
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", PREPARE_SCRIPT, str(db), str(go_file)],
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        time.sleep(0.3)
        go_file.touch()
        for worker in workers:
            _, stderr = worker.communicate(timeout=30)
            assert worker.returncode == 0, stderr
