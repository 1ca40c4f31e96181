"""`hauswacht vault` as a user runs it: the installed command in a subprocess."""

from __future__ import annotations

import logging
import os
import pty
import re
import signal
import sqlite3
import stat
import string
import subprocess
import uuid
from pathlib import Path

import pytest

from hauswacht.cli.vault_messages import CATALOG, GERMAN_REASONS
from hauswacht.vault import audit, errors, store
from hauswacht.vault.keys import generate_key, key_id, load_key_ring
from hauswacht.vault.store import MAX_VALUE_BYTES
from tests.helpers.vault_common import HAUSWACHT, VaultFiles, make_vault, run_cli, table_rows

PASSPHRASE = "a long test passphrase\n"


@pytest.fixture
def files(tmp_path: Path) -> VaultFiles:
    return make_vault(tmp_path)


def _fields(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field}


def test_catalog_has_german_for_every_message() -> None:
    for key, texts in CATALOG.items():
        assert texts.get("en"), key
        assert texts.get("de"), key
        assert _fields(texts["en"]) == _fields(texts["de"]), key
        assert "\n" not in texts["en"] + texts["de"], key


def test_init_creates_files(tmp_path: Path) -> None:
    files = VaultFiles(tmp_path / "data" / "vault.db", tmp_path / "data" / "master.key")
    result = run_cli(files, "init")
    key_id = load_key_ring(files.key_file, {}).newest_id

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"created vault {files.db} (master key id {key_id})",
        f"created key file {files.key_file} (mode 0600); back it up with "
        "`hauswacht vault export-key FILE`",
    ]
    assert result.stderr == ""
    assert stat.S_IMODE(files.key_file.stat().st_mode) == 0o600

    again = run_cli(files, "init")
    assert again.returncode == 1
    assert again.stderr == (
        f"hauswacht vault: error: a vault already exists at {files.db}; init never overwrites it\n"
    )


