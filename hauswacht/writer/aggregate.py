"""Pre-aggregation of one batch of events into the rows one flush writes.

`aggregate_batch(events)` sorts a batch into raw rows and hourly deltas, and
`BatchRows.statements()` pairs each non-empty row list with the statement
that writes it, in write order. There are at most len(STATEMENT_ORDER)
statements whatever the batch size, and each is one `executemany`, so a flush
costs a constant number of round trips to the database thread.

The statements own the rollup merge rules:
- request and metric rollups add count, timed count and sum, take min and
  max, and merge bucket maps with the SQL function BUCKET_MERGE_FUNCTION,
  which every connection running these statements must register
  (`register_functions`). A request without a duration counts in `count` only.
- request_hourly gets the same merge per hour, from the batch's request
  rollup deltas summed over routes and statuses, so after every committed
  flush each of its rows equals the sum of that hour's request_rollups rows.
- error groups add the count, widen first/last seen, keep the newest event,
  and reopen a resolved group when an event newer than `resolved_at` arrives
  (status 'unresolved', regressions + 1, regression_pending = 1). An ignored
  group stays ignored.
- error samples: per group and batch one row. It is the batch's earliest
  event as 'first' when the group has no 'first' sample yet, else the batch's
  newest event as 'regression' when the upsert just reopened the group, else
  as 'sample'. Then regression_pending is cleared and 'sample' rows beyond
  the newest MAX_SAMPLES of the group are deleted; 'first' and 'regression'
  rows are never deleted here.

Rollup hours are `ts // HOUR_MS` (hours since the epoch, UTC).

Some events cannot be aggregated: a timestamp that is not an int, or a
duration or value that is not a finite number. Such an event is left out of
every row list and returned in `BatchRows.rejected`, so it cannot block the
rest of its batch. `invalid_reason` checks every field and finds events that SQLite would
reject after the cheaper checks here let them through.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from hauswacht.writer import histogram
from hauswacht.writer.events import ErrorEvent, MetricEvent, RequestEvent
from hauswacht.writer.fingerprint import fingerprint_event

HOUR_MS = 3_600_000
BUCKET_MERGE_FUNCTION = "hauswacht_merge_buckets"

# Group titles are for display. The full message stays in the raw row's data.
MAX_GROUP_TEXT = 1024
MAX_SAMPLES = 10  # 'sample' rows kept per error group, besides 'first' and 'regression'


def _insert(table: str, columns: Iterable[str]) -> str:
    columns = list(columns)
    placeholders = ", ".join("?" * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"


INSERT_REQUESTS = _insert("requests", RequestEvent._fields)
INSERT_METRICS = _insert("metrics", MetricEvent._fields)
INSERT_ERRORS = _insert(
    "errors", ("ts", "fingerprint", "type", "message", "level", "trace_id", "data")
)

UPSERT_REQUEST_ROLLUPS = f"""
INSERT INTO request_rollups (hour, route, method, status, count, timed_count,
                             sum_ms, min_ms, max_ms, response_bytes, buckets)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (hour, route, method, status) DO UPDATE SET
    count = count + excluded.count,
    timed_count = timed_count + excluded.timed_count,
    sum_ms = sum_ms + excluded.sum_ms,
    min_ms = min(coalesce(min_ms, excluded.min_ms), coalesce(excluded.min_ms, min_ms)),
    max_ms = max(coalesce(max_ms, excluded.max_ms), coalesce(excluded.max_ms, max_ms)),
    response_bytes = response_bytes + excluded.response_bytes,
    buckets = {BUCKET_MERGE_FUNCTION}(buckets, excluded.buckets)
