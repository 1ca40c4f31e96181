"""`hauswacht errors` and `hauswacht token` as subprocesses on real database files."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

from hauswacht.writer.events import ErrorEvent
from hauswacht.writer.queue import EventQueue
from hauswacht.writer.tokens import SCOPE_INGEST, SCOPE_SENTRY, TokenVerifier, hash_token
from hauswacht.writer.writer import Writer
from tests.helpers.ingest_server import CLI, REPO_ROOT, run_cli

NOW = 1_780_000_000_000
GROUP_FIELDS = {
    "id", "fingerprint", "scheme", "type", "message", "count", "status", "first_seen",
    "last_seen", "resolved_at", "regressions",
}  # fmt: skip


def error(ts: int, error_type: str, message: str) -> ErrorEvent:
    data = {
        "type": error_type,
        "message": message,
        "exceptions": [
            {
                "type": error_type,
                "message": message,
                "relation": None,
                "frames": [
                    {
                        "filename": "app.py",
                        "module": "app",
                        "function": "plan",
                        "lineno": 3,
                        "line": "plan()",
                        "in_app": True,
                    }
                ],
                "frames_omitted": 0,
            }
        ],
    }
    return ErrorEvent(ts, error_type, message, "error", None, None, data)


def write(db: Path, *events: ErrorEvent) -> None:
    async def scenario() -> None:
        queue = EventQueue(maxsize=100, wake_at=100)
        writer = Writer(db, queue, flush_interval=60)
        await writer.start()
        for event in events:
            queue.put(event)
        await writer.stop()

    asyncio.run(scenario())


def errors_json(db: Path, *args: str) -> list[dict]:
    result = run_cli("errors", *args, "--json", "--db", str(db))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_list_and_show_json(db_path: Path) -> None:
    write(
        db_path,
        error(NOW, "LookupError", "tour 1 not found"),
        error(NOW + 5, "LookupError", "tour 2 not found"),
        error(NOW + 9, "KeyError", "'eta'"),
    )

    groups = errors_json(db_path, "list")

    assert [(g["type"], g["count"], g["status"]) for g in groups] == [
        ("KeyError", 1, "unresolved"),
        ("LookupError", 2, "unresolved"),
    ]
    assert set(groups[1]) == GROUP_FIELDS
    assert (groups[1]["first_seen"], groups[1]["last_seen"]) == (NOW, NOW + 5)
    assert groups[1]["regressions"] == 0
    assert groups[1]["scheme"] == 2

    detail = errors_json(db_path, "show", str(groups[1]["id"]))
    assert detail["message"] == "tour 1 not found"
    assert detail["latest_event"]["message"] == "tour 2 not found"
    assert [(s["reason"], s["ts"]) for s in detail["samples"]] == [("first", NOW)]


def test_resolve_then_regression_reopens(db_path: Path) -> None:
    write(db_path, error(NOW, "LookupError", "tour 1 not found"))
    (group,) = errors_json(db_path, "list")

    result = run_cli("errors", "resolve", str(group["id"]), "--db", str(db_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"Error group {group['id']} is now resolved."
    assert errors_json(db_path, "list", "--status", "resolved")[0]["id"] == group["id"]
    assert errors_json(db_path, "list", "--status", "unresolved") == []

    # An event newer than the resolution (the current time) is a regression.
    conn = sqlite3.connect(db_path)
    (resolved_at,) = conn.execute("SELECT resolved_at FROM error_groups").fetchone()
    conn.close()
    write(db_path, error(resolved_at + 1000, "LookupError", "tour 7 not found"))

    (reopened,) = errors_json(db_path, "list")
    assert (reopened["status"], reopened["regressions"], reopened["count"]) == ("unresolved", 1, 2)
    samples = errors_json(db_path, "show", str(group["id"]))["samples"]
    assert [s["reason"] for s in samples] == ["first", "regression"]


def test_ignore_and_reopen(db_path: Path) -> None:
    write(db_path, error(NOW, "LookupError", "tour 1 not found"))
    (group,) = errors_json(db_path, "list")
    group_id = str(group["id"])

    assert run_cli("errors", "ignore", group_id, "--db", str(db_path)).returncode == 0
    write(db_path, error(NOW + 10**9, "LookupError", "tour 2 not found"))
    assert errors_json(db_path, "list")[0]["status"] == "ignored"

    assert run_cli("errors", "reopen", group_id, "--db", str(db_path)).returncode == 0
    assert errors_json(db_path, "list")[0]["status"] == "unresolved"
    assert errors_json(db_path, "list")[0]["resolved_at"] is None


def test_text_output_in_german(db_path: Path) -> None:
    write(db_path, error(NOW, "LookupError", "tour 1 not found"))

    listing = run_cli("errors", "list", "--db", str(db_path), env={"HAUSWACHT_LANG": "de"})
    shown = run_cli("errors", "show", "1", "--db", str(db_path), env={"HAUSWACHT_LANG": "de"})

    assert listing.returncode == 0
    assert "Ereignisse" in listing.stdout.splitlines()[0]
    assert "LookupError: tour 1 not found" in listing.stdout
    assert shown.returncode == 0
    assert "Neuestes Ereignis:" in shown.stdout
    assert "* app.py:3 in plan" in shown.stdout


def test_bad_input_messages(db_path: Path, tmp_path: Path) -> None:
    write(db_path, error(NOW, "LookupError", "tour 1 not found"))

    cases = [
        (("errors", "show", "abc", "--db", str(db_path)), 2, "invalid group id 'abc'"),
        (("errors", "resolve", "999", "--db", str(db_path)), 1, "no error group with id 999"),
        (("errors", "list", "--status", "open", "--db", str(db_path)), 2, "unresolved"),
        (("errors", "list", "--db", str(tmp_path / "none.db")), 1, "no such file"),
        (("token", "revoke", "ghost", "--db", str(db_path)), 1, "no active token named 'ghost'"),
        (("token", "create", "bad name", "--db", str(db_path)), 1, "invalid token name"),
        (("token", "create", "ok", "--url", "ftp://x", "--db", str(db_path)), 2, "invalid --url"),
    ]
    for args, status, text in cases:
        result = run_cli(*args)
        assert result.returncode == status, (args, result.stderr)
        assert text in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_token_create_list_revoke(db_path: Path) -> None:
    created = run_cli("token", "create", "frontend", "--url", "http://192.0.2.1:9000", "--db",
                      str(db_path))  # fmt: skip
    assert created.returncode == 0, created.stderr
    token = created.stdout.splitlines()[1].strip()
    assert re.fullmatch(r"[0-9a-f]{32}", token)
    assert f"http://{token}@192.0.2.1:9000/1" in created.stdout

    conn = sqlite3.connect(db_path)
    stored = conn.execute("SELECT name, token_hash FROM ingest_tokens").fetchall()
    conn.close()
    assert stored == [("frontend", hash_token(token))]
    assert token not in db_path.read_bytes().decode("latin-1")
    assert TokenVerifier(db_path).verify(token) == "frontend"

    again = run_cli("token", "create", "frontend", "--db", str(db_path))
    assert again.returncode == 1
    assert "already exists" in again.stderr

    listing = run_cli("token", "list", "--json", "--db", str(db_path))
    assert [row["name"] for row in json.loads(listing.stdout)] == ["frontend"]
    assert token not in listing.stdout

    assert run_cli("token", "revoke", "frontend", "--db", str(db_path)).returncode == 0
    assert TokenVerifier(db_path).verify(token) is None
    (row,) = json.loads(run_cli("token", "list", "--json", "--db", str(db_path)).stdout)
    assert row["revoked_at"] is not None


# --- closed pipes, German, table layout, messages, database path, scopes --------------


def run_into_closed_pipe(*args: str) -> subprocess.CompletedProcess:
    """Run the CLI with stdout on a pipe whose reader has already gone, like `| head` ends."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HAUSWACHT_")}
    environment["HAUSWACHT_LANG"] = "en"
    try:
        return subprocess.run(
            [sys.executable, "-c", CLI, *args],
            cwd=REPO_ROOT,
            env=environment,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)


