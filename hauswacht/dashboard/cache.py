"""A per-process cache of whole hours for the dashboard overview.

`OverviewCache.read_overview(conn, window, slowest)` returns the same
Overview as `queries.read_overview(conn, window, slowest)` on the same
database state. Only float sums may differ in the last bits, because they
are added up in another order. Under the overview's auto-refresh most hours of
the window have not changed since the last load, so their per-endpoint
figures are taken from memory instead of being read and merged again.

Invariants:
- An hour's entry is used only while that hour's request_hourly row is equal
  in every column, the buckets text included, to the row the entry was built
  from. The writer updates request_hourly in the same transaction as
  request_rollups, so any event stored in an hour (a new one, or an old one
  from a replayed log) changes the row, and the hour is read again.
  NOTE: request_rollups rows changed without a change to request_hourly
  (only by hand, outside the writer) stay unseen while the hour is cached.
- Hours from the current UTC hour on are never stored, so they are read on
  every call.
- One call reads inside one read transaction, so the request_hourly rows and
  the request_rollups rows it reads come from the same snapshot.
- An hour is built from its compacted rows (endpoint_hourly, status_hourly)
  while they are valid and from its request_rollups rows otherwise (see
  compaction.py). Both give the same figures, so an entry stays valid when
  its hour is compacted later.
- At most `max_hours` hour entries and `max_spans` merged spans are kept;
  the least recently used go first. An hour entry keeps scalars per endpoint
  and status code, the request_hourly row and its decoded buckets. A span
  keeps merged buckets of the `slowest` endpoints only. Per-endpoint
  buckets of single hours are not kept.
- `_lock` guards the two maps and the serial counter; SQL, JSON decoding and
  merging run outside it. Entries are not changed after they are stored,
  and spans only in their lazily filled fields (latency, merged buckets,
  percentiles). Those are set without the lock because every thread
  computes the same value for them, and one store is atomic.

Error and drop counts are not cached: they are read on every call.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from hauswacht.writer import histogram
from hauswacht.writer.queries import (
    HOUR_MS,
    HOURS_COMPACTION_SQL,
    HOURS_STATUS_TOTALS_SQL,
    QUANTILES,
    REQUEST_HOURLY_ROWS_SQL,
    SLOWEST_SHOWN,
    EndpointStats,
    Latency,
    Overview,
    RollupTotals,
    Window,
    finish_overview,
    hourly_row_totals,
    pick_slowest,
    read_endpoint_buckets,
    read_endpoint_hours,
    split_compacted,
)

logger = logging.getLogger(__name__)

# 31 days of hours: the overview's longest preset range (30 days) fits with a
# day to spare.
DEFAULT_MAX_HOURS = 24 * 31
# Merged spans of hours; each auto-refreshing range that is open needs one.
DEFAULT_MAX_SPANS = 16

Endpoint = tuple[str, str]  # (route, method)
Percentiles = tuple[float | None, float | None, float | None]  # p50, p95, p99


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class _Hour:
    """One hour's figures, built from its request_hourly row and its endpoint rows."""

    row: tuple[Any, ...]  # the request_hourly row this entry was built from
    serial: int  # unique per built entry; names the entry in span keys
    totals: RollupTotals  # from request_hourly, with the buckets of all requests
    latency: Latency
    endpoints: dict[Endpoint, RollupTotals]  # counts and durations, no buckets
    status_codes: dict[int, int]


@dataclass
class _Span:
    """The merged figures of a set of cached hours."""

    totals: RollupTotals
    endpoints: dict[Endpoint, RollupTotals]
    status_codes: dict[int, int]
    latency: Latency | None = None  # of `totals`, filled on first use
    buckets: dict[Endpoint, dict[str, int]] = field(default_factory=dict)  # merged lazily
    percentiles: dict[Endpoint, Percentiles] = field(default_factory=dict)  # filled lazily


