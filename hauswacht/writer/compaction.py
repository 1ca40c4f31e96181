"""Compaction of finished hours: request_rollups summed per endpoint and per status code.

The overview and the endpoints page need, per hour, totals per (route,
method) and per status code. request_rollups holds one row per (route,
method, status), so a busy hour has several times more rows than endpoints,
each with its own buckets to merge. Compaction writes those sums once per
finished hour into endpoint_hourly and status_hourly, so readers decode one
bucket map per endpoint and hour, however many status codes it had.

Contract
- `compact(conn, hours, now_ms)` rebuilds the compacted rows of `hours` from
  request_rollups and records each hour's request_hourly.count in
  compacted_hours, all from the same snapshot: the caller runs the
  statements of `statements()` in one write transaction (BEGIN IMMEDIATE).
- An hour's compacted rows are valid while compacted_hours.request_count
  equals request_hourly.count. Every stored request adds one to that count,
  so an event stored in a compacted hour (a late event, a replayed log)
  makes the hour stale, and readers read request_rollups for it again until
  it is compacted anew (see queries.split_compacted).
- `stale_hours` lists hours before `before_hour` with no valid compaction,
  newest first, so the hours the dashboard shows first are done first.
  The current hour is never compacted by the callers: it still changes.
- Plain SQL (json_each, json_group_object) merges the buckets, so no function
  has to be registered; it runs once per hour and is not on the request path.

Who compacts: the Writer, at most once per COMPACT_INTERVAL after a flush,
up to COMPACT_HOURS hours each time; `hauswacht replay` after an import, for
the hours it touched; and bench/dashboard_bench.py on its generated files.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

import orjson

COMPACT_INTERVAL = 60.0  # seconds between two compaction runs of one Writer
COMPACT_HOURS = 24  # hours compacted per run and transaction, to keep the write lock short

STALE_HOURS_SQL = """
    SELECT h.hour
    FROM request_hourly AS h
    LEFT JOIN compacted_hours AS c ON c.hour = h.hour
    WHERE h.hour BETWEEN :first_hour AND :last_hour
      AND c.request_count IS NOT h.count
    ORDER BY h.hour DESC
    LIMIT :limit
"""

# Every statement below takes :hours, a JSON array of hour numbers.
_DELETE_ENDPOINTS_SQL = """
    DELETE FROM endpoint_hourly WHERE hour IN (SELECT value FROM json_each(:hours))
"""

_INSERT_ENDPOINTS_SQL = """
    INSERT INTO endpoint_hourly (hour, route, method, count, client_errors, server_errors,
                                 timed_count, sum_ms, min_ms, max_ms, response_bytes, buckets)
    SELECT totals.hour, totals.route, totals.method, totals.count, totals.client_errors,
           totals.server_errors, totals.timed_count, totals.sum_ms, totals.min_ms,
           totals.max_ms, totals.response_bytes, coalesce(merged.buckets, '{}')
    FROM (
        SELECT hour, route, method, sum(count) AS count,
               sum(CASE WHEN status BETWEEN 400 AND 499 THEN count ELSE 0 END) AS client_errors,
               sum(CASE WHEN status BETWEEN 500 AND 599 THEN count ELSE 0 END) AS server_errors,
               sum(timed_count) AS timed_count, sum(sum_ms) AS sum_ms, min(min_ms) AS min_ms,
               max(max_ms) AS max_ms, sum(response_bytes) AS response_bytes
        FROM request_rollups
        WHERE hour IN (SELECT value FROM json_each(:hours))
        GROUP BY hour, route, method
    ) AS totals
    LEFT JOIN (
        SELECT hour, route, method, json_group_object(key, total) AS buckets
        FROM (
            SELECT rollup.hour AS hour, rollup.route AS route, rollup.method AS method,
                   bucket.key AS key, sum(bucket.value) AS total
            FROM request_rollups AS rollup, json_each(rollup.buckets) AS bucket
            WHERE rollup.hour IN (SELECT value FROM json_each(:hours))
            GROUP BY rollup.hour, rollup.route, rollup.method, bucket.key
        )
        GROUP BY hour, route, method
    ) AS merged USING (hour, route, method)
"""

_DELETE_STATUSES_SQL = """
    DELETE FROM status_hourly WHERE hour IN (SELECT value FROM json_each(:hours))
"""

_INSERT_STATUSES_SQL = """
    INSERT INTO status_hourly (hour, status, count)
    SELECT hour, status, sum(count)
    FROM request_rollups
    WHERE hour IN (SELECT value FROM json_each(:hours))
    GROUP BY hour, status
"""

# An hour without a request_hourly row (none stored) gets no mark, so it is
# never reported valid.
_MARK_HOURS_SQL = """
    INSERT INTO compacted_hours (hour, request_count, compacted_at)
    SELECT hour, count, :now FROM request_hourly
    WHERE hour IN (SELECT value FROM json_each(:hours))
    ON CONFLICT (hour) DO UPDATE SET
        request_count = excluded.request_count,
        compacted_at = excluded.compacted_at
"""

_DELETE_MARKS_SQL = """
    DELETE FROM compacted_hours WHERE hour IN (SELECT value FROM json_each(:hours))
"""

_STATEMENTS = (
    _DELETE_MARKS_SQL,
    _DELETE_ENDPOINTS_SQL,
    _INSERT_ENDPOINTS_SQL,
    _DELETE_STATUSES_SQL,
    _INSERT_STATUSES_SQL,
    _MARK_HOURS_SQL,
)


def stale_params(before_hour: int, first_hour: int = -(2**62), limit: int = COMPACT_HOURS) -> dict:
    """Return the parameters of STALE_HOURS_SQL: hours in [first_hour, before_hour)."""
    return {"first_hour": first_hour, "last_hour": before_hour - 1, "limit": limit}


def statements(hours: Iterable[int], now_ms: int) -> list[tuple[str, dict[str, object]]]:
    """Return (sql, params) pairs that compact `hours`, to run in one write transaction."""
    params = {"hours": orjson.dumps(sorted(set(hours))).decode(), "now": now_ms}
    return [(sql, params) for sql in _STATEMENTS]


def stale_hours(
    conn: sqlite3.Connection,
    before_hour: int,
    first_hour: int = -(2**62),
    limit: int = COMPACT_HOURS,
) -> list[int]:
    """Return up to `limit` hours in [first_hour, before_hour) without a valid compaction."""
    params = stale_params(before_hour, first_hour, limit)
    return [hour for (hour,) in conn.execute(STALE_HOURS_SQL, params)]


def compact(conn: sqlite3.Connection, hours: Iterable[int], now_ms: int) -> None:
    """Compact `hours` on a plain sqlite3 connection inside the caller's write transaction."""
    for sql, params in statements(hours, now_ms):
        conn.execute(sql, params)
