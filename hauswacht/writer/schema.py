"""The events database schema, its migrations and how connections are opened.

The writer owns the schema. A Hauswacht events file carries
`PRAGMA application_id = APPLICATION_ID` and `PRAGMA user_version` = the
number of migrations applied. `MIGRATIONS[i]` moves a database from version i
to i + 1; migrations only ever move forward and each runs in its own
transaction together with its `user_version` bump.

Tables (all STRICT; times are UTC epoch milliseconds, hours are ts // 3_600_000):
- requests, errors, metrics: raw events, one row each. requests and metrics
  have no index on ts: they take the most rows, every reader of aggregates
  uses the rollups, and an index would cost each insert about a tenth of the
  writer's throughput. Ids grow with insertion order, so jobs that need time
  order (retention) walk them by id.
- request_rollups: per (hour, route, method, status) the count, the number of
  requests with a known duration (timed_count), sum/min/max of their
  durations, response bytes and log-spaced duration buckets (see histogram.py).
- metric_rollups: per (hour, name, tags) the same for metric values.
- error_groups: one row per fingerprint with counts, first/last seen, status
  and the latest event; error_rollups counts error events per hour and group.
- dropped_rollups: events lost per hour and reason ('queue_full' when the
  in-memory queue was full, 'write_failed' when a batch could not be stored,
  'invalid' when a capture call got arguments that cannot be recorded).
- ingest_tokens (version 2): bearer tokens of the HTTP ingest server, by
  name; only the SHA-256 hex digest of each token is stored. A revoked token
  keeps its row with revoked_at set.
- error_samples (version 2): stored events of each error group. 'first' is
  the group's first event and 'regression' the event that reopened a resolved
  group; both are always kept. 'sample' rows are the most recent other events,
  at most MAX_SAMPLES per group (see aggregate.py).
- error_groups.regression_pending (version 2): 1 between the upsert that
  reopens a group and the sample insert of the same transaction.
- replay_files (version 3): one row per access log imported by `hauswacht
  replay`, identified by the SHA-256 of its first head_bytes bytes (64 KiB,
  or the whole content when shorter). imported_bytes and imported_lines
  record how far the imports got, and content_sha256 is the SHA-256 of those
  bytes. claim_* identify the replay importing it now (NULL when none). The
  replay module (hauswacht/ops/replay.py) owns the table and its SQL.
- request_hourly (version 4): one row per hour with the request_rollups rows
  of that hour summed up: count, timed_count, sum/min/max of the durations,
  response bytes, 4xx and 5xx counts and the merged buckets. The writer
  upserts it in the same transaction as request_rollups, so the overview reads
  one row per hour instead of merging every route's buckets.
- ingest_tokens.scope (version 5): where a token works: 'ingest' (POST
  /ingest), 'sentry' (the Sentry endpoints) or 'all'. Tokens from before
  version 5 get 'all'.
- endpoint_hourly, status_hourly, compacted_hours (version 6): the
  request_rollups rows of a finished hour summed per (route, method), with
  merged buckets, and per status code. compaction.py builds them for each
  hour in one transaction and records request_hourly.count of that moment in
  compacted_hours.request_count. Readers use an hour's compacted rows only
  while that count still equals request_hourly.count (any event stored later
  in the hour raises it) and read request_rollups for every other hour, so a
  missing or stale compaction costs time, never correctness. Every hour with
  request_rollups rows has a request_hourly row; readers find hours there.
"""

from __future__ import annotations

import os
import shlex
import sqlite3
import time
from pathlib import Path

from hauswacht.writer.database_errors import (  # noqa: F401  (re-exported for callers)
    MESSAGES,
    DatabaseError,
    classify_sqlite_error,
    describe_cause,
    describe_error,
    file_state,
    writable,
)

APPLICATION_ID = 0x48574348  # "HWCH"
BUSY_TIMEOUT_MS = 5000


