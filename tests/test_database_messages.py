"""Why an events database cannot be used, as the CLI and the dashboard report it, in both languages.

Root may read and write every file. So when the tests run as root, the
cases of a user without permission run the real `hauswacht` command as the
user `nobody` through setpriv (`run_cli(..., uid=OTHER_USER)`). They work in
folders under the system's temporary folder that other users can reach,
because pytest's own tmp_path is private to root. Run as any other user, the commands run as
that user, whom the same file modes already keep out.
NOTE: only the run as root has been tried; without root, the setup takes
permissions away from the user running the tests instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import httpx
import pytest

from hauswacht.dashboard import create_app
from hauswacht.dashboard.auth import UserStore
from hauswacht.writer import schema
from tests.test_cli import HAUSWACHT, run_cli
from tests.test_dashboard_http import PASSWORD, USER, login, serve
from tests.test_errors_cli import NOW, error, write

NOBODY = 65534  # the uid and gid of the user `nobody`
ROOT = os.geteuid() == 0
OTHER_USER = NOBODY if ROOT else None  # who runs the commands that lack permission


def give_to_other_user(path: Path) -> None:
    """Make `path` belong to the user the commands run as (nothing to do without root)."""
    if ROOT:
        os.chown(path, NOBODY, NOBODY)


def as_other_user(command: list[str]) -> list[str]:
    if not ROOT:
        return command
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]


ACCESS_LINE = (
    '10.0.0.1 - - [17/May/2015:10:05:03 +0000] "GET /api/tours/17 HTTP/1.1" 200 512 "-" "curl/8.0"'
)


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A fresh folder (mode 0755) that other users can reach, removed after the test."""
    folder = Path(tempfile.mkdtemp(prefix="hauswacht-test-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        # Without root, removing needs the write permission the tests took away.
        for path in (folder, *folder.rglob("*")):
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(folder)


def current_database(path: Path) -> Path:
    """Create an empty events database at the current schema version (WAL mode, no -wal left)."""
    schema.prepare_database(path)
    return path


def version_5_database(path: Path) -> Path:
    """Create an events database at schema version 5, as Hauswacht before compaction left it."""
    schema.prepare_database(path)
    conn = sqlite3.connect(path, isolation_level=None)
    for table in ("endpoint_hourly", "status_hourly", "compacted_hours"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("PRAGMA user_version = 5")
    conn.close()
    return path


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


def write_log(path: Path, lines: int) -> Path:
    path.write_text(f"{ACCESS_LINE}\n" * lines)
    path.chmod(0o644)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_listening(process: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"nothing listens on port {port}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)


def stop(process: subprocess.Popen) -> tuple[str, str]:
    process.send_signal(signal.SIGINT)
    return process.communicate(timeout=30)


# --- a folder this user cannot write -------------------------------------------------

READONLY_FOLDER = {
    "en": "hauswacht: {path}: cannot open, because this user cannot write to the folder "
    "{folder} and SQLite must create ro.db-shm and ro.db-wal there to open a WAL-mode "
    "database, even for reading; make the folder writable for this user or run as the "
    "owner of the database",
    "de": "hauswacht: {path}: kann nicht geöffnet werden, weil dieser Benutzer im Ordner "
    "{folder} nicht schreiben darf und SQLite dort ro.db-shm und ro.db-wal anlegen muss, um "
    "eine Datenbank im WAL-Modus zu öffnen, auch nur zum Lesen; dem Benutzer Schreibrecht "
    "auf den Ordner geben oder als Eigentümer der Datenbank ausführen",
}


def readonly_folder_database(open_folder: Path) -> Path:
    """Return ro.db (mode 0444, WAL mode) in a folder of mode 0555, both owned by root."""
    folder = open_folder / "nb"
    folder.mkdir()
    database = current_database(folder / "ro.db")
    database.chmod(0o444)
    folder.chmod(0o555)
    return database


@pytest.mark.parametrize("lang", ["en", "de"])
def test_stats_in_readonly_folder_names_wal_files(open_folder: Path, lang: str) -> None:
    database = readonly_folder_database(open_folder)

    result = run_cli("stats", "--db", str(database), lang=lang, uid=OTHER_USER)

    expected = READONLY_FOLDER[lang].format(path=database, folder=database.parent)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == expected + "\n"
    assert sorted(path.name for path in database.parent.iterdir()) == ["ro.db"]


def test_dashboard_in_readonly_folder_is_503_with_cause(open_folder: Path) -> None:
    database = readonly_folder_database(open_folder)
    private = open_folder / "private"
    private.mkdir(mode=0o700)
    users = private / "users.json"
    UserStore(users).set_password(USER, PASSWORD)
    for path in (private, users):
        give_to_other_user(path)
    port = free_port()
    command = as_other_user([
        str(HAUSWACHT), "dashboard", "--port", str(port), "--db", str(database),
        "--users", str(users), "--secret-key", str(private / "secret.key"),
    ])  # fmt: skip
    env = {**os.environ, "HAUSWACHT_LANG": "en"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env)  # fmt: skip
    try:
        wait_until_listening(process, port)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            assert login(http).status_code == 303
            page = http.get("/?lang=de")
            api = http.get("/api/stats?lang=en")
    finally:
        stop(process)

    path, folder = database, database.parent
    german = READONLY_FOLDER["de"].format(path=path, folder=folder).removeprefix("hauswacht: ")
    english = READONLY_FOLDER["en"].format(path=path, folder=folder).removeprefix("hauswacht: ")
    assert page.status_code == 503
    assert german in unescape(page.text)
    assert "SQLite database" not in page.text
    assert api.status_code == 503
    assert api.json() == {"error": english}


# --- a file this user cannot write ---------------------------------------------------

READONLY_FILE = {
    "en": "hauswacht: {path}: read-only for this user; give this user write permission on the "
    "file (chmod or chown) or run as a user who has it\n",
    "de": "hauswacht: {path}: für diesen Benutzer schreibgeschützt; ihm Schreibrecht auf die "
    "Datei geben (chmod oder chown) oder als ein Benutzer mit Schreibrecht ausführen\n",
}


def readonly_file_database(open_folder: Path) -> Path:
    """Return ro.db, mode 0444 and owned by root, in a folder that everybody may write."""
    folder = open_folder / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    database = current_database(folder / "ro.db")
    database.chmod(0o444)
    return database


@pytest.mark.parametrize("lang", ["en", "de"])
def test_replay_into_readonly_file_reads_no_line(open_folder: Path, lang: str) -> None:
    database = readonly_file_database(open_folder)
    log = write_log(open_folder / "five.log", 5)

    result = run_cli("replay", str(log), "--db", str(database), lang=lang, uid=OTHER_USER)

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == READONLY_FILE[lang].format(path=database)
    conn = sqlite3.connect(database)
    assert conn.execute("SELECT count(*) FROM replay_files").fetchone() == (0,)
    conn.close()


@pytest.mark.parametrize("lang", ["en", "de"])
def test_token_create_in_readonly_file(open_folder: Path, lang: str) -> None:
    database = readonly_file_database(open_folder)

    result = run_cli(
        "token", "create", "frontend", "--db", str(database), lang=lang, uid=OTHER_USER
    )

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == READONLY_FILE[lang].format(path=database)


@pytest.mark.parametrize("lang", ["en", "de"])
def test_errors_resolve_in_readonly_file(open_folder: Path, lang: str) -> None:
    # set_group_status raises a plain English message; the CLI names its SQLite cause.
    database = readonly_file_database(open_folder)
    database.chmod(0o644)
    write(database, error(NOW, "LookupError", "tour 1 not found"))
    database.chmod(0o444)

    result = run_cli("errors", "resolve", "1", "--db", str(database), lang=lang, uid=OTHER_USER)

    assert result.returncode == 1
    assert result.stderr == READONLY_FILE[lang].format(path=database)
    conn = sqlite3.connect(database)
    assert conn.execute("SELECT status FROM error_groups").fetchall() == [("unresolved",)]
    conn.close()


@pytest.mark.parametrize("lang", ["en", "de"])
def test_replay_with_readonly_wal_stops_at_claim(open_folder: Path, lang: str) -> None:
    # As root, the database file belongs to the user `nobody`, who runs the replay, but
    # the -wal and -shm files of the open writer stay root's with mode 0644. Without root
    # they are made read-only. Either way the replay can read them but cannot write them.
    database = readonly_file_database(open_folder)
    database.chmod(0o644)
    give_to_other_user(database)
    log = write_log(open_folder / "five.log", 5)
    writer = sqlite3.connect(database, isolation_level=None)
    writer.execute("PRAGMA user_version = 6")  # any write creates the -wal file
    for suffix in ("-wal", "-shm"):
        sibling = Path(f"{database}{suffix}")
        if ROOT:
            os.chown(sibling, 0, 0)  # SQLite gave them the database file's owner
        else:
            sibling.chmod(0o444)  # read-only for the user who owns it and runs the replay
    try:
        result = run_cli("replay", str(log), "--db", str(database), lang=lang, uid=OTHER_USER)
    finally:
        writer.close()

    expected = {
        "en": f"hauswacht: {database}: ro.db-wal beside it is read-only for this user; give "
        "this user write permission on it (chmod or chown) or run as its owner\n"
        f"hauswacht: the replay of {log} stopped after line 1; no request from this run "
        "is stored\n",
        "de": f"hauswacht: {database}: ro.db-wal daneben ist für diesen Benutzer "
        "schreibgeschützt; ihm Schreibrecht darauf geben (chmod oder chown) oder als dessen "
        f"Eigentümer ausführen\nhauswacht: der Import von {log} brach nach Zeile 1 ab; keine "
        "Anfrage aus diesem Lauf ist gespeichert\n",
    }
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == expected[lang]


# --- a write that fails partway ------------------------------------------------------


def block_progress_after_first_batch(database: Path) -> None:
    """Make every progress update of a replay after its first batch fail with an SQLite error."""
    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute(
        "CREATE TRIGGER block_progress BEFORE UPDATE OF imported_lines ON replay_files "
        "WHEN OLD.imported_lines > 0 BEGIN SELECT RAISE(ABORT, 'blocked by test'); END"
    )
    conn.close()


@pytest.mark.parametrize("lang", ["en", "de"])
def test_replay_write_failure_names_stop_line(tmp_path: Path, lang: str) -> None:
    database = current_database(tmp_path / "events.db")
    block_progress_after_first_batch(database)
    log = write_log(tmp_path / "access.log", 4500)

    failed = run_cli("replay", str(log), "--db", str(database), lang=lang)
    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute("DROP TRIGGER block_progress")
    conn.close()
    again = run_cli("replay", str(log), "--db", str(database), lang=lang)

    expected = {
        "en": f"hauswacht: {database}: cannot write (blocked by test)\n"
        f"hauswacht: the replay of {log} stopped after line 4,000; 2,000 requests read "
        "before are stored, and replaying the log again after the fix imports only the rest\n",
        "de": f"hauswacht: {database}: kann nicht geschrieben werden (SQLite: blocked by "
        f"test)\nhauswacht: der Import von {log} brach nach Zeile 4.000 ab; 2.000 zuvor "
        "gelesene Anfragen sind gespeichert, und ein erneuter Import nach der Behebung liest "
        "nur den Rest\n",
    }
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert failed.stderr == expected[lang]
    assert again.returncode == 0, again.stderr
    resumed = {"en": "Resumed after line 2,000:", "de": "Fortgesetzt nach Zeile 2.000:"}
    assert resumed[lang] in again.stdout
    conn = sqlite3.connect(database)
    assert conn.execute("SELECT count(*) FROM requests").fetchone() == (4500,)
    conn.close()


# --- schema versions -----------------------------------------------------------------

OLD_SCHEMA = {
    "en": "hauswacht: {path}: schema version 5, expected 6; to migrate it, run "
    "`hauswacht serve --db {path}` once and stop it with Ctrl-C when it listens, or start an "
    "app with the Hauswacht middleware on it\n",
    "de": "hauswacht: {path}: Schemaversion 5, erwartet 6; zum Migrieren einmal "
    "`hauswacht serve --db {path}` starten und mit Strg-C beenden, sobald er lauscht, oder "
    "eine App mit der Hauswacht-Middleware darauf starten\n",
}


@pytest.mark.parametrize("lang", ["en", "de"])
def test_stats_on_old_schema_names_migrating_command(tmp_path: Path, lang: str) -> None:
    database = version_5_database(tmp_path / "events.db")

    result = run_cli("stats", "--db", str(database), lang=lang)

    assert result.returncode == 1
    assert result.stderr == OLD_SCHEMA[lang].format(path=database)
    assert user_version(database) == 5  # reading never migrates


def test_old_schema_message_quotes_path_for_shell(tmp_path: Path) -> None:
    database = version_5_database(tmp_path / "my events.db")

    result = run_cli("stats", "--db", str(database))

    assert f"`hauswacht serve --db '{database}'`" in result.stderr


def test_serve_migrates_old_schema(tmp_path: Path) -> None:
    # The command that the message above names does migrate.
    database = version_5_database(tmp_path / "events.db")
    port = free_port()
    process = subprocess.Popen(
        [str(HAUSWACHT), "serve", "--db", str(database), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HAUSWACHT_LANG": "en"},
    )
    try:
        wait_until_listening(process, port)
    finally:
        stop(process)

    assert user_version(database) == schema.SCHEMA_VERSION
    result = run_cli("stats", "--db", str(database))
    assert result.returncode == 0, result.stderr


def test_newer_schema_in_german(tmp_path: Path) -> None:
    database = current_database(tmp_path / "events.db")
    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    conn.close()

    result = run_cli("stats", "--db", str(database), lang="de")

    assert result.stderr == (
        f"hauswacht: {database}: Schemaversion {schema.SCHEMA_VERSION + 1} ist neuer als "
        f"dieses Hauswacht (kennt {schema.SCHEMA_VERSION}); Hauswacht aktualisieren\n"
    )


# --- the dashboard's 503 page in the page's language --------------------------------


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (
            lambda path: path,
            "{path}: Datei nicht gefunden; erst Ereignisse aufzeichnen oder --db angeben",
        ),
        (
            version_5_database,
            "{path}: Schemaversion 5, erwartet 6; zum Migrieren einmal `hauswacht serve --db "
            "{path}` starten und mit Strg-C beenden, sobald er lauscht, oder eine App mit der "
            "Hauswacht-Middleware darauf starten",
        ),
    ],
    ids=["missing", "version-5"],
)
def test_dashboard_503_in_german(tmp_path: Path, make, expected: str) -> None:
    database = make(tmp_path / "events.db")
    UserStore(tmp_path / "dashboard-users.json").set_password(USER, PASSWORD)
    app = create_app(database, timezone="UTC")
    with serve(app) as url, httpx.Client(base_url=url) as http:
        login(http)
        page = http.get("/?lang=de")
        api = http.get("/api/stats")  # the language cookie of the page above applies

    assert page.status_code == 503
    assert "Datenbank nicht verfügbar" in page.text
    assert expected.format(path=database) in unescape(page.text)
    assert api.status_code == 503
    assert api.json() == {"error": expected.format(path=database)}


# --- the dashboard's users file ------------------------------------------------------

USERS_NOT_FILE = {
    "en": "hauswacht: {path}: is not a file; pass the path of the users file with --users\n",
    "de": "hauswacht: {path}: ist keine Datei; mit --users den Pfad der Benutzerdatei angeben\n",
}


@pytest.mark.parametrize("lang", ["en", "de"])
def test_passwd_users_folder_is_not_a_file(tmp_path: Path, lang: str) -> None:
    users = tmp_path / "bad"
    users.mkdir(mode=0o755)
    env = {**os.environ, "HAUSWACHT_LANG": lang}
    result = subprocess.run(
        [str(HAUSWACHT), "dashboard", "passwd", "alice", "--users", str(users)],
        input="correcthorse\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == USERS_NOT_FILE[lang].format(path=users)
    assert list(users.iterdir()) == []


@pytest.mark.parametrize("lang", ["en", "de"])
def test_dashboard_users_folder_is_not_a_file(tmp_path: Path, lang: str) -> None:
    users = tmp_path / "bad"
    users.mkdir(mode=0o755)

    result = run_cli("dashboard", "--users", str(users), "--db", str(tmp_path / "e.db"), lang=lang)

    assert result.returncode == 1
    assert result.stderr == USERS_NOT_FILE[lang].format(path=users)


def test_group_status_write_failure_in_german(tmp_path: Path) -> None:
    database = current_database(tmp_path / "events.db")
    conn = sqlite3.connect(database)
    conn.execute(
        "CREATE TRIGGER no_updates BEFORE UPDATE ON error_groups"
        " BEGIN SELECT RAISE(ABORT, 'updates are off'); END"
    )
    conn.execute(
        "INSERT INTO error_groups (fingerprint, scheme, type, message, count, first_seen,"
        " last_seen, latest_event) VALUES ('fp', 2, 'KeyError', 'k', 1, 0, 0, '{}')"
    )
    conn.commit()
    conn.close()

    result = run_cli("errors", "resolve", "1", "--db", str(database), lang="de")

    assert result.returncode == 1
    assert result.stderr == (
        f"hauswacht: {database}: kann nicht geschrieben werden (SQLite: updates are off)\n"
    )


@pytest.mark.parametrize("lang", ["en", "de"])
def test_unsearchable_folder_named_without_traceback(open_folder: Path, lang: str) -> None:
    hidden = open_folder / "hidden"
    hidden.mkdir()
    database = current_database(hidden / "events.db")
    hidden.chmod(0o700 if ROOT else 0o000)  # root owns it, so the user `nobody` cannot enter it

    stats = run_cli("stats", "--db", str(database), lang=lang, uid=OTHER_USER)
    serve = run_cli("token", "list", "--db", str(database), lang=lang, uid=OTHER_USER)
    dashboard = run_cli("dashboard", "--db", str(database), lang=lang, uid=OTHER_USER)

    expected = {
        "en": f"hauswacht: {database}: this user may not enter a folder on its path; give this "
        f"user search (x) permission on the folders up to {hidden}\n",
        "de": f"hauswacht: {database}: dieser Benutzer darf einen Ordner auf dem Pfad nicht "
        f"betreten; ihm das Recht x auf die Ordner bis {hidden} geben\n",
    }[lang]
    for result in (stats, serve, dashboard):
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        assert result.stderr == expected
    hidden.chmod(0o755)