def test_init_warns_about_key_file_in_git(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    files = VaultFiles(tmp_path / "data" / "vault.db", tmp_path / "data" / "master.key")
    result = run_cli(files, "init", lang="de")
    assert result.returncode == 0
    assert result.stderr == (
        f"hauswacht vault: Warnung: die Schlüsseldatei {files.key_file} liegt im "
        f"Git-Arbeitsverzeichnis {tmp_path.resolve()} und wird nicht ignoriert: tragen Sie "
        "sie in .gitignore ein\n"
    )


def test_set_reads_stdin_and_get_prints(files: VaultFiles) -> None:
    stored = run_cli(files, "set", "DB_PASSWORD", stdin="s3cret value\n")
    assert stored.returncode == 0, stored.stderr
    assert stored.stdout == "stored DB_PASSWORD version 1\n"

    assert run_cli(files, "get", "DB_PASSWORD").stdout == "s3cret value\n"
    assert run_cli(files, "get", "DB_PASSWORD", "-n").stdout == "s3cret value"

    run_cli(files, "set", "DB_PASSWORD", stdin="line one\nline two\n\n")
    assert run_cli(files, "get", "DB_PASSWORD", "-n").stdout == "line one\nline two\n"
    assert run_cli(files, "get", "DB_PASSWORD", "--version", "1", "-n").stdout == "s3cret value"


def test_set_never_takes_value_argument(files: VaultFiles) -> None:
    result = run_cli(files, "set", "DB_PASSWORD", "hunter2")
    assert result.returncode == 2
    assert "unrecognized arguments: hunter2" in result.stderr


def test_exit_codes(files: VaultFiles) -> None:
    cases = [
        (("get", "MISSING"), 1),
        (("get", "bad-name"), 2),
        (("get",), 2),
        (("frobnicate",), 2),
        (("set", "KEY", "--cas", "minus"), 2),
        (("get", "KEY", "--version", "0"), 2),
        (("list",), 0),
        (("audit", "--verify"), 0),
        (("run",), 2),
    ]
    for args, status in cases:
        result = run_cli(files, *args)
        assert result.returncode == status, (args, result.stderr)
        assert "Traceback" not in result.stderr
        if status:
            assert len(result.stderr.strip().splitlines()) >= 1

    empty = run_cli(files, "set", "KEY", stdin="")
    assert empty.returncode == 1
    assert empty.stderr == (
        "hauswacht vault: error: the value for secret KEY is empty; nothing was stored\n"
    )


def test_one_line_errors(files: VaultFiles) -> None:
    for args in (("get", "MISSING"), ("get", "bad-name"), ("versions", "NOPE")):
        result = run_cli(files, *args)
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith("hauswacht vault: error: ")


def test_german_messages(files: VaultFiles) -> None:
    stored = run_cli(files, "set", "API_KEY", stdin="k", lang="de")
    assert stored.stdout == "API_KEY Version 1 gespeichert\n"

    missing = run_cli(files, "get", "NOPE", lang="de")
    assert missing.returncode == 1
    assert missing.stderr == (
        "hauswacht vault: Fehler: das Geheimnis NOPE existiert nicht; speichern Sie es mit "
        "`hauswacht vault set NOPE`\n"
    )

    conflict = run_cli(files, "set", "API_KEY", "--cas", "0", stdin="x", lang="de")
    assert conflict.returncode == 1
    assert conflict.stderr == (
        "hauswacht vault: Fehler: Check-and-set für das Geheimnis API_KEY fehlgeschlagen: "
        "erwartet war Version 0, aktuell ist Version 1; nichts wurde gespeichert\n"
    )

    listing = run_cli(files, "list", lang="de")
    assert listing.stdout.splitlines()[0].split() == [
        "NAME",
        "VERSION",
        "ZUSTAND",
        "AUFBEWAHRT",
        "GEÄNDERT",
        "(UTC)",
    ]
    assert listing.stdout.splitlines()[1].split()[:3] == ["API_KEY", "1", "aktiv"]

    help_text = run_cli(files, "--help", lang="de")
    assert "Geheimnisse verschlüsselt in vault.db speichern" in help_text.stdout


def test_cas_on_command_line(files: VaultFiles) -> None:
    assert run_cli(files, "set", "KEY", "--cas", "0", stdin="one").returncode == 0
    conflict = run_cli(files, "set", "KEY", "--cas", "0", stdin="two")
    assert conflict.returncode == 1
    assert conflict.stderr == (
        "hauswacht vault: error: check-and-set failed for secret KEY: expected version 0, "
        "but the current version is 1; nothing was stored\n"
    )
    assert run_cli(files, "set", "KEY", "--cas", "1", stdin="two").returncode == 0
    assert run_cli(files, "get", "KEY", "-n").stdout == "two"


def test_delete_undelete_destroy(files: VaultFiles) -> None:
    run_cli(files, "set", "KEY", stdin="one")
    run_cli(files, "set", "KEY", stdin="two")

    deleted = run_cli(files, "delete", "KEY")
    assert deleted.stdout == (
        "deleted version 2 of KEY; `hauswacht vault undelete KEY --version 2` restores it\n"
    )
    assert run_cli(files, "get", "KEY").returncode == 1
    assert run_cli(files, "undelete", "KEY").stdout == "restored version 2 of KEY\n"
    assert run_cli(files, "destroy", "KEY", "--version", "1").stdout == (
        "destroyed version 1 of KEY\n"
    )

    versions = run_cli(files, "versions", "KEY").stdout.splitlines()
    assert versions[0].split() == ["VERSION", "STATE", "CREATED", "(UTC)", "KEY", "ID"]
    assert [line.split()[:2] for line in versions[1:]] == [["1", "destroyed"], ["2", "active"]]

    assert run_cli(files, "destroy", "KEY").stdout == "destroyed secret KEY with all its versions\n"
    assert run_cli(files, "list").stdout == "the vault contains no secrets\n"


def test_rotate_key_command(files: VaultFiles) -> None:
    run_cli(files, "set", "KEY", stdin="value")
    old_id = load_key_ring(files.key_file, {}).newest_id
    result = run_cli(files, "rotate-key")
    new_id = load_key_ring(files.key_file, {}).newest_id

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        f"re-wrapped 1 data keys with the new master key {new_id} (was {old_id}); "
        f"{files.key_file} now contains only the new key"
    )
    assert run_cli(files, "get", "KEY", "-n").stdout == "value"

    env = files.env()
    env["HAUSWACHT_MASTER_KEY"] = files.key_file.read_text().splitlines()[-1]
    del env["HAUSWACHT_MASTER_KEY_FILE"]
    rejected = run_cli(files, "rotate-key", env=env)
    assert rejected.returncode == 1
    assert "comes from HAUSWACHT_MASTER_KEY" in rejected.stderr


def test_key_file_mode_refused(files: VaultFiles) -> None:
    os.chmod(files.key_file, 0o644)
    for lang, expected in (
        ("en", f"run `chmod 600 {files.key_file}` and try again"),
        ("de", f"führen Sie `chmod 600 {files.key_file}` aus"),
    ):
        result = run_cli(files, "get", "KEY", lang=lang)
        assert result.returncode == 1
        assert expected in result.stderr
        assert "0644" in result.stderr


