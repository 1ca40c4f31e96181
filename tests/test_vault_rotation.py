"""Master key rotation: re-wrapping, other processes reading meanwhile, and kill -9 midway."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hauswacht.vault.keys import load_key_ring
from tests.helpers.vault_common import HELPERS, make_vault, table_rows

SECRETS = {f"SECRET_{n}": f"value-{n}-" + "x" * n for n in range(8)}


def _fill(files) -> None:
    with files.open() as vault:
        for name, value in SECRETS.items():
            vault.set(name, "old " + value)
            vault.set(name, value)


def _ciphertexts(db: Path) -> list[bytes]:
    return [row[7] for row in table_rows(db, "versions")]


def test_rotation_rewraps_data_keys_only(tmp_path: Path) -> None:
    files = make_vault(tmp_path)
    _fill(files)
    old_id = load_key_ring(files.key_file, {}).newest_id
    ciphertexts_before = _ciphertexts(files.db)

    with files.open() as vault:
        result = vault.rotate_master_key()
        values = {name: vault.get(name) for name in SECRETS}
        old_values = {name: vault.get(name, version=1) for name in SECRETS}

    ring = load_key_ring(files.key_file, {})
    assert result.old_key_ids == (old_id,)
    assert result.rewrapped == 2 * len(SECRETS)
    assert ring.ids == (result.new_key_id,)
    assert values == SECRETS
    assert old_values == {name: "old " + value for name, value in SECRETS.items()}
    assert _ciphertexts(files.db) == ciphertexts_before
    assert {row[5] for row in table_rows(files.db, "versions")} == {result.new_key_id}
    assert table_rows(files.db, "vault_info")[0][3] == result.new_key_id


def test_rotation_by_other_process_is_picked_up(tmp_path: Path) -> None:
    files = make_vault(tmp_path)
    _fill(files)
    with files.open() as long_lived:
        assert long_lived.get("SECRET_1") == SECRETS["SECRET_1"]
        with files.open() as rotator:
            rotator.rotate_master_key()
            rotator.rotate_master_key()
        # Its ring is two rotations old; it re-reads the key file inside the transaction.
        assert long_lived.get("SECRET_1") == SECRETS["SECRET_1"]
        assert long_lived.set("SECRET_1", "after rotation") == 3
    with files.open() as vault:
        assert vault.get("SECRET_1") == "after rotation"


def _collect_lines(process: subprocess.Popen[str], lines: list[str]) -> threading.Thread:
    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.strip())

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def _wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the helper process")
        time.sleep(0.02)


@pytest.mark.slow
def test_rotation_under_concurrent_readers(tmp_path: Path) -> None:
    files = make_vault(tmp_path)
    _fill(files)
    expected = tmp_path / "expected.json"
    expected.write_text(json.dumps(SECRETS))
    stop_file = tmp_path / "stop"
    readers = [
        subprocess.Popen(
            [
                sys.executable,
                str(HELPERS / "vault_reader.py"),
                str(files.db),
                str(files.key_file),
                str(expected),
                str(stop_file),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs: list[list[str]] = [[] for _ in readers]
    threads = [
        _collect_lines(reader, lines) for reader, lines in zip(readers, outputs, strict=True)
    ]

    try:
        _wait_for(lambda: all(any(line.startswith("round") for line in lines) for lines in outputs))
        key_ids = []
        with files.open(actor="rotation-test") as vault:
            for _ in range(4):
                key_ids.append(vault.rotate_master_key().new_key_id)
                time.sleep(0.05)
        rounds_after = [len(lines) for lines in outputs]
        # Every reader completes two more rounds with the final key.
        _wait_for(
            lambda: all(
                len(lines) >= count + 2 for lines, count in zip(outputs, rounds_after, strict=True)
            )
        )
    finally:
        stop_file.touch()
        for reader in readers:
            reader.wait(timeout=60)
        for thread in threads:
            thread.join(timeout=10)

    for reader, lines in zip(readers, outputs, strict=True):
        assert reader.returncode == 0, [*lines[-3:], reader.stderr.read()]
        assert not [line for line in lines if line.startswith("error")]
        assert lines[-1].startswith("reads ")
        assert int(lines[-1].split()[1]) >= 2 * len(SECRETS) * 3
    assert len(set(key_ids)) == 4
    assert load_key_ring(files.key_file, {}).ids == (key_ids[-1],)
    with files.open() as vault:
        report = vault.verify_audit()
    assert report.intact, report.problems


@pytest.mark.slow
def test_kill_during_rotation_leaves_every_secret_readable(tmp_path: Path) -> None:
    files = make_vault(tmp_path)
    _fill(files)
    old_id = load_key_ring(files.key_file, {}).newest_id
    total = 2 * len(SECRETS)

    rotator = subprocess.Popen(
        [
            sys.executable,
            str(HELPERS / "vault_rotate.py"),
            str(files.db),
            str(files.key_file),
            "0.5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    thread = _collect_lines(rotator, lines)
    try:
        _wait_for(lambda: f"rewrapped 3/{total}" in lines)
        os.kill(rotator.pid, signal.SIGKILL)
    finally:
        rotator.wait(timeout=30)
        thread.join(timeout=10)
    assert rotator.returncode == -signal.SIGKILL
    assert "done" not in lines

    # The key file contains the new key first and the old one after it. The database was
    # rolled back to the old key, which still opens every value.
    ring = load_key_ring(files.key_file, {})
    assert len(ring.ids) == 2
    assert ring.ids[1] == old_id
    assert {row[5] for row in table_rows(files.db, "versions")} == {old_id}
    with files.open() as vault:
        assert {name: vault.get(name) for name in SECRETS} == SECRETS
        assert vault.get("SECRET_3", version=1) == "old " + SECRETS["SECRET_3"]

        # A new write wraps with the vault's master key (the old one), not with the
        # key file's first key, which the database does not use yet.
        vault.set("WRITTEN_AFTER_CRASH", "fresh")
        assert {row[5] for row in table_rows(files.db, "versions")} == {old_id}
        result = vault.rotate_master_key()
        assert result.rewrapped == total + 1
        assert {name: vault.get(name) for name in SECRETS} == SECRETS
        assert vault.get("WRITTEN_AFTER_CRASH") == "fresh"
        report = vault.verify_audit()

    assert load_key_ring(files.key_file, {}).ids == (result.new_key_id,)
    assert report.intact, report.problems
