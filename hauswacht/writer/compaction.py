"""Compaction of finished hours: request_rollups summed per endpoint and per status code.

The overview and the endpoints page need, per hour, totals per (route,
method) and per status code. request_rollups has one row per (route,
method, status), so a busy hour has several times more rows than endpoints,
each with its own buckets to merge. Compaction writes those sums once per
finished hour into endpoint_hourly and status_hourly, so readers decode one
bucket map per endpoint and hour, however many status codes it had.

Contract
- `compact_newest` rebuilds one hour inside the caller's write transaction
  (BEGIN IMMEDIATE). It picks the newest hour in the given range whose
  compaction is missing or stale and sums its request_rollups rows. It also
  records the hour's request_hourly.count in compacted_hours, all from one
  snapshot. One transaction per hour keeps the write lock short.
- An hour's compacted rows are valid while compacted_hours.request_count
  equals request_hourly.count. Every stored request adds one to that count,
  so an event stored in a compacted hour (a late event, a replayed log)
  makes the hour stale, and readers read request_rollups for it again until
  it is compacted anew (see queries.split_compacted).
- The per-endpoint sums come from `queries.sum_rollup_rows`, the function
  readers use for hours that are not compacted, so both give the same
  figures, duration sums included (math.fsum).
- Newest hours first, so the hours the dashboard shows first are done
  first. The callers never compact the current hour: it still changes.

Who compacts: the Writer, at most once per COMPACT_INTERVAL after a flush,
up to COMPACT_HOURS hours each time, on a connection of its own in a worker
thread (`compact_file`); `hauswacht replay` after an import, for the hours it
touched; and bench/dashboard_bench.py on its generated files.
"""

from __future__ import annotations

import os
import sqlite3

from hauswacht.writer import histogram, schema
from hauswacht.writer.queries import sum_rollup_rows

COMPACT_INTERVAL = 60.0  # seconds between two compaction runs of one Writer
COMPACT_HOURS = 24  # hours one Writer run compacts at most, each in its own transaction
NO_LOWER_BOUND = -(2**62)  # an hour before any stored hour

STALE_HOURS_SQL = """
    SELECT h.hour
    FROM request_hourly AS h
    LEFT JOIN compacted_hours AS c ON c.hour = h.hour
    WHERE h.hour BETWEEN :first_hour AND :last_hour
      AND c.request_count IS NOT h.count
    ORDER BY h.hour DESC
    LIMIT :limit
"""

_HOUR_ROLLUP_ROWS_SQL = """
    SELECT hour, route, method, status, count, timed_count, sum_ms, min_ms, max_ms, buckets,
           response_bytes
    FROM request_rollups
    WHERE hour = ?
"""

_INSERT_ENDPOINT_SQL = """
    INSERT INTO endpoint_hourly (hour, route, method, count, client_errors, server_errors,
                                 timed_count, sum_ms, min_ms, max_ms, response_bytes, buckets)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

_MARK_HOUR_SQL = """
    INSERT INTO compacted_hours (hour, request_count, compacted_at) VALUES (?, ?, ?)
    ON CONFLICT (hour) DO UPDATE SET
        request_count = excluded.request_count,
        compacted_at = excluded.compacted_at
"""


def stale_hours(
    conn: sqlite3.Connection,
    before_hour: int,
    first_hour: int = NO_LOWER_BOUND,
    limit: int = COMPACT_HOURS,
) -> list[int]:
    """Return up to `limit` hours in [first_hour, before_hour) without a valid compaction.

    The newest hour comes first. Hours without stored requests are never listed.
    """
    params = {"first_hour": first_hour, "last_hour": before_hour - 1, "limit": limit}
    return [hour for (hour,) in conn.execute(STALE_HOURS_SQL, params)]


def compact_newest(
    conn: sqlite3.Connection, before_hour: int, now_ms: int, first_hour: int = NO_LOWER_BOUND
) -> int | None:
    """Compact the newest stale hour in [first_hour, before_hour); return it, or None if none.

    Runs inside the caller's write transaction.
    """
    hours = stale_hours(conn, before_hour, first_hour, limit=1)
    if not hours:
        return None
    hour = hours[0]
    (request_count,) = conn.execute(
        "SELECT count FROM request_hourly WHERE hour = ?", (hour,)
    ).fetchone()
    rows = conn.execute(_HOUR_ROLLUP_ROWS_SQL, (hour,)).fetchall()

    totals = sum_rollup_rows(row[:10] for row in rows)
    response_bytes: dict[tuple[int, str, str], int] = dict.fromkeys(totals, 0)
    statuses: dict[int, int] = {}
    for _, route, method, status, count, *_, size in rows:
        response_bytes[(hour, route, method)] += size
        statuses[status] = statuses.get(status, 0) + count

    conn.execute("DELETE FROM endpoint_hourly WHERE hour = ?", (hour,))
    conn.executemany(
        _INSERT_ENDPOINT_SQL,
        [
            (*key, entry.count, entry.client_errors, entry.server_errors, entry.timed,
             entry.sum_ms, entry.min_ms, entry.max_ms, response_bytes[key],
             histogram.encode(entry.buckets))
            for key, entry in totals.items()
        ],
    )  # fmt: skip
    conn.execute("DELETE FROM status_hourly WHERE hour = ?", (hour,))
    conn.executemany(
        "INSERT INTO status_hourly (hour, status, count) VALUES (?, ?, ?)",
        [(hour, status, count) for status, count in statuses.items()],
    )
    conn.execute(_MARK_HOUR_SQL, (hour, request_count, now_ms))
    return hour


def compact_file(
    path: str | os.PathLike[str],
    before_hour: int,
    now_ms: int,
    busy_timeout_ms: int = schema.BUSY_TIMEOUT_MS,
    max_page_count: int | None = None,
) -> int | None:
    """Compact the newest stale hour before `before_hour` on a connection of its own.

    For the Writer, which runs it in a worker thread so that its own
    connection never has a compaction transaction open. `max_page_count` carries the
    writer's size cap over to this connection. Returns the hour, or None
    when no hour needs it. Raises sqlite3.Error when the compaction fails.
    """
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000)
    try:
        for pragma in schema.PRAGMAS:
            conn.execute(pragma)
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if max_page_count is not None:
            conn.execute(f"PRAGMA max_page_count = {int(max_page_count)}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            hour = compact_newest(conn, before_hour, now_ms)
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        return hour
    finally:
        conn.close()


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite rolls some errors back by itself (SQLITE_FULL may).
    if conn.in_transaction:
        conn.execute("ROLLBACK")
