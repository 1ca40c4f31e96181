"""Queue request events into DB without pause until killed; report progress on stdout.

Usage: writer_kill_target.py DB FLUSH_INTERVAL

Event ids count up from 0 and are stored as the path "/k/<id>". After each
round of puts the script prints "<last id> <epoch ms>": every event up to that
id was queued before that time. It stops by itself after 30 s.
"""

from __future__ import annotations

import asyncio
import sys
import time

from hauswacht.writer.events import RequestEvent
from hauswacht.writer.queue import EventQueue
from hauswacht.writer.writer import Writer

ROUND = 20


async def main(path: str, flush_interval: float) -> None:
    queue = EventQueue(maxsize=100_000, wake_at=1000)
    writer = Writer(path, queue, batch_size=1000, flush_interval=flush_interval)
    await writer.start()
    print("started", flush=True)

    next_id = 0
    stop_at = time.monotonic() + 30
    while time.monotonic() < stop_at:
        for _ in range(ROUND):
            now = time.time_ns() // 1_000_000
            queue.put(
                RequestEvent(
                    now,
                    "GET",
                    "/k/{id}",
                    f"/k/{next_id}",
                    200,
                    3.0,
                    None,
                    10,
                    None,
                    "kill-test",
                    None,
                )
            )
            next_id += 1
        print(next_id - 1, time.time_ns() // 1_000_000, flush=True)
        await asyncio.sleep(0.005)
    await writer.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
