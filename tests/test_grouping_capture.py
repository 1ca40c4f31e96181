"""Capture depth in errors.py: exception groups, notes, recursion cuts, surrogates, release."""

from __future__ import annotations

import sys

import orjson

from hauswacht.collector.errors import (
    FRAMES_HEAD,
    MAX_FRAMES,
    MAX_MEMBERS,
    build_error_event,
    exception_chain,
    scrub_tags,
)
from hauswacht.collector.settings import DEFAULT_SCRUB_FIELDS
from hauswacht.writer.fingerprint import fingerprint_event

TS = 1_780_000_000_000


def caught(func) -> BaseException:  # type: ignore[no-untyped-def]
    try:
        func()
    except BaseException as exc:
        return exc
    raise AssertionError("no exception raised")


def test_group_members_follow_the_chain() -> None:
    def raise_group() -> None:
        try:
            raise KeyError("tour_id")
        except KeyError as exc:
            inner = ValueError("bad eta")
            raise ExceptionGroup("planning failed", [inner, TypeError("bad type")]) from exc

    chain = exception_chain(caught(raise_group))

    assert [(item["type"], item["relation"], item["parent"]) for item in chain] == [
        ("builtins.ExceptionGroup", None, None),
        ("builtins.KeyError", "cause", 0),
        ("builtins.ValueError", "member", 0),
        ("builtins.TypeError", "member", 0),
    ]
    assert chain[0]["message"] == "planning failed (2 sub-exceptions)"


def test_nested_group_members_and_cut() -> None:
    def raise_nested() -> None:
        members = [OSError(f"disk {i}") for i in range(MAX_MEMBERS + 3)]
        raise ExceptionGroup("outer", [ExceptionGroup("inner", members), ValueError("v")])

    chain = exception_chain(caught(raise_nested))

    types = [item["type"] for item in chain]
    assert types[:4] == [
        "builtins.ExceptionGroup",
        "builtins.ExceptionGroup",
        "builtins.ValueError",
        "builtins.OSError",
    ]
    assert types.count("builtins.OSError") == MAX_MEMBERS
    assert chain[1]["members_omitted"] == 3
    assert chain[3]["parent"] == 1


def test_notes_are_kept() -> None:
    def raise_with_notes() -> None:
        exc = ValueError("eta out of range")
        exc.add_note("tour 17, stop 4")
        exc.add_note("engine: osrm")
        raise exc

    (entry,) = exception_chain(caught(raise_with_notes))

    assert entry["notes"] == ["tour 17, stop 4", "engine: osrm"]


def test_recursion_error_keeps_both_ends() -> None:
    def recurse(depth: int) -> int:
        return recurse(depth + 1) + 1

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(400)
    try:
        exc = caught(lambda: recurse(0))
    finally:
        sys.setrecursionlimit(limit)

    (entry,) = exception_chain(exc)
    assert entry["type"] == "builtins.RecursionError"
    assert len(entry["frames"]) == MAX_FRAMES
    assert entry["frames_omitted"] > 300
    functions = [frame["function"] for frame in entry["frames"]]
    assert functions[0] == "caught"
    assert functions[FRAMES_HEAD:] == ["test_recursion_error_keeps_both_ends.<locals>.recurse"] * (
        MAX_FRAMES - FRAMES_HEAD
    )


def test_lone_surrogates_become_replacement_characters() -> None:
    def raise_surrogate() -> None:
        raise ValueError("file \udcff name \ud800 end")

    event = build_error_event(
        caught(raise_surrogate),
        ts=TS,
        trace_id=None,
        request=None,
        tags=scrub_tags({"path": "/tmp/\udcfe"}, DEFAULT_SCRUB_FIELDS),
    )

    assert event.message == "file \ufffd name \ufffd end"
    assert event.data["tags"] == {"path": "/tmp/\ufffd"}
    assert orjson.dumps(event.data)  # storable as JSON
    assert len(fingerprint_event(event)[0]) == 32


def test_release_and_environment_stored() -> None:
    event = build_error_event(
        caught(lambda: 1 / 0),
        ts=TS,
        trace_id="t",
        request=None,
        tags=None,
        release="tours@1.4.2",
        environment="production",
    )

    assert event.data["release"] == "tours@1.4.2"
    assert event.data["environment"] == "production"
    bare = build_error_event(caught(lambda: 1 / 0), ts=TS, trace_id=None, request=None, tags=None)
    assert "release" not in bare.data
    assert "environment" not in bare.data
