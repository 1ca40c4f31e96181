"""Error groups for triage: list, show with samples, and set the status (resolve, ignore, reopen).

Reads run on a read-only connection (`schema.open_readonly`). The one write,
`set_group_status`, opens its own short write connection with the
busy_timeout, so it is safe beside a running writer.

Resolving stores the time (`resolved_at`, UTC epoch ms). The writer reopens
a resolved group when an event newer than that arrives and counts a
regression (see aggregate.py); reopening or ignoring clears `resolved_at`.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from hauswacht.writer.schema import BUSY_TIMEOUT_MS, DatabaseError, open_readonly

STATUSES = ("unresolved", "resolved", "ignored")
DEFAULT_LIMIT = 100

_COLUMNS = """
    id, fingerprint, scheme, type, message, count, status,
    first_seen, last_seen, resolved_at, regressions
"""

LIST_GROUPS_SQL = f"""
    SELECT {_COLUMNS}
    FROM error_groups
    WHERE :status IS NULL OR status = :status
    ORDER BY last_seen DESC, id DESC
    LIMIT :limit
"""

GROUP_SQL = f"SELECT {_COLUMNS}, latest_event FROM error_groups WHERE id = :id"

SAMPLES_SQL = """
    SELECT id, ts, reason, data
    FROM error_samples
    WHERE fingerprint = :fingerprint
    ORDER BY ts, id
"""

SET_STATUS_SQL = """
    UPDATE error_groups
    SET status = :status,
        resolved_at = CASE WHEN :status = 'resolved' THEN :now_ms ELSE NULL END
    WHERE id = :id
"""


@dataclass
class ErrorGroup:
    """One error group; times are UTC epoch ms."""

    id: int
    fingerprint: str
    scheme: int
    type: str
    message: str
    count: int
    status: str
    first_seen: int
    last_seen: int
    resolved_at: int | None
    regressions: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Sample:
    """A stored event of a group: 'first', 'regression' or 'sample'."""

    id: int
    ts: int
    reason: str
    event: dict[str, Any]


@dataclass
class GroupDetail:
    group: ErrorGroup
    latest_event: dict[str, Any]
    samples: list[Sample] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.group.to_json(),
            "latest_event": self.latest_event,
            "samples": [asdict(sample) for sample in self.samples],
        }


class GroupNotFound(LookupError):
    """No error group has the requested id."""


def _decode(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def list_groups(
    conn: sqlite3.Connection, status: str | None = None, limit: int = DEFAULT_LIMIT
) -> list[ErrorGroup]:
    """Return up to `limit` groups, most recently seen first; `status` None means any."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"invalid status {status!r}: expected one of {', '.join(STATUSES)}")
    rows = conn.execute(LIST_GROUPS_SQL, {"status": status, "limit": limit}).fetchall()
    return [ErrorGroup(*row) for row in rows]


def read_group(conn: sqlite3.Connection, group_id: int) -> GroupDetail:
    """Return a group with its latest event and samples; raise GroupNotFound."""
    row = conn.execute(GROUP_SQL, {"id": group_id}).fetchone()
    if row is None:
        raise GroupNotFound(group_id)
    group = ErrorGroup(*row[:-1])
    samples = [
        Sample(sample_id, ts, reason, _decode(data))
        for sample_id, ts, reason, data in conn.execute(
            SAMPLES_SQL, {"fingerprint": group.fingerprint}
        )
    ]
    return GroupDetail(group, _decode(row[-1]), samples)


def open_groups(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open the events database read-only for the functions above; raise DatabaseError."""
    return open_readonly(path)


def set_group_status(
    path: str | os.PathLike[str], group_id: int, status: str, now_ms: int | None = None
) -> None:
    """Set a group's status; raise GroupNotFound, ValueError for a bad status, DatabaseError."""
    if status not in STATUSES:
        raise ValueError(f"invalid status {status!r}: expected one of {', '.join(STATUSES)}")
    if now_ms is None:
        now_ms = time.time_ns() // 1_000_000
    open_readonly(path).close()  # the same checks and messages as the reads
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            changed = conn.execute(
                SET_STATUS_SQL, {"status": status, "now_ms": now_ms, "id": group_id}
            ).rowcount
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise DatabaseError.from_sqlite(path, exc, "write") from exc
    if not changed:
        raise GroupNotFound(group_id)
