"""Grouping keys (fingerprints) for error events.

An error group is all events with the same fingerprint, and each group
stores the number of the scheme that made its fingerprint. New groups get
scheme SCHEME (2). Scheme 1 stays computable (`compute_fingerprint(...,
scheme=1)`), so groups made by it remain readable and explainable, but an
event is never matched against them: after an upgrade, an error that had a
scheme-1 group starts a new scheme-2 group.

Client fingerprints (SCHEME_CLIENT)
- `ErrorEvent.fingerprint`, a non-empty string, is used as it is.
- `client_fingerprint(parts, ...)` turns a Sentry-style list of strings into
  one key: the part "{{ default }}" (spaces optional) is replaced by the
  default fingerprint of the event, and the SHA-256 of the parts (first 32
  hex digits) is the key. The ingest server calls it.

Scheme 2 hashes (SHA-256, first 32 hex digits):
- the exception types of the chain as stored in `data["exceptions"]` (the
  raised exception first, then causes, contexts and exception-group members);
- the first MESSAGE_LINES non-empty lines of the message (at most
  MESSAGE_CHARS characters) with volatile parts replaced by placeholders, see
  `normalize_message(text, scheme=2)`;
- the in-app frames as "module.function", or "file base name.function" when
  the frame has no module, without line numbers, so editing a file above the
  failing line or deploying to another folder keeps the group. When no frame
  is in-app, all frames are used. Repeats of one frame, or of a block of up
  to MAX_CYCLE frames (mutual recursion), count once, so recursion depth does
  not split a group.
An event without exceptions (a captured message) groups by its type and its
normalised message. For a Sentry message with parameters, the template
(`data["message_template"]`) is used, not the formatted text.

Scheme 1 differs in the message rules (every quoted value replaced, no
e-mail, IP, URL, date or duration rules, the whole message), uses the full
file name when a frame has no module, and collapses only single repeated
frames.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from hauswacht.writer.events import ErrorEvent

SCHEME_CLIENT = 0
SCHEME_V1 = 1
SCHEME = 2
"""The scheme that new groups get."""

MESSAGE_LINES = 3
MESSAGE_CHARS = 512
MAX_CYCLE = 4  # longest block of frames collapsed when it repeats
MAX_CLIENT_PARTS = 32
MAX_CLIENT_PART = 512  # characters per client fingerprint part

_DEFAULT_PART = re.compile(r"^\{\{\s*default\s*\}\}$")

_UUID = r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
# Hex ids and hashes: at least 6 hex digits with both a digit and a letter.
_HEX_ID = (
    r"(?<![0-9A-Za-z])(?=[0-9a-fA-F]*[0-9])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{6,}(?![0-9A-Za-z])"
)
# Other generated ids (base62, base58): 8+ letters and digits with at least 2 digits.
_BASE62_ID = (
    r"(?<![0-9A-Za-z])(?=(?:[A-Za-z]*[0-9]){2})(?=[0-9]*[A-Za-z])[0-9A-Za-z]{8,}(?![0-9A-Za-z])"
)
_NUMBER = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"

# Applied in this order: a UUID or hex id contains digit runs that the number
# rule would otherwise split into several placeholders.
_NORMALIZERS_V1: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(_UUID), "<uuid>"),
    (re.compile(r"\b0[xX][0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"'[^'\n]{0,200}'|\"[^\"\n]{0,200}\""), "<str>"),
    (re.compile(_HEX_ID), "<hex>"),
    (re.compile(_BASE62_ID), "<id>"),
    (re.compile(_NUMBER), "<num>"),
)

# Scheme 2 replaces the larger structures first (a URL contains a host, an
# IP and numbers; a date contains numbers), then ids, then plain numbers.
_NORMALIZERS_V2: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>()\[\]{}]+"), "<url>"),
    (re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"), "<email>"),
    (re.compile(_UUID), "<uuid>"),
    (
        re.compile(
            r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
            r"(?:Z|[+-]\d{2}:?\d{2})?)?\b|\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b"
        ),
        "<date>",
    ),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b"), "<ip>"),
    (
        # IPv6: at least two colons and one digit, hex groups only.
        re.compile(
            r"(?<![\w:])(?=[0-9a-fA-F:]*\d)(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}(?![\w:])"
        ),
        "<ip>",
    ),
    (re.compile(r"\b(?:[0-9a-fA-F]{64}|[0-9a-fA-F]{40}|[0-9a-fA-F]{32})\b"), "<hash>"),
    (re.compile(r"\b0[xX][0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"=\s*(?:'[^'\n]{0,200}'|\"[^\"\n]{0,200}\")"), "=<str>"),
    (
        re.compile(
            r"(?<![\w.])\d+(?:\.\d+)?\s?(?:ns|us|µs|ms|s|sec|secs|seconds?|min|mins|minutes?"
            r"|h|hours?|d|days?)\b"
        ),
        "<duration>",
    ),
    (re.compile(_HEX_ID), "<hex>"),
    (re.compile(_BASE62_ID), "<id>"),
    (re.compile(_NUMBER), "<num>"),
)

_NORMALIZERS = {SCHEME_V1: _NORMALIZERS_V1, SCHEME: _NORMALIZERS_V2}


def normalize_message(message: str, scheme: int = SCHEME_V1) -> str:
    """Return `message` with its volatile parts replaced by the placeholders of `scheme`.

    The default is scheme 1, the rules this function has always applied.
    Scheme 2 also keeps only the first MESSAGE_LINES non-empty lines.
    """
    normalizers = _NORMALIZERS.get(scheme)
    if normalizers is None:
        raise ValueError(f"unknown fingerprint scheme {scheme!r}; known: 1, 2")
    if scheme == SCHEME:
        lines = [line.strip() for line in message.splitlines() if line.strip()]
        message = "\n".join(lines[:MESSAGE_LINES])[:MESSAGE_CHARS]
    for pattern, placeholder in normalizers:
        message = pattern.sub(placeholder, message)
    return message


def fingerprint_event(event: ErrorEvent) -> tuple[str, int]:
    """Return the fingerprint and scheme number that group `event`."""
    if isinstance(event.fingerprint, str) and event.fingerprint:
        return event.fingerprint, SCHEME_CLIENT
    return compute_fingerprint(event.type, event.message, event.data), SCHEME


def client_fingerprint(
    parts: Sequence[str], error_type: str, message: str, data: Mapping[str, Any] | None
) -> str:
    """Return the key of a client-supplied fingerprint list, with "{{ default }}" expanded.

    Raises ValueError when `parts` is empty, too long or contains a non-string.
    """
    if not parts or len(parts) > MAX_CLIENT_PARTS:
        raise ValueError(f"fingerprint must have 1 to {MAX_CLIENT_PARTS} parts")
    expanded = []
    for part in parts:
        if not isinstance(part, str):
            raise ValueError(f"fingerprint parts must be strings, got {type(part).__name__}")
        if _DEFAULT_PART.match(part.strip()):
            expanded.append("default " + compute_fingerprint(error_type, message, data))
        else:
            expanded.append("part " + part[:MAX_CLIENT_PART])
    digest = hashlib.sha256("\n".join(expanded).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:32]


def compute_fingerprint(
    error_type: str, message: str, data: Mapping[str, Any] | None, scheme: int = SCHEME
) -> str:
    """Compute the fingerprint of `scheme` from the event type, message and `data`."""
    if scheme not in _NORMALIZERS:
        raise ValueError(f"unknown fingerprint scheme {scheme!r}; known: 1, 2")
    exceptions = _exceptions(data)
    parts = [f"scheme {scheme}"]

    if exceptions:
        parts.append("types " + " > ".join(str(exc.get("type", "")) for exc in exceptions))
    else:
        parts.append(f"type {error_type}")
        if scheme == SCHEME and isinstance(data, Mapping):
            template = data.get("message_template")
            if isinstance(template, str) and template:
                message = template
    parts.append("message " + normalize_message(str(message), scheme))
    parts.extend("frame " + frame for frame in _frame_names(exceptions, scheme))

    digest = hashlib.sha256("\n".join(parts).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:32]


def _exceptions(data: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    if not isinstance(data, Mapping):
        return []
    exceptions = data.get("exceptions")
    if not isinstance(exceptions, list):
        return []
    return [exc for exc in exceptions if isinstance(exc, Mapping)]


def _base_name(filename: str) -> str:
    # Works for POSIX and Windows paths and for URLs (JavaScript frames).
    name = filename.split("?", 1)[0].split("#", 1)[0]
    return re.split(r"[/\\]", name.rstrip("/\\"))[-1] or filename


def _frame_names(exceptions: list[Mapping[str, Any]], scheme: int) -> list[str]:
    frames = []
    for exc in exceptions:
        exc_frames = exc.get("frames")
        if isinstance(exc_frames, list):
            frames.extend(frame for frame in exc_frames if isinstance(frame, Mapping))

    chosen = [frame for frame in frames if frame.get("in_app") is True]
    if not chosen:
        chosen = frames

    names: list[str] = []
    for frame in chosen:
        module = frame.get("module")
        if not module:
            filename = frame.get("filename")
            if scheme == SCHEME and isinstance(filename, str) and filename:
                module = _base_name(filename)
            else:
                module = filename or "?"
        name = f"{module}.{frame.get('function') or '?'}"
        if not names or names[-1] != name:
            names.append(name)
    if scheme == SCHEME:
        names = _collapse_cycles(names)
    return names


def _collapse_cycles(names: list[str]) -> list[str]:
    """Drop each block of up to MAX_CYCLE names that repeats the block just before it."""
    result: list[str] = []
    for name in names:
        result.append(name)
        changed = True
        while changed:
            changed = False
            for size in range(1, MAX_CYCLE + 1):
                if len(result) >= 2 * size and result[-size:] == result[-2 * size : -size]:
                    del result[-size:]
                    changed = True
                    break
    return result
