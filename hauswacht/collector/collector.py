"""The collector of one process: its event queue, its writer, and the active collector.

A `Collector` owns one bounded `EventQueue` (created with the collector, so
events can be queued before the writer runs) and one `Writer` (created by
`start()` on the running event loop). `start()` is idempotent and safe to
await from many tasks at once. `stop()` drains the queue into the database
and closes the writer. It is idempotent too, and a stopped collector does not
start again.

Drops are logged, rate-limited to one line per DROP_LOG_PERIOD seconds with
the count since the last line. A full queue gives a warning. Drops because
the writer could not start give an error naming the database path and the
reason. After a failed `start()` every event is
dropped and counted at once, since nothing would ever drain the queue.

The active collector is the one that `capture_exception()`, `record_metric()`
and `measure()` feed. A collector becomes active when it is created and again
when it starts, so the most recently created or started one wins. It stops
being active when it stops. Reading and replacing it is one attribute access,
so producers on any thread see either the old or the new collector.

Use it directly where there is no ASGI app to wrap (a worker, a script):

    async with Collector(database="events.db"):
        record_metric("jobs.done", 1)
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import signal
import threading
import time
from typing import Any

from hauswacht.collector.settings import Settings
from hauswacht.writer.events import Event
from hauswacht.writer.queue import DROP_WRITE_FAILED, EventQueue
from hauswacht.writer.schema import DatabaseError
from hauswacht.writer.writer import Writer

logger = logging.getLogger(__name__)

_active: Collector | None = None

DROP_INVALID = "invalid"  # drop reason for events built from invalid arguments
DROP_LOG_PERIOD = 60.0  # seconds between two log lines about the same kind of drop


class LogLimiter:
    """Count repeated events and log at most one line per `period` seconds, with the count.

    Safe to call from any thread; the lock is only taken on this slow path.
    """

    def __init__(self, period: float = DROP_LOG_PERIOD) -> None:
        self.period = period
        self._lock = threading.Lock()
        self._last: float | None = None
        self._count = 0

    def hit(self, count: int = 1) -> int:
        """Count `count` occurrences; return how many to log now, or 0 within the period."""
        now = time.monotonic()
        with self._lock:
            self._count += count
            if self._last is not None and now - self._last < self.period:
                return 0
            self._last = now
            count, self._count = self._count, 0
        return count


def active_collector() -> Collector | None:
    """Return the collector that the capture functions feed, or None."""
    return _active


class Collector:
    def __init__(self, settings: Settings | None = None, **options: Any) -> None:
        """Create a collector from `settings`, or from keyword options and `HAUSWACHT_*` variables.

        Raises SettingsError for an unknown option or a bad value.
        """
        if settings is None:
            settings = Settings.from_options(options)
        elif options:
            raise TypeError("pass either a Settings object or keyword options, not both")
        self.settings = settings
        self.queue = EventQueue(settings.queue_size, wake_at=settings.batch_size)
        self.writer: Writer | None = None
        # ready: start() finished, successfully or not, so requests stop trying it.
        self.ready = False
        self.start_error: DatabaseError | None = None
        self._start_lock: asyncio.Lock | None = None
        self._queue_full_log = LogLimiter()
        self._start_failed_log = LogLimiter()
        self.activate()

    def activate(self) -> None:
        """Make this the collector that capture_exception() and record_metric() feed."""
        global _active
        _active = self

    def put(self, event: Event) -> bool:
        """Queue `event` without blocking; return False when it was dropped (and counted)."""
        if self.start_error is not None:
            self.queue.count_dropped(1, DROP_WRITE_FAILED)
            self._log_start_failed_drops()
            return False
        if self.queue.put(event):
            return True
        count = self._queue_full_log.hit()
        if count:
            logger.warning(
                "Hauswacht event queue is full (queue_size=%d): %d events dropped since the "
                "last warning; raise queue_size or lower flush_interval if this repeats",
                self.queue.maxsize,
                count,
            )
        return False

    def count_invalid(self) -> None:
        """Count one event dropped because the application passed invalid arguments."""
        self.queue.count_dropped(1, DROP_INVALID)

    def _log_start_failed_drops(self, count: int = 1) -> None:
        reported = self._start_failed_log.hit(count)
        if reported:
            reason = str(self.start_error)
            path = str(self.settings.database)
            if path not in reason:
                reason = f"{path}: {reason}"
            logger.error(
                "Hauswacht dropped %d events since the last message because the database "
                "cannot be used: %s",
                reported,
                reason,
            )

    @property
    def running(self) -> bool:
        return self.writer is not None and self.writer.running

    async def start(self) -> None:
        """Open the database and start the writer on the running loop.

        Raises DatabaseError naming the path when the file cannot be used; later
        calls then raise the same error again without retrying.
        """
        if self.ready:
            if self.start_error is not None:
                raise self.start_error
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self.ready:
                if self.start_error is not None:
                    raise self.start_error
                return
            writer = Writer(
                self.settings.database,
                self.queue,
                batch_size=self.settings.batch_size,
                flush_interval=self.settings.flush_interval,
                busy_timeout_ms=self.settings.busy_timeout,
                # Failed writes are kept for retry up to the queue's size, so
                # memory stays bounded by queue_size twice over.
                max_pending=self.settings.queue_size,
                max_db_mb=self.settings.max_db_mb,
            )
            try:
                await writer.start()
            except DatabaseError as exc:
                # Not logged here: the caller reports it once (uvicorn logs
                # lifespan.startup.failed, the middleware logs a lazy start).
                self.start_error = exc
                self.ready = True
                queued = len(self.queue.take(len(self.queue)))
                if queued:
                    self.queue.count_dropped(queued, DROP_WRITE_FAILED)
                    self._log_start_failed_drops(queued)
                raise
            self.writer = writer
            self.ready = True
            self.activate()
            logger.info("Hauswacht collector started, writing to %s", self.settings.database)

    async def flush(self) -> None:
        """Write every queued event now (no-op before start)."""
        if self.writer is not None:
            await self.writer.flush()

    async def stop(self) -> None:
        """Write every queued event, close the writer and stop being the active collector."""
        global _active
        if _active is self:
            _active = None
        writer = self.writer
        if writer is None:
            return
        await writer.stop()
        logger.info(
            "Hauswacht collector stopped (%d events dropped since start)", self.queue.dropped
        )

    def health(self) -> dict[str, Any]:
        """Return queue depth, drops and the writer's health counters."""
        health: dict[str, Any] = {
            "queue_depth": len(self.queue),
            "queue_size": self.queue.maxsize,
            "dropped": self.queue.dropped,
            "running": self.running,
        }
        if self.writer is not None:
            health["writer"] = self.writer.health()
        return health

    async def __aenter__(self) -> Collector:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