def test_wrong_key_refused(files: VaultFiles, tmp_path: Path) -> None:
    run_cli(files, "set", "KEY", stdin="value")
    other = make_vault(tmp_path / "other")
    env = files.env()
    env["HAUSWACHT_MASTER_KEY_FILE"] = str(other.key_file)

    result = run_cli(files, "set", "KEY", stdin="overwrite", env=env)
    expected_id = load_key_ring(files.key_file, {}).newest_id
    given_id = load_key_ring(other.key_file, {}).newest_id
    assert result.returncode == 1
    assert result.stderr == (
        f"hauswacht vault: error: wrong master key: the vault needs key id {expected_id}, but "
        f"{other.key_file} contains key id {given_id}; nothing was changed\n"
    )
    assert run_cli(files, "get", "KEY", "-n").stdout == "value"


def test_tampered_value_named(files: VaultFiles) -> None:
    run_cli(files, "set", "KEY", stdin="value")
    conn = sqlite3.connect(files.db)
    conn.execute(
        "UPDATE versions SET ciphertext = CAST(substr(ciphertext, 1, 30) || 'Z' || "
        "substr(ciphertext, 32) AS BLOB)"
    )
    conn.commit()
    conn.close()
    result = run_cli(files, "get", "KEY")
    assert result.returncode == 1
    assert result.stderr == (
        "hauswacht vault: error: version 1 of secret KEY failed decryption: the stored value "
        "was altered or damaged\n"
    )


def test_audit_command_lists_and_verifies(files: VaultFiles) -> None:
    run_cli(files, "set", "KEY", stdin="value", env={**files.env(), "USER": "ignored"})
    run_cli(files, "get", "KEY", "--actor", "deploy-bot")
    listing = run_cli(files, "audit", "--secret", "KEY").stdout.splitlines()
    assert listing[0].split()[:4] == ["TIME", "(UTC)", "ACTOR", "ACTION"]
    assert listing[2].split()[2:7] == ["deploy-bot", "read", "KEY", "1", "ok"]
    assert len(listing) == 3

    intact = run_cli(files, "audit", "--verify")
    assert intact.returncode == 0
    assert re.fullmatch(r"audit log intact: 3 rows, head hash [0-9a-f]{64}\n", intact.stdout)

    conn = sqlite3.connect(files.db)
    conn.execute("UPDATE audit SET actor = 'someone-else' WHERE id = 2")
    conn.commit()
    conn.close()
    broken = run_cli(files, "audit", "--verify")
    assert broken.returncode == 1
    assert broken.stdout == "row 2 was edited: its hash no longer matches its fields\n"
    assert broken.stderr == "hauswacht vault: error: the audit log failed verification at 1 place\n"
    german = run_cli(files, "audit", "--verify", lang="de")
    assert german.stdout == "Zeile 2 wurde geändert: ihr Hash passt nicht mehr zu ihren Feldern\n"


def test_import_env_reports_and_rewrites(files: VaultFiles, tmp_path: Path) -> None:
    env_file = tmp_path / "config.env"
    env_file.write_text(
        '# settings\nexport DB_PASSWORD=\'pw one\'\nAPI_KEY="k\\"ey"\nEMPTY=\nDEBUG=1\n'
    )
    os.chmod(env_file, 0o644)
    run_cli(files, "set", "DEBUG", stdin="1")

    result = run_cli(files, "import-env", str(env_file), "--rewrite")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:5] == [
        "created DB_PASSWORD (version 1)",
        "created API_KEY (version 1)",
        "skipped EMPTY: the value is empty",
        "unchanged DEBUG (version 1)",
        f"imported 3 of 4 keys from {env_file}",
    ]
    backup = Path(re.search(r"the original is in (\S+) \(mode 0600\)", lines[5]).group(1))
    assert lines[5].startswith(f"rewrote {env_file} without 3 values;")
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert "pw one" in backup.read_text()
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o644
    assert "pw one" not in env_file.read_text()
    assert "EMPTY=" in env_file.read_text()

    assert run_cli(files, "get", "DB_PASSWORD", "-n").stdout == "pw one"
    assert run_cli(files, "get", "API_KEY", "-n").stdout == 'k"ey'


