"""Queries over the rollup tables for `hauswacht stats` and the dashboard.

Every query here reads the rollup tables (request_rollups, request_hourly,
the compacted endpoint_hourly and status_hourly, metric_rollups,
error_rollups, dropped_rollups) and error_groups only, never the raw requests,
errors or metrics tables, so its cost grows with hours x routes and not with
the number of stored events. The one write, `set_error_group_status`, changes an error
group's triage status and needs a read-write connection.

Rollups are hourly, so a time window is widened to whole hours: an hour is
included when it contains a moment of [start_ms, end_ms), that is from the
hour containing `start_ms` up to the hour containing `end_ms - 1`. A bound
of None leaves that side open.

Latency quantiles are estimated by `histogram.quantiles()` from the merged
log-spaced histogram buckets, so they are within histogram.ALPHA (2 %)
relative error of the exact nearest-rank value.
Requests without a duration (for example from a replayed log without a
request-time field) count as requests but not in latency figures. Latency
values are None when no request in the selection has a duration.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import math
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from hauswacht.writer import histogram

HOUR_MS = 3_600_000
QUANTILES = (0.5, 0.95, 0.99)
SLOWEST_SHOWN = 10  # endpoints in the overview's slowest list
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
OTHER_STATUS = "other"

# Every statement takes :first_hour and :last_hour; an open side of the
# window is passed as a value beyond any stored hour.
ERROR_TOTALS_SQL = """
    SELECT coalesce(sum(count), 0), count(DISTINCT fingerprint)
    FROM error_rollups
    WHERE hour BETWEEN :first_hour AND :last_hour
"""

DROPPED_SQL = """
    SELECT reason, sum(count)
    FROM dropped_rollups
    WHERE hour BETWEEN :first_hour AND :last_hour
    GROUP BY reason
    ORDER BY reason
"""

# Beyond any hour a 64-bit ts // 3_600_000 can reach, in both directions.
_OPEN_FIRST_HOUR = -(2**62)
_OPEN_LAST_HOUR = 2**62


@dataclass(frozen=True)
class Window:
    """A time range [start_ms, end_ms) in UTC epoch ms; None leaves a side open."""

    start_ms: int | None = None
    end_ms: int | None = None

    def __post_init__(self) -> None:
        if self.start_ms is not None and self.end_ms is not None and self.end_ms <= self.start_ms:
            raise ValueError(
                f"the window ends ({self.end_ms}) before or when it starts ({self.start_ms})"
            )

    def hour_params(self) -> dict[str, int]:
        """Return the first and last hour numbers (inclusive) that the window touches."""
        first = _OPEN_FIRST_HOUR if self.start_ms is None else self.start_ms // HOUR_MS
        last = _OPEN_LAST_HOUR if self.end_ms is None else (self.end_ms - 1) // HOUR_MS
        return {"first_hour": first, "last_hour": last}


@dataclass
class Latency:
    """Latency figures in ms over the requests that have a duration; None when there are none."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    avg: float | None = None
    max: float | None = None


@dataclass
class HourStats:
    hour: str  # ISO 8601 UTC start of the hour, "2015-05-17T10:00:00Z"
    requests: int
    client_errors: int  # 4xx
    server_errors: int  # 5xx
    p95_ms: float | None


@dataclass
class RouteStats:
    route: str
    method: str
    requests: int
    client_errors: int  # 4xx
    server_errors: int  # 5xx
    avg_ms: float | None
    p95_ms: float | None


