"""The collector of one process: its event queue, its writer, and the active collector.

A `Collector` owns one bounded `EventQueue` (created with the collector, so
events can be queued before the writer runs) and one `Writer` (created by
`start()` on the running event loop). `start()` is idempotent and safe to
await from many tasks at once. `stop()` drains the queue into the database
and closes the writer. It is idempotent too, and a stopped collector does not
start again.

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
from typing import Any

from hauswacht.collector.settings import Settings
from hauswacht.writer.events import Event
from hauswacht.writer.queue import EventQueue
from hauswacht.writer.schema import DatabaseError
from hauswacht.writer.writer import Writer

logger = logging.getLogger(__name__)

_active: Collector | None = None


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
        self.activate()

    def activate(self) -> None:
        """Make this the collector that capture_exception() and record_metric() feed."""
        global _active
        _active = self

    def put(self, event: Event) -> bool:
        """Queue `event` without blocking; return False when the full queue dropped it."""
        return self.queue.put(event)

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
                self.start_error = exc
                self.ready = True
                logger.error("Hauswacht collector failed to start: %s", exc)
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
