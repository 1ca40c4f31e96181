"""The bounded in-memory queue between event producers and the writer.

Producers call `put()` from the event loop or from any thread. `put()` does no
I/O and never blocks: when the queue holds `maxsize` events, the new event is
dropped and counted. The writer task drains it with `take()`.

Invariant: every event passed to `put()` is either returned by exactly one
`take()` or counted exactly once in `dropped`. `deque.append` and
`deque.popleft` are atomic in CPython, and the drop counters are guarded by a
lock, so this holds with producers on several threads.

Drops are also counted by reason until the writer stores them:
DROP_QUEUE_FULL for events `put()` rejected, and the reason given to
`count_dropped()` (DROP_WRITE_FAILED by default) for events lost after they
left the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable

from hauswacht.writer.events import Event

DROP_QUEUE_FULL = "queue_full"
DROP_WRITE_FAILED = "write_failed"


class EventQueue:
    def __init__(self, maxsize: int, wake_at: int) -> None:
        """Create a queue for at most `maxsize` events.

        `wake_at` is the queue length at which a waiting writer is woken early
        instead of at its next flush interval (usually the batch size).
        """
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        self.wake_at = max(1, min(wake_at, maxsize))
        self._events: deque[Event] = deque()
        self._dropped = 0
        self._dropped_unreported = 0  # queue-full drops not yet taken by the writer
        self._failed_unreported: dict[str, int] = {}  # drops by reason from count_dropped()
        self._lock = threading.Lock()
        self._waiter: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wake_pending = False

    def __len__(self) -> int:
        return len(self._events)

    @property
    def dropped(self) -> int:
        """Total number of events dropped because the queue was full."""
        return self._dropped

    def put(self, event: Event) -> bool:
        """Enqueue `event`; return False when it was dropped because the queue is full."""
        events = self._events
        if len(events) >= self.maxsize:
            with self._lock:
                self._dropped += 1
                self._dropped_unreported += 1
            return False
        events.append(event)
        if len(events) >= self.wake_at and not self._wake_pending and self._waiter is not None:
            self._wake()
        return True

    def count_dropped(self, n: int, reason: str = DROP_WRITE_FAILED) -> None:
        """Count `n` events lost after they left the queue (for example in a failed write)."""
        if n <= 0:
            return
        with self._lock:
            self._dropped += n
            self._failed_unreported[reason] = self._failed_unreported.get(reason, 0) + n

    def take_dropped(self) -> int:
        """Return the number of drops (all reasons) since the last take and reset the counts."""
        return sum(self.take_dropped_counts().values())

    def take_dropped_counts(self) -> dict[str, int]:
        """Return the drops since the last take by reason, leaving out zeros, and reset them."""
        with self._lock:
            counts = dict(self._failed_unreported)
            self._failed_unreported.clear()
            if self._dropped_unreported:
                counts[DROP_QUEUE_FULL] = counts.get(DROP_QUEUE_FULL, 0) + self._dropped_unreported
                self._dropped_unreported = 0
        return counts

    def take(self, max_events: int) -> list[Event]:
        """Remove and return up to `max_events` events, oldest first."""
        events = self._events
        n = min(max_events, len(events))
        return [events.popleft() for _ in range(n)]

    def attach(self, waiter: asyncio.Event) -> None:
        """Register the writer's wake-up event; call from the writer's event loop."""
        self._waiter = waiter
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def detach(self) -> None:
        self._waiter = None
        self._loop = None
        self._loop_thread = None

    def clear_wake(self) -> None:
        """Re-arm the early wake-up; the writer calls this before it drains."""
        self._wake_pending = False
        if self._waiter is not None:
            self._waiter.clear()

    def _wake(self) -> None:
        # Setting an asyncio.Event is only safe on its own loop's thread; other
        # threads go through call_soon_threadsafe. This runs once per batch.
        self._wake_pending = True
        waiter, loop = self._waiter, self._loop
        if waiter is None or loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            waiter.set()
        else:
            # RuntimeError: the loop closed between the check and the call.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(waiter.set)


def wake_callback(queue: EventQueue) -> Callable[[], None]:
    """Return a function that wakes the writer of `queue` now (used for explicit flushes)."""
    return queue._wake
