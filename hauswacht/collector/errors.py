"""Turn an exception into an ErrorEvent, and scrub secrets from captured request context.

`ErrorEvent.data` has this layout (the writer's fingerprinting reads it):

    {"type": "builtins.ValueError", "message": "...", "level": "error",
     "exceptions": [{"type", "message",
                     "relation": None | "cause" | "context" | "member",
                     "parent": int | None,
                     "frames": [{"filename", "module", "function", "lineno",
                                 "line", "in_app"}, ...],   # outermost call first
                     "frames_omitted": int,
                     "notes": [str, ...],   # only when the exception has PEP 678 notes
                     "members_omitted": int,   # only on a cut exception group
                     }, ...],   # the raised exception first
     "request": {"method", "path", "route", "query", "headers", "client"} | None,
     "trace_id": str | None, "tags": {...},
     "release": str, "environment": str}   # each only when set

Order of "exceptions": the raised exception, then its causes and contexts
(each entry's "parent" is the index of the entry it caused or was handled
during), then the members of every exception group in that list, each
member followed by its own chain ("relation" "member", "parent" the group's
index), depth first.

Bounds: at most MAX_CHAIN exceptions per cause/context chain and MAX_EXCEPTIONS
in all, MAX_MEMBERS members per exception group (the rest counted in
"members_omitted"), MAX_FRAMES frames per exception (the first FRAMES_HEAD and
the last MAX_FRAMES - FRAMES_HEAD, with the number cut in "frames_omitted"; a
RecursionError's thousand frames become these 50), messages and notes cut to
MAX_MESSAGE characters, at most MAX_NOTES notes. Every text is valid UTF-8:
lone surrogates (from `surrogateescape` decoding, or built by hand) become
U+FFFD, because SQLite text and JSON cannot hold them.

Frames are in_app unless their file is in the standard library, in
site-packages/dist-packages, or in Hauswacht itself.

Scrubbing: a header, query or tag name is sensitive when, lower-cased and with
"-" turned into "_", it contains one of the scrub fields, or when one of its
words is one of DEFAULT_SCRUB_WORDS (see settings.py). Sensitive values are
replaced by "[Filtered]" before anything leaves this module, so they never
reach the queue, the database or a log. Query strings are split at "&" and
at ";". A header value that is a URL (it starts with "scheme://" or "/",
such as Referer, Origin or Location) has its query string scrubbed the same
way. Exception messages, notes and source lines are stored as they are.
"""

from __future__ import annotations

import contextlib
import linecache
import os
import re
import sys
import sysconfig
import traceback
from collections.abc import Iterable
from types import TracebackType
from typing import Any
from urllib.parse import unquote_plus

import hauswacht
from hauswacht.collector.settings import DEFAULT_SCRUB_WORDS, FILTERED
from hauswacht.writer.events import ErrorEvent

MAX_CHAIN = 10
MAX_EXCEPTIONS = 30
MAX_MEMBERS = 10
MAX_NOTES = 20
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