def test_closed_pipe_exits_quietly(db_path: Path) -> None:
    write(db_path, *(error(NOW + n, "LookupError", f"tour {n} not found") for n in range(3)))

    for args in (
        ("errors", "list", "--db", str(db_path)),
        ("errors", "list", "--json", "--db", str(db_path)),
        ("errors", "show", "1", "--db", str(db_path)),
        ("token", "create", "piped", "--db", str(db_path)),
        ("token", "list", "--db", str(db_path)),
    ):
        result = run_into_closed_pipe(*args)
        assert result.stderr == "", args
        assert result.returncode == 141, args


def test_german_statuses_and_token_name(db_path: Path) -> None:
    write(db_path, error(NOW, "LookupError", "tour 1 not found"))
    german = {"HAUSWACHT_LANG": "de"}

    listing = run_cli("errors", "list", "--db", str(db_path), env=german)
    resolved = run_cli("errors", "resolve", "1", "--db", str(db_path), env=german)
    shown = run_cli("errors", "show", "1", "--db", str(db_path), env=german)
    bad_name = run_cli("token", "create", "bad name", "--db", str(db_path), env=german)

    assert listing.stdout.splitlines()[2].split()[1] == "offen"
    assert resolved.stdout == "Fehlergruppe 1 ist jetzt erledigt.\n"
    assert "Status: erledigt" in shown.stdout
    assert bad_name.returncode == 1
    assert bad_name.stderr == (
        "hauswacht: ungültiger Token-Name 'bad name': erlaubt sind 1 bis 64 Buchstaben, "
        "Ziffern, '.', '_' oder '-', am Anfang ein Buchstabe oder eine Ziffer\n"
    )
    assert (
        json.loads(run_cli("errors", "list", "--json", "--db", str(db_path)).stdout)[0]["status"]
        == "resolved"
    )


