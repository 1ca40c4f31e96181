"""The vault library on real files: values, versions, keys and damage detection."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest

from hauswacht.vault import (
    MissingSecretError,
    Vault,
    VaultError,
    get_secret,
    init_vault,
    require_secret,
)
from hauswacht.vault.errors import (
    CasConflictError,
    EmptyValueError,
    FileReadError,
    ForeignDatabaseError,
    InvalidActorError,
    InvalidMasterKeyError,
    InvalidMasterKeyVariableError,
    InvalidSecretNameError,
    KeyFileExistsError,
    KeyFileModeError,
    MasterKeyMissingError,
    NotAVaultError,
    NoVaultSchemaError,
    RotationNeedsKeyFileError,
    ScryptCostError,
    ScryptMemoryError,
    SecretDeletedError,
    SecretDestroyedError,
    SecretNotFoundError,
    SecretRemovedError,
    SecretRolledBackError,
    TamperedSecretError,
    UnknownFirstKeyError,
    ValueContainsNulError,
    VaultExistsError,
    VaultLockedError,
    VaultNotFoundError,
    VersionNotDeletedError,
    VersionNotFoundError,
    WrongMasterKeyError,
)
from hauswacht.vault.keys import (
    export_key_ring,
    generate_key,
    key_id,
    load_key_ring,
    read_key_export,
    unignored_in_git,
)
from hauswacht.vault.store import APPLICATION_ID, SCHEMA_VERSION
from tests.helpers.vault_common import make_vault, table_rows


@pytest.fixture
def files(tmp_path: Path):
    return make_vault(tmp_path)


def test_set_and_get_round_trip(files) -> None:
    values = {
        "DB_PASSWORD": "hunter2",
        "UNICODE_VALUE": "Grüße, 東京 🚚",
        "PEM_KEY": "-----BEGIN KEY-----\nabc\n-----END KEY-----\n",
        "SPACES": "  leading and trailing  ",
    }
    with files.open() as vault:
        for name, value in values.items():
            assert vault.set(name, value) == 1
        for name, value in values.items():
            assert vault.get(name) == value

    with files.open() as reopened:
        assert reopened.get("UNICODE_VALUE") == values["UNICODE_VALUE"]


def test_versions_are_numbered_and_readable(files) -> None:
    with files.open() as vault:
        assert [vault.set("API_KEY", f"value-{n}") for n in range(1, 4)] == [1, 2, 3]
        assert vault.get("API_KEY") == "value-3"
        assert vault.get("API_KEY", version=1) == "value-1"
        assert vault.get("API_KEY", version=2) == "value-2"
        listed = vault.versions("API_KEY")
        with pytest.raises(VersionNotFoundError):
            vault.get("API_KEY", version=4)

    assert [info.version for info in listed] == [1, 2, 3]
    assert {info.state for info in listed} == {"active"}
    assert {info.key_id for info in listed} == {load_key_ring(files.key_file, {}).newest_id}


def test_old_versions_are_pruned(tmp_path: Path) -> None:
    files = make_vault(tmp_path, max_versions=3)
    with files.open() as vault:
        for n in range(1, 6):
            vault.set("TOKEN", f"t{n}")
        kept_versions = [info.version for info in vault.versions("TOKEN")]
        with pytest.raises(VersionNotFoundError) as raised:
            vault.get("TOKEN", version=2)
        assert vault.get("TOKEN", version=3) == "t3"

    assert kept_versions == [3, 4, 5]
    assert raised.value.fields == {"name": "TOKEN", "version": 2}
    assert len(table_rows(files.db, "versions")) == 3


def test_default_keeps_ten_versions(files) -> None:
    with files.open() as vault:
        for n in range(12):
            vault.set("TOKEN", str(n))
        assert [info.version for info in vault.versions("TOKEN")] == list(range(3, 13))


def test_cas_conflicts(files) -> None:
    with files.open() as vault:
        assert vault.set("KEY", "first", cas=0) == 1
        with pytest.raises(CasConflictError) as raised:
            vault.set("KEY", "again", cas=0)
        assert vault.set("KEY", "second", cas=1) == 2
        with pytest.raises(CasConflictError):
            vault.set("KEY", "stale", cas=1)
        assert vault.get("KEY") == "second"

    assert raised.value.fields == {"name": "KEY", "expected": 0, "current": 1}
    assert "expected version 0, but the current version is 1" in str(raised.value)


def test_soft_delete_and_undelete(files) -> None:
    with files.open() as vault:
        vault.set("KEY", "one")
        vault.set("KEY", "two")
        assert vault.delete("KEY") == 2
        with pytest.raises(SecretDeletedError) as raised:
            vault.get("KEY")
        assert vault.get("KEY", version=1) == "one"
        assert [info.state for info in vault.versions("KEY")] == ["active", "deleted"]
        assert vault.list()[0].state == "deleted"

        assert vault.undelete("KEY") == 2
        assert vault.get("KEY") == "two"

    assert "hauswacht vault undelete KEY --version 2" in str(raised.value)


def test_destroy_one_version(files) -> None:
    with files.open() as vault:
        vault.set("KEY", "one")
        vault.set("KEY", "two")
        assert vault.destroy("KEY", version=1) == 1
        with pytest.raises(SecretDestroyedError):
            vault.get("KEY", version=1)
        with pytest.raises(SecretDestroyedError):
            vault.undelete("KEY", version=1)
        assert vault.get("KEY") == "two"

    rows = {row[1]: row for row in table_rows(files.db, "versions")}
    # secret_id, version, created_at, deleted_at, destroyed_at, key_id, data_key, ciphertext
    assert rows[1][4] is not None
    assert rows[1][5:] == (None, None, None)
    assert rows[2][7] is not None


def test_destroy_whole_secret(files) -> None:
    with files.open() as vault:
        vault.set("KEY", "one")
        vault.set("KEY", "two")
        vault.set("OTHER", "stays")
        assert vault.destroy("KEY") is None
        with pytest.raises(SecretNotFoundError):
            vault.get("KEY")
        assert [info.name for info in vault.list()] == ["OTHER"]
        # The name is free again and starts over at version 1.
        assert vault.set("KEY", "new") == 1

    assert len(table_rows(files.db, "versions")) == 2


def test_invalid_names_and_values_rejected(files) -> None:
    with files.open() as vault:
        for name in ("", "1ABC", "with-dash", "a b", "x" * 129, "name\n"):
            with pytest.raises(InvalidSecretNameError) as raised:
                vault.set(name, "v")
            assert raised.value.usage
        with pytest.raises(EmptyValueError):
            vault.set("EMPTY", "")
    assert table_rows(files.db, "secrets") == []


def test_missing_secret_errors_name_it(files) -> None:
    with files.open() as vault, pytest.raises(SecretNotFoundError) as raised:
        vault.get("NOPE")
    assert str(raised.value) == (
        "secret NOPE does not exist; store it with `hauswacht vault set NOPE`"
    )


def test_get_secret_and_require_secret(files, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HAUSWACHT_MASTER_KEY", raising=False)
    monkeypatch.setenv("HAUSWACHT_VAULT", str(files.db))
    monkeypatch.setenv("HAUSWACHT_MASTER_KEY_FILE", str(files.key_file))
    with files.open() as vault:
        vault.set("SENTRY_DSN", "https://key@example.invalid/1")
        vault.set("GONE", "x")
        vault.delete("GONE")

    assert get_secret("SENTRY_DSN") == "https://key@example.invalid/1"
    assert get_secret("UNSET") is None
    assert get_secret("UNSET", default="fallback") == "fallback"
    assert get_secret("GONE", "fallback") == "fallback"
    assert require_secret("SENTRY_DSN") == "https://key@example.invalid/1"
    with pytest.raises(MissingSecretError) as raised:
        require_secret("DATABASE_URL")
    assert isinstance(raised.value, LookupError)
    assert "DATABASE_URL" in str(raised.value)
    assert "`hauswacht vault set DATABASE_URL`" in str(raised.value)


def test_get_secret_without_vault_raises(tmp_path: Path) -> None:
    with pytest.raises(VaultNotFoundError) as raised:
        get_secret("X", vault=tmp_path / "missing.db", key_file=tmp_path / "k")
    assert "hauswacht vault init" in str(raised.value)


def test_files_are_private_and_marked(files) -> None:
    with files.open() as vault:
        vault.set("KEY", "value")
        # While this connection is open the WAL and shared-memory files exist.
        for suffix in ("", "-wal", "-shm"):
            mode = stat.S_IMODE(os.stat(f"{files.db}{suffix}").st_mode)
            assert mode == 0o600, suffix
    assert stat.S_IMODE(files.key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.db.parent.stat().st_mode) == 0o700

    conn = sqlite3.connect(files.db)
    try:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {
            name: strict
            for _, name, kind, _, _, strict in conn.execute("PRAGMA table_list")
            if kind == "table" and not name.startswith("sqlite_")
        }
    finally:
        conn.close()
    assert tables == {"vault_info": 1, "secrets": 1, "versions": 1, "audit": 1}


def test_init_never_overwrites(files) -> None:
    key_text = files.key_file.read_text()
    with pytest.raises(VaultExistsError):
        init_vault(files.db, key_file=files.key_file, environ={})
    assert files.key_file.read_text() == key_text


def test_init_uses_existing_key_file(tmp_path: Path) -> None:
    first = make_vault(tmp_path)
    second_db = tmp_path / "second.db"
    result = init_vault(second_db, key_file=first.key_file, environ={})
    assert not result.created_key_file
    assert result.key_id == load_key_ring(first.key_file, {}).newest_id


def test_key_file_mode_0644_rejected(files) -> None:
    with files.open() as vault:
        vault.set("KEY", "value")
    os.chmod(files.key_file, 0o644)

    with files.open() as vault, pytest.raises(KeyFileModeError) as raised:
        vault.get("KEY")
    message = str(raised.value)
    assert "mode 0644" in message
    assert f"chmod 600 {files.key_file}" in message

    os.chmod(files.key_file, 0o640)
    with pytest.raises(KeyFileModeError):
        load_key_ring(files.key_file, {})
    os.chmod(files.key_file, 0o600)
    assert files.open().get("KEY") == "value"


def test_missing_and_invalid_keys_rejected(files) -> None:
    with pytest.raises(MasterKeyMissingError):
        load_key_ring(files.key_file.with_name("absent.key"), {})
    with pytest.raises(InvalidMasterKeyError) as raised:
        load_key_ring(None, {"HAUSWACHT_MASTER_KEY": "not-a-key"})
    assert "not-a-key" not in str(raised.value)


def test_environment_key_is_used(files) -> None:
    key = files.key_file.read_text().split("\n")[-2]
    with files.open() as vault:
        vault.set("KEY", "value")
    env = {"HAUSWACHT_MASTER_KEY": key}
    with Vault(files.db, environ=env) as vault:
        assert vault.get("KEY") == "value"


def test_wrong_key_rejected_before_any_write(files) -> None:
    with files.open() as vault:
        vault.set("KEY", "value")
    before = {table: table_rows(files.db, table) for table in ("vault_info", "secrets", "versions")}
    audit_before = len(table_rows(files.db, "audit"))
    wrong = generate_key()
    env = {"HAUSWACHT_MASTER_KEY": wrong.decode()}

    with Vault(files.db, environ=env) as vault:
        attempts = [
            lambda: vault.set("KEY", "overwrite"),
            lambda: vault.set("NEW", "value"),
            lambda: vault.get("KEY"),
            lambda: vault.delete("KEY"),
            lambda: vault.destroy("KEY"),
            lambda: vault.import_values({"NEW": "x"}),
        ]
        errors = []
        for attempt in attempts:
            with pytest.raises(WrongMasterKeyError) as raised:
                attempt()
            errors.append(raised.value)
        # A rotation needs a key file to write the new key to; it stops before the key check.
        with pytest.raises(RotationNeedsKeyFileError):
            vault.rotate_master_key()

    after = {table: table_rows(files.db, table) for table in ("vault_info", "secrets", "versions")}
    assert after == before
    expected_id = load_key_ring(files.key_file, {}).newest_id
    for error in errors:
        assert error.fields["expected"] == expected_id
        assert error.fields["given"] == key_id(wrong)
        assert wrong.decode() not in str(error)
    audit = table_rows(files.db, "audit")[audit_before:]
    assert [row[6] for row in audit] == ["wrong_master_key"] * 6 + ["rotation_needs_key_file"]


def test_wrong_key_file_rejected_and_kept(files, tmp_path: Path) -> None:
    with files.open() as vault:
        vault.set("KEY", "value")
    other = make_vault(tmp_path / "other")
    other_text = other.key_file.read_text()

    with Vault(files.db, key_file=other.key_file, environ={}) as vault:
        with pytest.raises(WrongMasterKeyError):
            vault.rotate_master_key()
        with pytest.raises(WrongMasterKeyError):
            vault.set("KEY", "x")
    assert other.key_file.read_text() == other_text
    assert files.open().get("KEY") == "value"


def _flip_byte(db: Path, column: str, name: str, version: int) -> None:
    conn = sqlite3.connect(db)
    try:
        (blob,) = conn.execute(
            f"SELECT {column} FROM versions JOIN secrets ON secrets.id = secret_id "
            "WHERE name = ? AND version = ?",
            (name, version),
        ).fetchone()
        data = bytearray(blob)
        data[len(data) // 2] ^= 0x01
        conn.execute(
            f"UPDATE versions SET {column} = ? WHERE version = ? AND secret_id = "
            "(SELECT id FROM secrets WHERE name = ?)",
            (bytes(data), version, name),
        )
        conn.commit()
    finally:
        conn.close()


@pytest.mark.parametrize("column", ["ciphertext", "data_key"])
def test_flipped_byte_detected(files, column: str) -> None:
    with files.open() as vault:
        vault.set("INTACT", "fine")
        vault.set("DAMAGED", "v1")
        vault.set("DAMAGED", "v2")
    _flip_byte(files.db, column, "DAMAGED", 2)

    with files.open() as vault:
        with pytest.raises(TamperedSecretError) as raised:
            vault.get("DAMAGED")
        assert vault.get("DAMAGED", version=1) == "v1"
        assert vault.get("INTACT") == "fine"
    assert raised.value.fields == {"name": "DAMAGED", "version": 2}
    assert str(raised.value).startswith("version 2 of secret DAMAGED failed decryption")


def test_ciphertext_moved_to_other_secret_detected(files) -> None:
    with files.open() as vault:
        vault.set("FIRST", "one")
        vault.set("SECOND", "two")
    conn = sqlite3.connect(files.db)
    try:
        conn.execute(
            "UPDATE versions SET (data_key, ciphertext) = (SELECT data_key, ciphertext "
            "FROM versions JOIN secrets ON secrets.id = secret_id WHERE name = 'FIRST') "
            "WHERE secret_id = (SELECT id FROM secrets WHERE name = 'SECOND')"
        )
        conn.commit()
    finally:
        conn.close()
    with files.open() as vault, pytest.raises(TamperedSecretError) as raised:
        vault.get("SECOND")
    assert raised.value.fields["name"] == "SECOND"


def test_foreign_file_is_not_a_vault(tmp_path: Path) -> None:
    other = tmp_path / "events.db"
    conn = sqlite3.connect(other)
    conn.execute("PRAGMA application_id = 1234")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(NotAVaultError):
        Vault(other, key_file=tmp_path / "k", environ={})

    text = tmp_path / "notes.txt"
    text.write_text("plain text, not SQLite " * 100)
    with pytest.raises(NotAVaultError):
        Vault(text, key_file=tmp_path / "k", environ={})


def test_key_export_round_trip(files, tmp_path: Path) -> None:
    ring = load_key_ring(files.key_file, {})
    target = tmp_path / "key.export"
    export_key_ring(ring, target, "correct horse battery", n=2**10)

    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert ring.keys[0].decode() not in target.read_text()
    assert read_key_export(target, "correct horse battery") == ring.keys
    with pytest.raises(KeyFileExistsError):
        export_key_ring(ring, target, "correct horse battery", n=2**10)


def test_key_file_in_git_work_tree_detected(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    loose = tmp_path / "data" / "master.key"
    loose.parent.mkdir()
    loose.write_text("x")
    assert unignored_in_git(loose) == tmp_path.resolve()

    (tmp_path / ".gitignore").write_text("data/\n")
    assert unignored_in_git(loose) is None

    outside = tmp_path.parent / f"{tmp_path.name}-outside.key"
    outside.write_text("x")
    assert unignored_in_git(outside) is None


def test_git_absent_means_no_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    key = tmp_path / "master.key"
    key.write_text("x")
    assert unignored_in_git(key) is None


def test_init_reports_unignored_key_file(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    result = init_vault(
        tmp_path / "data" / "vault.db", key_file=tmp_path / "data" / "master.key", environ={}
    )
    assert result.created_key_file
    assert result.git_root == tmp_path.resolve()


# Findings of a review that tried to break the vault: one test per fix.


def _execute(db: Path, *statements: str) -> None:
    conn = sqlite3.connect(db)
    try:
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


def test_ring_with_unknown_first_key_rejected(files) -> None:
    with files.open() as vault:
        vault.set("KEY", "value")
    right = load_key_ring(files.key_file, {}).keys[0]
    other = generate_key()
    before = {table: table_rows(files.db, table) for table in ("vault_info", "secrets", "versions")}

    env = {"HAUSWACHT_MASTER_KEY": f"{other.decode()},{right.decode()}"}
    with Vault(files.db, environ=env, actor="poisoner") as vault:
        with pytest.raises(UnknownFirstKeyError) as raised:
            vault.set("POISON", "x")
        with pytest.raises(UnknownFirstKeyError):
            vault.get("KEY")

    after = {table: table_rows(files.db, table) for table in ("vault_info", "secrets", "versions")}
    assert after == before
    assert raised.value.fields == {
        "source": "HAUSWACHT_MASTER_KEY",
        "given": key_id(other),
        "expected": key_id(right),
    }
    assert other.decode() not in str(raised.value)
    assert right.decode() not in str(raised.value)
    assert [row[6] for row in table_rows(files.db, "audit")[-2:]] == ["unknown_first_key"] * 2
    with files.open() as vault:
        assert vault.get("KEY") == "value"


def test_hand_edited_key_file_with_new_first_key_rejected(files) -> None:
    right = load_key_ring(files.key_file, {}).keys[0]
    files.key_file.write_text(f"{generate_key().decode()}\n{right.decode()}\n")
    with files.open() as vault, pytest.raises(UnknownFirstKeyError):
        vault.set("KEY", "value")


def test_interrupted_rotations_leave_vault_usable(files) -> None:
    old_id = load_key_ring(files.key_file, {}).newest_id
    with files.open() as vault:
        vault.set("KEY", "value")

    def crash(done: int, total: int) -> None:
        raise RuntimeError("simulated crash inside the rotation transaction")

    for _ in range(2):
        with files.open() as vault, pytest.raises(RuntimeError):
            vault.rotate_master_key(crash)
    ring = load_key_ring(files.key_file, {})
    assert len(ring.ids) == 3
    assert ring.ids[2] == old_id

    with files.open() as vault:
        assert vault.get("KEY") == "value"
        vault.set("AFTER", "written after two interrupted rotations")
    assert {row[5] for row in table_rows(files.db, "versions")} == {old_id}
    assert table_rows(files.db, "vault_info")[0][-1] == ",".join(ring.ids[:2][::-1])

    with files.open() as vault:
        result = vault.rotate_master_key()
        assert vault.get("AFTER") == "written after two interrupted rotations"
    assert load_key_ring(files.key_file, {}).ids == (result.new_key_id,)
    assert table_rows(files.db, "vault_info")[0][-1] is None


def test_rotation_writes_through_symlinked_key_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    real = keys / "real.key"
    link = tmp_path / "master.key"
    init_vault(tmp_path / "vault.db", key_file=real, environ={})
    link.symlink_to(real)

    with Vault(tmp_path / "vault.db", key_file=link, environ={}) as vault:
        vault.set("KEY", "value")
        result = vault.rotate_master_key()

    assert link.is_symlink()
    assert os.readlink(link) == str(real)
    assert load_key_ring(real, {}).ids == (result.new_key_id,)
    assert (keys / "real.key.lock").exists()
    assert not (tmp_path / "master.key.lock").exists()
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    with Vault(tmp_path / "vault.db", key_file=link, environ={}) as vault:
        assert vault.get("KEY") == "value"


def _export_with(path: Path, source: Path, n: int, r: int, p: int) -> None:
    document = json.loads(source.read_text())
    document["kdf"].update(n=n, r=r, p=p)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize(
    ("n", "r", "p", "error", "parameters"),
    [
        (2**20, 16, 16, ScryptMemoryError, "scrypt N=1048576 and r=16, which need 2048 MiB"),
        (2**17, 16, 1, ScryptMemoryError, "scrypt N=131072 and r=16, which need 256 MiB"),
        (2**15, 8, 16, ScryptCostError, "scrypt N=32768, r=8 and p=16, a cost N·r·p of 4194304"),
    ],
)
def test_costly_scrypt_parameters_rejected(
    files, tmp_path: Path, n: int, r: int, p: int, error: type, parameters: str
) -> None:
    source = tmp_path / "source.export"
    export_key_ring(load_key_ring(files.key_file, {}), source, "correct horse battery", n=2**10)
    crafted = tmp_path / "crafted.export"
    _export_with(crafted, source, n, r, p)

    with pytest.raises(error) as raised:
        read_key_export(crafted, "correct horse battery")
    assert parameters in str(raised.value)
    assert str(raised.value).startswith(f"{crafted} asks for ")


def test_default_scrypt_parameters_within_limits(files, tmp_path: Path) -> None:
    ring = load_key_ring(files.key_file, {})
    target = tmp_path / "default.export"
    export_key_ring(ring, target, "correct horse battery")
    assert read_key_export(target, "correct horse battery") == ring.keys
    with pytest.raises(ScryptMemoryError):
        export_key_ring(ring, tmp_path / "huge.export", "correct horse battery", n=2**17)
    assert not (tmp_path / "huge.export").exists()


def test_nul_in_value_rejected(files) -> None:
    with files.open() as vault:
        with pytest.raises(ValueContainsNulError) as raised:
            vault.set("WITH_NUL", "before\x00after")
        with pytest.raises(ValueContainsNulError) as imported:
            vault.import_values({"FINE": "ok", "ALSO_NUL": "a\x00"})
        with pytest.raises(SecretNotFoundError):
            vault.get("FINE")
    assert raised.value.fields == {"name": "WITH_NUL"}
    assert str(raised.value) == (
        "the value for secret WITH_NUL contains a NUL byte, which an environment variable "
        "cannot hold; nothing was stored"
    )
    assert imported.value.fields == {"name": "ALSO_NUL"}


def test_key_file_directory_named_in_error(files) -> None:
    files.key_file.unlink()
    files.key_file.mkdir()
    with files.open() as vault, pytest.raises(FileReadError) as raised:
        vault.get("KEY")
    assert str(raised.value) == f"cannot read {files.key_file}: is a directory"
    last = table_rows(files.db, "audit")[-1]
    assert (last[3], last[4], last[6]) == ("read", "KEY", "read_failed")


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_foreign_sqlite_file_left_unchanged(tmp_path: Path) -> None:
    plain = tmp_path / "plain.db"
    _execute(plain, "CREATE TABLE t (x)", "INSERT INTO t VALUES (1)")
    foreign = tmp_path / "foreign.db"
    _execute(
        foreign, "PRAGMA application_id = 1234", "PRAGMA user_version = 3", "CREATE TABLE t (x)"
    )
    digests = {path: _file_digest(path) for path in (plain, foreign)}

    with pytest.raises(NoVaultSchemaError) as no_schema:
        Vault(plain, key_file=tmp_path / "k", environ={})
    with pytest.raises(ForeignDatabaseError) as other:
        Vault(foreign, key_file=tmp_path / "k", environ={})

    for path, digest in digests.items():
        assert _file_digest(path) == digest
        assert not Path(f"{path}-wal").exists()
    conn = sqlite3.connect(plain)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()
    assert str(no_schema.value) == (
        f"{plain} is an SQLite file without a vault schema; point HAUSWACHT_VAULT or --vault "
        "at the vault file, or move this file away and run `hauswacht vault init`"
    )
    assert other.value.fields == {
        "path": str(foreign),
        "application_id": "0x4d2",
        "user_version": 3,
    }
    assert isinstance(other.value, NotAVaultError)


def test_locked_vault_raises_vault_error(files, caplog: pytest.LogCaptureFixture) -> None:
    with files.open() as vault:
        vault.set("KEY", "value")
    audit_rows = len(table_rows(files.db, "audit"))
    holder = sqlite3.connect(files.db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with (
            Vault(files.db, key_file=files.key_file, environ={}, busy_timeout_s=0.2) as vault,
            caplog.at_level(logging.INFO, logger="hauswacht.vault"),
            pytest.raises(VaultLockedError) as raised,
        ):
            vault.get("KEY")
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert isinstance(raised.value, VaultError)
    assert str(raised.value) == (
        f"the vault {files.db} stayed locked by another process for 0.2 s; nothing was "
        "changed, try again when that process is done"
    )
    assert "could not record the failed read of KEY in the audit log" in caplog.text
    assert len(table_rows(files.db, "audit")) == audit_rows
    with files.open() as vault:
        assert vault.get("KEY") == "value"


def test_actor_with_control_characters_rejected(files, monkeypatch: pytest.MonkeyPatch) -> None:
    for actor in ("bob\n2026-01-01 00:00:00.000  admin  read", "a\x1b[2Jb", "x\u202ey"):
        with pytest.raises(InvalidActorError) as raised:
            files.open(actor=actor)
        assert raised.value.usage
        assert "\n" not in str(raised.value)
    with pytest.raises(InvalidActorError):
        init_vault(
            files.db.with_name("second.db"), key_file=files.key_file, environ={}, actor="a\rb"
        )

    monkeypatch.setenv("LOGNAME", "forged\nrow")
    with Vault(files.db, key_file=files.key_file, environ={}) as vault:
        assert vault.actor == "forged\\x0arow"


def test_rolled_back_version_detected(files) -> None:
    with files.open() as vault:
        vault.set("KEY", "old value")
        vault.set("KEY", "new value")
    _execute(
        files.db,
        "DELETE FROM versions WHERE version = 2",
        "UPDATE secrets SET current_version = 1 WHERE name = 'KEY'",
    )

    with files.open() as vault:
        with pytest.raises(SecretRolledBackError) as raised:
            vault.get("KEY")
        with pytest.raises(SecretRolledBackError):
            vault.set("KEY", "would reuse version 2")
        report = vault.verify_audit()
    assert raised.value.fields == {"name": "KEY", "current": 1, "recorded": 2}
    with pytest.raises(SecretRolledBackError):
        get_secret("KEY", vault=files.db, key_file=files.key_file)
    assert [(p.kind, p.secret, p.recorded, p.current) for p in report.problems] == [
        ("rolled_back", "KEY", 2, 1)
    ]

    # Destroying the secret and storing it again is one way back.
    with files.open() as vault:
        vault.destroy("KEY")
        assert vault.set("KEY", "fresh") == 1
        assert vault.get("KEY") == "fresh"
        assert vault.verify_audit().intact


def test_removed_secret_detected(files) -> None:
    with files.open() as vault:
        vault.set("KEY", "value")
        vault.set("DESTROYED", "value")
        vault.destroy("DESTROYED")
    _execute(files.db, "DELETE FROM secrets WHERE name = 'KEY'")

    with pytest.raises(SecretRemovedError) as raised:
        get_secret("KEY", vault=files.db, key_file=files.key_file)
    assert raised.value.fields == {"name": "KEY", "recorded": 1}
    assert get_secret("DESTROYED", "default", vault=files.db, key_file=files.key_file) == "default"
    with files.open() as vault:
        report = vault.verify_audit()
    assert [(p.kind, p.secret, p.recorded, p.current) for p in report.problems] == [
        ("rolled_back", "KEY", 1, 0)
    ]


def test_old_schema_migrated_on_open(files) -> None:
    with files.open() as vault:
        vault.set("KEY", "value")
    _execute(
        files.db,
        "ALTER TABLE vault_info DROP COLUMN pending_key_ids",
        "DROP INDEX audit_secret_action",
        "PRAGMA user_version = 1",
    )
    with files.open() as vault:
        assert vault.get("KEY") == "value"
        vault.rotate_master_key()
    conn = sqlite3.connect(files.db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    conn.close()


def test_undelete_of_active_version_rejected(files) -> None:
    with files.open() as vault:
        vault.set("KEY", "value")
        with pytest.raises(VersionNotDeletedError) as raised:
            vault.undelete("KEY")
        assert vault.get("KEY") == "value"
    assert str(raised.value) == "version 1 of secret KEY is not deleted; nothing was restored"
    assert table_rows(files.db, "audit")[-2][6] == "not_deleted"


def test_bad_environment_key_message_says_commas(files) -> None:
    with pytest.raises(InvalidMasterKeyVariableError) as raised:
        Vault(files.db, environ={"HAUSWACHT_MASTER_KEY": "not-a-key"}).get("KEY")
    assert isinstance(raised.value, InvalidMasterKeyError)
    assert str(raised.value) == (
        "HAUSWACHT_MASTER_KEY does not contain a valid master key: expected Fernet keys "
        "(44 URL-safe base64 characters each) separated by commas, newest first"
    )
    files.key_file.write_text("not-a-key\n")
    with pytest.raises(InvalidMasterKeyError) as from_file:
        load_key_ring(files.key_file, {})
    assert "per line" in str(from_file.value)
    assert not isinstance(from_file.value, InvalidMasterKeyVariableError)
