"""Writer throughput: the writer with rollups against a bare executemany and the naive approach.

- limit: sqlite3 `executemany` of the same rows into one unindexed table, one
  transaction per batch, WAL and synchronous=NORMAL like the writer. Nothing
  can persist these rows faster through SQLite, so it is the ceiling.
- hauswacht: the real Writer draining an EventQueue filled beforehand: raw
  rows, hourly rollups with histogram buckets, one transaction per batch.
- naive: what an app does without a writer: open a connection, insert one
  row, commit, close, for every event, with SQLite's default settings
  (rollback journal, synchronous=FULL).

All three write to fresh files in one temporary folder in the same run.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import tempfile
import time
from pathlib import Path

from hauswacht.writer.events import RequestEvent
from hauswacht.writer.queue import EventQueue
from hauswacht.writer.writer import Writer

ROUTES = [f"/api/tours/{{tour_id}}/stop{n}" for n in range(20)]
# Traffic is skewed, as in a real app: route popularity follows Zipf's law
# (weight 1/rank), most requests are GETs and most responses are 200.
ROUTE_WEIGHTS = [1 / rank for rank in range(1, len(ROUTES) + 1)]
METHODS = ["GET", "POST", "PUT"]
METHOD_WEIGHTS = [80, 15, 5]
STATUSES = [200, 201, 304, 400, 404, 500]
STATUS_WEIGHTS = [88, 3, 3, 2, 3, 1]

CREATE_FLAT = """
CREATE TABLE requests (
    ts INTEGER, method TEXT, route TEXT, path TEXT, status INTEGER, duration_ms REAL,
    ttfb_ms REAL, response_bytes INTEGER, client TEXT, user_agent TEXT, trace_id TEXT
)
"""
INSERT_FLAT = "INSERT INTO requests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def make_events(count: int, seed: int = 7) -> list[RequestEvent]:
    """Build `count` request events spread over 24 hours with realistic variety."""
    rng = random.Random(seed)
    start = 1_780_000_000_000
    events = []
    routes = rng.choices(ROUTES, ROUTE_WEIGHTS, k=count)
    methods = rng.choices(METHODS, METHOD_WEIGHTS, k=count)
    statuses = rng.choices(STATUSES, STATUS_WEIGHTS, k=count)
    for i in range(count):
        route = routes[i]
        events.append(
            RequestEvent(
                ts=start + i * 86_400_000 // count,
                method=methods[i],
                route=route,
                path=route.replace("{tour_id}", str(rng.randrange(10_000))),
                status=statuses[i],
                duration_ms=rng.lognormvariate(3, 1),
                ttfb_ms=rng.lognormvariate(2, 1),
                response_bytes=rng.randrange(100, 20_000),
                client=f"10.0.{rng.randrange(256)}.{rng.randrange(256)}",
                user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0",
                trace_id=f"{rng.getrandbits(128):032x}",
            )
        )
    return events


def run_limit(path: Path, events: list[RequestEvent], batch_size: int) -> float:
    """Return events/s for a bare executemany per batch into one unindexed table."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(CREATE_FLAT)
    start = time.perf_counter()
    for offset in range(0, len(events), batch_size):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT_FLAT, events[offset : offset + batch_size])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(events) / elapsed


def run_naive(path: Path, events: list[RequestEvent]) -> float:
    """Return events/s for one connection, insert and commit per event, with SQLite's defaults."""
    setup = sqlite3.connect(path)
    setup.execute(CREATE_FLAT)
    setup.commit()
    setup.close()
    start = time.perf_counter()
    for event in events:
        conn = sqlite3.connect(path)
        conn.execute(INSERT_FLAT, event)
        conn.commit()
        conn.close()
    elapsed = time.perf_counter() - start
    return len(events) / elapsed


async def _run_writer(path: Path, events: list[RequestEvent], batch_size: int) -> float:
    queue = EventQueue(maxsize=len(events) + 1, wake_at=batch_size)
    writer = Writer(path, queue, batch_size=batch_size, flush_interval=0.05)
    await writer.start()
    # Warm up the connection and the schema outside the timed part.
    await writer.flush()
    # The app's threads pay for put(), not the writer, and the limit's rows are
    # ready in memory too: enqueue before the clock starts. No await runs in
    # this loop, so the writer cannot start draining before stop().
    for event in events:
        queue.put(event)
    start = time.perf_counter()
    await writer.flush()
    elapsed = time.perf_counter() - start
    # Closing the last connection checkpoints the WAL; the limit is timed
    # before its close as well.
    await writer.stop()
    return len(events) / elapsed


def run_hauswacht(path: Path, events: list[RequestEvent], batch_size: int) -> float:
    """Return events/s persisted by the Writer, rollups included."""
    return asyncio.run(_run_writer(path, events, batch_size))


def check_rollups(path: Path, expected: int) -> None:
    conn = sqlite3.connect(path)
    raw = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
    rolled = conn.execute("SELECT sum(count) FROM request_rollups").fetchone()[0]
    conn.close()
    if raw != expected or rolled != expected:
        raise RuntimeError(f"writer stored {raw} rows and {rolled} in rollups, expected {expected}")


def run(events_count: int = 200_000, naive_count: int = 2_000, batch_size: int = 1_000) -> dict:
    """Measure the three approaches side by side; return rates and ratios."""
    events = make_events(events_count)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        # Interleave repeats so drift in machine load hits every approach alike.
        limit_rates, writer_rates = [], []
        for repeat in range(3):
            limit_rates.append(run_limit(base / f"limit{repeat}.db", events, batch_size))
            writer_path = base / f"hauswacht{repeat}.db"
            writer_rates.append(run_hauswacht(writer_path, events, batch_size))
            check_rollups(writer_path, events_count)
        results["naive"] = run_naive(base / "naive.db", events[:naive_count])
    results["limit"] = sorted(limit_rates)[1]
    results["hauswacht"] = sorted(writer_rates)[1]
    results["events"] = events_count
    results["naive_events"] = naive_count
    results["batch_size"] = batch_size
    return results


if __name__ == "__main__":
    print(run(events_count=50_000, naive_count=500))
