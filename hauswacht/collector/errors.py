"""Turn an exception into an ErrorEvent, and scrub secrets from captured request context.

`ErrorEvent.data` has this layout (the writer's fingerprinting reads it):

    {"type": "builtins.ValueError", "message": "...", "level": "error",
     "exceptions": [{"type", "message", "relation": None | "cause" | "context",
                     "frames": [{"filename", "module", "function", "lineno",
                                 "line", "in_app"}, ...],   # outermost call first
                     "frames_omitted": int}, ...],   # the raised exception first
     "request": {"method", "path", "route", "query", "headers", "client"} | None,
     "trace_id": str | None, "tags": {...}}

Bounds: at most MAX_CHAIN exceptions per chain, MAX_FRAMES frames per exception
(the first FRAMES_HEAD and the last MAX_FRAMES - FRAMES_HEAD, with the number
cut in "frames_omitted"), messages cut to MAX_MESSAGE characters.

Frames are in_app unless their file is in the standard library, in
site-packages/dist-packages, or in Hauswacht itself.

Scrubbing: a header, query or tag name is sensitive when, lower-cased and with
"-" turned into "_", it contains one of the scrub fields (see settings.py).
Sensitive values are replaced by "[Filtered]" before anything leaves this
module, so they never reach the queue, the database or a log.
"""

from __future__ import annotations

import contextlib
import linecache
import os
import sys
import sysconfig
import traceback
from collections.abc import Iterable
from types import TracebackType
from typing import Any
from urllib.parse import unquote_plus

import hauswacht
from hauswacht.collector.settings import FILTERED
from hauswacht.writer.events import ErrorEvent

MAX_CHAIN = 10
MAX_FRAMES = 50
FRAMES_HEAD = 10
MAX_MESSAGE = 4096
MAX_HEADER_VALUE = 1024
MAX_QUERY = 2048
_CAPTURED_MARK = "_hauswacht_captured"


def _library_prefixes() -> tuple[str, ...]:
    paths = set()
    for name in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(name)
        if path:
            paths.add(os.path.realpath(path))
    paths.add(os.path.dirname(os.path.realpath(os.__file__)))
    paths.add(os.path.realpath(os.path.dirname(hauswacht.__file__)))
    return tuple(path + os.sep for path in paths)


_LIBRARY_PREFIXES = _library_prefixes()
_in_app_cache: dict[str, bool] = {}


def is_in_app(filename: str) -> bool:
    """Tell whether a frame's file is application code (not stdlib, packages or Hauswacht)."""
    cached = _in_app_cache.get(filename)
    if cached is not None:
        return cached
    if filename.startswith("<"):  # <frozen ...>, <string>, <stdin>
        in_app = False
    else:
        real = os.path.realpath(filename)
        parts = real.split(os.sep)
        in_app = not (
            "site-packages" in parts
            or "dist-packages" in parts
            or real.startswith(_LIBRARY_PREFIXES)
        )
    if len(_in_app_cache) < 10_000:
        _in_app_cache[filename] = in_app
    return in_app


def qualified_type_name(exc_type: type[BaseException]) -> str:
    """Return "module.QualName" of an exception type, such as "builtins.ValueError"."""
    return f"{exc_type.__module__}.{exc_type.__qualname__}"


def _message(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not break capture
        text = f"<unprintable {type(exc).__name__}>"
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE] + "…"
    return text


def _frames(tb: TracebackType | None) -> tuple[list[dict[str, Any]], int]:
    walked = list(traceback.walk_tb(tb))
    omitted = 0
    if len(walked) > MAX_FRAMES:
        omitted = len(walked) - MAX_FRAMES
        walked = walked[:FRAMES_HEAD] + walked[-(MAX_FRAMES - FRAMES_HEAD) :]
    frames = []
    for frame, lineno in walked:
        code = frame.f_code
        filename = code.co_filename
        line = linecache.getline(filename, lineno, frame.f_globals).strip()
        frames.append(
            {
                "filename": filename,
                "module": frame.f_globals.get("__name__"),
                "function": code.co_qualname,
                "lineno": lineno,
                "line": line[:MAX_HEADER_VALUE] or None,
                "in_app": is_in_app(filename),
            }
        )
    return frames, omitted