# Sums request_rollups per hour into request_hourly: the backfill of the
# version 4 migration, also run by bench/dashboard_bench.py on its generated
# rollups. Plain SQL (json_each, json_group_object), so the migration needs no
# registered function.
BACKFILL_REQUEST_HOURLY_SQL = """
    INSERT INTO request_hourly (hour, count, timed_count, sum_ms, min_ms, max_ms,
                                response_bytes, client_errors, server_errors, buckets)
    SELECT totals.hour, totals.count, totals.timed_count, totals.sum_ms, totals.min_ms,
           totals.max_ms, totals.response_bytes, totals.client_errors, totals.server_errors,
           coalesce(merged.buckets, '{}')
    FROM (
        SELECT hour, sum(count) AS count, sum(timed_count) AS timed_count,
               sum(sum_ms) AS sum_ms, min(min_ms) AS min_ms, max(max_ms) AS max_ms,
               sum(response_bytes) AS response_bytes,
               sum(CASE WHEN status BETWEEN 400 AND 499 THEN count ELSE 0 END) AS client_errors,
               sum(CASE WHEN status BETWEEN 500 AND 599 THEN count ELSE 0 END) AS server_errors
        FROM request_rollups
        GROUP BY hour
    ) AS totals
    LEFT JOIN (
        SELECT hour, json_group_object(key, total) AS buckets
        FROM (
            SELECT hour, bucket.key AS key, sum(bucket.value) AS total
            FROM request_rollups, json_each(request_rollups.buckets) AS bucket
            GROUP BY hour, bucket.key
        )
        GROUP BY hour
    ) AS merged USING (hour)
"""

