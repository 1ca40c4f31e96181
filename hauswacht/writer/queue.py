"""The bounded in-memory queue between event producers and the writer.

Producers call `put()` from the event loop or from any thread. `put()` does no
I/O and never blocks: when the queue holds `maxsize` events, the new event is
dropped and counted. The writer task drains it with `take()`.

Invariant: every event passed to `put()` is either returned by exactly one
`take()` or counted exactly once in `dropped`. `deque.append` and
`deque.popleft` are atomic in CPython, and the drop counter is guarded by a
lock, so this holds with producers on several threads.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable

from hauswacht.writer.events import Event


class EventQueue:
    def __init__(self, maxsize: int, wake_at: int) -> None:
        """Create a queue that holds at most `maxsize` events.

        `wake_at` is the queue length at which a waiting writer is woken early
        instead of at its next flush interval (usually the batch size).
        """
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        self.wake_at = max(1, min(wake_at, maxsize))
        self._events: deque[Event] = deque()
        self._dropped = 0
        self._dropped_unreported = 0
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

    def count_dropped(self, n: int) -> None:
        """Count `n` events that were lost after they left the queue (for example a failed write)."""
        with self._lock:
            self._dropped += n
            self._dropped_unreported += n

    def take_dropped(self) -> int:
        """Return the number of drops since the last call and reset that number."""
        with self._lock:
            n = self._dropped_unreported
            self._dropped_unreported = 0
            return n

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
            try:
                loop.call_soon_threadsafe(waiter.set)
            except RuntimeError:  # the loop closed between the check and the call
                pass


def wake_callback(queue: EventQueue) -> Callable[[], None]:
    """Return a function that wakes the writer of `queue` now (used for explicit flushes)."""
    return queue._wake
