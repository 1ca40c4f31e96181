"""Grouping keys (fingerprints) for error events.

An error group is all events with the same fingerprint. A fingerprint the
client supplied (`ErrorEvent.fingerprint`) is used as it is and recorded as
scheme SCHEME_CLIENT. Otherwise the writer computes scheme 1, the SHA-256
(first 32 hex digits) of:

- the exception types of the chain, outermost first;
- the event message with volatile parts replaced by placeholders: UUIDs,
  `0x` hex numbers, hex ids, long letter-and-digit ids, quoted values and
  numbers (see `normalize_message`);
- the in-app frames as `module.function`, without line numbers, so editing a
  file above the failing line keeps the group. When no frame is in-app, all
  frames are used. Consecutive repeats of a frame (recursion) count once, so
  the recursion depth does not split a group.

An event without exceptions (a captured message) groups by its type and
normalised message alone.

A scheme number is stored with each group so that a later scheme can
coexist with groups made by this one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from hauswacht.writer.events import ErrorEvent

SCHEME_CLIENT = 0
SCHEME = 1

# Applied in this order: a UUID or hex id contains digit runs that the number
# rule would otherwise split into several placeholders.
_NORMALIZERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
        ),
        "<uuid>",
    ),
    (re.compile(r"\b0[xX][0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"'[^'\n]{0,200}'|\"[^\"\n]{0,200}\""), "<str>"),
    # Hex ids and hashes: at least 6 hex digits with both a digit and a letter.
    (
        re.compile(
            r"(?<![0-9A-Za-z])(?=[0-9a-fA-F]*[0-9])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{6,}(?![0-9A-Za-z])"
        ),
        "<hex>",
    ),
    # Other generated ids (base62, base58): 8+ letters and digits with at least 2 digits.
    (
        re.compile(
            r"(?<![0-9A-Za-z])(?=(?:[A-Za-z]*[0-9]){2})(?=[0-9]*[A-Za-z])[0-9A-Za-z]{8,}(?![0-9A-Za-z])"
        ),
        "<id>",
    ),
    (re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"), "<num>"),
)


def normalize_message(message: str) -> str:
    """Return `message` with ids, hex values, quoted values and numbers replaced by placeholders."""
    for pattern, placeholder in _NORMALIZERS:
        message = pattern.sub(placeholder, message)
    return message


def fingerprint_event(event: ErrorEvent) -> tuple[str, int]:
    """Return the fingerprint and scheme number that group `event`."""
    if isinstance(event.fingerprint, str) and event.fingerprint:
        return event.fingerprint, SCHEME_CLIENT
    return compute_fingerprint(event.type, event.message, event.data), SCHEME


def compute_fingerprint(error_type: str, message: str, data: Mapping[str, Any] | None) -> str:
    """Compute the scheme-1 fingerprint from the event type, message and `data["exceptions"]`."""
    exceptions = _exceptions(data)
    parts = [f"scheme {SCHEME}"]

    if exceptions:
        parts.append("types " + " > ".join(str(exc.get("type", "")) for exc in exceptions))
    else:
        parts.append(f"type {error_type}")
    parts.append("message " + normalize_message(str(message)))
    parts.extend("frame " + frame for frame in _frame_names(exceptions))

    digest = hashlib.sha256("\n".join(parts).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:32]


def _exceptions(data: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    if not isinstance(data, Mapping):
        return []
    exceptions = data.get("exceptions")
    if not isinstance(exceptions, list):
        return []
    return [exc for exc in exceptions if isinstance(exc, Mapping)]


def _frame_names(exceptions: list[Mapping[str, Any]]) -> list[str]:
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
        module = frame.get("module") or frame.get("filename") or "?"
        name = f"{module}.{frame.get('function') or '?'}"
        if not names or names[-1] != name:
            names.append(name)
    return names