_sigterm_deferred = False


def defer_sigterm_until_exit() -> bool:
    """Let a server without lifespan events drain the writer on SIGTERM; return True if hooked.

    uvicorn (checked with 0.55) handles SIGTERM by shutting down gracefully,
    then puts the default handler back and re-raises the signal from inside
    the coroutine that asyncio.run() runs. The process would die there,
    before asyncio.run() cancels the writer task, whose cancellation is what
    drains it when no lifespan shutdown comes. So the server's handler is
    wrapped: it runs as before, and then SIGTERM is blocked on the main
    thread. The server's re-raise stays pending, asyncio.run() ends normally,
    the writer drains, and an atexit handler unblocks the signal, so the
    process still ends as "killed by SIGTERM". Only public signal functions
    are used, so any server that handles SIGTERM in Python works the same.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return False  # no server handler to wrap: SIGTERM kills at once, as before

    def handle_sigterm(signum: int, frame: Any) -> None:
        global _sigterm_deferred
        previous(signum, frame)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        if not _sigterm_deferred:
            _sigterm_deferred = True
            atexit.register(_deliver_deferred_sigterm)

    signal.signal(signal.SIGTERM, handle_sigterm)
    logger.info("Hauswacht will drain its writer before a re-raised SIGTERM ends the process")
    return True


def _deliver_deferred_sigterm() -> None:
    # A SIGTERM that arrived while blocked is delivered here, with whatever
    # handler the server restored (the default one ends the process).
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
