"""The audit log: what each access records, and the hash chain that detects changes."""

from __future__ import annotations

import itertools
import os
import socket
import sqlite3
import time
from pathlib import Path

import pytest

from hauswacht.vault.audit import AuditProblem, genesis_hash, row_hash
from hauswacht.vault.errors import CasConflictError, SecretNotFoundError, TamperedSecretError
from tests.helpers.vault_common import make_vault


@pytest.fixture
def files(tmp_path: Path):
    files = make_vault(tmp_path)
    with files.open(actor="alice") as vault:
        vault.set("DB_PASSWORD", "first")
        vault.set("DB_PASSWORD", "second")
        vault.get("DB_PASSWORD")
        vault.get("DB_PASSWORD", version=1)
        vault.delete("DB_PASSWORD")
        vault.undelete("DB_PASSWORD")
        vault.set("API_KEY", "k")
        vault.destroy("API_KEY")
        vault.rotate_master_key()
    return files


def _execute(db: Path, sql: str, *params: object) -> None:
    conn = sqlite3.connect(db)
    try:
        conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


def test_every_access_recorded(files) -> None:
    started = time.time_ns() // 1_000_000
    with files.open(actor="bob") as vault:
        with pytest.raises(SecretNotFoundError):
            vault.get("MISSING")
        with pytest.raises(CasConflictError):
            vault.set("DB_PASSWORD", "x", cas=1)
        rows = vault.audit_rows(limit=100)

    actions = [(row.actor, row.action, row.secret, row.version, row.outcome) for row in rows]
    assert actions == [
        ("tester", "init", None, None, "ok"),
        ("alice", "write", "DB_PASSWORD", 1, "ok"),
        ("alice", "write", "DB_PASSWORD", 2, "ok"),
        ("alice", "read", "DB_PASSWORD", 2, "ok"),
        ("alice", "read", "DB_PASSWORD", 1, "ok"),
        ("alice", "delete", "DB_PASSWORD", 2, "ok"),
        ("alice", "undelete", "DB_PASSWORD", 2, "ok"),
        ("alice", "write", "API_KEY", 1, "ok"),
        ("alice", "destroy", "API_KEY", None, "ok"),
        ("alice", "rotate", None, None, "ok"),
        ("bob", "read", "MISSING", None, "not_found"),
        ("bob", "write", "DB_PASSWORD", None, "cas_conflict"),
    ]
    assert {row.host for row in rows} == {socket.gethostname()}
    assert {row.pid for row in rows} == {os.getpid()}
    assert rows[-1].ts >= started
    assert rows[-1].ts <= time.time_ns() // 1_000_000


def test_tampered_read_recorded(files) -> None:
    conn = sqlite3.connect(files.db)
    conn.execute(
        "UPDATE versions SET ciphertext = CAST(substr(ciphertext, 1, 40) || 'AAAA' "
        "|| substr(ciphertext, 45) AS BLOB) WHERE version = 2"
    )
    conn.commit()
    conn.close()
    with files.open() as vault:
        with pytest.raises(TamperedSecretError):
            vault.get("DB_PASSWORD")
        last = vault.audit_rows(limit=1)[0]
    assert (last.action, last.secret, last.version, last.outcome) == (
        "read",
        "DB_PASSWORD",
        2,
        "tampered",
    )


def test_chain_intact(files) -> None:
    with files.open() as vault:
        report = vault.verify_audit()
        rows = vault.audit_rows(limit=1000)
    assert report.intact
    assert report.rows == 10
    assert report.head == rows[-1].hash
    assert rows[0].prev_hash == genesis_hash(vault.vault_id)
    for before, row in itertools.pairwise(rows):
        assert row.prev_hash == before.hash
        assert row.hash == row_hash(
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


def test_edited_row_detected(files) -> None:
    _execute(files.db, "UPDATE audit SET actor = 'mallory' WHERE id = 4")
    with files.open() as vault:
        report = vault.verify_audit()
    assert report.problems == [AuditProblem(4, "edited")]


def test_edited_row_with_recomputed_hash_detected(files) -> None:
    conn = sqlite3.connect(files.db)
    row = conn.execute(
        "SELECT id, ts, actor, action, secret, version, outcome, pid, host, "
        "prev_hash FROM audit WHERE id = 5"
    ).fetchone()
    forged = row_hash(
        row[9], row[0], row[1], "mallory", row[3], row[4], row[5], row[6], row[7], row[8]
    )
    conn.execute("UPDATE audit SET actor = 'mallory', hash = ? WHERE id = 5", (forged,))
    conn.commit()
    conn.close()
    with files.open() as vault:
        report = vault.verify_audit()
    assert report.problems == [AuditProblem(5, "relinked")]


def test_deleted_row_detected(files) -> None:
    _execute(files.db, "DELETE FROM audit WHERE id = 6")
    with files.open() as vault:
        report = vault.verify_audit()
    assert report.problems == [AuditProblem(6, "missing", 6)]


def test_deleted_rows_at_end_detected(files) -> None:
    _execute(files.db, "DELETE FROM audit WHERE id >= 9")
    with files.open() as vault:
        report = vault.verify_audit()
    assert report.problems == [AuditProblem(9, "truncated", 10)]


def test_deleted_last_row_detected_after_new_rows(files) -> None:
    _execute(files.db, "DELETE FROM audit WHERE id = 10")
    with files.open() as vault:
        vault.get("DB_PASSWORD")
        report = vault.verify_audit()
    assert report.problems == [AuditProblem(10, "missing", 10)]


def test_empty_log_without_init_row_detected(files) -> None:
    _execute(files.db, "DELETE FROM audit")
    _execute(files.db, "DELETE FROM sqlite_sequence WHERE name = 'audit'")
    with files.open() as vault:
        report = vault.verify_audit()
    assert report.rows == 0
    assert not report.intact
    assert report.problems == [AuditProblem(1, "init_missing")]


def test_first_row_replaced_detected(files) -> None:
    conn = sqlite3.connect(files.db)
    row = conn.execute(
        "SELECT id, ts, actor, action, secret, version, outcome, pid, host, prev_hash "
        "FROM audit WHERE id = 1"
    ).fetchone()
    # Row 1 rewritten as a read with a consistent hash; row 2 then links to the old hash.
    forged = row_hash(row[9], 1, row[1], row[2], "read", None, None, "ok", row[7], row[8])
    conn.execute("UPDATE audit SET action = 'read', hash = ? WHERE id = 1", (forged,))
    conn.commit()
    conn.close()
    with files.open() as vault:
        report = vault.verify_audit()
    assert report.problems == [AuditProblem(1, "init_missing"), AuditProblem(1, "relinked")]


def test_deleted_first_rows_reported_once(files) -> None:
    _execute(files.db, "DELETE FROM audit WHERE id <= 2")
    with files.open() as vault:
        report = vault.verify_audit()
    assert report.problems == [AuditProblem(1, "missing", 2)]


def test_chain_break_skips_version_check(files) -> None:
    # Rows 9 and 10 (destroy API_KEY, rotate) deleted: the log no longer shows that
    # API_KEY was destroyed, but a broken chain proves nothing about versions.
    _execute(files.db, "DELETE FROM audit WHERE id >= 9")
    with files.open() as vault:
        report = vault.verify_audit()
    assert [problem.kind for problem in report.problems] == ["truncated"]