"""

UPSERT_REQUEST_HOURLY = f"""
INSERT INTO request_hourly (hour, count, timed_count, sum_ms, min_ms, max_ms, response_bytes,
                            client_errors, server_errors, buckets)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (hour) DO UPDATE SET
    count = count + excluded.count,
    timed_count = timed_count + excluded.timed_count,
    sum_ms = sum_ms + excluded.sum_ms,
    min_ms = min(coalesce(min_ms, excluded.min_ms), coalesce(excluded.min_ms, min_ms)),
    max_ms = max(coalesce(max_ms, excluded.max_ms), coalesce(excluded.max_ms, max_ms)),
    response_bytes = response_bytes + excluded.response_bytes,
    client_errors = client_errors + excluded.client_errors,
    server_errors = server_errors + excluded.server_errors,
    buckets = {BUCKET_MERGE_FUNCTION}(buckets, excluded.buckets)
"""

UPSERT_METRIC_ROLLUPS = f"""
INSERT INTO metric_rollups (hour, name, tags, unit, count, sum, min, max, buckets)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (hour, name, tags) DO UPDATE SET
    unit = coalesce(excluded.unit, unit),
    count = count + excluded.count,
    sum = sum + excluded.sum,
    min = min(min, excluded.min),
    max = max(max, excluded.max),
    buckets = {BUCKET_MERGE_FUNCTION}(buckets, excluded.buckets)
"""

# In DO UPDATE, bare column names are the stored row before this update, so
# `status` in the regressions expression is still the old status.
UPSERT_ERROR_GROUPS = """
INSERT INTO error_groups (fingerprint, scheme, type, message, count,
                          first_seen, last_seen, latest_event)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (fingerprint) DO UPDATE SET
    count = count + excluded.count,
    first_seen = min(first_seen, excluded.first_seen),
    last_seen = max(last_seen, excluded.last_seen),
    latest_event = CASE WHEN excluded.last_seen >= last_seen
                        THEN excluded.latest_event ELSE latest_event END,
    status = CASE WHEN status = 'resolved' AND excluded.last_seen > coalesce(resolved_at, -1)
                  THEN 'unresolved' ELSE status END,
    regressions = regressions + CASE
        WHEN status = 'resolved' AND excluded.last_seen > coalesce(resolved_at, -1)
        THEN 1 ELSE 0 END,
    regression_pending = CASE
        WHEN status = 'resolved' AND excluded.last_seen > coalesce(resolved_at, -1)
        THEN 1 ELSE regression_pending END
"""

# The three sample statements take the same named parameters per group:
# fingerprint, first_ts, first_data, last_ts, last_data.
INSERT_ERROR_SAMPLES = """
INSERT INTO error_samples (fingerprint, ts, reason, data)
SELECT :fingerprint,
       CASE kind WHEN 'first' THEN :first_ts ELSE :last_ts END,
       kind,
       CASE kind WHEN 'first' THEN :first_data ELSE :last_data END