class OverviewCache:
    """Cached per-hour figures for `read_overview`; safe to share between threads."""

    def __init__(
        self,
        max_hours: int = DEFAULT_MAX_HOURS,
        max_spans: int = DEFAULT_MAX_SPANS,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        if max_hours < 1 or max_spans < 1:
            raise ValueError(
                f"invalid cache size max_hours={max_hours}, max_spans={max_spans}: "
                "both must be at least 1"
            )
        self.max_hours = max_hours
        self.max_spans = max_spans
        self._clock = clock  # UTC epoch ms; hours from the current one on are not stored
        self._lock = threading.Lock()
        self._hours: OrderedDict[int, _Hour] = OrderedDict()
        self._spans: OrderedDict[tuple[tuple[int, int], ...], _Span] = OrderedDict()
        self._serial = 0
        self.hits = 0  # hours served from memory
        self.misses = 0  # hours read from the database

    def __len__(self) -> int:
        """Return the number of cached hours."""
        with self._lock:
            return len(self._hours)

    def clear(self) -> None:
        """Drop every cached hour and span."""
        with self._lock:
            self._hours.clear()
            self._spans.clear()

    def read_overview(
        self, conn: sqlite3.Connection, window: Window, slowest: int = SLOWEST_SHOWN
    ) -> Overview:
        """Read the overview of `window` like `queries.read_overview`, reusing unchanged hours."""
        own_transaction = not conn.in_transaction
        if own_transaction:
            conn.execute("BEGIN")
        try:
            return self._read_overview(conn, window, slowest)
        finally:
            if own_transaction:
                conn.rollback()  # a read transaction; nothing to keep

    # -- reading -----------------------------------------------------------------------

    def _read_overview(self, conn: sqlite3.Connection, window: Window, slowest: int) -> Overview:
        params = window.hour_params()
        rows = {row[0]: row for row in conn.execute(REQUEST_HOURLY_ROWS_SQL, params)}
        cached, missing = self._lookup(rows)
        fresh = self._read_hours(conn, [rows[hour] for hour in missing])
        self._store(cached, fresh)

        span = self._span(cached)
        per_hour = {**cached, **fresh}
        total, latency, per_endpoint, status_codes = _combine(span, fresh.values())

        endpoints = []
        for (route, method), totals in per_endpoint.items():
            average = totals.sum_ms / totals.timed if totals.timed else None
            endpoint_latency = Latency(avg=average, max=totals.max_ms)
            endpoints.append(
                EndpointStats(route, method, totals.count, totals.client_errors,
                              totals.server_errors, endpoint_latency, totals.min_ms)
            )  # fmt: skip
        endpoints.sort(key=lambda endpoint: (-endpoint.requests, endpoint.route, endpoint.method))
        slowest_endpoints = pick_slowest(endpoints, slowest)
        percentiles = self._percentiles(conn, span, cached, fresh, slowest_endpoints)
        for endpoint in slowest_endpoints:
            latency_ms = endpoint.latency_ms
            latency_ms.p50, latency_ms.p95, latency_ms.p99 = percentiles[
                (endpoint.route, endpoint.method)
            ]

        return finish_overview(
            conn,
            window,
            {hour: entry.totals for hour, entry in per_hour.items()},
            total,
            latency,
            dict(sorted(status_codes.items())),
            endpoints,
            slowest_endpoints,
            latencies={hour: entry.latency for hour, entry in per_hour.items()},
        )

    def _lookup(self, rows: dict[int, tuple[Any, ...]]) -> tuple[dict[int, _Hour], list[int]]:
        """Split the window's hours into valid cached entries and hours to read."""
        cached: dict[int, _Hour] = {}
        missing: list[int] = []
        with self._lock:
            for hour, row in rows.items():
                entry = self._hours.get(hour)
                if entry is not None and entry.row == row:
                    cached[hour] = entry
                else:
                    missing.append(hour)
            self.hits += len(cached)
            self.misses += len(missing)
        return cached, missing

    def _read_hours(
        self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]
    ) -> dict[int, _Hour]:
        """Build entries for the hours of `rows` from their compacted or request_rollups rows."""
        if not rows:
            return {}
        logger.debug("reading %d hours of endpoint figures for the overview", len(rows))
        endpoints: dict[int, dict[Endpoint, RollupTotals]] = {row[0]: {} for row in rows}
        status_codes: dict[int, dict[int, int]] = {row[0]: {} for row in rows}
        split = _hours_compaction(conn, endpoints)
        for (hour, route, method), totals in read_endpoint_hours(conn, split).items():
            endpoints[hour][(route, method)] = totals
        for hour, status, count in conn.execute(HOURS_STATUS_TOTALS_SQL, split):
            status_codes[hour][status] = count

        with self._lock:
            first_serial = self._serial
            self._serial += len(rows)
        entries = {}
        for offset, row in enumerate(rows):
            hour = row[0]
            totals = hourly_row_totals(row)
            entries[hour] = _Hour(
                row=row,
                serial=first_serial + offset,
                totals=totals,
                latency=totals.latency(),
                endpoints=endpoints[hour],
                status_codes=status_codes[hour],
            )
        return entries

    def _store(self, cached: dict[int, _Hour], fresh: dict[int, _Hour]) -> None:
        """Store the window's hours as most recently used, the latest hour last.

        So when the window has more hours than the bound, its latest hours
        stay. An entry another thread stored meanwhile may be replaced, which
        is safe because every entry is checked against its row before use.
        """
        current_hour = self._clock() // HOUR_MS
        entries = {**cached, **fresh}
        with self._lock:
            for hour in sorted(entries):
                if hour >= current_hour:
                    continue  # still filling up; read again on every call
                self._hours[hour] = entries[hour]
                self._hours.move_to_end(hour)
            while len(self._hours) > self.max_hours:
                self._hours.popitem(last=False)

    # -- merging -----------------------------------------------------------------------

    def _span(self, cached: dict[int, _Hour]) -> _Span:
        """Return the merged figures of the cached hours, built once per set of entries."""
        key = tuple(sorted((hour, entry.serial) for hour, entry in cached.items()))
        with self._lock:
            span = self._spans.get(key)
            if span is not None:
                self._spans.move_to_end(key)
                return span

        totals = RollupTotals()
        endpoints: dict[Endpoint, RollupTotals] = {}
        status_codes: dict[int, int] = {}
        for entry in cached.values():
            totals.merge(entry.totals)
            _merge_endpoints(endpoints, entry.endpoints)
            for code, count in entry.status_codes.items():
                status_codes[code] = status_codes.get(code, 0) + count
        span = _Span(totals, endpoints, status_codes)

        with self._lock:
            span = self._spans.setdefault(key, span)
            self._spans.move_to_end(key)
            while len(self._spans) > self.max_spans:
                self._spans.popitem(last=False)
        return span

    def _percentiles(
        self,
        conn: sqlite3.Connection,
        span: _Span,
        cached: dict[int, _Hour],
        fresh: dict[int, _Hour],
        endpoints: list[EndpointStats],
    ) -> dict[Endpoint, Percentiles]:
        """Estimate p50, p95 and p99 of `endpoints` over the cached and the fresh hours.

        The span keeps each endpoint's buckets merged over its hours, so their
        rows are read once per span. The buckets of fresh hours are read on
        every call.
        """
        keys = [(endpoint.route, endpoint.method) for endpoint in endpoints]
        if not fresh and all(key in span.percentiles for key in keys):
            return {key: span.percentiles[key] for key in keys}

        unmerged = [key for key in keys if key not in span.buckets]
        if unmerged:
            merged = _read_endpoint_buckets(conn, cached, unmerged)
            for key in unmerged:
                span.buckets.setdefault(key, merged.get(key, {}))
        fresh_buckets = _read_endpoint_buckets(conn, fresh, keys) if fresh else {}

        results = {}
        for endpoint, key in zip(endpoints, keys, strict=True):
            buckets = span.buckets[key]
            if key in fresh_buckets:
                buckets = dict(buckets)
                histogram.merge(buckets, fresh_buckets[key])
            p50, p95, p99 = histogram.quantiles(
                buckets, QUANTILES, endpoint.min_ms, endpoint.latency_ms.max
            )
            results[key] = (p50, p95, p99)
            if not fresh:
                span.percentiles[key] = results[key]
        return results