@dataclass
class Stats:
    """Everything `hauswacht stats` reports for one window."""

    requests: int = 0
    status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUS_CLASSES, 0))
    errors: int = 0
    error_groups: int = 0
    dropped: int = 0
    dropped_by_reason: dict[str, int] = field(default_factory=dict)
    latency_ms: Latency = field(default_factory=Latency)
    first_hour: str | None = None
    last_hour: str | None = None
    hours: list[HourStats] = field(default_factory=list)
    routes: list[RouteStats] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Return the stats as a JSON-ready dict with the documented key names."""
        data = asdict(self)
        data["hours"] = [
            {
                "hour": hour.hour,
                "requests": hour.requests,
                "4xx": hour.client_errors,
                "5xx": hour.server_errors,
                "p95_ms": _round(hour.p95_ms),
            }
            for hour in self.hours
        ]
        data["routes"] = [
            {
                "route": route.route,
                "method": route.method,
                "requests": route.requests,
                "4xx": route.client_errors,
                "5xx": route.server_errors,
                "avg_ms": _round(route.avg_ms),
                "p95_ms": _round(route.p95_ms),
            }
            for route in self.routes
        ]
        data["latency_ms"] = {key: _round(value) for key, value in data["latency_ms"].items()}
        return data


def _round(value: float | None) -> float | None:
    # Three decimals is a microsecond, finer than any estimate here.
    return None if value is None else round(value, 3)


_EPOCH = dt.datetime(1970, 1, 1)


def hour_to_iso(hour: int) -> str:
    """Return the ISO 8601 UTC start of hour number `hour` (ts // 3_600_000).

    The year always has four digits ("0001-05-16T20:00:00Z"): strftime's %Y
    drops leading zeros on glibc. Raises OverflowError outside the years 1 to 9999.
    """
    moment = _EPOCH + dt.timedelta(hours=hour)
    return moment.isoformat(timespec="seconds") + "Z"


def status_class(status_hundreds: int) -> str:
    """Return the status class key ("2xx" and so on) for `status // 100`."""
    if 1 <= status_hundreds <= 5:
        return f"{status_hundreds}xx"
    return OTHER_STATUS


def _average(total_ms: float | None, timed: int | None) -> float | None:
    if not timed:
        return None
    return total_ms / timed


@contextlib.contextmanager
def snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """Run the enclosed reads in one read transaction, so they all see the same commit.

    Without it, a writer committing between two SELECTs could make totals
    and their breakdowns disagree. Inside an open transaction it does nothing.
    """
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.rollback()


def read_stats(
    conn: sqlite3.Connection, window: Window | None = None, route_limit: int = 10
) -> Stats:
    """Read the request, error and drop figures of `window` (None: all data) from the rollups.

    Totals, latency and the hourly list come from request_hourly (one row
    per hour), status codes and routes from the compacted hours where valid
    and from request_rollups otherwise. All from one snapshot.
    """
    with snapshot(conn):
        return _read_stats(conn, window, route_limit)


def _read_stats(conn: sqlite3.Connection, window: Window | None, route_limit: int) -> Stats:
    window = window or Window()
    params = window.hour_params()
    stats = Stats()

    per_hour = _read_hourly(conn, params)
    total = RollupTotals()
    for totals in per_hour.values():
        total.merge(totals)
    stats.requests = total.count
    stats.latency_ms = total.latency()
    if per_hour:
        stats.first_hour = hour_to_iso(min(per_hour))
        stats.last_hour = hour_to_iso(max(per_hour))
    stats.hours = [
        HourStats(hour_to_iso(hour), totals.count, totals.client_errors, totals.server_errors,
                  _p95(totals))
        for hour, totals in sorted(per_hour.items())
    ]  # fmt: skip

    split = window_compaction(conn, window)
    endpoints, status_codes = _read_endpoint_totals(conn, split)
    for status, count in status_codes.items():
        key = status_class(int(status / 100))  # truncated like SQLite's integer division
        stats.status[key] = stats.status.get(key, 0) + count
    stats.routes = _top_routes(conn, split, endpoints[:route_limit])

    stats.errors, stats.error_groups = conn.execute(ERROR_TOTALS_SQL, params).fetchone()
    stats.dropped_by_reason = {reason: count for reason, count in conn.execute(DROPPED_SQL, params)}
    stats.dropped = sum(stats.dropped_by_reason.values())
    return stats


def _p95(totals: RollupTotals) -> float | None:
    if not totals.timed:
        return None
    (p95,) = histogram.quantiles(totals.buckets, (0.95,), totals.min_ms, totals.max_ms)
    return p95


def _top_routes(
    conn: sqlite3.Connection, split: Mapping[str, str], endpoints: list[EndpointStats]
) -> list[RouteStats]:
    """Return `endpoints` (most requests first) as RouteStats with their p95 latency."""
    merged = read_endpoint_buckets(conn, split, [(e.route, e.method) for e in endpoints])
    routes = []
    for endpoint in endpoints:
        buckets = merged.get((endpoint.route, endpoint.method))
        p95 = None
        if buckets:
            (p95,) = histogram.quantiles(buckets, (0.95,), endpoint.min_ms, endpoint.latency_ms.max)
        routes.append(
            RouteStats(
                route=endpoint.route,
                method=endpoint.method,
                requests=endpoint.requests,
                client_errors=endpoint.client_errors,
                server_errors=endpoint.server_errors,
                avg_ms=endpoint.latency_ms.avg,
                p95_ms=p95,
            )
        )
    return routes


# --- dashboard views -----------------------------------------------------------------
#
# The overview decodes histogram buckets only where it needs percentiles: one
# request_hourly row per hour for the totals and the hourly series, and the
# request_rollups rows of the endpoints it shows. Counts and averages per
# endpoint and status code come from SQL GROUP BY without decoding buckets.

REQUEST_HOURLY_ROWS_SQL = """
    SELECT hour, count, timed_count, sum_ms, min_ms, max_ms, client_errors, server_errors,
           buckets
    FROM request_hourly
    WHERE hour BETWEEN :first_hour AND :last_hour
"""

# Hours are read from the compacted tables (endpoint_hourly, status_hourly)
# where their compaction is valid, and from request_rollups otherwise; see
# compaction.py. The statements below take :compacted and :uncompacted, two
# JSON arrays of hour numbers from `split_compacted`.
WINDOW_COMPACTION_SQL = """
    SELECT h.hour, c.request_count IS h.count
    FROM request_hourly AS h
    LEFT JOIN compacted_hours AS c ON c.hour = h.hour
    WHERE h.hour BETWEEN :first_hour AND :last_hour
"""

# :hours is a JSON array of hour numbers.
HOURS_COMPACTION_SQL = """
    SELECT h.hour, c.request_count IS h.count
    FROM request_hourly AS h
    LEFT JOIN compacted_hours AS c ON c.hour = h.hour
    WHERE h.hour IN (SELECT value FROM json_each(:hours))
"""

COMPACTED_ENDPOINT_ROWS_SQL = """
    SELECT hour, route, method, count, client_errors, server_errors, timed_count, sum_ms,
           min_ms, max_ms
    FROM endpoint_hourly
    WHERE hour IN (SELECT value FROM json_each(:compacted))
"""

UNCOMPACTED_ROLLUP_ROWS_SQL = """
    SELECT hour, route, method, status, count, timed_count, sum_ms, min_ms, max_ms
    FROM request_rollups
    WHERE hour IN (SELECT value FROM json_each(:uncompacted))
"""

HOURS_STATUS_TOTALS_SQL = """
    SELECT hour, status, count
    FROM status_hourly
    WHERE hour IN (SELECT value FROM json_each(:compacted))
    UNION ALL
    SELECT hour, status, sum(count)
    FROM request_rollups
    WHERE hour IN (SELECT value FROM json_each(:uncompacted))
    GROUP BY hour, status
"""

STATUS_TOTALS_SQL = f"""
    SELECT status, sum(count) FROM ({HOURS_STATUS_TOTALS_SQL}) GROUP BY status
"""

# :endpoints is a JSON array of [route, method] pairs. The buckets are merged
# in Python: orjson plus a dict merge took about a fifth of the time of
# json_each() with GROUP BY on the bench's 10 million event file.
_CHOSEN_ENDPOINTS = """(route, method) IN (
          SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]')
          FROM json_each(:endpoints)
      )"""
HOURS_ENDPOINT_BUCKETS_SQL = f"""
    SELECT route, method, buckets
    FROM endpoint_hourly
    WHERE hour IN (SELECT value FROM json_each(:compacted)) AND timed_count > 0
      AND {_CHOSEN_ENDPOINTS}
    UNION ALL
    SELECT route, method, buckets
    FROM request_rollups
    WHERE hour IN (SELECT value FROM json_each(:uncompacted)) AND timed_count > 0
      AND {_CHOSEN_ENDPOINTS}