def clean_text(text: str) -> str:
    """Return `text` with lone surrogates replaced by U+FFFD (a no-op for valid text)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # UTF-16 pairs up surrogates that form a character and replaces the rest.
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def _cut(text: str, limit: int) -> str:
    if len(text) > limit:
        text = text[:limit] + "…"
    return clean_text(text)


def _message(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not break capture
        text = f"<unprintable {type(exc).__name__}>"
    return _cut(text, MAX_MESSAGE)


def _notes(exc: BaseException) -> list[str]:
    notes = getattr(exc, "__notes__", None)
    if not isinstance(notes, list | tuple):
        return []
    return [_cut(note, MAX_MESSAGE) for note in notes[:MAX_NOTES] if isinstance(note, str)]


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
        module = frame.f_globals.get("__name__")
        frames.append(
            {
                "filename": clean_text(filename),
                "module": clean_text(module) if isinstance(module, str) else None,
                "function": clean_text(code.co_qualname),
                "lineno": lineno,
                "line": clean_text(line[:MAX_HEADER_VALUE]) or None,
                "in_app": is_in_app(filename),
            }
        )
    return frames, omitted


def exception_chain(exc: BaseException) -> list[dict[str, Any]]:
    """Describe `exc`, its causes and contexts and its group members (see the module docstring)."""
    entries: list[dict[str, Any]] = []
    seen: set[int] = set()
    groups: list[tuple[int, BaseException]] = []
    _walk_chain(exc, None, None, entries, seen, groups)

    # Members come after the chains; members of a member group are queued after it.
    position = 0
    while position < len(groups) and len(entries) < MAX_EXCEPTIONS:
        group_index, group = groups[position]
        position += 1
        members = list(getattr(group, "exceptions", ()))
        added = 0
        for member in members[:MAX_MEMBERS]:
            if len(entries) >= MAX_EXCEPTIONS:
                break
            if _walk_chain(member, "member", group_index, entries, seen, groups):
                added += 1
        if added < len(members):
            entries[group_index]["members_omitted"] = len(members) - added
    return entries


def _walk_chain(
    exc: BaseException,
    relation: str | None,
    parent: int | None,
    entries: list[dict[str, Any]],
    seen: set[int],
    groups: list[tuple[int, BaseException]],
) -> bool:
    """Append `exc` and its cause/context chain to `entries`; return False if nothing was added."""
    current: BaseException | None = exc
    depth = 0
    added = False
    while (
        current is not None
        and id(current) not in seen
        and depth < MAX_CHAIN
        and len(entries) < MAX_EXCEPTIONS
    ):
        seen.add(id(current))
        frames, omitted = _frames(current.__traceback__)
        entry: dict[str, Any] = {
            "type": clean_text(qualified_type_name(type(current))),
            "message": _message(current),
            "relation": relation,
            "parent": parent,
            "frames": frames,
            "frames_omitted": omitted,
        }
        notes = _notes(current)
        if notes:
            entry["notes"] = notes
        parent = len(entries)
        entries.append(entry)
        added = True
        depth += 1
        if isinstance(current, BaseExceptionGroup):
            groups.append((parent, current))

        if current.__cause__ is not None:
            current, relation = current.__cause__, "cause"
        elif current.__context__ is not None and not current.__suppress_context__:
            current, relation = current.__context__, "context"
        else:
            current = None
    return added


def build_error_event(
    exc: BaseException,
    *,
    ts: int,
    trace_id: str | None,
    request: dict[str, Any] | None,
    tags: dict[str, Any] | None,
    level: str = "error",
    release: str | None = None,
    environment: str | None = None,
) -> ErrorEvent:
    """Build the ErrorEvent for `exc`; `request` and `tags` must already be scrubbed.

    `release` and `environment` (from the collector settings) are stored when set.
    """
    chain = exception_chain(exc)
    type_name = chain[0]["type"]
    message = chain[0]["message"]
    data: dict[str, Any] = {
        "type": type_name,
        "message": message,
        "level": level,
        "exceptions": chain,
        "request": request,
        "trace_id": trace_id,
        "tags": tags or {},
    }
    if release:
        data["release"] = clean_text(release)
    if environment:
        data["environment"] = clean_text(environment)
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


_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD_SEPARATORS = re.compile(r"[^a-z0-9]+")
_QUERY_SEPARATORS = re.compile(r"([&;])")
_URL_START = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*://|/)")


def is_sensitive(name: str, scrub_fields: Iterable[str]) -> bool:
    """Tell whether a header, parameter or tag name matches a scrub field or a built-in word."""
    key = name.lower().replace("-", "_")
    if any(field in key for field in scrub_fields):
        return True
    words = _WORD_SEPARATORS.split(_CAMEL_HUMP.sub("_", name).lower())
    return any(word in DEFAULT_SCRUB_WORDS for word in words)


def scrub_headers(
    headers: Iterable[tuple[bytes, bytes]], scrub_fields: Iterable[str]
) -> dict[str, str]:
    """Decode ASGI headers into a dict with sensitive values filtered; repeated names are joined.

    A URL-valued header (Referer, Origin, Location, ...) keeps its URL with the
    query string scrubbed like the request's.
    """
    fields = tuple(scrub_fields)
    result: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        if is_sensitive(name, fields):
            value = FILTERED
        else:
            value = scrub_url(raw_value.decode("latin-1"), fields)[:MAX_HEADER_VALUE]
        if name in result and value != FILTERED:
            result[name] = f"{result[name]}, {value}"
        else:
            result[name] = value
    return result


def scrub_url(value: str, scrub_fields: Iterable[str]) -> str:
    """Scrub the query string of `value` when it is a URL or path; return other text unchanged."""
    if "?" not in value or not _URL_START.match(value):
        return value
    base, _, rest = value.partition("?")
    query, hash_sign, fragment = rest.partition("#")
    return f"{base}?{scrub_query(query, scrub_fields, limit=None)}{hash_sign}{fragment}"


def scrub_query(query: str, scrub_fields: Iterable[str], limit: int | None = MAX_QUERY) -> str:
    """Replace the values of sensitive parameters in a query string by "[Filtered]".

    Parameters are separated by "&" or ";" (both kept as they were). Other
    parameters keep their original encoding; the result is cut to `limit`
    characters (MAX_QUERY by default, None for no cut).
    """
    if not query:
        return ""
    fields = tuple(scrub_fields)
    parts = []
    for part in _QUERY_SEPARATORS.split(query):
        if part in ("&", ";"):
            parts.append(part)
            continue
        name = part.partition("=")[0]
        if is_sensitive(unquote_plus(name), fields):
            part = f"{name}={FILTERED}"
        parts.append(part)
    text = "".join(parts)
    return text if limit is None else text[:limit]


def scrub_tags(tags: dict[str, Any] | None, scrub_fields: Iterable[str]) -> dict[str, Any]:
    """Return tags with sensitive values filtered and values not JSON-native turned into text."""
    if not tags:
        return {}
    fields = tuple(scrub_fields)
    result: dict[str, Any] = {}
    for key, value in tags.items():
        key = clean_text(str(key))
        if is_sensitive(key, fields):
            result[key] = FILTERED
        elif isinstance(value, str):
            result[key] = clean_text(value)
        elif value is None or isinstance(value, int | float | bool):
            result[key] = value
        else:
            result[key] = clean_text(str(value))
    return result
