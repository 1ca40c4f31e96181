"""Error fingerprints (scheme 1): what groups events together and what splits them."""

from __future__ import annotations

from typing import Any

import pytest

from hauswacht.writer.events import ErrorEvent
from hauswacht.writer.fingerprint import (
    SCHEME,
    SCHEME_CLIENT,
    compute_fingerprint,
    fingerprint_event,
    normalize_message,
)


def frame(function: str, module: str = "dispatch.tours", *, in_app: bool = True, lineno: int = 1):
    return {
        "filename": module.replace(".", "/") + ".py",
        "module": module,
        "function": function,
        "lineno": lineno,
        "line": "...",
        "in_app": in_app,
    }


def exception(error_type: str, *frames: dict[str, Any], relation: str | None = None):
    return {"type": error_type, "message": "", "relation": relation, "frames": list(frames)}


def data(*exceptions: dict[str, Any]) -> dict[str, Any]:
    return {"exceptions": list(exceptions)}


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("tour 42 not found", "tour <num> not found"),
        ("took 12.5 ms, limit 1e3", "took <num> ms, limit <num>"),
        (
            "driver 550e8400-e29b-41d4-a716-446655440000 offline",
            "driver <uuid> offline",
        ),
        ("object at 0x7f3a2b10c0d0", "object at <hex>"),
        ("commit 9fceb02d0ae598e95dc970b74767f19372d61af8 missing", "commit <hex> missing"),
        ("cache key a3f9c2 expired", "cache key <hex> expired"),
        ("customer cus_9s6XKzkNRiz8i3 unknown", "customer cus_<id> unknown"),
        ("KeyError: 'tour_id'", "KeyError: <str>"),
        ('column "eta" is null', "column <str> is null"),
        ("no digits here at all", "no digits here at all"),
        ("decade facade", "decade facade"),
    ],
)
def test_normalize_message(message: str, expected: str) -> None:
    assert normalize_message(message) == expected


def test_ids_and_numbers_do_not_split_group() -> None:
    first = compute_fingerprint(
        "LookupError",
        "tour 1 of driver 550e8400-e29b-41d4-a716-446655440000 at 0xdead",
        data(exception("LookupError", frame("load_tour"))),
    )
    second = compute_fingerprint(
        "LookupError",
        "tour 98765 of driver 123e4567-e89b-12d3-a456-426614174000 at 0x1",
        data(exception("LookupError", frame("load_tour"))),
    )
    assert first == second
    assert len(first) == 32


def test_line_numbers_do_not_split_group() -> None:
    first = compute_fingerprint("E", "m", data(exception("E", frame("f", lineno=10))))
    second = compute_fingerprint("E", "m", data(exception("E", frame("f", lineno=99))))
    assert first == second


def test_library_frames_ignored_beside_app_frames() -> None:
    app = frame("load_tour")
    first = compute_fingerprint(
        "E", "m", data(exception("E", frame("run", "uvicorn.server", in_app=False), app))
    )
    second = compute_fingerprint(
        "E", "m", data(exception("E", frame("handle", "starlette.routing", in_app=False), app))
    )
    assert first == second


def test_library_frames_used_without_app_frames() -> None:
    first = compute_fingerprint("E", "m", data(exception("E", frame("get", "httpx", in_app=False))))
    second = compute_fingerprint(
        "E", "m", data(exception("E", frame("post", "httpx", in_app=False)))
    )
    assert first != second


def test_recursion_depth_does_not_split_group() -> None:
    shallow = data(exception("RecursionError", frame("walk"), frame("walk")))
    deep = data(exception("RecursionError", *[frame("walk")] * 50))
    assert compute_fingerprint("E", "m", shallow) == compute_fingerprint("E", "m", deep)


@pytest.mark.parametrize(
    "other",
    [
        data(exception("KeyError", frame("load_tour"))),
        data(exception("LookupError", frame("plan_route"))),
        data(exception("LookupError", frame("load_tour", "dispatch.drivers"))),
        data(
            exception("RuntimeError", frame("api"), relation=None),
            exception("LookupError", frame("load_tour"), relation="cause"),
        ),
    ],
    ids=["type", "function", "module", "chain"],
)
def test_type_function_or_chain_splits_group(other: dict[str, Any]) -> None:
    base = compute_fingerprint(
        "LookupError", "m", data(exception("LookupError", frame("load_tour")))
    )
    assert compute_fingerprint("LookupError", "m", other) != base


def test_message_wording_splits_group() -> None:
    frames = data(exception("E", frame("f")))
    assert compute_fingerprint("E", "tour missing", frames) != compute_fingerprint(
        "E", "driver missing", frames
    )


def test_message_events_group_by_normalised_message() -> None:
    first = compute_fingerprint("message", "queue 3 is 91% full", {"exceptions": []})
    second = compute_fingerprint("message", "queue 12 is 40% full", {})
    other = compute_fingerprint("message", "queue 3 is empty", {})
    assert first == second
    assert first != other


@pytest.mark.parametrize(
    "malformed",
    [None, {"exceptions": "oops"}, {"exceptions": [None, 3]}, {"exceptions": [{"frames": 5}]}],
)
def test_malformed_data_still_fingerprints(malformed: Any) -> None:
    assert len(compute_fingerprint("E", "m", malformed)) == 32


def test_client_fingerprint_used_as_is() -> None:
    event = ErrorEvent(1, "E", "m", "error", None, "checkout-timeout", {})
    assert fingerprint_event(event) == ("checkout-timeout", SCHEME_CLIENT)


def test_missing_client_fingerprint_computed() -> None:
    event = ErrorEvent(1, "E", "m", "error", None, None, data(exception("E", frame("f"))))
    assert fingerprint_event(event) == (compute_fingerprint("E", "m", event.data), SCHEME)