"""

# One endpoint's rows of the hours of :compacted and :uncompacted. The
# primary keys start with (hour, route, method), so each hour is one seek.
ENDPOINT_COMPACTED_ROWS_SQL = """
    SELECT hour, count, client_errors, server_errors, timed_count, sum_ms, min_ms, max_ms,
           buckets
    FROM endpoint_hourly
    WHERE hour IN (SELECT value FROM json_each(:compacted))
      AND route = :route AND method = :method
"""

ENDPOINT_ROLLUP_ROWS_SQL = """
    SELECT hour, route, method, status, count, timed_count, sum_ms, min_ms, max_ms, buckets
    FROM request_rollups
    WHERE hour IN (SELECT value FROM json_each(:uncompacted))
      AND route = :route AND method = :method
"""

HOURLY_ERRORS_SQL = """
    SELECT hour, sum(count)
    FROM error_rollups
    WHERE hour BETWEEN :first_hour AND :last_hour
    GROUP BY hour
"""

HOURLY_DROPPED_SQL = """
    SELECT hour, sum(count)
    FROM dropped_rollups
    WHERE hour BETWEEN :first_hour AND :last_hour
    GROUP BY hour
"""

METRIC_ROLLUP_ROWS_SQL = """
    SELECT hour, name, tags, unit, count, sum, min, max, buckets
    FROM metric_rollups
    WHERE hour BETWEEN :first_hour AND :last_hour
    ORDER BY name, tags, hour
"""

ERROR_GROUP_STATUSES = ("unresolved", "resolved", "ignored")

ERROR_GROUP_COLUMNS = """
    id, fingerprint, type, message, count, first_seen, last_seen, status, resolved_at, regressions
"""

# Groups with at least one event in the window, newest first; :status NULL means any.
ERROR_GROUPS_SQL = f"""
    SELECT {ERROR_GROUP_COLUMNS}, window.events
    FROM error_groups
    JOIN (
        SELECT fingerprint, sum(count) AS events
        FROM error_rollups
        WHERE hour BETWEEN :first_hour AND :last_hour
        GROUP BY fingerprint
    ) AS window USING (fingerprint)
    WHERE :status IS NULL OR status = :status
    ORDER BY last_seen DESC, id DESC
    LIMIT :limit OFFSET :offset
"""

ERROR_GROUP_COUNTS_SQL = """
    SELECT status, count(*)
    FROM error_groups
    WHERE fingerprint IN (
        SELECT fingerprint FROM error_rollups WHERE hour BETWEEN :first_hour AND :last_hour
    )
    GROUP BY status
"""

ERROR_GROUP_SQL = f"""
    SELECT {ERROR_GROUP_COLUMNS}, latest_event
    FROM error_groups
    WHERE id = :id
"""

ERROR_GROUP_HOURS_SQL = """
    SELECT hour, count
    FROM error_rollups
    WHERE fingerprint = :fingerprint AND hour BETWEEN :first_hour AND :last_hour
    ORDER BY hour
"""

# Stored samples of a group, newest first: only the fields a list shows are
# extracted, so no full event is decoded in Python.
ERROR_GROUP_SAMPLES_SQL = """
    SELECT ts, reason, json_extract(data, '$.level'), json_extract(data, '$.message'),
           json_extract(data, '$.trace_id')
    FROM error_samples
    WHERE fingerprint = :fingerprint
    ORDER BY ts DESC, id DESC
    LIMIT :limit
