"""`hauswacht errors` and `hauswacht token` as subprocesses on real database files."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from pathlib import Path

from hauswacht.writer.events import ErrorEvent
from hauswacht.writer.queue import EventQueue
from hauswacht.writer.tokens import TokenVerifier, hash_token
from hauswacht.writer.writer import Writer
from tests.helpers.ingest_server import run_cli

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
