"""Fingerprint scheme 2 with real tracebacks, client fingerprints, and bounded group samples."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from hauswacht.collector.ingest_schema import SchemaError, parse_event
from hauswacht.collector.sentry import convert_event
from hauswacht.collector.tracebacks import parse_traceback
from hauswacht.writer.aggregate import MAX_SAMPLES
from hauswacht.writer.events import ErrorEvent
from hauswacht.writer.fingerprint import (
    SCHEME,
    SCHEME_CLIENT,
    SCHEME_V1,
    client_fingerprint,
    compute_fingerprint,
    fingerprint_event,
    normalize_message,
)
from hauswacht.writer.queue import EventQueue
from hauswacht.writer.writer import Writer

NOW = 1_780_000_000_000


def traceback_event(text: str, **fields: Any) -> ErrorEvent:
    event = parse_event({"type": "error", "exception.stacktrace": text, **fields}, NOW)
    assert isinstance(event, ErrorEvent)
    return event


def test_two_forms_of_locked_trace_group(shared_data: Path) -> None:
    full = (shared_data / "tracebacks/pygments/database.pytb").read_text()
    cut = (shared_data / "tracebacks/pygments/truncated.pytb").read_text()

    first, second = traceback_event(full), traceback_event(cut)

    assert (first.type, first.message) == ("OperationalError", "database is locked")
    assert (second.type, second.message) == ("OperationalError", "database is locked")
    assert len(first.data["exceptions"][0]["frames"]) == 7
    assert fingerprint_event(first) == fingerprint_event(second)
    assert fingerprint_event(first)[1] == SCHEME


def test_locked_trace_splits_from_other_type(shared_data: Path) -> None:
    text = (shared_data / "tracebacks/pygments/database.pytb").read_text()
    other = text.replace(
        "OperationalError: database is locked", "IntegrityError: database is locked"
    )

    assert fingerprint_event(traceback_event(text)) != fingerprint_event(traceback_event(other))


def test_locked_trace_splits_on_other_call_site(shared_data: Path) -> None:
    text = (shared_data / "tracebacks/pygments/database.pytb").read_text()
    other = text.replace("in promote_session", "in purge_session")

    assert fingerprint_event(traceback_event(text)) != fingerprint_event(traceback_event(other))


def test_line_numbers_and_folders_do_not_split(shared_data: Path) -> None:
    text = (shared_data / "tracebacks/pygments/error_locations.pytb").read_text()
    moved = text.replace("line 11,", "line 57,").replace("/home/tb.py", "/srv/release-7/tb.py")

    assert fingerprint_event(traceback_event(text)) == fingerprint_event(traceback_event(moved))


def test_chained_trace_keeps_relation(shared_data: Path) -> None:
    text = (shared_data / "tracebacks/loguru/backtrace_chained_expression_direct.txt").read_text()

    parsed = parse_traceback(text)

    assert parsed is not None
    assert [(item["type"], item["relation"]) for item in parsed.exceptions] == [
        ("ValueError", None),
        ("ZeroDivisionError", "context"),
    ]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("order 4711 failed for anna@example.org", "order 12 failed for bob.k@example.com"),
        (
            "GET https://api.example.com/v1/tours/9?x=1 timed out",
            "GET http://osrm:5000/route timed out",
        ),
        ("peer 10.0.0.12:5432 refused", "peer 192.168.1.7:6432 refused"),
        ("peer fe80::1ff:fe23:4567:890a refused", "peer ::1 refused"),
        ("job started 2026-05-28T20:26:40Z stuck", "job started 2025-01-02 03:04:05 stuck"),
        ("lock held for 2.5s", "lock held for 150 ms"),
        (
            "commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
            "commit 0000000000000000000000000000000000000000",
        ),
        (
            "md5 d41d8cd98f00b204e9800998ecf8427e mismatch",
            "md5 ffffffffffffffffffffffffffffffff mismatch",
        ),
        (
            "user 550e8400-e29b-41d4-a716-446655440000 gone",
            "user 123e4567-e89b-12d3-a456-426614174000 gone",
        ),
        ("query failed: name='anna' AND id=\"7\"", "query failed: name='bob' AND id=\"8\""),
        (
            "retry 3 of 5\nrequest failed\nbody:\n{'tour': 1}",
            "retry 4 of 5\n\nrequest failed\nbody:\n{'driver': 2}",
        ),
    ],
    ids=[
        "email",
        "url",
        "ipv4",
        "ipv6",
        "date",
        "duration",
        "sha1",
        "md5",
        "uuid",
        "quoted",
        "lines",
    ],
)
def test_volatile_parts_do_not_split(first: str, second: str) -> None:
    assert normalize_message(first, SCHEME) == normalize_message(second, SCHEME)
    assert compute_fingerprint("E", first, {}) == compute_fingerprint("E", second, {})


def test_quoted_value_without_equals_splits() -> None:
    # A quoted value that is not an assignment, such as a KeyError's key, names the bug.
    assert compute_fingerprint("KeyError", "'tour_id'", {}) != compute_fingerprint(
        "KeyError", "'driver_id'", {}
    )


def test_mutual_recursion_depth_does_not_split() -> None:
    def frames(pairs: int) -> dict[str, Any]:
        chain = [{"module": "app", "function": "main", "in_app": True}]
        for _ in range(pairs):
            chain.append({"module": "app", "function": "ping", "in_app": True})
            chain.append({"module": "app", "function": "pong", "in_app": True})
        return {"exceptions": [{"type": "RecursionError", "frames": chain}]}

    assert compute_fingerprint("RecursionError", "m", frames(3)) == compute_fingerprint(
        "RecursionError", "m", frames(40)
    )


def test_scheme_one_stays_computable() -> None:
    data = {"exceptions": [{"type": "E", "frames": [{"filename": "/a/x.py", "function": "f"}]}]}
    v1 = compute_fingerprint("E", "KeyError: 'a'", data, scheme=SCHEME_V1)

    assert v1 == compute_fingerprint("E", "KeyError: 'b'", data, scheme=SCHEME_V1)
    assert v1 != compute_fingerprint("E", "KeyError: 'a'", data)
    with pytest.raises(ValueError, match="unknown fingerprint scheme 9"):
        compute_fingerprint("E", "m", data, scheme=9)


def test_client_fingerprint_default_expands() -> None:
    data = {"exceptions": [{"type": "E", "frames": []}]}
    with_default = client_fingerprint(["{{ default }}", "tenant-a"], "E", "boom 1", data)

    assert with_default == client_fingerprint(["{{default}}", "tenant-a"], "E", "boom 2", data)
    assert with_default != client_fingerprint(["{{ default }}", "tenant-b"], "E", "boom 1", data)
    other_type = {"exceptions": [{"type": "F", "frames": []}]}
    assert with_default != client_fingerprint(
        ["{{ default }}", "tenant-a"], "F", "boom 1", other_type
    )
    assert client_fingerprint(["checkout"], "E", "x", data) == client_fingerprint(
        ["checkout"], "F", "y", {}
    )


def test_ingest_fingerprint_is_client_scheme() -> None:
    event = parse_event(
        {"type": "error", "message": "m", "fingerprint": ["{{ default }}", "x"]}, NOW
    )
    assert isinstance(event, ErrorEvent)
    assert fingerprint_event(event) == (event.fingerprint, SCHEME_CLIENT)
    assert len(event.fingerprint or "") == 32


@pytest.mark.parametrize(
    "fingerprint",
    ["{{ default }}", ["{{ default }}"], ["{{DEFAULT}}"], ["{{default}}", " {{ Default }} "]],
)
def test_all_default_fingerprint_is_default_grouping(fingerprint: Any) -> None:
    fields = {"type": "error", "exception.type": "app.TourError", "exception.message": "tour 7"}
    plain = parse_event(fields, NOW)
    native = parse_event({**fields, "fingerprint": fingerprint}, NOW)
    sentry_parts = fingerprint if isinstance(fingerprint, list) else [fingerprint]
    sentry_event = {"exception": {"values": [{"type": "TourError", "value": "tour 7"}]}}
    sentry_plain = convert_event(sentry_event, NOW, 1, None)
    sentry = convert_event({**sentry_event, "fingerprint": sentry_parts}, NOW, 1, None)

    assert isinstance(native, ErrorEvent)
    assert native.fingerprint is None
    assert fingerprint_event(native) == fingerprint_event(plain)
    assert isinstance(sentry, ErrorEvent)
    assert sentry.fingerprint is None
    assert fingerprint_event(sentry) == fingerprint_event(sentry_plain)


def test_default_part_matches_any_case() -> None:
    fields = {"type": "error", "message": "checkout failed"}
    lower = parse_event({**fields, "fingerprint": ["{{ default }}", "tenant-a"]}, NOW)
    upper = parse_event({**fields, "fingerprint": ["{{DEFAULT}}", "tenant-a"]}, NOW)
    literal = parse_event({**fields, "fingerprint": ["{{ defaults }}", "tenant-a"]}, NOW)

    assert isinstance(lower, ErrorEvent)
    assert isinstance(upper, ErrorEvent)
    assert isinstance(literal, ErrorEvent)
    assert lower.fingerprint == upper.fingerprint
    assert lower.fingerprint != literal.fingerprint


# --- samples -------------------------------------------------------------------------


def error(ts: int, message: str) -> ErrorEvent:
    data = {
        "message": message,
        "exceptions": [{"type": "LookupError", "frames": [{"module": "m", "function": "f"}]}],
    }
    return ErrorEvent(ts, "LookupError", message, "error", None, None, data)


def samples(db: Path) -> list[tuple[str, int]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT reason, ts FROM error_samples ORDER BY id").fetchall()
    finally:
        conn.close()


def test_samples_bounded_first_and_regressions_kept(db_path: Path) -> None:
    async def scenario() -> None:
        queue = EventQueue(maxsize=100, wake_at=1000)
        writer = Writer(db_path, queue, flush_interval=60)
        await writer.start()
        # First batch: five events; the earliest is the 'first' sample.
        for ts in (NOW + 4, NOW + 2, NOW, NOW + 3, NOW + 1):
            queue.put(error(ts, f"tour {ts} not found"))
        await writer.flush()
        # Then one batch per event, each adding a 'sample'.
        for i in range(MAX_SAMPLES + 5):
            queue.put(error(NOW + 100 + i, "tour 1 not found"))
            await writer.flush()

        conn = sqlite3.connect(db_path)
        with conn:
            conn.execute(
                "UPDATE error_groups SET status = 'resolved', resolved_at = ?", (NOW + 500,)
            )
        conn.close()
        queue.put(error(NOW + 600, "tour 600 not found"))
        await writer.flush()
        queue.put(error(NOW + 700, "tour 700 not found"))
        await writer.flush()
        await writer.stop()

    asyncio.run(scenario())

    stored = samples(db_path)
    assert stored[0] == ("first", NOW)
    assert ("regression", NOW + 600) in stored
    kept = [ts for reason, ts in stored if reason == "sample"]
    assert len(kept) == MAX_SAMPLES
    assert kept[-1] == NOW + 700
    assert kept[0] == NOW + 100 + 15 - MAX_SAMPLES + 1
    conn = sqlite3.connect(db_path)
    row = conn.execute(
        "SELECT count, status, regressions, regression_pending FROM error_groups"
    ).fetchone()
    conn.close()
    assert row == (5 + MAX_SAMPLES + 5 + 2, "unresolved", 1, 0)
    first = json.loads(
        sqlite3.connect(db_path)
        .execute("SELECT data FROM error_samples WHERE reason = 'first'")
        .fetchone()[0]
    )
    assert first["message"] == f"tour {NOW} not found"


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        (
            "timestamp",
            "0001-01-01T00:00:00",
            "invalid timestamp '0001-01-01T00:00:00': out of range",
        ),
        ("timestamp", 1e20, "JSON numbers beyond 64 bits or with a fraction are not integers"),
        ("http.response.body.size", 2**64, f"expected an integer from 0 to {2**63 - 1}"),
    ],
)
def test_request_field_errors_name_value(field: str, value: object, expected: str) -> None:
    fields = {"type": "request", "http.request.method": "GET", "url.path": "/x",
              "http.response.status_code": 200, field: value}  # fmt: skip
    with pytest.raises(SchemaError) as caught:
        parse_event(fields, NOW)
    assert expected in str(caught.value)