MIGRATIONS: list[str] = [
    # 0 -> 1: the first schema.
    """
    CREATE TABLE requests (
        id INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        method TEXT NOT NULL,
        route TEXT NOT NULL,
        path TEXT NOT NULL,
        status INTEGER NOT NULL,
        duration_ms REAL,
        ttfb_ms REAL,
        response_bytes INTEGER,
        client TEXT,
        user_agent TEXT,
        trace_id TEXT
    ) STRICT;

    CREATE TABLE metrics (
        id INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        name TEXT NOT NULL,
        value REAL NOT NULL,
        unit TEXT,
        tags TEXT NOT NULL
    ) STRICT;

    CREATE TABLE errors (
        id INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        fingerprint TEXT NOT NULL,
        type TEXT NOT NULL,
        message TEXT NOT NULL,
        level TEXT NOT NULL,
        trace_id TEXT,
        data TEXT NOT NULL
    ) STRICT;
    CREATE INDEX errors_ts ON errors (ts);
    CREATE INDEX errors_fingerprint ON errors (fingerprint, ts);

    CREATE TABLE request_rollups (
        hour INTEGER NOT NULL,
        route TEXT NOT NULL,
        method TEXT NOT NULL,
        status INTEGER NOT NULL,
        count INTEGER NOT NULL,
        timed_count INTEGER NOT NULL,
        sum_ms REAL NOT NULL,
        min_ms REAL,
        max_ms REAL,
        response_bytes INTEGER NOT NULL,
        buckets TEXT NOT NULL,
        PRIMARY KEY (hour, route, method, status)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE metric_rollups (
        hour INTEGER NOT NULL,
        name TEXT NOT NULL,
        tags TEXT NOT NULL,
        unit TEXT,
        count INTEGER NOT NULL,
        sum REAL NOT NULL,
        min REAL NOT NULL,
        max REAL NOT NULL,
        buckets TEXT NOT NULL,
        PRIMARY KEY (hour, name, tags)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE error_groups (
        id INTEGER PRIMARY KEY,
        fingerprint TEXT NOT NULL UNIQUE,
        scheme INTEGER NOT NULL,
        type TEXT NOT NULL,
        message TEXT NOT NULL,
        count INTEGER NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        status TEXT NOT NULL DEFAULT 'unresolved'
            CHECK (status IN ('unresolved', 'resolved', 'ignored')),
        resolved_at INTEGER,
        regressions INTEGER NOT NULL DEFAULT 0,
        latest_event TEXT NOT NULL
    ) STRICT;
    CREATE INDEX error_groups_last_seen ON error_groups (last_seen);

    CREATE TABLE error_rollups (
        hour INTEGER NOT NULL,
        fingerprint TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (hour, fingerprint)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE dropped_rollups (
        hour INTEGER NOT NULL,
        reason TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (hour, reason)
    ) STRICT, WITHOUT ROWID;
    """,
    # 1 -> 2: ingest tokens, sample events of error groups, the pending-regression mark.
    """
    CREATE TABLE ingest_tokens (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        token_hash TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    ) STRICT;

    CREATE TABLE error_samples (
        id INTEGER PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        ts INTEGER NOT NULL,
        reason TEXT NOT NULL CHECK (reason IN ('first', 'regression', 'sample')),
        data TEXT NOT NULL
    ) STRICT;
    CREATE INDEX error_samples_group ON error_samples (fingerprint, reason, id);

    ALTER TABLE error_groups ADD COLUMN regression_pending INTEGER NOT NULL DEFAULT 0;
    """,
    # 2 -> 3: the access logs imported by `hauswacht replay`, for resuming without doubles.
    """
    CREATE TABLE replay_files (
        id INTEGER PRIMARY KEY,
        head_sha256 TEXT NOT NULL,
        head_bytes INTEGER NOT NULL,
        source TEXT NOT NULL,
        imported_bytes INTEGER NOT NULL,
        imported_lines INTEGER NOT NULL,
        content_sha256 TEXT NOT NULL,
        requests INTEGER NOT NULL,
        skipped INTEGER NOT NULL,
        first_ts INTEGER,
        last_ts INTEGER,
        started_at INTEGER NOT NULL,
        imported_at INTEGER NOT NULL,
        claim_id TEXT,
        claim_host TEXT,
        claim_pid INTEGER,
        claimed_at INTEGER,
        UNIQUE (head_sha256, head_bytes)
    ) STRICT;
    """,
    # 3 -> 4: requests per hour over all routes, for the dashboard overview.
    """
    CREATE TABLE request_hourly (
        hour INTEGER PRIMARY KEY,
        count INTEGER NOT NULL,
        timed_count INTEGER NOT NULL,
        sum_ms REAL NOT NULL,
        min_ms REAL,
        max_ms REAL,
        response_bytes INTEGER NOT NULL,
        client_errors INTEGER NOT NULL,
        server_errors INTEGER NOT NULL,
        buckets TEXT NOT NULL
    ) STRICT, WITHOUT ROWID;
    """
    + BACKFILL_REQUEST_HOURLY_SQL,
    # 4 -> 5: what an ingest token may do: 'ingest' (POST /ingest), 'sentry' (the Sentry
    # endpoints) or 'all'. Tokens created before keep working everywhere.
    """
    ALTER TABLE ingest_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'all'
        CHECK (scope IN ('all', 'ingest', 'sentry'));
    """,
    # 5 -> 6: compacted hours: request_rollups summed per endpoint and per status code.
    # Filled by compaction.py, hour by hour; readers fall back to request_rollups until then.
    """
    CREATE TABLE endpoint_hourly (
        hour INTEGER NOT NULL,
        route TEXT NOT NULL,
        method TEXT NOT NULL,
        count INTEGER NOT NULL,
        client_errors INTEGER NOT NULL,
        server_errors INTEGER NOT NULL,
        timed_count INTEGER NOT NULL,
        sum_ms REAL NOT NULL,
        min_ms REAL,
        max_ms REAL,
        response_bytes INTEGER NOT NULL,
        buckets TEXT NOT NULL,
        PRIMARY KEY (hour, route, method)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE status_hourly (
        hour INTEGER NOT NULL,
        status INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (hour, status)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE compacted_hours (
        hour INTEGER PRIMARY KEY,
        request_count INTEGER NOT NULL,
        compacted_at INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)

PRAGMAS = (
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
    # Checkpoint after 10,000 WAL pages (about 40 MiB at 4 KiB pages) instead of
    # SQLite's 1,000: rollup pages change in every flush, and copying them back
    # to the database ten times less often saves about a tenth of the write time.
    # The Writer raises this on its own connection and checkpoints in a thread.
    "PRAGMA wal_autocheckpoint = 10000",
)


def check_header(conn: sqlite3.Connection, path: str | os.PathLike[str]) -> int:
    """Return the schema version of `conn`, or raise DatabaseError if it is no Hauswacht file.

    A brand-new empty file (application_id 0, no tables) returns 0.
    """
    try:
        application_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        # "not an SQLite database" only for SQLITE_NOTADB: a read-only folder or a
        # lock also fails here, because the first read opens the WAL.
        raise DatabaseError.from_sqlite(path, exc, "read") from exc
    if application_id == 0 and tables == 0:
        return 0
    if application_id != APPLICATION_ID:
        raise DatabaseError.of("foreign", path=path, application_id=application_id)
    if version > SCHEMA_VERSION:
        raise DatabaseError.of("schema_newer", path=path, version=version, known=SCHEMA_VERSION)
    return version


def migrate(conn: sqlite3.Connection, path: str | os.PathLike[str]) -> int:
    """Bring the schema of `conn` up to SCHEMA_VERSION; return the version found before.

    Safe when several processes start at once: each migration runs under
    BEGIN IMMEDIATE and re-reads the version after taking the write lock.
    """
    found = check_header(conn, path)
    if found == SCHEMA_VERSION:
        return found
    for target in range(found + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = check_header(conn, path)
            if current >= target:
                conn.execute("COMMIT")
                continue
            for statement in _split(MIGRATIONS[target - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return found


def _split(script: str) -> list[str]:
    return [part.strip() for part in script.split(";") if part.strip()]


def prepare_database(path: str | os.PathLike[str]) -> None:
    """Create the file if needed (mode 0600, missing folders 0700), set WAL and migrate.

    Raises DatabaseError naming the path when the file cannot be used.
    """
    path = Path(path)
    try:
        _create_folders(path.parent)
    except PermissionError as exc:
        raise DatabaseError.of("folder_denied", folder=path.parent) from exc
    except OSError as exc:
        detail = exc.strerror or str(exc)
        raise DatabaseError.of("folder_failed", folder=path.parent, detail=detail) from exc
    state = file_state(path)
    if state == "denied":
        raise DatabaseError.of("folder_unsearchable", path=path, folder=path.parent)
    created = state == "missing"
    if not created:
        if state == "not_file":
            raise DatabaseError.of("not_file", path=path)
        # sqlite3.connect silently opens a file this user cannot write read-only,
        # so the first write would fail only after the caller has begun its work.
        if not writable(path):
            raise DatabaseError.of("file_readonly", path=path)
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as exc:
        raise DatabaseError.from_sqlite(path, exc, "open") from exc
    try:
        if created:
            os.chmod(path, 0o600)
        for pragma in PRAGMAS:
            _execute_when_unlocked(conn, pragma)
        migrate(conn, path)
    except sqlite3.DatabaseError as exc:
        raise DatabaseError.from_sqlite(path, exc, "use") from exc
    finally:
        conn.close()


def _execute_when_unlocked(conn: sqlite3.Connection, sql: str) -> None:
    """Execute `sql`, retrying for up to BUSY_TIMEOUT_MS while the database is locked.

    Switching a new file to WAL needs an exclusive lock, and SQLite returns
    SQLITE_BUSY for it without calling the busy handler when another process
    is doing the same (as two uvicorn workers starting on one new file do).
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.01
    while True:
        try:
            conn.execute(sql)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _create_folders(folder: Path) -> None:
    """Create `folder` and every missing parent with mode 0700, whatever the umask.

    `Path.mkdir(parents=True)` gives only the last level the mode, and the
    umask still applies to it.
    """
    missing = []
    level = folder
    while not level.exists() and level.parent != level:
        missing.append(level)
        level = level.parent
    for level in reversed(missing):
        try:
            level.mkdir(mode=0o700)
        except FileExistsError:
            continue  # another process created it meanwhile; its mode is its own
        os.chmod(level, 0o700)


def open_readonly(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open an existing events database read-only (`mode=ro`, `query_only`).

    Raises DatabaseError naming the path when it is missing, unreadable, not
    a Hauswacht file or has a schema this version does not know.
    """
    path = Path(path)
    state = file_state(path)
    if state == "denied":
        raise DatabaseError.of("folder_unsearchable", path=path, folder=path.parent)
    if state == "missing":
        raise DatabaseError.of("missing", path=path)
    if state == "not_file":
        raise DatabaseError.of("not_file", path=path)
    if not os.access(path, os.R_OK):
        raise DatabaseError.of("unreadable", path=path)
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise DatabaseError.from_sqlite(path, exc, "open") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA query_only = ON")
        version = check_header(conn, path)
    except sqlite3.Error as exc:
        conn.close()
        raise DatabaseError.from_sqlite(path, exc, "read") from exc
    except DatabaseError:
        conn.close()
        raise
    if version != SCHEMA_VERSION:
        conn.close()
        raise DatabaseError.of(
            "schema_older",
            path=path,
            version=version,
            expected=SCHEMA_VERSION,
            quoted=shlex.quote(str(path)),
        )
    return conn