def _hours_compaction(conn: sqlite3.Connection, hours: Iterable[int]) -> dict[str, str]:
    """Return the :compacted and :uncompacted parameters of `hours`."""
    params = {"hours": orjson.dumps(list(hours)).decode()}
    return split_compacted(conn.execute(HOURS_COMPACTION_SQL, params))


def _read_endpoint_buckets(
    conn: sqlite3.Connection, hours: Iterable[int], keys: list[Endpoint]
) -> dict[Endpoint, dict[str, int]]:
    """Read and merge the buckets of `keys` over `hours`, one map per endpoint with timed rows."""
    return read_endpoint_buckets(conn, _hours_compaction(conn, hours), keys)


def _merge_endpoints(
    into: dict[Endpoint, RollupTotals], other: dict[Endpoint, RollupTotals]
) -> None:
    for key, totals in other.items():
        merged = into.get(key)
        if merged is None:
            merged = into[key] = RollupTotals()
        merged.merge(totals)


def _combine(
    span: _Span, fresh: Iterable[_Hour]
) -> tuple[RollupTotals, Latency, dict[Endpoint, RollupTotals], dict[int, int]]:
    """Add the fresh hours to the span's figures without changing the span."""
    fresh = list(fresh)
    if not fresh:
        if span.latency is None:
            span.latency = span.totals.latency()
        return span.totals, span.latency, span.endpoints, span.status_codes

    totals = RollupTotals()
    totals.merge(span.totals)
    endpoints: dict[Endpoint, RollupTotals] = {}
    _merge_endpoints(endpoints, span.endpoints)
    status_codes = dict(span.status_codes)
    for entry in fresh:
        totals.merge(entry.totals)
        _merge_endpoints(endpoints, entry.endpoints)
        for code, count in entry.status_codes.items():
            status_codes[code] = status_codes.get(code, 0) + count
    return totals, totals.latency(), endpoints, status_codes
