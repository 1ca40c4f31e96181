"""The batched writer: drains an EventQueue into the events database.

Contract
- One Writer per process and file owns one aiosqlite connection (WAL,
  synchronous=NORMAL, busy_timeout) and one flush task on the event loop that
  called `start()`. Producers only call `EventQueue.put()`; nothing here
  raises into them.
- A flush writes batches of at most `batch_size` events. Each batch is one
  transaction: BEGIN IMMEDIATE, one `executemany` per non-empty statement of
  `aggregate.STATEMENT_ORDER` (raw rows, then hourly rollup deltas, error
  group upserts and drop counts), COMMIT. So the rollups always match the raw
  rows, and a batch costs at most len(STATEMENT_ORDER) + 2 aiosqlite calls
  whatever its size.
- The flush task runs when the queue reaches `batch_size` events (the queue
  wakes it) or `flush_interval` seconds have passed, and writes what was
  queued at that moment.
- Drop counts (queue full, write failed) are taken from the queue at each
  batch and stored with it in dropped_rollups, under the hour they were
  taken. Counts not yet stored stay in memory until a transaction commits.
- Every event given to the queue is stored once or counted once as dropped.
  The one exception: when shutdown gives up (see below) neither the events
  still in memory nor the drop counts can be stored. Both are counted in
  the queue's `dropped` total and logged.
- About once per `compact_interval` (60 s), after a flush that did not fail, the
  flush task compacts finished hours (compaction.py): each hour in a
  transaction of its own, on a separate connection in a worker thread.
- WAL checkpoints run off the commit path: after a committed batch, at most
  every CHECKPOINT_INTERVAL, a worker thread runs a PASSIVE checkpoint on a
  connection of its own. The writer's connection checkpoints by itself only
  at WAL_SAFETY_PAGES, a fallback for when the background checkpoints fail.
  Like any checkpoint, neither can reset the WAL while another connection
  keeps an older read snapshot open.

Failures
- "database is locked" (SQLITE_BUSY after busy_timeout): the batch is kept
  and retried after 50 ms, doubling up to 2 s, while newer events wait in the
  queue (where a full queue drops and counts them).
- Other SQLite errors (disk full, I/O, read-only file): logged, at most one
  warning per error kind per minute with the count of repeats. The batch and
  everything queued move to an in-memory retry list of at most `max_pending`
  events (past that the oldest are dropped as 'write_failed'), and the write
  is retried each `flush_interval`.
- Events SQLite rejects for their field types are dropped as 'write_failed'
  and logged; the rest of their batch is written.

Shutdown
- `stop()`, or cancellation of the flush task (asyncio.run() cancels leftover
  tasks, which is how an app without lifespan events stops), writes
  everything left. It waits out a held lock for up to SHUTDOWN_GRACE seconds
  (at least twice the busy timeout) and retries other errors up to
  SHUTDOWN_ATTEMPTS times. Then it closes the aiosqlite connection, whose
  worker thread is not a daemon thread and would otherwise keep the process
  alive.

Health
- `health()` returns counters in memory. At most once per `health_interval`,
  and only in a flush that writes something, the writer also stores its own
  health as metric events named hauswacht.writer.*.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import math
import os
import sqlite3
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiosqlite

from hauswacht.writer import compaction, histogram
from hauswacht.writer.aggregate import (
    BUCKET_MERGE_FUNCTION,
    HOUR_MS,
    BatchRows,
    aggregate_batch,
    invalid_reason,
)
from hauswacht.writer.events import Event, MetricEvent
from hauswacht.writer.queue import DROP_WRITE_FAILED, EventQueue
from hauswacht.writer.schema import PRAGMAS, DatabaseError, prepare_database

logger = logging.getLogger(__name__)

BACKOFF_FIRST = 0.05  # seconds before the first retry of a locked batch
BACKOFF_MAX = 2.0  # seconds; the retry delay stops doubling here
SHUTDOWN_GRACE = 10.0  # seconds a final drain waits out a locked database (at least)
SHUTDOWN_ATTEMPTS = 3  # final-drain tries after errors other than a lock
SHUTDOWN_RETRY_DELAY = 0.2  # seconds between those tries
WARNING_PERIOD = 60.0  # seconds between two warnings of the same kind
CHECKPOINT_INTERVAL = 0.5  # seconds between two background WAL checkpoints
# The writer's own connection checkpoints only when the WAL reaches this many
# pages (about 400 MiB at 4 KiB pages), a fallback for when the background
# checkpoints fail.
WAL_SAFETY_PAGES = 100_000

HEALTH_METRICS = (
    "hauswacht.writer.queue_depth",
    "hauswacht.writer.batch_size",
    "hauswacht.writer.flush_ms",
    "hauswacht.writer.retries",
    "hauswacht.writer.dropped",
)

# Extended result codes keep the primary code in the low byte.
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6

# Errors caused by invalid rows (wrong types, integers out of range), which a retry cannot fix.
_DATA_ERRORS = (
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    sqlite3.DataError,
    OverflowError,
)


class _Outcome(enum.Enum):
    EMPTY = "nothing to write"
    WRITTEN = "written"
    BUSY = "database locked"
    FAILED = "write failed"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _backoff_delays() -> Iterator[float]:
    delay = BACKOFF_FIRST
    while True:
        yield delay
        delay = min(delay * 2, BACKOFF_MAX)


def _is_busy(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def _error_kind(exc: BaseException) -> str:
    return getattr(exc, "sqlite_errorname", None) or type(exc).__name__


class _WarningLimiter:
    """Logger wrapper that logs at most one warning per kind and period and counts the rest."""

    def __init__(self, period: float) -> None:
        self._period = period
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self._period:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            logger.debug(message, *args)
            return
        self._last[kind] = now
        suppressed = self._suppressed.pop(kind, 0)
        if suppressed:
            message += " (%d similar warnings in the last %.0f s not logged)"
            args = (*args, suppressed, now - last)
        logger.warning(message, *args)


class Writer:
    """Writes the events of one EventQueue into one events database file."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        queue: EventQueue,
        *,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        busy_timeout_ms: int = 5000,
        max_pending: int = 10_000,
        max_db_mb: float | None = None,
        health_interval: float = 10.0,
        compact_interval: float = compaction.COMPACT_INTERVAL,
    ) -> None:
        """Configure a writer. Nothing is opened until `start()`.

        Raises ValueError naming the setting when a value is out of range.
        """
        _check_setting("batch_size", batch_size, int, minimum=1)
        _check_setting("flush_interval", flush_interval, float, above=0.0)
        _check_setting("busy_timeout_ms", busy_timeout_ms, int, minimum=0)
        _check_setting("max_pending", max_pending, int, minimum=0)
        if max_db_mb is not None:
            _check_setting("max_db_mb", max_db_mb, float, above=0.0)
        _check_setting("health_interval", health_interval, float, above=0.0)
        _check_setting("compact_interval", compact_interval, float, above=0.0)

        self.path = Path(path)
        self.queue = queue
        self.batch_size = batch_size
        self.flush_interval = float(flush_interval)
        self.busy_timeout_ms = busy_timeout_ms
        self.max_pending = max_pending
        self.max_db_mb = max_db_mb
        self.health_interval = float(health_interval)
        self.compact_interval = float(compact_interval)
        self.shutdown_grace = max(SHUTDOWN_GRACE, 2 * busy_timeout_ms / 1000)

        self._db: aiosqlite.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._stop_requested: asyncio.Event | None = None
        self._start_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        self._in_flight: asyncio.Task[tuple[_Outcome, int]] | None = None
        self._commit_sent = False  # whether the current transaction reached COMMIT

        # Events taken from the queue whose write failed, oldest first.
        self._pending: deque[Event] = deque()
        # Drop counts taken from the queue and not yet stored, by (hour, reason).
        self._unstored_drops: dict[tuple[int, str], int] = {}
        self._warnings = _WarningLimiter(WARNING_PERIOD)

        self._batches = 0  # batch ids for the log, counted from 1
        self._flushes = 0
        self._events_written = 0
        self._retries = 0
        self._failures = 0
        self._last_flush_ms: float | None = None
        self._last_flush_at: int | None = None
        self._last_error: str | None = None
        self._failing_since: int | None = None

        self._health_due = math.inf
        self._compact_due = math.inf
        self._max_page_count: int | None = None  # the size cap, for compaction's connection
        self._checkpoint: asyncio.Future[Any] | None = None  # the running WAL checkpoint
        self._checkpoint_due = 0.0
        self._checkpoints = 0
        self._health_retries = 0
        self._health_dropped = 0

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Open the database and start the flush task on the running loop (no-op when running).

        Raises DatabaseError naming the path when the file cannot be used.
        """
        async with self._start_lock:
            if self._task is not None and not self._task.done():
                return
            # A task that ended by cancellation has already drained and closed.
            self._task = None

            await asyncio.to_thread(prepare_database, self.path)
            self._db = await self._connect()

            self._wake = asyncio.Event()
            self._stop_requested = asyncio.Event()
            self._write_lock = asyncio.Lock()
            self.queue.attach(self._wake)
            if len(self.queue) >= self.queue.wake_at:
                self._wake.set()
            self._health_due = time.monotonic() + self.health_interval
            self._compact_due = time.monotonic() + self.compact_interval
            self._health_retries = self._retries
            self._health_dropped = self.queue.dropped

            self._task = asyncio.create_task(self._run(), name=f"hauswacht writer {self.path}")
            logger.info(
                "writer started: %s (pid %d, batch_size %d, flush_interval %.3g s)",
                self.path,
                os.getpid(),
                self.batch_size,
                self.flush_interval,
            )

    async def _connect(self) -> aiosqlite.Connection:
        try:
            db = await aiosqlite.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise DatabaseError.from_sqlite(self.path, exc, "open") from exc
        try:
            for pragma in PRAGMAS:
                await db.execute(pragma)
            await db.execute(f"PRAGMA wal_autocheckpoint = {WAL_SAFETY_PAGES}")
            await db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            if self.max_db_mb is not None:
                await self._limit_size(db)
            await db.create_function(
                BUCKET_MERGE_FUNCTION, 2, histogram.merge_json, deterministic=True
            )
        except sqlite3.Error as exc:
            await db.close()
            raise DatabaseError.from_sqlite(self.path, exc, "open") from exc
        return db

    async def _limit_size(self, db: aiosqlite.Connection) -> None:
        async with db.execute("PRAGMA page_size") as cursor:
            (page_size,) = await cursor.fetchone()
        pages = max(1, int(self.max_db_mb * 1024 * 1024) // page_size)
        async with db.execute(f"PRAGMA max_page_count = {pages}") as cursor:
            (granted,) = await cursor.fetchone()
        self._max_page_count = granted
        if granted != pages:
            # SQLite never sets the cap below the current size of the file.
            logger.warning(
                "%s: max_db_mb %.3g asks for %d pages but the file already has %d; "
                "the cap is %d pages (%.3g MB)",
                self.path,
                self.max_db_mb,
                pages,
                granted,
                granted,
                granted * page_size / 1024 / 1024,
            )

    async def stop(self) -> None:
        """Write everything queued, store pending drop counts and close (no-op when stopped)."""
        task = self._task
        if task is None:
            return
        if not task.done():
            assert self._stop_requested is not None and self._wake is not None
            self._stop_requested.set()
            self._wake.set()
            await asyncio.wait({task})
        self._task = None
        if not task.cancelled() and task.exception() is not None:
            logger.error("writer task for %s failed", self.path, exc_info=task.exception())

    @property
    def running(self) -> bool:
        """True from `start()` until `stop()` or cancellation begins."""
        return (
            self._task is not None
            and not self._task.done()
            and self._stop_requested is not None
            and not self._stop_requested.is_set()
        )

    async def flush(self) -> None:
        """Write everything queued now, waiting out a locked database for up to `shutdown_grace` s.

        After another error the events stay in memory and the flush task retries them.
        """
        if self._task is None or self._db is None:
            return
        deadline = time.monotonic() + self.shutdown_grace
        delays = _backoff_delays()
        while True:
            outcome = await self._drain()
            if outcome is not _Outcome.BUSY or time.monotonic() >= deadline:
                return
            await asyncio.sleep(next(delays))

    def health(self) -> dict[str, Any]:
        """Return a snapshot of the counters: queue, retry list, drops, flushes and errors."""
        return {
            "path": str(self.path),
            "running": self.running,
            "queue_depth": len(self.queue),
            "queue_max": self.queue.maxsize,
            "pending": len(self._pending),
            "dropped_total": self.queue.dropped,
            "unstored_drops": sum(self._unstored_drops.values()),
            "flushes": self._flushes,
            "events_written": self._events_written,
            "retries": self._retries,
            "failures": self._failures,
            "checkpoints": self._checkpoints,
            "last_flush_ms": self._last_flush_ms,
            "last_flush_at": self._last_flush_at,
            "failing_since": self._failing_since,
            "last_error": self._last_error,
        }

    # -- the flush task ------------------------------------------------------------

    async def _run(self) -> None:
        assert self._wake is not None and self._stop_requested is not None
        retry_delay: float | None = None
        delays = _backoff_delays()
        try:
            while not self._stop_requested.is_set():
                if retry_delay is None:
                    await _wait(self._wake, self.flush_interval)
                else:
                    # While retrying, a full batch must not cut the delay short.
                    await _wait(self._stop_requested, retry_delay)
                if self._stop_requested.is_set():
                    break
                self.queue.clear_wake()

                try:
                    outcome = await self._drain()
                except Exception:
                    logger.exception("writer for %s: unexpected error in flush", self.path)
                    outcome = _Outcome.FAILED

                if outcome is _Outcome.BUSY:
                    retry_delay = next(delays)
                elif outcome is _Outcome.FAILED:
                    retry_delay = self.flush_interval
                else:
                    retry_delay = None
                    delays = _backoff_delays()
                    if time.monotonic() >= self._compact_due:
                        await self._compact()
        except asyncio.CancelledError:
            logger.info("writer task for %s cancelled; writing what is left", self.path)
            await self._finish()
            raise
        await self._finish()

    async def _compact(self) -> None:
        """Compact up to COMPACT_HOURS finished hours that need it, newest first.

        Each hour is one short transaction on a connection of its own in a
        worker thread, so this connection never has a compaction
        transaction open, also not when this task is cancelled. Failures are
        logged (rate-limited) and retried at the next due time; they never
        stop the writer. See compaction.py.
        """
        self._compact_due = time.monotonic() + self.compact_interval
        before_hour = _now_ms() // HOUR_MS
        started = time.perf_counter()
        compacted = 0
        try:
            for _ in range(compaction.COMPACT_HOURS):
                hour = await asyncio.to_thread(
                    compaction.compact_file,
                    self.path,
                    before_hour,
                    _now_ms(),
                    self.busy_timeout_ms,
                    self._max_page_count,
                )
                if hour is None:
                    break
                compacted += 1
        except sqlite3.Error as exc:
            self._warnings.warning(
                "compaction",
                "writer for %s: compacting finished hours failed after %d hours: %s; "
                "retrying in %.0f s",
                self.path,
                compacted,
                exc,
                self.compact_interval,
            )
            return
        if compacted:
            logger.debug(
                "writer for %s: compacted %d hours in %.1f ms",
                self.path,
                compacted,
                (time.perf_counter() - started) * 1000,
            )

    async def _finish(self) -> None:
        """Drain queue and retry list within the shutdown limits, then close the connection."""
        in_flight = self._in_flight
        if in_flight is not None:
            if not in_flight.done():
                await asyncio.wait({in_flight})
            if not in_flight.cancelled() and in_flight.exception() is not None:
                logger.error(
                    "writer for %s: batch failed unexpectedly",
                    self.path,
                    exc_info=in_flight.exception(),
                )

        deadline = time.monotonic() + self.shutdown_grace
        delays = _backoff_delays()
        attempts = 0
        try:
            while self._db is not None:
                outcome = await self._drain()
                if outcome is _Outcome.EMPTY:
                    break
                if outcome is _Outcome.WRITTEN:
                    continue
                if time.monotonic() >= deadline:
                    break
                if outcome is _Outcome.BUSY:
                    await asyncio.sleep(next(delays))
                    continue
                attempts += 1
                if attempts >= SHUTDOWN_ATTEMPTS:
                    break
                await asyncio.sleep(SHUTDOWN_RETRY_DELAY)
        except Exception:
            logger.exception("writer for %s: unexpected error in the final flush", self.path)
        finally:
            self._give_up_remaining()
            await self._close()

    def _give_up_remaining(self) -> None:
        lost = len(self._pending) + len(self.queue)
        self._pending.clear()
        self.queue.take(len(self.queue))
        self.queue.count_dropped(lost, DROP_WRITE_FAILED)
        self._collect_drops()
        drops = sum(self._unstored_drops.values())
        if lost or drops:
            logger.error(
                "writer for %s stopped without storing %d events and %d drop counts "
                "(last error: %s)",
                self.path,
                lost,
                drops,
                self._last_error,
            )
        self._unstored_drops.clear()

    def _start_checkpoint(self) -> None:
        """Start a PASSIVE WAL checkpoint in a worker thread when one is due and none runs.

        It copies committed pages from the WAL into the database file on a
        connection of its own, so no commit of this writer waits for that copy.
        """
        now = time.monotonic()
        if now < self._checkpoint_due or (self._checkpoint and not self._checkpoint.done()):
            return
        self._checkpoint_due = now + CHECKPOINT_INTERVAL
        self._checkpoint = asyncio.ensure_future(
            asyncio.to_thread(checkpoint_wal, self.path, self.busy_timeout_ms)
        )
        self._checkpoint.add_done_callback(self._checkpoint_finished)

    def _checkpoint_finished(self, checkpoint: asyncio.Future[Any]) -> None:
        if checkpoint.cancelled():
            return
        exc = checkpoint.exception()
        if exc is None:
            self._checkpoints += 1
            return
        self._warnings.warning(
            "checkpoint", "writer for %s: WAL checkpoint failed: %s", self.path, exc
        )

    async def _close(self) -> None:
        self.queue.detach()
        if self._checkpoint is not None and not self._checkpoint.done():
            await asyncio.wait({self._checkpoint})
        db, self._db = self._db, None
        if db is not None:
            try:
                await db.close()
            except Exception:
                logger.exception("writer for %s: closing the connection failed", self.path)
        logger.info(
            "writer stopped: %s (pid %d, %d events written in %d flushes, %d dropped in total)",
            self.path,
            os.getpid(),
            self._events_written,
            self._flushes,
            self.queue.dropped,
        )

    # -- batches -------------------------------------------------------------------

    async def _drain(self) -> _Outcome:
        """Write batches until all events queued or pending at the call are written or one fails."""
        remaining = len(self.queue) + len(self._pending)
        while True:
            outcome, events_taken = await self._write_next_batch()
            if outcome is not _Outcome.WRITTEN:
                return outcome
            remaining -= events_taken
            if remaining <= 0:
                return _Outcome.WRITTEN

    async def _write_next_batch(self) -> tuple[_Outcome, int]:
        # The batch runs in its own task, shielded from the caller's cancellation,
        # so a cancelled caller leaves no transaction open. `_finish` waits for it.
        async with self._write_lock:
            if self._in_flight is not None and not self._in_flight.done():
                await asyncio.wait({self._in_flight})
            self._in_flight = asyncio.ensure_future(self._write_batch())
            return await asyncio.shield(self._in_flight)

    async def _write_batch(self) -> tuple[_Outcome, int]:
        """Take one batch, write it in one transaction and account for the outcome.

        Returns the outcome and the number of events taken (written or dropped).
        """
        if self._db is None:
            return _Outcome.EMPTY, 0
        if self._pending:
            # Retry the oldest failed events first; newer ones wait in the queue.
            batch = [
                self._pending.popleft() for _ in range(min(self.batch_size, len(self._pending)))
            ]
        else:
            batch = self.queue.take(self.batch_size)

        self._collect_drops()
        if not batch and not self._unstored_drops:
            return _Outcome.EMPTY, 0
        self._batches += 1
        batch_id = self._batches

        health_events, health_marks = self._health_events(len(batch))
        rows = aggregate_batch(itertools.chain(batch, health_events))
        valid_events = batch
        if rows.rejected:
            self._reject(rows.rejected)
            self._collect_drops()
            rejected_ids = {id(event) for event, _ in rows.rejected}
            valid_events = [event for event in batch if id(event) not in rejected_ids]
        drops = dict(self._unstored_drops)
        rows.dropped_rollups = [(hour, reason, count) for (hour, reason), count in drops.items()]

        started = time.perf_counter()
        try:
            await self._transaction(rows)
        except asyncio.CancelledError:
            # asyncio.run() cancels every task at exit, this one included.
            if await self._settle_cancelled_transaction():
                self._written(batch_id, len(batch), rows, drops, health_events, health_marks, 0.0)
                settled = "committed"
            else:
                self._pending.extendleft(reversed(valid_events))
                settled = "rolled back and kept for the final flush"
            logger.info(
                "writer for %s: batch %d cancelled mid-write, %s", self.path, batch_id, settled
            )
            raise
        except (sqlite3.Error, ValueError, OverflowError) as exc:
            outcome, events_taken = self._failed(batch_id, valid_events, exc)
            return outcome, events_taken + len(batch) - len(valid_events)

        elapsed_ms = (time.perf_counter() - started) * 1000
        self._written(batch_id, len(batch), rows, drops, health_events, health_marks, elapsed_ms)
        self._start_checkpoint()
        return _Outcome.WRITTEN, len(batch)

    def _written(
        self,
        batch_id: int,
        batch_size: int,
        rows: BatchRows,
        drops: dict[tuple[int, str], int],
        health_events: list[MetricEvent],
        health_marks: tuple[int, int],
        elapsed_ms: float,
    ) -> None:
        """Account for a committed batch."""
        for key, count in drops.items():
            left = self._unstored_drops.get(key, 0) - count
            if left > 0:
                self._unstored_drops[key] = left
            else:
                self._unstored_drops.pop(key, None)
        self._flushes += 1
        self._events_written += rows.event_count - len(health_events)
        self._last_flush_ms = elapsed_ms
        self._last_flush_at = _now_ms()
        if health_events:
            self._health_due = time.monotonic() + self.health_interval
            self._health_retries, self._health_dropped = health_marks
        if self._failing_since is not None:
            logger.info(
                "writer for %s: batch %d (%d events) written; writes work again after %s",
                self.path,
                batch_id,
                batch_size,
                self._last_error,
            )
            self._failing_since = None

    async def _transaction(self, rows: BatchRows) -> None:
        """Write `rows` in one transaction, with ROLLBACK on error.

        On cancellation the open transaction is left to `_settle_cancelled_transaction`.
        """
        db = self._db
        if db is None:
            raise ValueError("connection closed")
        self._commit_sent = False
        await db.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in rows.statements():
                await db.executemany(sql, params)
            self._commit_sent = True
            await db.execute("COMMIT")
        except asyncio.CancelledError:
            raise
        except BaseException:
            await self._rollback()
            raise

    async def _settle_cancelled_transaction(self) -> bool:
        """Finish a transaction whose aiosqlite call was cancelled and return True if it committed.

        The cancelled call still runs on the database thread, and calls run in
        order there, so the next call returns after it has finished.
        """
        db = self._db
        if db is None:
            return False
        with contextlib.suppress(sqlite3.Error):
            await db.execute("SELECT 1")
        if db.in_transaction:
            await self._rollback()
            return False
        # NOTE: a COMMIT that failed and rolled back by itself looks committed
        # here, so its batch would be lost uncounted. This needs a cancellation
        # during a failing COMMIT.
        return self._commit_sent

    async def _rollback(self) -> None:
        if self._db is None:
            return
        # SQLite rolls some errors back by itself (SQLITE_FULL may), and then
        # there is no transaction left to end.
        with contextlib.suppress(sqlite3.Error):
            await self._db.execute("ROLLBACK")

    def _failed(
        self, batch_id: int, batch: list[Event], exc: BaseException
    ) -> tuple[_Outcome, int]:
        """Account for a batch whose transaction failed and return the outcome and events taken."""
        self._last_error = f"{_error_kind(exc)}: {exc}"
        if self._failing_since is None:
            self._failing_since = _now_ms()

        if _is_busy(exc):
            self._retries += 1
            self._pending.extendleft(reversed(batch))
            self._warnings.warning(
                "busy",
                "writer for %s: batch %d (%d events) not written, database locked for more "
                "than %d ms; retrying",
                self.path,
                batch_id,
                len(batch),
                self.busy_timeout_ms,
            )
            return _Outcome.BUSY, 0

        if isinstance(exc, _DATA_ERRORS):
            valid, invalid = _split_invalid(batch)
            if invalid:
                self._reject(invalid)
                self._pending.extendleft(reversed(valid))
                return _Outcome.WRITTEN, len(invalid)

        self._failures += 1
        self._pending.extendleft(reversed(batch))
        # Move what is queued into the retry list as well, so producers keep
        # finding room in the queue and the oldest events are the ones dropped.
        self._pending.extend(self.queue.take(len(self.queue)))
        excess = len(self._pending) - self.max_pending
        if excess > 0:
            for _ in range(excess):
                self._pending.popleft()
            self.queue.count_dropped(excess, DROP_WRITE_FAILED)
        self._warnings.warning(
            _error_kind(exc),
            "writer for %s: batch %d (%d events) not written: %s; keeping %d events "
            "for retry in %.3g s, %d dropped",
            self.path,
            batch_id,
            len(batch),
            exc,
            len(self._pending),
            self.flush_interval,
            max(excess, 0),
        )
        return _Outcome.FAILED, 0

    def _reject(self, rejected: list[tuple[Any, str]]) -> None:
        self.queue.count_dropped(len(rejected), DROP_WRITE_FAILED)
        for event, reason in rejected[:3]:
            self._warnings.warning(
                "invalid event",
                "writer for %s: dropped an invalid event (%s): %.200r",
                self.path,
                reason,
                event,
            )

    def _collect_drops(self) -> None:
        counts = self.queue.take_dropped_counts()
        if not counts:
            return
        hour = _now_ms() // HOUR_MS
        for reason, count in counts.items():
            key = (hour, reason)
            self._unstored_drops[key] = self._unstored_drops.get(key, 0) + count

    def _health_events(self, batch_size: int) -> tuple[list[MetricEvent], tuple[int, int]]:
        """Return the health metric events due with this batch (or none) and the new counter marks.

        Retries and drops are reported as the change since the last health record.
        """
        marks = (self._retries, self.queue.dropped)
        if time.monotonic() < self._health_due:
            return [], marks
        ts = _now_ms()
        events = [
            MetricEvent(ts, "hauswacht.writer.queue_depth", float(len(self.queue)), "events", "{}"),
            MetricEvent(ts, "hauswacht.writer.batch_size", float(batch_size), "events", "{}"),
        ]
        if self._last_flush_ms is not None:
            events.append(
                MetricEvent(ts, "hauswacht.writer.flush_ms", self._last_flush_ms, "ms", "{}")
            )
        retries = float(marks[0] - self._health_retries)
        dropped = float(marks[1] - self._health_dropped)
        events.append(MetricEvent(ts, "hauswacht.writer.retries", retries, "retries", "{}"))
        events.append(MetricEvent(ts, "hauswacht.writer.dropped", dropped, "events", "{}"))
        return events, marks


def checkpoint_wal(path: Path, busy_timeout_ms: int) -> tuple[int, int, int]:
    """Run a PASSIVE checkpoint of the WAL of `path`; return SQLite's (busy, log, checkpointed).

    PASSIVE copies what it can without waiting for readers or writers, and
    writers may commit while it runs.
    """
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000)
    try:
        busy, log, checkpointed = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return busy, log, checkpointed
    finally:
        conn.close()


def _split_invalid(batch: list[Event]) -> tuple[list[Event], list[tuple[Any, str]]]:
    valid: list[Event] = []
    invalid: list[tuple[Any, str]] = []
    for event in batch:
        reason = invalid_reason(event)
        if reason is None:
            valid.append(event)
        else:
            invalid.append((event, reason))
    return valid, invalid


async def _wait(event: asyncio.Event, seconds: float) -> None:
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        pass


def _check_setting(
    name: str,
    value: Any,
    kind: type,
    *,
    minimum: float | None = None,
    above: float | None = None,
) -> None:
    numeric = (int, float) if kind is float else (int,)
    if isinstance(value, bool) or not isinstance(value, numeric):
        expected = "a number" if kind is float else "an integer"
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value!r}")
    if above is not None and value <= above:
        raise ValueError(f"{name} must be greater than {above}, got {value!r}")