def exception_chain(exc: BaseException) -> list[dict[str, Any]]:
    """Describe `exc` and the exceptions it was raised from or during, outermost first."""
    chain = []
    seen: set[int] = set()
    current: BaseException | None = exc
    relation: str | None = None
    while current is not None and id(current) not in seen and len(chain) < MAX_CHAIN:
        seen.add(id(current))
        frames, omitted = _frames(current.__traceback__)
        chain.append(
            {
                "type": qualified_type_name(type(current)),
                "message": _message(current),
                "relation": relation,
                "frames": frames,
                "frames_omitted": omitted,
            }
        )
        if current.__cause__ is not None:
            current, relation = current.__cause__, "cause"
        elif current.__context__ is not None and not current.__suppress_context__:
            current, relation = current.__context__, "context"
        else:
            current = None
    return chain


def build_error_event(
    exc: BaseException,
    *,
    ts: int,
    trace_id: str | None,
    request: dict[str, Any] | None,
    tags: dict[str, Any] | None,
    level: str = "error",
) -> ErrorEvent:
    """Build the ErrorEvent for `exc`; `request` and `tags` must already be scrubbed."""
    chain = exception_chain(exc)
    type_name = chain[0]["type"]
    message = chain[0]["message"]
    data = {
        "type": type_name,
        "message": message,
        "level": level,
        "exceptions": chain,
        "request": request,
        "trace_id": trace_id,
        "tags": tags or {},
    }
    return ErrorEvent(ts, type_name, message, level, trace_id, None, data)


def mark_captured(exc: BaseException) -> None:
    """Mark `exc` so it is not recorded a second time when it propagates further."""
    # Exception types with __slots__ and no __dict__ cannot be marked.
    with contextlib.suppress(AttributeError):
        setattr(exc, _CAPTURED_MARK, True)


def is_captured(exc: BaseException) -> bool:
    return getattr(exc, _CAPTURED_MARK, False) is True


def current_exception() -> BaseException | None:
    """Return the exception being handled in the caller's `except` block, or None."""
    return sys.exc_info()[1]


# Scrubbing


def is_sensitive(name: str, scrub_fields: Iterable[str]) -> bool:
    """Tell whether a header, parameter or tag name matches one of the scrub fields."""
    key = name.lower().replace("-", "_")
    return any(field in key for field in scrub_fields)


def scrub_headers(
    headers: Iterable[tuple[bytes, bytes]], scrub_fields: Iterable[str]
) -> dict[str, str]:
    """Decode ASGI headers into a dict with sensitive values filtered; repeated names are joined."""
    fields = tuple(scrub_fields)
    result: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        if is_sensitive(name, fields):
            value = FILTERED
        else:
            value = raw_value.decode("latin-1")[:MAX_HEADER_VALUE]
        if name in result and value != FILTERED:
            result[name] = f"{result[name]}, {value}"
        else:
            result[name] = value
    return result


def scrub_query(query: str, scrub_fields: Iterable[str]) -> str:
    """Replace the values of sensitive parameters in a query string by "[Filtered]".

    Other parameters keep their original encoding; the result is cut to MAX_QUERY characters.
    """
    if not query:
        return ""
    fields = tuple(scrub_fields)
    parts = []
    for part in query.split("&"):
        name = part.partition("=")[0]
        if is_sensitive(unquote_plus(name), fields):
            part = f"{name}={FILTERED}"
        parts.append(part)
    text = "&".join(parts)
    return text[:MAX_QUERY]


def scrub_tags(tags: dict[str, Any] | None, scrub_fields: Iterable[str]) -> dict[str, Any]:
    """Return tags with sensitive values filtered and values not JSON-native turned into text."""
    if not tags:
        return {}
    fields = tuple(scrub_fields)
    result: dict[str, Any] = {}
    for key, value in tags.items():
        key = str(key)
        if is_sensitive(key, fields):
            result[key] = FILTERED
        elif value is None or isinstance(value, str | int | float | bool):
            result[key] = value
        else:
            result[key] = str(value)
    return result
