"""Start a writer, queue events and return from main() without calling stop().

Usage: writer_no_stop.py DB COUNT [BATCH_SIZE DELAY]

asyncio.run() then cancels the writer's tasks, which is how an app run by
`uvicorn --lifespan off` ends after SIGTERM. The events must still be stored,
once each, and the process must exit. With BATCH_SIZE and DELAY, main() lets
the flush task write full batches for DELAY seconds before it returns, so the
cancellation can hit a transaction midway.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time

from hauswacht.writer.events import RequestEvent
from hauswacht.writer.queue import EventQueue
from hauswacht.writer.writer import Writer


async def main(path: str, count: int, batch_size: int, delay: float | None) -> None:
    queue = EventQueue(maxsize=count, wake_at=batch_size)
    writer = Writer(path, queue, batch_size=batch_size, flush_interval=60.0)
    await writer.start()
    now = time.time_ns() // 1_000_000
    for i in range(count):
        queue.put(
            RequestEvent(
                now, "GET", "/items/{id}", f"/items/{i}", 200, 1.0, None, 0, None, None, None
            )
        )
    if delay is not None:
        await asyncio.sleep(delay)
    # Returning here leaves the flush task waiting or writing.


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    count = int(sys.argv[2])
    if len(sys.argv) > 3:
        asyncio.run(main(sys.argv[1], count, int(sys.argv[3]), float(sys.argv[4])))
    else:
        asyncio.run(main(sys.argv[1], count, count, None))