"""

# The one write of the dashboard. Resolving stores the time, so the writer can
# tell a later event (a regression, which reopens the group) from an earlier one.
SET_ERROR_GROUP_STATUS_SQL = """
    UPDATE error_groups
    SET status = :status,
        resolved_at = CASE WHEN :status = 'resolved' THEN :now_ms ELSE NULL END
    WHERE id = :id
"""


class RollupTotals:
    """Counts, duration sums and merged histogram buckets of some rollup rows."""

    __slots__ = ("buckets", "client_errors", "count", "max_ms", "min_ms", "server_errors",
                 "sum_ms", "timed")  # fmt: skip

    def __init__(self) -> None:
        self.count = 0
        self.client_errors = 0
        self.server_errors = 0
        self.timed = 0
        self.sum_ms = 0.0
        self.min_ms: float | None = None
        self.max_ms: float | None = None
        self.buckets: dict[str, int] = {}

    @classmethod
    def of(
        cls,
        count: int,
        client_errors: int,
        server_errors: int,
        timed: int,
        sum_ms: float,
        min_ms: float | None,
        max_ms: float | None,
        buckets_text: str | None = None,
    ) -> RollupTotals:
        """Build totals from the columns of a summed row; buckets are decoded when given."""
        totals = cls()
        totals.count = count
        totals.client_errors = client_errors
        totals.server_errors = server_errors
        if timed:
            totals.timed = timed
            totals.sum_ms = sum_ms
            totals.min_ms = min_ms
            totals.max_ms = max_ms
            if buckets_text is not None:
                totals.buckets = histogram.decode(buckets_text)
        return totals

    def add(
        self,
        status: int,
        count: int,
        timed: int,
        sum_ms: float,
        min_ms: float | None,
        max_ms: float | None,
        buckets: dict[str, int],
    ) -> None:
        self.count += count
        if 400 <= status <= 499:
            self.client_errors += count
        elif 500 <= status <= 599:
            self.server_errors += count
        if not timed:
            return
        self.timed += timed
        self.sum_ms += sum_ms
        if min_ms is not None and (self.min_ms is None or min_ms < self.min_ms):
            self.min_ms = min_ms
        if max_ms is not None and (self.max_ms is None or max_ms > self.max_ms):
            self.max_ms = max_ms
        merged = self.buckets
        for key, bucket_count in buckets.items():
            merged[key] = merged.get(key, 0) + bucket_count

    def merge(self, other: RollupTotals) -> None:
        self.count += other.count
        self.client_errors += other.client_errors
        self.server_errors += other.server_errors
        if not other.timed:
            return
        self.timed += other.timed
        self.sum_ms += other.sum_ms
        if other.min_ms is not None and (self.min_ms is None or other.min_ms < self.min_ms):
            self.min_ms = other.min_ms
        if other.max_ms is not None and (self.max_ms is None or other.max_ms > self.max_ms):
            self.max_ms = other.max_ms
        histogram.merge(self.buckets, other.buckets)

    def latency(self) -> Latency:
        if not self.timed:
            return Latency()
        p50, p95, p99 = histogram.quantiles(self.buckets, QUANTILES, self.min_ms, self.max_ms)
        return Latency(p50=p50, p95=p95, p99=p99, avg=self.sum_ms / self.timed, max=self.max_ms)


@dataclass
class TimePoint:
    """Figures of one hour; `errors` counts captured error events, `dropped` lost events."""

    hour: int  # ts // 3_600_000
    requests: int = 0
    client_errors: int = 0
    server_errors: int = 0
    errors: int = 0
    dropped: int = 0
    avg_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "hour": hour_to_iso(self.hour),
            "requests": self.requests,
            "4xx": self.client_errors,
            "5xx": self.server_errors,
            "errors": self.errors,
            "dropped": self.dropped,
            "avg_ms": _round(self.avg_ms),
            "p50_ms": _round(self.p50_ms),
            "p95_ms": _round(self.p95_ms),
        }


@dataclass
class EndpointStats:
    """Request figures of one (route, method) pair over a window."""

    route: str
    method: str
    requests: int
    client_errors: int
    server_errors: int
    latency_ms: Latency
    min_ms: float | None = None  # smallest duration; bounds the percentile estimates below

    def to_json(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "method": self.method,
            "requests": self.requests,
            "4xx": self.client_errors,
            "5xx": self.server_errors,
            "latency_ms": {key: _round(value) for key, value in asdict(self.latency_ms).items()},
        }


@dataclass
class Overview:
    """Everything the overview page shows for one window."""

    requests: int = 0
    client_errors: int = 0
    server_errors: int = 0
    errors: int = 0
    dropped: int = 0
    latency_ms: Latency = field(default_factory=Latency)
    status_codes: dict[int, int] = field(default_factory=dict)  # exact code -> count
    timeseries: list[TimePoint] = field(default_factory=list)
    # All endpoints, most requests first. Their percentiles are None except for
    # the endpoints that are also in `slowest`.
    endpoints: list[EndpointStats] = field(default_factory=list)
    # The SLOWEST_SHOWN endpoints with the highest average latency, highest
    # first, with percentiles. Endpoints without any timed request are left out.
    slowest: list[EndpointStats] = field(default_factory=list)

    @property
    def error_rate(self) -> float | None:
        """Share of requests with a 5xx response status, or None without requests."""
        return self.server_errors / self.requests if self.requests else None


def hour_range(window: Window, per_hour: Mapping[int, Any]) -> range:
    """Return every hour of a bounded window, or of the stored data on an open side."""
    params = window.hour_params()
    first, last = params["first_hour"], params["last_hour"]
    if window.start_ms is None or window.end_ms is None:
        if not per_hour:
            return range(0)
        first = min(per_hour) if window.start_ms is None else first
        last = max(per_hour) if window.end_ms is None else last
    return range(first, last + 1)


def _timeseries(
    window: Window,
    per_hour: Mapping[int, RollupTotals],
    errors: dict[int, int],
    dropped: dict[int, int],
    latencies: Mapping[int, Latency] | None = None,
) -> list[TimePoint]:
    """Build one point per hour, taking each hour's latency from `latencies` when given."""
    known = {**dict.fromkeys(errors), **dict.fromkeys(dropped), **dict.fromkeys(per_hour)}
    points = []
    for hour in hour_range(window, known):
        point = TimePoint(hour, errors=errors.get(hour, 0), dropped=dropped.get(hour, 0))
        totals = per_hour.get(hour)
        if totals is not None:
            point.requests = totals.count
            point.client_errors = totals.client_errors
            point.server_errors = totals.server_errors
            latency = latencies[hour] if latencies is not None else totals.latency()
            point.avg_ms, point.p50_ms, point.p95_ms = latency.avg, latency.p50, latency.p95
        points.append(point)
    return points


