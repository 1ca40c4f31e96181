"""Read-only queries over the rollup tables for `hauswacht stats`, meant for the dashboard too.

Every query here reads request_rollups, error_rollups, error_groups and
dropped_rollups only, never the raw requests, errors or metrics tables, so its
cost grows with hours x routes and not with the number of stored events.

Rollups are hourly, so a time window is widened to whole hours: an hour is
included when it contains a moment of [start_ms, end_ms), that is from the
hour containing `start_ms` up to the hour containing `end_ms - 1`. A bound
of None leaves that side open.

Latency quantiles are merged from the log-spaced histogram buckets with
SQLite's `json_each()` and estimated by `histogram.quantiles()`, so they are
within histogram.ALPHA (2 %) relative error of the exact nearest-rank value.
Requests without a duration (for example from a replayed log without a
request-time field) count as requests but not in latency figures. Latency
values are None when no request in the selection has a duration.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from hauswacht.writer import histogram

HOUR_MS = 3_600_000
QUANTILES = (0.5, 0.95, 0.99)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
OTHER_STATUS = "other"

# Every statement takes :first_hour and :last_hour; an open side of the
# window is passed as a value beyond any stored hour.
REQUEST_TOTALS_SQL = """
    SELECT status / 100 AS class, sum(count), sum(timed_count), sum(sum_ms), max(max_ms),
           min(min_ms)
    FROM request_rollups
    WHERE hour BETWEEN :first_hour AND :last_hour
    GROUP BY class
"""

REQUEST_BUCKETS_SQL = """
    SELECT bucket.key, sum(bucket.value)
    FROM request_rollups, json_each(request_rollups.buckets) AS bucket
    WHERE hour BETWEEN :first_hour AND :last_hour
    GROUP BY bucket.key
"""

HOURLY_TOTALS_SQL = """
    SELECT hour, sum(count),
           sum(CASE WHEN status BETWEEN 400 AND 499 THEN count ELSE 0 END),
           sum(CASE WHEN status BETWEEN 500 AND 599 THEN count ELSE 0 END),
           min(min_ms), max(max_ms)
    FROM request_rollups
    WHERE hour BETWEEN :first_hour AND :last_hour
    GROUP BY hour
    ORDER BY hour
"""

HOURLY_BUCKETS_SQL = """
    SELECT hour, bucket.key, sum(bucket.value)
    FROM request_rollups, json_each(request_rollups.buckets) AS bucket
    WHERE hour BETWEEN :first_hour AND :last_hour
    GROUP BY hour, bucket.key
"""

TOP_ROUTES_SQL = """
    SELECT route, method, sum(count) AS requests,
           sum(CASE WHEN status BETWEEN 400 AND 499 THEN count ELSE 0 END),
           sum(CASE WHEN status BETWEEN 500 AND 599 THEN count ELSE 0 END),
           sum(timed_count), sum(sum_ms), min(min_ms), max(max_ms)
    FROM request_rollups
    WHERE hour BETWEEN :first_hour AND :last_hour
    GROUP BY route, method
    ORDER BY requests DESC, route, method
    LIMIT :limit
"""

ROUTE_BUCKETS_SQL = """
    SELECT bucket.key, sum(bucket.value)
    FROM request_rollups, json_each(request_rollups.buckets) AS bucket
    WHERE hour BETWEEN :first_hour AND :last_hour AND route = :route AND method = :method
    GROUP BY bucket.key
"""

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

DATA_SPAN_SQL = """
    SELECT min(hour), max(hour)
    FROM request_rollups
    WHERE hour BETWEEN :first_hour AND :last_hour
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