def test_import_env_chosen_keys(files: VaultFiles, tmp_path: Path) -> None:
    env_file = tmp_path / "config.env"
    env_file.write_text("A=1\nB=2\nC=3\n")

    result = run_cli(files, "import-env", str(env_file), "C", "A")
    assert result.stdout.splitlines() == [
        "created C (version 1)",
        "created A (version 1)",
        f"imported 2 of 2 keys from {env_file}",
    ]
    assert env_file.read_text() == "A=1\nB=2\nC=3\n"

    missing = run_cli(files, "import-env", str(env_file), "B", "ZZZ")
    assert missing.returncode == 1
    assert missing.stderr == (
        f"hauswacht vault: error: {env_file} has no key ZZZ; nothing was stored\n"
    )
    assert run_cli(files, "get", "B").returncode == 1


def test_import_env_syntax_error_stores_nothing(files: VaultFiles, tmp_path: Path) -> None:
    env_file = tmp_path / "config.env"
    env_file.write_text("A=1\nnot valid\n")
    result = run_cli(files, "import-env", str(env_file), lang="de")
    assert result.returncode == 1
    assert result.stderr == (
        f"hauswacht vault: Fehler: {env_file} Zeile 2: erwartet wird KEY=VALUE, "
        "`export KEY=VALUE`, ein Kommentar oder eine Leerzeile\n"
    )
    assert run_cli(files, "get", "A").returncode == 1


def test_export_and_import_key(files: VaultFiles, tmp_path: Path) -> None:
    run_cli(files, "set", "KEY", stdin="value")
    export = tmp_path / "master.key.export"
    key_text = files.key_file.read_text()

    exported = run_cli(files, "export-key", str(export), "--passphrase-stdin", stdin=PASSPHRASE)
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.endswith("(scrypt N=32768, r=8, p=1)\n")
    assert stat.S_IMODE(export.stat().st_mode) == 0o600
    assert key_text.splitlines()[-1] not in export.read_text()

    files.key_file.unlink()
    wrong = run_cli(
        files, "import-key", str(export), "--passphrase-stdin", stdin="not the passphrase\n"
    )
    assert wrong.returncode == 1
    assert "wrong passphrase" in wrong.stderr
    assert not files.key_file.exists()

    no_terminal = run_cli(files, "import-key", str(export))
    assert no_terminal.returncode == 2
    assert "--passphrase-stdin" in no_terminal.stderr

    imported = run_cli(files, "import-key", str(export), "--passphrase-stdin", stdin=PASSPHRASE)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.splitlines()[-1] == f"the key opens the vault {files.db}"
    assert stat.S_IMODE(files.key_file.stat().st_mode) == 0o600
    assert run_cli(files, "get", "KEY", "-n").stdout == "value"

    again = run_cli(files, "import-key", str(export), "--passphrase-stdin", stdin=PASSPHRASE)
    assert again.returncode == 1
    assert "never overwritten" in again.stderr

    short = run_cli(
        files, "export-key", str(tmp_path / "short"), "--passphrase-stdin", stdin="short\n"
    )
    assert short.returncode == 1
    assert "use at least 12" in short.stderr


def test_run_passes_secrets_and_status(files: VaultFiles) -> None:
    run_cli(files, "set", "DB_PASSWORD", stdin="pw")
    run_cli(files, "set", "API_KEY", stdin="key")
    script = (
        "import os, sys; "
        "print(os.environ.get('DB_PASSWORD'), os.environ.get('API_KEY'), "
        "os.environ.get('KEEP_ME')); sys.exit(7)"
    )
    env = {**files.env(), "KEEP_ME": "kept", "DB_PASSWORD": "stale"}

    result = run_cli(files, "run", "--", "python3", "-c", script, env=env)
    assert result.returncode == 7, result.stderr
    assert result.stdout == "pw key kept\n"

    only = run_cli(files, "run", "--only", "API_KEY", "--", "python3", "-c", script, env=env)
    assert only.returncode == 7
    assert only.stdout == "stale key kept\n"

    missing = run_cli(files, "run", "--only", "NOPE", "--", "python3", "-c", script)
    assert missing.returncode == 1
    assert "secret NOPE does not exist" in missing.stderr

    not_found = run_cli(files, "run", "--", "no-such-command-hauswacht")
    assert not_found.returncode == 127
    assert not_found.stderr == (
        "hauswacht vault: error: command not found: no-such-command-hauswacht\n"
    )