def finish_overview(
    conn: sqlite3.Connection,
    window: Window,
    per_hour: Mapping[int, RollupTotals],
    total: RollupTotals,
    latency: Latency,
    status_codes: dict[int, int],
    endpoints: list[EndpointStats],
    slowest: list[EndpointStats],
    latencies: Mapping[int, Latency] | None = None,
) -> Overview:
    """Read the error and drop counts of `window` and build the Overview from request figures."""
    params = window.hour_params()
    errors = {hour: int(count) for hour, count in conn.execute(HOURLY_ERRORS_SQL, params)}
    dropped = {hour: int(count) for hour, count in conn.execute(HOURLY_DROPPED_SQL, params)}

    return Overview(
        requests=total.count,
        client_errors=total.client_errors,
        server_errors=total.server_errors,
        errors=sum(errors.values()),
        dropped=sum(dropped.values()),
        latency_ms=latency,
        status_codes=status_codes,
        timeseries=_timeseries(window, per_hour, errors, dropped, latencies),
        endpoints=endpoints,
        slowest=slowest,
    )


def hourly_row_totals(row: tuple[Any, ...]) -> RollupTotals:
    """Return the totals of one REQUEST_HOURLY_ROWS_SQL row, with its buckets decoded."""
    _, count, timed, sum_ms, min_ms, max_ms, client_errors, server_errors, text = row
    return RollupTotals.of(count, client_errors, server_errors, timed, sum_ms, min_ms, max_ms,
                           text)  # fmt: skip


def _read_hourly(conn: sqlite3.Connection, params: Mapping[str, int]) -> dict[int, RollupTotals]:
    return {row[0]: hourly_row_totals(row) for row in conn.execute(REQUEST_HOURLY_ROWS_SQL, params)}


def split_compacted(rows: Iterable[tuple[int, int]]) -> dict[str, str]:
    """Return the :compacted and :uncompacted parameters from (hour, valid) rows.

    The rows come from WINDOW_COMPACTION_SQL or HOURS_COMPACTION_SQL.
    """
    compacted: list[int] = []
    uncompacted: list[int] = []
    for hour, valid in rows:
        (compacted if valid else uncompacted).append(hour)
    return {
        "compacted": orjson.dumps(compacted).decode(),
        "uncompacted": orjson.dumps(uncompacted).decode(),
    }


def window_compaction(conn: sqlite3.Connection, window: Window) -> dict[str, str]:
    """Return the :compacted and :uncompacted parameters of the hours of `window`."""
    return split_compacted(conn.execute(WINDOW_COMPACTION_SQL, window.hour_params()))


EndpointHour = tuple[int, str, str]  # (hour, route, method)


def sum_rollup_rows(rows: Iterable[tuple[Any, ...]]) -> dict[EndpointHour, RollupTotals]:
    """Sum request_rollups rows per hour and endpoint.

    Each row is (hour, route, method, status, count, timed_count, sum_ms,
    min_ms, max_ms), optionally followed by the row's buckets text, which is
    then merged. Duration sums are added with math.fsum, which rounds once,
    so they do not depend on the order of the rows. Compaction stores these
    same values, so compacted and uncompacted reads agree exactly.
    """
    totals: dict[EndpointHour, RollupTotals] = {}
    sums: dict[EndpointHour, list[float]] = {}
    for hour, route, method, status, count, timed, sum_ms, min_ms, max_ms, *text in rows:
        key = (hour, route, method)
        entry = totals.get(key)
        if entry is None:
            entry = totals[key] = RollupTotals()
            sums[key] = []
        buckets = histogram.decode(text[0]) if text and timed else {}
        entry.add(status, count, timed, 0.0, min_ms, max_ms, buckets)  # sum_ms is set below
        if timed:
            sums[key].append(sum_ms)
    for key, values in sums.items():
        totals[key].sum_ms = math.fsum(values)
    return totals