def hour_to_iso(hour: int) -> str:
    """Return the ISO 8601 UTC start of hour number `hour` (ts // 3_600_000)."""
    moment = dt.datetime.fromtimestamp(hour * HOUR_MS / 1000, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def status_class(status_hundreds: int) -> str:
    """Return the status class key ("2xx" and so on) for `status // 100`."""
    if 1 <= status_hundreds <= 5:
        return f"{status_hundreds}xx"
    return OTHER_STATUS


def _buckets(rows: Iterable[tuple[str, int]]) -> dict[str, int]:
    return {key: int(count) for key, count in rows}


def _average(total_ms: float | None, timed: int | None) -> float | None:
    if not timed:
        return None
    return total_ms / timed


def read_stats(
    conn: sqlite3.Connection, window: Window | None = None, route_limit: int = 10
) -> Stats:
    """Read the request, error and drop figures of `window` (None: all data) from the rollups."""
    window = window or Window()
    params = window.hour_params()
    stats = Stats()

    timed = 0
    sum_ms = 0.0
    max_ms: float | None = None
    min_ms: float | None = None
    for hundreds, count, timed_count, class_sum_ms, class_max, class_min in conn.execute(
        REQUEST_TOTALS_SQL, params
    ):
        key = status_class(hundreds)
        stats.status[key] = stats.status.get(key, 0) + count
        stats.requests += count
        timed += timed_count
        sum_ms += class_sum_ms
        if class_max is not None:
            max_ms = class_max if max_ms is None else max(max_ms, class_max)
        if class_min is not None:
            min_ms = class_min if min_ms is None else min(min_ms, class_min)

    if timed:
        buckets = _buckets(conn.execute(REQUEST_BUCKETS_SQL, params))
        p50, p95, p99 = histogram.quantiles(buckets, QUANTILES, min_ms, max_ms)
        stats.latency_ms = Latency(p50=p50, p95=p95, p99=p99, avg=sum_ms / timed, max=max_ms)

    stats.errors, stats.error_groups = conn.execute(ERROR_TOTALS_SQL, params).fetchone()
    stats.dropped_by_reason = {reason: count for reason, count in conn.execute(DROPPED_SQL, params)}
    stats.dropped = sum(stats.dropped_by_reason.values())

    first, last = conn.execute(DATA_SPAN_SQL, params).fetchone()
    if first is not None:
        stats.first_hour = hour_to_iso(first)
        stats.last_hour = hour_to_iso(last)

    stats.hours = read_hours(conn, window)
    stats.routes = read_top_routes(conn, window, route_limit)
    return stats


def read_hours(conn: sqlite3.Connection, window: Window | None = None) -> list[HourStats]:
    """Read requests, 4xx, 5xx and p95 latency per hour that has requests, oldest first."""
    params = (window or Window()).hour_params()
    per_hour_buckets: dict[int, dict[str, int]] = {}
    for hour, key, count in conn.execute(HOURLY_BUCKETS_SQL, params):
        per_hour_buckets.setdefault(hour, {})[key] = int(count)

    hours = []
    for hour, requests, client_errors, server_errors, min_ms, max_ms in conn.execute(
        HOURLY_TOTALS_SQL, params
    ):
        buckets = per_hour_buckets.get(hour, {})
        (p95,) = histogram.quantiles(buckets, (0.95,), min_ms, max_ms)
        hours.append(HourStats(hour_to_iso(hour), requests, client_errors, server_errors, p95))
    return hours


def read_top_routes(
    conn: sqlite3.Connection, window: Window | None = None, limit: int = 10
) -> list[RouteStats]:
    """Read the `limit` (route, method) pairs with the most requests, most first."""
    params = (window or Window()).hour_params()
    rows = conn.execute(TOP_ROUTES_SQL, {**params, "limit": limit}).fetchall()

    routes = []
    for (
        route,
        method,
        requests,
        client_errors,
        server_errors,
        timed,
        sum_ms,
        min_ms,
        max_ms,
    ) in rows:
        p95 = None
        if timed:
            route_params = {**params, "route": route, "method": method}
            buckets = _buckets(conn.execute(ROUTE_BUCKETS_SQL, route_params))
            (p95,) = histogram.quantiles(buckets, (0.95,), min_ms, max_ms)
        routes.append(
            RouteStats(
                route=route,
                method=method,
                requests=requests,
                client_errors=client_errors,
                server_errors=server_errors,
                avg_ms=_average(sum_ms, timed),
                p95_ms=p95,
            )
        )
    return routes
