"""Write COUNT request events labelled LABEL into DB, starting when GO_FILE exists.

Usage: writer_produce.py DB COUNT LABEL GO_FILE

Several copies run at once against one file. The script prints the writer's
health as JSON on stdout when it has stopped; logs go to stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time

from hauswacht.writer.events import RequestEvent
from hauswacht.writer.queue import EventQueue
from hauswacht.writer.writer import Writer


def wait_for(go_file: str) -> None:
    deadline = time.monotonic() + 20
    while not os.path.exists(go_file):
        if time.monotonic() > deadline:
            raise SystemExit(f"{go_file} did not appear within 20 s")
        time.sleep(0.005)


async def main(path: str, count: int, label: str) -> None:
    queue = EventQueue(maxsize=count, wake_at=200)
    writer = Writer(path, queue, batch_size=200, flush_interval=0.01)
    await writer.start()

    for i in range(count):
        now = time.time_ns() // 1_000_000
        queue.put(
            RequestEvent(
                now, "POST", f"/{label}", f"/{label}/{i}", 201, 2.0, None, 0, None, None, label
            )
        )
        if i % 100 == 99:
            await asyncio.sleep(0)  # let the flush task interleave with production
    await writer.stop()
    print(json.dumps(writer.health()))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    # Both copies open and migrate the file at about the same moment.
    wait_for(sys.argv[4])
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