def read_endpoint_hours(
    conn: sqlite3.Connection, split: Mapping[str, str]
) -> dict[EndpointHour, RollupTotals]:
    """Read the totals per hour and endpoint of the hours of `split`, without buckets.

    Compacted hours come from endpoint_hourly, the others are summed from
    request_rollups by `sum_rollup_rows`.
    """
    result = sum_rollup_rows(conn.execute(UNCOMPACTED_ROLLUP_ROWS_SQL, split))
    for hour, route, method, *columns in conn.execute(COMPACTED_ENDPOINT_ROWS_SQL, split):
        result[(hour, route, method)] = RollupTotals.of(*columns)
    return result


def _read_endpoint_totals(
    conn: sqlite3.Connection, split: Mapping[str, str]
) -> tuple[list[EndpointStats], dict[int, int]]:
    """Read every endpoint's counts and average latency, and the count per status code.

    Duration sums over the hours are added with math.fsum, so the figures do
    not depend on which hours are compacted.
    """
    uncompacted = sum_rollup_rows(conn.execute(UNCOMPACTED_ROLLUP_ROWS_SQL, split))
    rows = itertools.chain(
        (row[1:] for row in conn.execute(COMPACTED_ENDPOINT_ROWS_SQL, split)),
        (
            (route, method, t.count, t.client_errors, t.server_errors, t.timed, t.sum_ms,
             t.min_ms, t.max_ms)
            for (_, route, method), t in uncompacted.items()
        ),
    )  # fmt: skip
    # Per endpoint: count, 4xx, 5xx, timed count, duration sums of its hours, min, max.
    per_endpoint: dict[tuple[str, str], list[Any]] = {}
    for route, method, count, client, server, timed, sum_ms, min_ms, max_ms in rows:
        entry = per_endpoint.get((route, method))
        if entry is None:
            entry = per_endpoint[(route, method)] = [0, 0, 0, 0, [], None, None]
        entry[0] += count
        entry[1] += client
        entry[2] += server
        if timed:
            entry[3] += timed
            entry[4].append(sum_ms)
            if entry[5] is None or min_ms < entry[5]:
                entry[5] = min_ms
            if entry[6] is None or max_ms > entry[6]:
                entry[6] = max_ms

    endpoints = []
    for (route, method), (
        count,
        client,
        server,
        timed,
        sums,
        min_ms,
        max_ms,
    ) in per_endpoint.items():
        latency = Latency(avg=_average(math.fsum(sums), timed), max=max_ms)
        endpoints.append(EndpointStats(route, method, count, client, server, latency, min_ms))
    endpoints.sort(key=lambda endpoint: (-endpoint.requests, endpoint.route, endpoint.method))
    status_codes = {status: count for status, count in conn.execute(STATUS_TOTALS_SQL, split)}
    return endpoints, dict(sorted(status_codes.items()))


def read_endpoints(conn: sqlite3.Connection, window: Window) -> list[EndpointStats]:
    """Read every endpoint with requests in `window`, most requests first, without percentiles.

    The latency figures are avg and max only; `fill_percentiles` adds p50,
    p95 and p99 to the endpoints that show them.
    """
    endpoints, _ = _read_endpoint_totals(conn, window_compaction(conn, window))
    return endpoints


def read_endpoint_buckets(
    conn: sqlite3.Connection, split: Mapping[str, str], keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, int]]:
    """Read and merge the buckets of the (route, method) `keys` over the hours of `split`.

    Returns one map per endpoint that has timed requests there.
    """
    params = {**split, "endpoints": orjson.dumps([list(key) for key in keys]).decode()}
    merged: dict[tuple[str, str], dict[str, int]] = {}
    for route, method, text in conn.execute(HOURS_ENDPOINT_BUCKETS_SQL, params):
        buckets = merged.get((route, method))
        if buckets is None:
            merged[(route, method)] = histogram.decode(text)
        else:
            histogram.merge(buckets, histogram.decode(text))
    return merged


def fill_percentiles(
    conn: sqlite3.Connection,
    window: Window,
    endpoints: Iterable[EndpointStats],
    split: Mapping[str, str] | None = None,
) -> None:
    """Set p50, p95 and p99 of each of `endpoints` over `window` from their merged buckets.

    One statement for all of them; its cost grows with the compacted hours
    and rollup rows of these endpoints in the window. `split` is the
    window's `window_compaction`, read here when not given. Endpoints without
    timed requests keep None.
    """
    by_key = {(endpoint.route, endpoint.method): endpoint for endpoint in endpoints}
    if not by_key:
        return
    if split is None:
        split = window_compaction(conn, window)
    for key, merged in read_endpoint_buckets(conn, split, by_key).items():
        endpoint = by_key[key]
        latency = endpoint.latency_ms
        latency.p50, latency.p95, latency.p99 = histogram.quantiles(
            merged, QUANTILES, endpoint.min_ms, latency.max
        )