def test_list_table_and_bad_status(db_path: Path) -> None:
    write(db_path, error(NOW, "LookupError", "tour 1 not found"))

    listing = run_cli("errors", "list", "--db", str(db_path))
    bogus = run_cli("errors", "list", "--status", "bogus", "--db", str(db_path))

    header, underline = listing.stdout.splitlines()[:2]
    assert header.endswith("  Error")
    assert underline.endswith("  -----")
    assert len(underline) == len(header)
    assert bogus.returncode == 2
    assert bogus.stderr == (
        "hauswacht: invalid --status 'bogus': expected one of unresolved, resolved, ignored\n"
    )


def test_token_create_names_database(tmp_path: Path, db_path: Path) -> None:
    write(db_path, error(NOW, "LookupError", "tour 1 not found"))
    new_db = tmp_path / "typo" / "evnets.db"

    existing = run_cli("token", "create", "web", "--db", str(db_path))
    created = run_cli("token", "create", "web", "--db", str(new_db))
    as_json = run_cli("token", "create", "api", "--json", "--db", str(new_db))

    assert f"Database: {db_path.absolute()}\n" in existing.stdout
    assert existing.stderr == ""
    assert f"Database: {new_db.absolute()}\n" in created.stdout
    assert created.stderr.startswith(
        f"hauswacht: note: {new_db} did not exist and was created as a new events database"
    )
    body = json.loads(as_json.stdout)
    assert body["database"] == str(new_db.absolute())
    assert body["database_created"] is False


