"""The vault's audit log: one hash-chained row per access, never a value.

Each row records who (actor), what (action, secret name, version), the outcome
('ok', 'unchanged' or the error code of a failed access), when (UTC epoch ms)
and from where (pid, host). Rows are only appended: a successful access in
the `BEGIN IMMEDIATE` transaction of the change it describes, a failed one in
a transaction of its own. The write lock orders them, so every row links to
the one before it.

Chain: hash = SHA-256 over the previous row's hash and this row's fields
(JSON array, fixed order). The first row links to a hash derived from the
vault id. Ids come from AUTOINCREMENT, so they never repeat. `verify_chain`
reports:
- 'edited': a row whose fields no longer match its own hash;
- 'relinked': a row replaced together with a recomputed hash, found because
  the next row links to the old hash;
- 'missing': a gap in the ids (deleted rows);
- 'truncated': rows deleted at the end (sqlite_sequence is ahead of the last id);
- 'init_missing': row 1 is not the `init` row that every vault's log starts
  with, and no 'missing' or 'truncated' break covers it (for example when every
  row and the sqlite_sequence entry were deleted).

The log also records the version of every successful write. `latest_write`
returns the newest one per secret, so the store can notice a versions table
that was rolled back behind the log's back.

Actors are checked by `check_actor`: control and format characters (newlines,
escape sequences, bidirectional overrides) are rejected, because they could
make one row look like several in a terminal. `escape_controls` escapes them
for display, for rows written before that check or by other tools.

Limit: the chain is not keyed. Someone who can write the file can rebuild the
whole chain after editing it; comparing the head hash with one noted earlier
(printed by `hauswacht vault audit --verify`) detects that.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
import sqlite3
import time
import unicodedata
from dataclasses import dataclass, field

from hauswacht.vault.errors import InvalidActorError

AUDIT_SCHEMA = """
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    secret TEXT,
    version INTEGER,
    outcome TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
) STRICT;
CREATE INDEX audit_secret ON audit (secret, id);
"""

# Added by schema version 2: finds a secret's newest write without scanning its reads.
AUDIT_ACTION_INDEX = "CREATE INDEX audit_secret_action ON audit (secret, action, id)"

SELECT_HEAD = "SELECT hash FROM audit ORDER BY id DESC LIMIT 1"
INSERT_ROW = """
INSERT INTO audit (id, ts, actor, action, secret, version, outcome, pid, host, prev_hash, hash)
VALUES (:id, :ts, :actor, :action, :secret, :version, :outcome, :pid, :host, :prev_hash, :hash)
"""
SELECT_NEXT_ID = """
SELECT max(
    coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'audit'), 0),
    coalesce((SELECT max(id) FROM audit), 0)
) + 1
"""
SELECT_ROWS = """
SELECT id, ts, actor, action, secret, version, outcome, pid, host, prev_hash, hash
FROM audit
WHERE (:secret IS NULL OR secret = :secret)
ORDER BY id DESC
LIMIT :limit
"""
SELECT_ALL_ROWS = """
SELECT id, ts, actor, action, secret, version, outcome, pid, host, prev_hash, hash
FROM audit ORDER BY id
"""
SELECT_SEQUENCE = "SELECT seq FROM sqlite_sequence WHERE name = 'audit'"
SELECT_LATEST_WRITE = """
SELECT id, version FROM audit
WHERE secret = ? AND action = 'write' AND outcome = 'ok'
ORDER BY id DESC LIMIT 1
"""
SELECT_LATEST_DESTROY_ALL = """
SELECT id FROM audit
WHERE secret = ? AND action = 'destroy' AND version IS NULL AND outcome = 'ok'
ORDER BY id DESC LIMIT 1
"""

# Unicode categories that may not appear in an actor: control, format, line and
# paragraph separators.
_CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})

# Every action that appears in the log; 'verify-key' is recorded only when it fails.
ACTIONS = (
    "init",
    "read",
    "write",
    "list",
    "versions",
    "delete",
    "undelete",
    "destroy",
    "rotate",
    "export-key",
    "verify-key",
)


@dataclass(frozen=True)
class AuditRow:
    id: int
    ts: int
    actor: str
    action: str
    secret: str | None
    version: int | None
    outcome: str
    pid: int
    host: str
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class AuditProblem:
    """One problem found by `audit --verify`.

    `kind` is 'edited', 'relinked', 'missing', 'truncated' or 'init_missing' (see the
    module docstring), or 'rolled_back' from the store: the secret's newest stored
    version is below the one written in audit row `row`.
    """

    row: int
    kind: str
    last_row: int | None = None  # for 'missing' and 'truncated': the last id of the gap
    secret: str | None = None  # for 'rolled_back'
    recorded: int | None = None  # for 'rolled_back': the version the audit row wrote
    current: int | None = None  # for 'rolled_back': the newest version stored (0: none)


@dataclass
class ChainReport:
    rows: int
    head: str | None
    problems: list[AuditProblem] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


def escape_controls(text: str) -> str:
    """Return `text` with control and format characters written as \\xNN or \\uNNNN."""
    escaped = []
    for char in text:
        if unicodedata.category(char) not in _CONTROL_CATEGORIES:
            escaped.append(char)
        elif ord(char) < 0x100:
            escaped.append(f"\\x{ord(char):02x}")
        else:
            escaped.append(f"\\u{ord(char):04x}")
    return "".join(escaped)


def check_actor(actor: str) -> str:
    """Return `actor` if it has no control or format characters, else raise InvalidActorError."""
    if any(unicodedata.category(char) in _CONTROL_CATEGORIES for char in actor):
        raise InvalidActorError(actor=actor)
    return actor


def default_actor() -> str:
    """Return the OS user name (control characters escaped), or uid:N when it has no name."""
    try:
        # getpass reads LOGNAME and USER first, so the name may contain anything.
        return escape_controls(getpass.getuser())
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def genesis_hash(vault_id: str) -> str:
    return hashlib.sha256(f"hauswacht-vault-audit\x00{vault_id}".encode()).hexdigest()


def row_hash(
    prev_hash: str,
    row_id: int,
    ts: int,
    actor: str,
    action: str,
    secret: str | None,
    version: int | None,
    outcome: str,
    pid: int,
    host: str,
) -> str:
    fields = [prev_hash, row_id, ts, actor, action, secret, version, outcome, pid, host]
    encoded = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def append(
    conn: sqlite3.Connection,
    vault_id: str,
    actor: str,
    action: str,
    secret: str | None = None,
    version: int | None = None,
    outcome: str = "ok",
) -> None:
    """Append one row; the caller holds the write lock (BEGIN IMMEDIATE) and commits."""
    head = conn.execute(SELECT_HEAD).fetchone()
    prev_hash = head[0] if head else genesis_hash(vault_id)
    row_id = conn.execute(SELECT_NEXT_ID).fetchone()[0]
    ts = time.time_ns() // 1_000_000
    pid = os.getpid()
    host = socket.gethostname()

    digest = row_hash(prev_hash, row_id, ts, actor, action, secret, version, outcome, pid, host)
    conn.execute(
        INSERT_ROW,
        {
            "id": row_id,
            "ts": ts,
            "actor": actor,
            "action": action,
            "secret": secret,
            "version": version,
            "outcome": outcome,
            "pid": pid,
            "host": host,
            "prev_hash": prev_hash,
            "hash": digest,
        },
    )


def read_rows(
    conn: sqlite3.Connection, secret: str | None = None, limit: int = 50
) -> list[AuditRow]:
    """Return the newest `limit` rows (of one secret, if given), oldest first."""
    rows = conn.execute(SELECT_ROWS, {"secret": secret, "limit": limit}).fetchall()
    return [AuditRow(*row) for row in reversed(rows)]


def latest_write(conn: sqlite3.Connection, secret: str) -> tuple[int, int] | None:
    """Return (audit row id, version) of the newest successful write of `secret`.

    Returns None when the secret was never written, or was destroyed as a whole
    (which frees its name) after its newest write.
    """
    write = conn.execute(SELECT_LATEST_WRITE, (secret,)).fetchone()
    if write is None:
        return None
    destroyed = conn.execute(SELECT_LATEST_DESTROY_ALL, (secret,)).fetchone()
    if destroyed is not None and destroyed[0] > write[0]:
        return None
    return write[0], write[1]


def verify_chain(conn: sqlite3.Connection, vault_id: str) -> ChainReport:
    """Recompute the chain over all rows and list every break."""
    problems: list[AuditProblem] = []
    expected_prev = genesis_hash(vault_id)
    expected_id = 1
    count = 0
    head = None
    first: AuditRow | None = None

    for values in conn.execute(SELECT_ALL_ROWS):
        row = AuditRow(*values)
        count += 1
        first = first or row
        if row.id != expected_id:
            problems.append(AuditProblem(expected_id, "missing", row.id - 1))
        elif row.prev_hash != expected_prev:
            # The row before was replaced by one with a recomputed hash of its own.
            problems.append(AuditProblem(row.id - 1, "relinked"))

        digest = row_hash(
            row.prev_hash,
            row.id,
            row.ts,
            row.actor,
            row.action,
            row.secret,
            row.version,
            row.outcome,
            row.pid,
            row.host,
        )
        if digest != row.hash:
            problems.append(AuditProblem(row.id, "edited"))

        # Continue from the stored hash so one break is reported once, not at every later row.
        expected_prev = row.hash
        expected_id = row.id + 1
        head = row.hash

    sequence = conn.execute(SELECT_SEQUENCE).fetchone()
    if sequence and sequence[0] >= expected_id:
        problems.append(AuditProblem(expected_id, "truncated", sequence[0]))

    # Row 1 is always the init row; a 'missing' or 'truncated' break from row 1 already
    # reports its loss.
    row_one_reported = any(
        problem.row == 1 and problem.kind in ("missing", "truncated") for problem in problems
    )
    if not row_one_reported and (first is None or first.id != 1 or first.action != "init"):
        problems.insert(0, AuditProblem(1, "init_missing"))
    return ChainReport(rows=count, head=head, problems=problems)