def pick_slowest(endpoints: list[EndpointStats], limit: int) -> list[EndpointStats]:
    """Return the `limit` timed endpoints with the highest average latency, highest first."""
    timed = [endpoint for endpoint in endpoints if endpoint.latency_ms.avg is not None]
    timed.sort(key=lambda e: (-(e.latency_ms.avg or 0.0), e.route, e.method))
    return timed[:limit]


def read_overview(
    conn: sqlite3.Connection, window: Window, slowest: int = SLOWEST_SHOWN
) -> Overview:
    """Read the overview of `window`: totals, hourly series, endpoints and status codes.

    With an open side the hourly series spans the stored data on that side.
    A bounded window gets one point per hour, with zeros for empty hours.
    Only the `slowest` endpoints (highest average latency) get percentiles.
    All figures come from one snapshot.
    """
    with snapshot(conn):
        return _read_overview(conn, window, slowest)


def _read_overview(conn: sqlite3.Connection, window: Window, slowest: int) -> Overview:
    # NOTE: buckets are decoded for one request_hourly row per hour and for
    # one row per compacted hour of each of the `slowest` endpoints. The cost
    # does not grow with the raw rows. It grows with the endpoints seen per
    # hour and with how many buckets each row fills, until every row is full.
    # Hours not compacted yet (the current one, or one that got events after
    # its compaction) cost more: their rows per status code are read instead.
    params = window.hour_params()
    per_hour = _read_hourly(conn, params)
    total = RollupTotals()
    for hour_totals in per_hour.values():
        total.merge(hour_totals)
    split = window_compaction(conn, window)
    endpoints, status_codes = _read_endpoint_totals(conn, split)
    slowest_endpoints = pick_slowest(endpoints, slowest)
    fill_percentiles(conn, window, slowest_endpoints, split)

    return finish_overview(
        conn,
        window,
        per_hour,
        total,
        total.latency(),
        status_codes,
        endpoints,
        slowest_endpoints,
    )


def read_timeseries(
    conn: sqlite3.Connection,
    window: Window,
    route: str | None = None,
    method: str | None = None,
) -> list[TimePoint]:
    """Read one point per hour of `window`, for all requests or one (route, method) pair.

    With a route, `errors` and `dropped` stay 0: error and drop rollups have no route.
    """
    params = window.hour_params()
    if route is None or method is None:
        errors = {hour: int(count) for hour, count in conn.execute(HOURLY_ERRORS_SQL, params)}
        dropped = {hour: int(count) for hour, count in conn.execute(HOURLY_DROPPED_SQL, params)}
        return _timeseries(window, _read_hourly(conn, params), errors, dropped)
    _, points = read_endpoint_history(conn, window, route, method)
    return points


def read_endpoint_history(
    conn: sqlite3.Connection, window: Window, route: str, method: str
) -> tuple[EndpointStats | None, list[TimePoint]]:
    """Read one (route, method) pair's totals and one point per hour of `window`.

    The totals are None when the pair has no requests in the window.
    `errors` and `dropped` of the points stay 0: error and drop rollups have no route.
    """
    params = {**window_compaction(conn, window), "route": route, "method": method}
    summed = sum_rollup_rows(conn.execute(ENDPOINT_ROLLUP_ROWS_SQL, params))
    per_hour: dict[int, RollupTotals] = {hour: totals for (hour, _, _), totals in summed.items()}
    for hour, *columns in conn.execute(ENDPOINT_COMPACTED_ROWS_SQL, params):
        per_hour[hour] = RollupTotals.of(*columns)
    total = RollupTotals()
    for hour_totals in per_hour.values():
        total.merge(hour_totals)
    # Added exactly, so the average does not depend on which hours are compacted.
    total.sum_ms = math.fsum(hour_totals.sum_ms for hour_totals in per_hour.values())
    stats = None
    if per_hour:
        stats = EndpointStats(route, method, total.count, total.client_errors,
                              total.server_errors, total.latency(), total.min_ms)  # fmt: skip
    return stats, _timeseries(window, per_hour, {}, {})


@dataclass
class MetricPoint:
    hour: int
    count: int
    avg: float
    p95: float | None
    max: float


@dataclass
class MetricSeries:
    """One custom metric (name and tag set) over a window, with a point per hour that has values."""

    name: str
    tags: dict[str, Any]
    unit: str | None
    count: int
    avg: float
    p50: float | None
    p95: float | None
    min: float
    max: float
    points: list[MetricPoint] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tags": self.tags,
            "unit": self.unit,
            "count": self.count,
            "avg": _round(self.avg),
            "p50": _round(self.p50),
            "p95": _round(self.p95),
            "min": self.min,
            "max": self.max,
            "hours": [
                {
                    "hour": hour_to_iso(point.hour),
                    "count": point.count,
                    "avg": _round(point.avg),
                    "p95": _round(point.p95),
                    "max": point.max,
                }
                for point in self.points
            ],
        }


def _decode_tags(text: str) -> dict[str, Any]:
    try:
        tags = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"tags": text}
    return tags if isinstance(tags, dict) else {"tags": tags}


