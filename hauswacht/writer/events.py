"""Event records that travel from producers through the queue into the writer.

Events are named tuples because they are cheap to build on the request path and
`executemany` takes them as parameter rows as they are: the field order of
`RequestEvent` and `MetricEvent` is the column order of their raw tables.

Times are integer UTC epoch milliseconds; durations are milliseconds as floats.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class RequestEvent(NamedTuple):
    """One HTTP request as the middleware or the ingest endpoint saw it."""

    ts: int
    method: str
    route: str
    path: str
    status: int
    duration_ms: float | None
    ttfb_ms: float | None
    response_bytes: int | None
    client: str | None
    user_agent: str | None
    trace_id: str | None


class MetricEvent(NamedTuple):
    """One observation of a custom metric.

    `tags` is the canonical JSON text of the tag mapping (sorted keys, `{}` when
    there are none), so equal tag sets share one rollup row.
    """

    ts: int
    name: str
    value: float
    unit: str | None
    tags: str


class ErrorEvent(NamedTuple):
    """One captured exception or error message.

    `data` is the whole event as a JSON-serialisable dict (chain, frames, request
    context, tags). `fingerprint` is a client-supplied grouping key or None, in
    which case the writer computes the default fingerprint from `data`.
    """

    ts: int
    type: str
    message: str
    level: str
    trace_id: str | None
    fingerprint: str | None
    data: dict[str, Any]


Event = RequestEvent | MetricEvent | ErrorEvent

UNMATCHED_ROUTE = "(unmatched)"
"""Route label shared by every request that no route matched, so 404 scans
cannot create one rollup row per scanned path."""