def test_token_scope_decides_output(db_path: Path) -> None:
    browser = run_cli("token", "create", "browser", "--scope", "sentry", "--db", str(db_path))
    service = run_cli("token", "create", "service", "--scope", "ingest", "--db", str(db_path))
    both = run_cli("token", "create", "both", "--json", "--db", str(db_path))
    invalid = run_cli("token", "create", "x", "--scope", "admin", "--db", str(db_path))

    assert "Sentry DSN:" in browser.stdout
    assert "curl" not in browser.stdout
    assert "Sentry DSN:" not in service.stdout
    assert "Authorization: Bearer" in service.stdout
    body = json.loads(both.stdout)
    assert body["scope"] == "all"
    assert body["dsn"].startswith("http://")
    assert invalid.returncode == 2
    assert "admin" in invalid.stderr
    listing = json.loads(run_cli("token", "list", "--json", "--db", str(db_path)).stdout)
    assert {row["name"]: row["scope"] for row in listing} == {
        "both": "all",
        "browser": "sentry",
        "service": "ingest",
    }
    verifier = TokenVerifier(db_path)
    browser_token = browser.stdout.splitlines()[1].strip()
    assert verifier.verify(browser_token, SCOPE_SENTRY) == "browser"
    assert verifier.verify(browser_token, SCOPE_INGEST) is None


def test_show_lists_contexts_and_breadcrumbs(db_path: Path) -> None:
    event = error(NOW, "TypeError", "x is undefined")
    event.data["contexts"] = {"os": {"name": "Linux"}, "browser": {"name": "Firefox"}}
    event.data["breadcrumbs"] = [
        {"category": "ui.click", "message": f"button {n}"} for n in range(12)
    ]
    write(db_path, event)

    shown = run_cli("errors", "show", "1", "--db", str(db_path))

    lines = shown.stdout.splitlines()
    assert "  Contexts: browser, os" in lines
    start = lines.index("  Breadcrumbs (last 10 of 12):")
    assert lines[start + 1] == "    ui.click button 2"
    assert lines[start + 10] == "    ui.click button 11"


def test_tokens_from_before_scopes_allow_all(tmp_path: Path) -> None:
    from hauswacht.writer import schema

    (scope_version,) = [
        index + 1 for index, script in enumerate(schema.MIGRATIONS) if "ADD COLUMN scope" in script
    ]
    path = tmp_path / "old.db"
    token = "0123456789abcdef0123456789abcdef"
    conn = sqlite3.connect(path, isolation_level=None)
    for script in schema.MIGRATIONS[: scope_version - 1]:
        conn.executescript(script)
    conn.execute(f"PRAGMA application_id = {schema.APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {scope_version - 1}")
    conn.execute(
        "INSERT INTO ingest_tokens (name, token_hash, created_at) VALUES (?, ?, ?)",
        ("legacy", hash_token(token), NOW),
    )
    conn.close()

    schema.prepare_database(path)

    verifier = TokenVerifier(path)
    assert verifier.lookup(token) == ("legacy", "all")
    assert verifier.verify(token, SCOPE_INGEST) == "legacy"
    assert verifier.verify(token, SCOPE_SENTRY) == "legacy"
    verifier.close()


def test_text_output_escapes_control_characters(db_path: Path) -> None:
    event = error(NOW, "Evil\x1b[5mBlink", "v\x1b[0m\x07\u202e")
    event.data["exceptions"][0]["frames"][0]["function"] = "plan\x1b]0;title\x07"
    event.data["breadcrumbs"] = [{"category": "ui\x1b[2J", "message": "m"}]
    write(db_path, event)

    listed = run_cli("errors", "list", "--db", str(db_path))
    shown = run_cli("errors", "show", "1", "--db", str(db_path))

    for result in (listed, shown):
        assert result.returncode == 0, result.stderr
        assert "\x1b" not in result.stdout
        assert "\x07" not in result.stdout
        assert "\u202e" not in result.stdout
    assert "Evil\\x1b[5mBlink: v\\x1b[0m\\x07\\u202e" in listed.stdout
    assert "in plan\\x1b]0;title\\x07" in shown.stdout
    assert "    ui\\x1b[2J m" in shown.stdout.splitlines()