def read_metrics(conn: sqlite3.Connection, window: Window) -> list[MetricSeries]:
    """Read every custom metric (per name and tag set) with values in `window`, by name."""
    series: list[MetricSeries] = []
    merged: dict[str, int] = {}
    current: tuple[str, str] | None = None
    for hour, name, tags, unit, count, total, low, high, text in conn.execute(
        METRIC_ROLLUP_ROWS_SQL, window.hour_params()
    ):
        buckets = histogram.decode(text)
        if current != (name, tags):
            _finish_metric(series, merged)
            current = (name, tags)
            merged = {}
            series.append(
                MetricSeries(name, _decode_tags(tags), unit, 0, 0.0, None, None, low, high)
            )
        entry = series[-1]
        entry.unit = unit or entry.unit
        entry.count += count
        entry.avg += total  # the sum until _finish_metric divides it
        entry.min = min(entry.min, low)
        entry.max = max(entry.max, high)
        histogram.merge(merged, buckets)
        (p95,) = histogram.quantiles(buckets, (0.95,), low, high)
        entry.points.append(MetricPoint(hour, count, total / count, p95, high))
    _finish_metric(series, merged)
    return series


def _finish_metric(series: list[MetricSeries], merged: dict[str, int]) -> None:
    if not series or not merged:
        return
    entry = series[-1]
    entry.avg = entry.avg / entry.count
    entry.p50, entry.p95 = histogram.quantiles(merged, (0.5, 0.95), entry.min, entry.max)


@dataclass
class ErrorGroup:
    """An error group's row; `events_in_window` counts its events in the window read."""

    id: int
    fingerprint: str
    type: str
    message: str
    count: int
    first_seen: int
    last_seen: int
    status: str
    resolved_at: int | None
    regressions: int
    events_in_window: int | None = None
    latest_event: dict[str, Any] | None = None
    samples: list[ErrorSample] | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for optional in ("events_in_window", "latest_event", "samples"):
            if data[optional] is None:
                del data[optional]
        return data


@dataclass
class ErrorSample:
    """A stored event of a group: `reason` is 'first', 'regression' or 'sample'."""

    ts: int
    reason: str
    level: str | None
    message: str | None
    trace_id: str | None


MAX_SAMPLES_SHOWN = 50


def read_error_samples(
    conn: sqlite3.Connection, fingerprint: str, limit: int = MAX_SAMPLES_SHOWN
) -> list[ErrorSample]:
    """Read the stored samples of the group with `fingerprint`, newest first."""
    params = {"fingerprint": fingerprint, "limit": limit}
    return [ErrorSample(*row) for row in conn.execute(ERROR_GROUP_SAMPLES_SQL, params)]


def read_error_groups(
    conn: sqlite3.Connection,
    window: Window,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[ErrorGroup]:
    """Read the groups with events in `window`, last seen first; `status` None means any.

    Raises ValueError for a status that is not one of ERROR_GROUP_STATUSES.
    """
    if status is not None and status not in ERROR_GROUP_STATUSES:
        raise ValueError(f"unknown error group status {status!r}")
    params = {**window.hour_params(), "status": status, "limit": limit, "offset": offset}
    return [ErrorGroup(*row) for row in conn.execute(ERROR_GROUPS_SQL, params)]


def count_error_groups(conn: sqlite3.Connection, window: Window) -> dict[str, int]:
    """Count the groups with events in `window` by status (every status present, maybe 0)."""
    counts = dict.fromkeys(ERROR_GROUP_STATUSES, 0)
    for status, count in conn.execute(ERROR_GROUP_COUNTS_SQL, window.hour_params()):
        counts[status] = count
    return counts


def read_error_group(conn: sqlite3.Connection, group_id: int) -> ErrorGroup | None:
    """Read one group with its latest event decoded, or None when there is no such group."""
    row = conn.execute(ERROR_GROUP_SQL, {"id": group_id}).fetchone()
    if row is None:
        return None
    *columns, latest_text = row
    group = ErrorGroup(*columns)
    try:
        latest = orjson.loads(latest_text)
    except orjson.JSONDecodeError:
        latest = {}
    group.latest_event = latest if isinstance(latest, dict) else {}
    return group


def read_error_group_hours(
    conn: sqlite3.Connection, fingerprint: str, window: Window
) -> dict[int, int]:
    """Read the event count per hour of one group in `window` (hours without events left out)."""
    params = {**window.hour_params(), "fingerprint": fingerprint}
    return {hour: count for hour, count in conn.execute(ERROR_GROUP_HOURS_SQL, params)}


def set_error_group_status(
    conn: sqlite3.Connection, group_id: int, status: str, now_ms: int
) -> bool:
    """Set a group's status on a read-write connection; return False when there is no such group.

    Resolving stores `now_ms` as resolved_at; the other statuses clear it.
    Raises ValueError for a status that is not one of ERROR_GROUP_STATUSES.
    """
    if status not in ERROR_GROUP_STATUSES:
        raise ValueError(f"unknown error group status {status!r}")
    params = {"id": group_id, "status": status, "now_ms": now_ms}
    with conn:
        cursor = conn.execute(SET_ERROR_GROUP_STATUS_SQL, params)
    return cursor.rowcount == 1