def test_plaintext_nowhere_but_get(
    files: VaultFiles, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = f"plaintext-marker-{uuid.uuid4().hex}"
    env_marker = f"env-marker-{uuid.uuid4().hex}"
    env_file = tmp_path / "config.env"
    env_file.write_text(f"FROM_ENV_FILE={env_marker}\n")
    outputs: list[str] = []

    # A connection held open keeps the WAL file from being checkpointed away on close.
    keeper = sqlite3.connect(files.db)
    keeper.execute("SELECT count(*) FROM secrets").fetchone()
    try:
        steps = [
            ("set", "MARKED", "--actor", "ops"),
            ("versions", "MARKED"),
            ("list",),
            ("rotate-key",),
            ("import-env", str(env_file)),
            ("delete", "MARKED"),
            ("undelete", "MARKED"),
            ("get", "MISSING"),
            ("run", "--", "true"),
            ("audit", "--limit", "1000"),
            ("audit", "--verify"),
        ]
        for args in steps:
            result = run_cli(files, *args, stdin=marker + "\n")
            outputs += [result.stdout, result.stderr]
        read = run_cli(files, "get", "MARKED", "-n")
        assert read.stdout == marker  # `get` is the one place a value is printed
        outputs.append(read.stderr)

        caplog.set_level(logging.DEBUG)
        with files.open() as vault:
            vault.set("IN_PROCESS", marker)
            vault.destroy("IN_PROCESS", version=1)  # checkpoints and truncates the WAL
            vault.set("IN_PROCESS", marker)
            vault.get("IN_PROCESS")
            vault.import_values({"IN_PROCESS": marker + "2"})
            vault.rotate_master_key()

        wal = Path(f"{files.db}-wal")
        assert wal.stat().st_size > 0
        raw = {path.name: path.read_bytes() for path in (files.db, wal)}
    finally:
        keeper.close()

    for value in (marker, env_marker):
        for name, data in raw.items():
            assert value.encode() not in data, name
        for text in outputs:
            assert value not in text
        assert value not in caplog.text
        for record in caplog.records:
            assert value not in repr(record.args)
    assert "rotated master key" in caplog.text


def _run_on_terminal(files: VaultFiles, *args: str, typed: list[str]) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as stdin and answer each prompt with a line."""
    main, secondary = pty.openpty()
    process = subprocess.Popen(
        [str(HAUSWACHT), "vault", *args],
        stdin=secondary,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=files.env(),
        start_new_session=True,
    )
    os.close(secondary)
    assert process.stderr is not None
    try:
        prompts = b""
        for count, line in enumerate(typed, start=1):
            # getpass turns echo off (flushing pending input) before it writes the
            # prompt, so a line is typed only after its prompt has appeared.
            while prompts.count(b": ") < count:
                chunk = os.read(process.stderr.fileno(), 1024)
                assert chunk, "the command exited before prompting"
                prompts += chunk
            os.write(main, line.encode() + b"\n")
        stdout, _ = process.communicate(timeout=30)
    finally:
        os.close(main)
    return process.returncode, stdout.decode()


def test_set_prompts_twice_on_terminal(files: VaultFiles) -> None:
    status, stdout = _run_on_terminal(files, "set", "TYPED", typed=["typed value"] * 2)
    assert status == 0
    assert stdout == "stored TYPED version 1\n"
    assert run_cli(files, "get", "TYPED", "-n").stdout == "typed value"

    status, stdout = _run_on_terminal(files, "set", "TYPED", typed=["one", "two"])
    assert status == 1
    assert run_cli(files, "get", "TYPED", "-n").stdout == "typed value"


def test_import_key_for_other_vault_rejected(files: VaultFiles, tmp_path: Path) -> None:
    other = make_vault(tmp_path / "other")
    export = tmp_path / "other.export"
    exported = run_cli(other, "export-key", str(export), "--passphrase-stdin", stdin=PASSPHRASE)
    assert exported.returncode == 0, exported.stderr

    files.key_file.unlink()
    result = run_cli(files, "import-key", str(export), "--passphrase-stdin", stdin=PASSPHRASE)
    assert result.returncode == 1
    assert "wrong master key" in result.stderr
    assert not files.key_file.exists()


# Findings of a review that tried to break the vault: one test per fix.


def test_set_with_unknown_first_key_rejected(files: VaultFiles) -> None:
    right = load_key_ring(files.key_file, {}).keys[0].decode()
    other = generate_key().decode()
    env = {**files.env(), "HAUSWACHT_MASTER_KEY": f"{other},{right}"}

    poisoned = run_cli(files, "set", "POISON", stdin="x\n", env=env)
    assert poisoned.returncode == 1
    assert poisoned.stderr == (
        f"hauswacht vault: error: the first key in HAUSWACHT_MASTER_KEY has key id "
        f"{key_id(other.encode())}, which this vault does not use; new values are wrapped "
        f"with the vault's master key id {key_id(right.encode())}, so put that key first; "
        "nothing was changed\n"
    )
    listing = run_cli(files, "list")
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout == "the vault contains no secrets\n"


def test_import_env_backup_in_git_warns(files: VaultFiles, tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    gitignore = tmp_path / ".gitignore"
    gitignore.write_text("config.env\ndata/\n")
    env_file = tmp_path / "config.env"
    env_file.write_text("API_KEY=first\n")

    result = run_cli(files, "import-env", str(env_file), "--rewrite")
    assert result.returncode == 0, result.stderr
    backup = next(tmp_path.glob("config.env.*.bak"))
    assert result.stderr == (
        f"hauswacht vault: warning: the backup {backup} contains the imported values in plain "
        f"text and is inside the git work tree {tmp_path.resolve()} without being ignored: "
        "add the line `config.env.*.bak` to .gitignore, or delete the backup once you have "
        "checked the vault\n"
    )

    gitignore.write_text("config.env\nconfig.env.*.bak\ndata/\n")
    env_file.write_text("API_KEY=second\n")
    again = run_cli(files, "import-env", str(env_file), "--rewrite")
    assert again.returncode == 0, again.stderr
    assert again.stderr == ""


def test_run_hides_master_key_from_command(files: VaultFiles) -> None:
    run_cli(files, "set", "API_KEY", stdin="key")
    script = (
        "import os; print(os.environ.get('HAUSWACHT_MASTER_KEY'), "
        "os.environ.get('HAUSWACHT_MASTER_KEY_FILE'), os.environ.get('API_KEY'))"
    )
    from_file = run_cli(files, "run", "--", "python3", "-c", script)
    assert from_file.returncode == 0, from_file.stderr
    assert from_file.stdout == "None None key\n"

    env = files.env()
    env["HAUSWACHT_MASTER_KEY"] = load_key_ring(files.key_file, {}).keys[0].decode()
    from_variable = run_cli(files, "run", "--", "python3", "-c", script, env=env)
    assert from_variable.returncode == 0, from_variable.stderr
    assert from_variable.stdout == "None None key\n"


def test_set_value_limit_on_stdin(files: VaultFiles) -> None:
    largest = b"x" * MAX_VALUE_BYTES
    stored = run_cli(files, "set", "BIG", stdin=largest + b"\r\n")
    assert stored.returncode == 0, stored.stderr
    assert run_cli(files, "get", "BIG", "-n").stdout == largest.decode()

    too_long = run_cli(files, "set", "BIG", stdin=largest + b"xyz")
    assert too_long.returncode == 1
    assert too_long.stderr == (
        "hauswacht vault: error: the value for secret BIG on stdin is longer than the limit "
        f"of {MAX_VALUE_BYTES} bytes; nothing was stored\n"
    )


def test_set_stops_reading_endless_stdin(files: VaultFiles) -> None:
    process = subprocess.Popen(
        [str(HAUSWACHT), "vault", "set", "HUGE"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=files.env(),
        bufsize=0,
    )
    assert process.stdin is not None
    chunk = b"y" * 65536
    # 64 MiB is far more than the limit plus any pipe buffer: if the command reads only
    # the limit and exits, a write fails with EPIPE well before the end.
    with pytest.raises(BrokenPipeError):
        for _ in range(1024):
            process.stdin.write(chunk)
    process.stdin.close()  # unbuffered (bufsize=0), so closing writes nothing
    assert process.stderr is not None
    stderr = process.stderr.read()
    process.wait(timeout=60)
    assert process.stdout is not None
    process.stdout.close()
    process.stderr.close()
    assert process.returncode == 1
    assert stderr.decode().endswith(
        f"longer than the limit of {MAX_VALUE_BYTES} bytes; nothing was stored\n"
    )


def test_nul_value_rejected_by_set_and_run(
    files: VaultFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rejected = run_cli(files, "set", "WITH_NUL", stdin=b"a\x00b")
    assert rejected.returncode == 1
    assert rejected.stderr == (
        "hauswacht vault: error: the value for secret WITH_NUL contains a NUL byte, which an "
        "environment variable cannot hold; nothing was stored\n"
    )
    env_file = tmp_path / "config.env"
    env_file.write_bytes(b"FINE=1\nIN_FILE=x\x00y\n")
    imported = run_cli(files, "import-env", str(env_file))
    assert imported.returncode == 1
    assert "secret IN_FILE contains a NUL byte" in imported.stderr
    assert run_cli(files, "get", "FINE").returncode == 1

    # A value stored before this check existed: store it with the check switched off.
    monkeypatch.setattr(store, "_check_storable", lambda name, data: None)
    with files.open() as vault:
        vault.set("LEGACY_NUL", "a\x00b")
    result = run_cli(files, "run", "--", "true")
    assert result.returncode == 1
    assert result.stderr == (
        "hauswacht vault: error: secret LEGACY_NUL cannot be passed as an environment variable "
        "because its value contains a NUL byte; store it again without it\n"
    )


def _run_with_closed(files: VaultFiles, redirect: str, *args: str) -> subprocess.CompletedProcess:
    """Run `hauswacht vault ARGS` through sh with stdin (`<&-`) or stdout (`>&-`) closed."""
    return subprocess.run(
        ["sh", "-c", f'exec "$0" vault "$@" {redirect}', str(HAUSWACHT), *args],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=files.env(),
        text=True,
        timeout=60,
        check=False,
    )


def test_closed_stdin_or_stdout_one_line_error(files: VaultFiles) -> None:
    run_cli(files, "set", "KEY", stdin="value")
    audit_rows = len(table_rows(files.db, "audit"))

    no_stdin = _run_with_closed(files, "<&-", "set", "NEW")
    assert no_stdin.returncode == 1
    assert no_stdin.stderr == (
        "hauswacht vault: error: stdin is closed, so no value or passphrase can be read; "
        "nothing was changed\n"
    )
    no_stdout = _run_with_closed(files, ">&-", "get", "KEY")
    assert no_stdout.returncode == 1
    assert no_stdout.stderr == (
        "hauswacht vault: error: stdout is closed, so the output would be lost; nothing was done\n"
    )
    assert len(table_rows(files.db, "audit")) == audit_rows
    assert run_cli(files, "get", "NEW").returncode == 1


def test_key_file_directory_named_in_german(files: VaultFiles, tmp_path: Path) -> None:
    files.key_file.unlink()
    files.key_file.mkdir()
    result = run_cli(files, "get", "KEY", lang="de")
    assert result.returncode == 1
    assert result.stderr == (
        f"hauswacht vault: Fehler: {files.key_file} kann nicht gelesen werden: "
        "ist ein Verzeichnis\n"
    )
    last = table_rows(files.db, "audit")[-1]
    assert (last[3], last[6]) == ("read", "read_failed")

    missing = run_cli(files, "import-env", str(tmp_path / "absent.env"), lang="de")
    assert missing.stderr == (
        f"hauswacht vault: Fehler: {tmp_path / 'absent.env'} kann nicht gelesen werden: "
        "Datei nicht gefunden\n"
    )


def test_every_library_reason_has_german() -> None:
    assert set(GERMAN_REASONS) == set(errors.REASONS)


def test_library_warnings_shown_on_stderr(files: VaultFiles) -> None:
    run_cli(files, "set", "KEY", stdin="value")
    # An open read transaction blocks the checkpoint that follows a destroy.
    reader = sqlite3.connect(files.db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM secrets").fetchone()
    try:
        result = run_cli(files, "destroy", "KEY")
    finally:
        reader.execute("ROLLBACK")
        reader.close()
    assert result.returncode == 0, result.stderr
    assert result.stdout == "destroyed secret KEY with all its versions\n"
    assert result.stderr == (
        f"hauswacht vault: warning: WAL checkpoint of {files.db} was blocked by another "
        "connection; the destroyed bytes stay in the WAL until the next checkpoint\n"
    )


def test_actor_control_characters_rejected_and_escaped(files: VaultFiles) -> None:
    run_cli(files, "set", "KEY", stdin="value")
    forged = run_cli(files, "get", "KEY", "--actor", "ops\n2026-01-01 00:00:00.000  admin  read")
    assert forged.returncode == 2
    assert forged.stderr == (
        "hauswacht vault: error: invalid actor 'ops\\n2026-01-01 00:00:00.000  admin  read': it "
        "contains control characters, which would break the audit log display; use a name "
        "without them\n"
    )

    # A row written by an older version or another tool is shown on one line.
    with files.open() as vault:
        vault_id = vault.vault_id
    conn = sqlite3.connect(files.db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    audit.append(conn, vault_id, "evil\nfake row\x1b[0m", "read", "KEY", 1)
    conn.execute("COMMIT")
    conn.close()
    listing = run_cli(files, "audit").stdout.splitlines()
    assert len(listing) == 4
    assert listing[-1].split()[2] == "evil\\x0afake"
    assert "row\\x1b[0m" in listing[-1]


def test_audit_verify_messages(files: VaultFiles) -> None:
    run_cli(files, "set", "KEY", stdin="value")
    run_cli(files, "get", "KEY")
    run_cli(files, "get", "KEY")
    conn = sqlite3.connect(files.db)
    conn.execute("DELETE FROM audit WHERE id IN (2, 4)")
    conn.commit()
    conn.close()

    english = run_cli(files, "audit", "--verify")
    assert english.returncode == 1
    assert english.stdout == "row 2 was deleted\nrow 4 at the end was deleted\n"
    assert (
        english.stderr == "hauswacht vault: error: the audit log failed verification at 2 places\n"
    )
    german = run_cli(files, "audit", "--verify", lang="de")
    assert german.stdout == "Zeile 2 wurde gelöscht\nZeile 4 am Ende wurde gelöscht\n"

    conn = sqlite3.connect(files.db)
    conn.execute("DELETE FROM audit")
    conn.execute("DELETE FROM sqlite_sequence WHERE name = 'audit'")
    conn.commit()
    conn.close()
    emptied = run_cli(files, "audit", "--verify")
    assert emptied.returncode == 1
    assert emptied.stdout == (
        "row 1 is not the init row that every vault's audit log starts with: rows were "
        "deleted or replaced\n"
    )
    assert (
        emptied.stderr == "hauswacht vault: error: the audit log failed verification at 1 place\n"
    )


def test_rolled_back_version_reported(files: VaultFiles) -> None:
    run_cli(files, "set", "KEY", stdin="old")
    run_cli(files, "set", "KEY", stdin="new")
    conn = sqlite3.connect(files.db)
    conn.execute("DELETE FROM versions WHERE version = 2")
    conn.execute("UPDATE secrets SET current_version = 1")
    conn.commit()
    conn.close()

    read = run_cli(files, "get", "KEY")
    assert read.returncode == 1
    assert read.stdout == ""
    assert read.stderr == (
        "hauswacht vault: error: the newest stored version of secret KEY is 1, but the audit "
        "log records that version 2 was written: versions were removed from the vault file; "
        "restore it from a backup\n"
    )
    verified = run_cli(files, "audit", "--verify")
    assert verified.returncode == 1
    assert verified.stdout == (
        "secret KEY: row 3 records writing version 2, but the newest stored version is 1: "
        "versions were removed\n"
    )


def test_refused_rotation_recorded(files: VaultFiles) -> None:
    env = files.env()
    env["HAUSWACHT_MASTER_KEY"] = load_key_ring(files.key_file, {}).keys[0].decode()
    del env["HAUSWACHT_MASTER_KEY_FILE"]
    rejected = run_cli(files, "rotate-key", env=env)
    assert rejected.returncode == 1
    last = table_rows(files.db, "audit")[-1]
    assert (last[3], last[4], last[5], last[6]) == (
        "rotate",
        None,
        None,
        "rotation_needs_key_file",
    )


def test_closed_stdout_pipe_exits_quietly(files: VaultFiles) -> None:
    for number in range(3):
        run_cli(files, "set", f"KEY_{number}", stdin="value")
    process = subprocess.Popen(
        [str(HAUSWACHT), "vault", "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=files.env(),
    )
    assert process.stdout is not None
    process.stdout.close()  # like `| head -1` after its line: the reader is gone
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 141
    assert stderr == b""


def test_bad_master_key_variable_message(files: VaultFiles) -> None:
    env = {**files.env(), "HAUSWACHT_MASTER_KEY": "not-a-key,also-not"}
    result = run_cli(files, "list", env=env)
    assert result.returncode == 1
    assert result.stderr == (
        "hauswacht vault: error: HAUSWACHT_MASTER_KEY does not contain a valid master key: "
        "expected Fernet keys (44 URL-safe base64 characters each) separated by commas, "
        "newest first\n"
    )


def test_interrupt_at_prompt_ends_line(files: VaultFiles) -> None:
    main, secondary = pty.openpty()
    process = subprocess.Popen(
        [str(HAUSWACHT), "vault", "set", "TYPED"],
        stdin=secondary,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=files.env(),
        start_new_session=True,
    )
    os.close(secondary)
    assert process.stderr is not None
    try:
        prompt = b""
        while not prompt.endswith(b"Value for TYPED: "):
            chunk = os.read(process.stderr.fileno(), 1024)
            assert chunk, "the command exited before prompting"
            prompt += chunk
        process.send_signal(signal.SIGINT)
        _, rest = process.communicate(timeout=30)
    finally:
        os.close(main)
    assert process.returncode == 130
    assert (prompt + rest).decode() == "Value for TYPED: \ninterrupted\n"


def test_undelete_of_active_version_fails(files: VaultFiles) -> None:
    run_cli(files, "set", "KEY", stdin="value")
    result = run_cli(files, "undelete", "KEY")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        "hauswacht vault: error: version 1 of secret KEY is not deleted; nothing was restored\n"
    )