FROM (
    SELECT CASE
        WHEN NOT EXISTS (SELECT 1 FROM error_samples
                         WHERE fingerprint = :fingerprint AND reason = 'first') THEN 'first'
        WHEN (SELECT regression_pending FROM error_groups
              WHERE fingerprint = :fingerprint) = 1 THEN 'regression'
        ELSE 'sample'
    END AS kind
)
"""

CLEAR_REGRESSION_PENDING = """
UPDATE error_groups SET regression_pending = 0
WHERE fingerprint = :fingerprint AND regression_pending = 1
"""

TRIM_ERROR_SAMPLES = f"""
DELETE FROM error_samples
WHERE fingerprint = :fingerprint AND reason = 'sample' AND id NOT IN (
    SELECT id FROM error_samples
    WHERE fingerprint = :fingerprint AND reason = 'sample'
    ORDER BY id DESC LIMIT {MAX_SAMPLES}
)
"""

UPSERT_ERROR_ROLLUPS = """
INSERT INTO error_rollups (hour, fingerprint, count) VALUES (?, ?, ?)
ON CONFLICT (hour, fingerprint) DO UPDATE SET count = count + excluded.count
"""

UPSERT_DROPPED_ROLLUPS = """
INSERT INTO dropped_rollups (hour, reason, count) VALUES (?, ?, ?)
ON CONFLICT (hour, reason) DO UPDATE SET count = count + excluded.count
"""

STATEMENT_ORDER = (
    INSERT_REQUESTS,
    INSERT_METRICS,
    INSERT_ERRORS,
    UPSERT_REQUEST_ROLLUPS,
    UPSERT_REQUEST_HOURLY,
    UPSERT_METRIC_ROLLUPS,
    UPSERT_ERROR_GROUPS,
    INSERT_ERROR_SAMPLES,
    CLEAR_REGRESSION_PENDING,
    TRIM_ERROR_SAMPLES,
    UPSERT_ERROR_ROLLUPS,
    UPSERT_DROPPED_ROLLUPS,
)


def register_functions(conn: sqlite3.Connection) -> None:
    """Register the SQL functions the rollup upserts call on a plain sqlite3 connection."""
    conn.create_function(BUCKET_MERGE_FUNCTION, 2, histogram.merge_json, deterministic=True)


def encode_error_data(data: Any) -> str:
    """Serialise error event data to JSON text, encoding unknown value types as str()."""
    if not isinstance(data, dict):
        data = {}
    return orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


@dataclass
class BatchRows:
    """The parameter rows of one flush, one list per statement in STATEMENT_ORDER."""

    requests: list[RequestEvent] = field(default_factory=list)
    metrics: list[MetricEvent] = field(default_factory=list)
    errors: list[tuple[Any, ...]] = field(default_factory=list)
    request_rollups: list[tuple[Any, ...]] = field(default_factory=list)
    request_hourly: list[tuple[Any, ...]] = field(default_factory=list)
    metric_rollups: list[tuple[Any, ...]] = field(default_factory=list)
    error_groups: list[tuple[Any, ...]] = field(default_factory=list)
    error_samples: list[dict[str, Any]] = field(default_factory=list)
    """Named parameters of the three sample statements, one dict per group."""
    error_rollups: list[tuple[Any, ...]] = field(default_factory=list)
    dropped_rollups: list[tuple[int, str, int]] = field(default_factory=list)
    rejected: list[tuple[Any, str]] = field(default_factory=list)
    """Events left out of every row list, each with the reason."""

    def statements(self) -> list[tuple[str, list[Any]]]:
        """Return (sql, rows) for each non-empty row list, in write order."""
        row_lists = (
            self.requests,
            self.metrics,
            self.errors,
            self.request_rollups,
            self.request_hourly,
            self.metric_rollups,
            self.error_groups,
            self.error_samples,
            self.error_samples,
            self.error_samples,
            self.error_rollups,
            self.dropped_rollups,
        )
        return [(sql, rows) for sql, rows in zip(STATEMENT_ORDER, row_lists, strict=True) if rows]

    @property
    def event_count(self) -> int:
        """Number of events that have raw rows in this batch."""
        return len(self.requests) + len(self.metrics) + len(self.errors)


def aggregate_batch(events: Iterable[Any]) -> BatchRows:
    """Sort `events` into raw rows and hourly rollup deltas; the caller adds drop counts."""
    rows = BatchRows()
    request_rollups: dict[tuple[Any, ...], list[Any]] = {}
    metric_rollups: dict[tuple[Any, ...], list[Any]] = {}
    groups: dict[str, list[Any]] = {}
    error_rollups: dict[tuple[int, str], int] = {}

    for event in events:
        kind = type(event)
        try:
            if kind is RequestEvent:
                _add_request(event, rows, request_rollups)
            elif kind is MetricEvent:
                _add_metric(event, rows, metric_rollups)
            elif kind is ErrorEvent:
                _add_error(event, rows, groups, error_rollups)
            else:
                rows.rejected.append((event, f"not an event record: {kind.__name__}"))
        except (TypeError, ValueError, OverflowError) as exc:
            rows.rejected.append((event, str(exc) or type(exc).__name__))

    hourly: dict[int, list[Any]] = {}
    for (hour, route, method, status), totals in request_rollups.items():
        count, timed, total, low, high, size, buckets = totals
        _add_to_hour(hourly, hour, status, totals)
        if not timed:
            low = high = None
        rows.request_rollups.append(
            (hour, route, method, status, count, timed, total, low, high, size,
             histogram.encode_indexed(buckets))
        )  # fmt: skip
    for hour, totals in hourly.items():
        count, timed, total, low, high, size, client_errors, server_errors, buckets = totals
        if not timed:
            low = high = None
        rows.request_hourly.append(
            (hour, count, timed, total, low, high, size, client_errors, server_errors,
             histogram.encode_indexed(buckets))
        )  # fmt: skip
    for (hour, name, tags), totals in metric_rollups.items():
        unit, count, total, low, high, buckets = totals
        rows.metric_rollups.append(
            (hour, name, tags, unit, count, total, low, high, histogram.encode(buckets))
        )
    for fingerprint, group in groups.items():
        rows.error_groups.append((fingerprint, *group[:7]))
        rows.error_samples.append(
            {
                "fingerprint": fingerprint,
                "first_ts": group[7],
                "first_data": group[8],
                "last_ts": group[5],
                "last_data": group[6],
            }
        )
    for (hour, fingerprint), count in error_rollups.items():
        rows.error_rollups.append((hour, fingerprint, count))
    return rows


def _add_to_hour(hourly: dict[int, list[Any]], hour: int, status: int, rollup: list[Any]) -> None:
    # Runs once per request rollup key of the batch, not per event.
    count, timed, total, low, high, size, buckets = rollup
    totals = hourly.get(hour)
    if totals is None:
        # count, timed_count, sum, min, max, response_bytes, 4xx, 5xx, buckets
        totals = hourly[hour] = [0, 0, 0.0, _INFINITY, -_INFINITY, 0, 0, 0, {}]
    totals[0] += count
    totals[1] += timed
    totals[2] += total
    totals[3] = min(totals[3], low)
    totals[4] = max(totals[4], high)
    totals[5] += size
    if 400 <= status <= 499:
        totals[6] += count
    elif 500 <= status <= 599:
        totals[7] += count
    merged = totals[8]
    for key, bucket_count in buckets.items():
        merged[key] = merged.get(key, 0) + bucket_count


def _check_ts(ts: Any) -> int:
    if type(ts) is not int:
        raise TypeError(f"ts must be an int (epoch ms), got {type(ts).__name__}")
    return ts


def _check_number(value: Any, name: str) -> float:
    if type(value) is not float and type(value) is not int:
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


_log = math.log
_ceil = math.ceil
_INV_LOG_GAMMA = 1 / math.log(histogram.GAMMA)
_INFINITY = math.inf


def _add_request(
    event: RequestEvent, rows: BatchRows, rollups: dict[tuple[Any, ...], list[Any]]
) -> None:
    # This runs once per request event, so it avoids attribute lookups and
    # helper calls. Positive durations get their bucket index inline as an int
    # key (see histogram.encode_indexed), and zero, negative and non-finite ones
    # take the general path. Everything that can fail runs before any total
    # changes.
    ts, method, route, _, status, duration, _, size, _, _, _ = event
    if type(ts) is not int:
        raise TypeError(f"ts must be an int (epoch ms), got {type(ts).__name__}")
    if type(status) is not int:
        raise TypeError(f"status must be an int, got {type(status).__name__}")
    if duration is not None:
        if type(duration) is not float:
            duration = _check_number(duration, "duration_ms")
        if duration > histogram.MIN_MAGNITUDE and duration != _INFINITY:
            bucket = _ceil(_log(duration) * _INV_LOG_GAMMA)
        else:
            duration = _check_number(duration, "duration_ms")
            bucket = histogram.bucket_key(duration)
    if size is None:
        size = 0
    elif type(size) is not int:
        raise TypeError(f"response_bytes must be an int, got {type(size).__name__}")

    key = (ts // HOUR_MS, route, method, status)
    totals = rollups.get(key)
    if totals is None:
        # count, timed_count, sum, min, max, response_bytes, buckets; min and
        # max start at the infinities and become NULL when nothing was timed.
        totals = rollups[key] = [0, 0, 0.0, _INFINITY, -_INFINITY, 0, {}]
    totals[0] += 1
    totals[5] += size
    if duration is not None:
        totals[1] += 1
        totals[2] += duration
        if duration < totals[3]:
            totals[3] = duration
        if duration > totals[4]:
            totals[4] = duration
        buckets = totals[6]
        buckets[bucket] = buckets.get(bucket, 0) + 1
    rows.requests.append(event)


def _add_metric(
    event: MetricEvent, rows: BatchRows, rollups: dict[tuple[Any, ...], list[Any]]
) -> None:
    hour = _check_ts(event.ts) // HOUR_MS
    value = _check_number(event.value, "value")
    bucket = histogram.bucket_key(value)
    key = (hour, event.name, event.tags)

    totals = rollups.get(key)
    if totals is None:
        # unit, count, sum, min, max, buckets
        totals = rollups[key] = [event.unit, 0, 0.0, value, value, {}]
    if event.unit is not None:
        totals[0] = event.unit
    totals[1] += 1
    totals[2] += value
    if value < totals[3]:
        totals[3] = value
    if value > totals[4]:
        totals[4] = value
    buckets = totals[5]
    buckets[bucket] = buckets.get(bucket, 0) + 1
    rows.metrics.append(event)


def _add_error(
    event: ErrorEvent,
    rows: BatchRows,
    groups: dict[str, list[Any]],
    error_rollups: dict[tuple[int, str], int],
) -> None:
    ts = _check_ts(event.ts)
    fingerprint, scheme = fingerprint_event(event)
    data = encode_error_data(event.data)
    error_type = str(event.type)
    message = str(event.message)

    rows.errors.append(
        (ts, fingerprint, error_type, message, str(event.level), event.trace_id, data)
    )

    group = groups.get(fingerprint)
    if group is None:
        # scheme, type, message, count, first_seen, last_seen, latest_event,
        # then the earliest event of the batch (ts, data) for the 'first' sample.
        groups[fingerprint] = [
            scheme,
            error_type[:MAX_GROUP_TEXT],
            message[:MAX_GROUP_TEXT],
            1,
            ts,
            ts,
            data,
            ts,
            data,
        ]
    else:
        group[3] += 1
        if ts < group[4]:
            group[4] = ts
            group[7] = ts
            group[8] = data
        if ts >= group[5]:
            group[5] = ts
            group[6] = data

    rollup_key = (ts // HOUR_MS, fingerprint)
    error_rollups[rollup_key] = error_rollups.get(rollup_key, 0) + 1


_OPTIONAL_STR = (str, type(None))
_OPTIONAL_NUMBER = (int, float, type(None))
_OPTIONAL_INT = (int, type(None))

_FIELD_TYPES: dict[type, tuple[tuple[type, ...], ...]] = {
    RequestEvent: (
        (int,),  # ts
        (str,),  # method
        (str,),  # route
        (str,),  # path
        (int,),  # status
        _OPTIONAL_NUMBER,  # duration_ms
        _OPTIONAL_NUMBER,  # ttfb_ms
        _OPTIONAL_INT,  # response_bytes
        _OPTIONAL_STR,  # client
        _OPTIONAL_STR,  # user_agent
        _OPTIONAL_STR,  # trace_id
    ),
    MetricEvent: ((int,), (str,), (int, float), _OPTIONAL_STR, (str,)),
    # The error row stores str() of type, message and level and the data as JSON text.
    ErrorEvent: ((int,), (object,), (object,), (object,), _OPTIONAL_STR, (object,), (object,)),
}

# SQLite stores integers as signed 64-bit values.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def invalid_reason(event: Any) -> str | None:
    """Return why SQLite would reject the raw row of `event`, or None when its types are valid."""
    expected = _FIELD_TYPES.get(type(event))
    if expected is None:
        return f"not an event record: {type(event).__name__}"
    for name, value, types in zip(event._fields, event, expected, strict=True):
        if not isinstance(value, types):
            return f"{name} has type {type(value).__name__}"
        if isinstance(value, int) and not _INT64_MIN <= value <= _INT64_MAX:
            return f"{name} is out of the 64-bit integer range"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{name} is not finite"
    return None
