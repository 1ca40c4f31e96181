"""The native ingest schema: one JSON object per event, checked and turned into an event record.

`parse_event(obj, now_ms, sender)` returns a RequestEvent, MetricEvent or
ErrorEvent, or raises SchemaError with a message naming the field, its value
and what is expected. It never raises anything else for any JSON
value, so one bad line cannot break its batch. docs/ingest.md documents the
fields; the names follow the OpenTelemetry semantic conventions where one
exists (`http.request.method`, `url.path`, ...), so an export to an
OpenTelemetry collector is a mapping.

Fields are checked strictly: an unknown field is an error, so a misspelt
optional field is reported instead of silently lost. Strings that are too
long are rejected where they are keys (method, route, metric name, type) and
cut where they are free text (path, user agent, messages).

Bounds: durations are 0 to MAX_DURATION_MS (one day), sizes 0 to 2**63 - 1,
status codes 100 to 599, methods 1 to MAX_METHOD HTTP token characters
(upper-cased), routes and paths free of control characters. Integers in tags
and context must fit in 64 bits (as orjson decodes them); the fallback decoder
for invalid UTF-8 turns larger ones into floats as orjson does. `url.path`
loses its query string: a request event stores no query, and an error event
stores it scrubbed in its request context's "query".

Timestamps are integer UTC epoch milliseconds or ISO 8601 strings; a missing
timestamp is the time of receipt, and one more than MAX_CLOCK_SKEW_MS in
the future is set to the time of receipt, so a wrong client clock cannot move
"last seen" into the future.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import orjson

from hauswacht.collector.errors import (
    FRAMES_HEAD,
    MAX_FRAMES,
    MAX_MESSAGE,
    MAX_QUERY,
    clean_text,
    is_sensitive,
    scrub_query,
    scrub_url,
)
from hauswacht.collector.settings import DEFAULT_SCRUB_FIELDS, FILTERED
from hauswacht.collector.tracebacks import parse_traceback
from hauswacht.writer.events import UNMATCHED_ROUTE, ErrorEvent, Event, MetricEvent, RequestEvent
from hauswacht.writer.fingerprint import client_fingerprint

MAX_CLOCK_SKEW_MS = 60_000
MAX_TS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
MAX_METHOD = 16
MAX_ROUTE = 256
MAX_PATH = 2048
MAX_CLIENT = 64
MAX_USER_AGENT = 512
MAX_TRACE_ID = 64
MAX_NAME = 200
MAX_UNIT = 32
MAX_TYPE = 256
MAX_TAGS = 50
MAX_TAG_KEY = 64
MAX_TAG_VALUE = 200
MAX_LABEL = 200  # release, environment
MAX_STACKTRACE = 64 * 1024
MAX_EXCEPTIONS = 30
MAX_CONTEXT_BYTES = 16 * 1024
MAX_CONTEXT_DEPTH = 8
MAX_DURATION_MS = 86_400_000.0  # one day
MIN_INT = -(2**63)
MAX_INT = 2**64 - 1  # orjson decodes and encodes integers up to unsigned 64 bits
# Context keys filtered on top of the scrub fields, because a Sentry DSN contains its key.
EXTRA_SCRUB_FIELDS = ("dsn",)
_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,16}")  # an HTTP token (RFC 9110)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
LEVELS = frozenset({"debug", "info", "warning", "error", "fatal"})
MESSAGE_TYPE = "message"
"""The type of an error event that carries a message and no exception."""

_COMMON = frozenset({"type", "timestamp", "trace_id"})
_REQUEST_FIELDS = _COMMON | {
    "http.request.method",
    "http.route",
    "url.path",
    "http.response.status_code",
    "duration_ms",
    "ttfb_ms",
    "http.response.body.size",
    "client.address",
    "user_agent.original",
}
_METRIC_FIELDS = _COMMON | {"name", "value", "unit", "tags"}
_ERROR_FIELDS = _COMMON | {
    "exception.type",
    "exception.message",
    "exception.stacktrace",
    "exceptions",
    "message",
    "level",
    "fingerprint",
    "tags",
    "release",
    "environment",
    "context",
    "http.request.method",
    "http.route",
    "url.path",
    "user_agent.original",
    "client.address",
}
_FRAME_FIELDS = ("filename", "module", "function", "lineno", "line", "in_app")
_ISO_FRACTION = re.compile(r"(\.\d{6})\d+")


class SchemaError(ValueError):
    """An event object that does not follow the ingest schema."""


def parse_event(
    obj: Any,
    now_ms: int,
    sender: str | None = None,
    scrub_fields: tuple[str, ...] = DEFAULT_SCRUB_FIELDS,
) -> Event:
    """Check one decoded JSON value and return its event record; raise SchemaError if invalid.

    `scrub_fields` are the names whose values are filtered from an error's
    tags, context and query (the collector setting, as the middleware uses).
    """
    if type(obj) is not dict:
        raise SchemaError(f"expected a JSON object, got {_json_type(obj)}")
    kind = obj.get("type")
    if kind == "request":
        return _request(obj, now_ms)
    if kind == "error":
        return _error(obj, now_ms, sender, scrub_fields)
    if kind == "metric":
        return _metric(obj, now_ms)
    if kind is None:
        raise SchemaError("missing field 'type': expected 'request', 'error' or 'metric'")
    raise SchemaError(f"invalid type {_show(kind)}: expected 'request', 'error' or 'metric'")


# --- field helpers -------------------------------------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value[:40] + ("…" if len(value) > 40 else ""))
    if isinstance(value, bool | int | float) or value is None:
        plain = value is None or isinstance(value, bool)
        text = orjson.dumps(value).decode() if plain else repr(value)
        return text[:40]
    return _json_type(value)


def _check_fields(obj: dict[str, Any], allowed: frozenset[str], kind: str) -> None:
    unknown = obj.keys() - allowed
    if unknown:
        name = sorted(unknown)[0]
        raise SchemaError(f"unknown field {_show(name)} for a {kind} event; see docs/ingest.md")


def _timestamp(value: Any, now_ms: int) -> int:
    if value is None:
        return now_ms
    if type(value) is int:
        ts = value
    elif isinstance(value, str):
        ts = parse_iso_ms(value)
        if ts is None:
            raise SchemaError(
                f"invalid timestamp {_show(value)}: expected epoch milliseconds or ISO 8601"
            )
    else:
        raise SchemaError(
            f"invalid timestamp {_show(value)}: expected an integer (epoch milliseconds) "
            "or an ISO 8601 string; JSON numbers beyond 64 bits or with a fraction are not "
            "integers"
        )
    if not 0 <= ts <= MAX_TS:
        raise SchemaError(
            f"invalid timestamp {_show(value)}: out of range; expected 1970-01-01 to "
            "9999-12-31 (UTC)"
        )
    if ts > now_ms + MAX_CLOCK_SKEW_MS:
        return now_ms
    return ts


def parse_iso_ms(text: str) -> int | None:
    """Parse an ISO 8601 date-time (UTC when it has no offset) into epoch ms, or None."""
    text = text.strip()
    if not 10 <= len(text) <= 40:
        return None
    # fromisoformat takes at most 6 fraction digits; .NET and Go send 7 or 9.
    text = _ISO_FRACTION.sub(r"\1", text)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    try:
        return int(moment.timestamp() * 1000)
    except (OverflowError, ValueError, OSError):
        return None


def _required_str(obj: dict[str, Any], name: str, limit: int, *, cut: bool = False) -> str:
    value = obj.get(name)
    if type(value) is not str or not value:
        if value is None:
            raise SchemaError(f"missing field {name!r}: expected a non-empty string")
        raise SchemaError(f"invalid {name} {_show(value)}: expected a non-empty string")
    if len(value) > limit:
        if not cut:
            raise SchemaError(f"invalid {name}: longer than {limit} characters")
        value = value[:limit]
    return value


def _optional_str(obj: dict[str, Any], name: str, limit: int, *, cut: bool = True) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if type(value) is not str:
        raise SchemaError(f"invalid {name} {_show(value)}: expected a string")
    if len(value) > limit:
        if not cut:
            raise SchemaError(f"invalid {name}: longer than {limit} characters")
        value = value[:limit]
    return value


def _optional_number(obj: dict[str, Any], name: str) -> float | None:
    value = obj.get(name)
    if value is None:
        return None
    kind = type(value)
    if kind is not float and kind is not int:
        raise SchemaError(f"invalid {name} {_show(value)}: expected a number of milliseconds")
    value = float(value)  # cannot overflow: the decoder has bounded the integer
    if not 0.0 <= value <= MAX_DURATION_MS:
        raise SchemaError(
            f"invalid {name} {_show(value)}: expected milliseconds from 0 to {MAX_DURATION_MS:.0f}"
        )
    return value


def _canonical_tags(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if type(value) is not dict:
        raise SchemaError(f"invalid tags {_show(value)}: expected an object")
    if len(value) > MAX_TAGS:
        raise SchemaError(f"invalid tags: more than {MAX_TAGS} entries")
    tags: dict[str, Any] = {}
    for key, item in value.items():
        if len(key) > MAX_TAG_KEY:
            raise SchemaError(f"invalid tag name {_show(key)}: longer than {MAX_TAG_KEY}")
        if isinstance(item, str):
            item = item[:MAX_TAG_VALUE]
        elif isinstance(item, float) and not math.isfinite(item):
            raise SchemaError(f"invalid tag {_show(key)}: value is not finite")
        elif type(item) is int and not MIN_INT <= item <= MAX_INT:
            raise SchemaError(f"invalid tag {_show(key)}: integer out of the 64-bit range")
        elif not (item is None or isinstance(item, bool | int | float)):
            raise SchemaError(
                f"invalid tag {_show(key)}: value is {_json_type(item)}, expected a string, "
                "number, boolean or null"
            )
        tags[key] = item
    return tags


def _method(value: str) -> str:
    if _METHOD.fullmatch(value) is None:
        raise SchemaError(
            f"invalid http.request.method {_show(value)}: expected an HTTP method such as "
            f"GET, 1 to {MAX_METHOD} letters, digits or !#$%&'*+.^_`|~-"
        )
    return value.upper()


def _split_path(value: str) -> tuple[str, str]:
    """Split url.path into the path and its query string; reject control characters."""
    if _CONTROL.search(value) is not None:
        raise SchemaError(f"invalid url.path {_show(value)}: contains a control character")
    path, _, query = value.partition("?")
    return path or "/", query.partition("#")[0]


def _route(obj: dict[str, Any]) -> str:
    route = _optional_str(obj, "http.route", MAX_ROUTE, cut=False)
    if route is not None and _CONTROL.search(route) is not None:
        raise SchemaError(f"invalid http.route {_show(route)}: contains a control character")
    return route or UNMATCHED_ROUTE


# --- request and metric events -------------------------------------------------------


def _request(obj: dict[str, Any], now_ms: int) -> RequestEvent:
    """Check a request event: a fast path for well-formed input, else the detailed checks.

    The fast path accepts exactly what the detailed checks accept; any doubt
    falls through to them, which also write the error message.
    """
    if obj.keys() <= _REQUEST_FIELDS:
        get = obj.get
        ts = get("timestamp")
        method = get("http.request.method")
        path = get("url.path")
        route = get("http.route")
        status = get("http.response.status_code")
        duration = get("duration_ms")
        size = get("http.response.body.size")
        if (
            type(ts) is int
            and 0 <= ts <= now_ms + MAX_CLOCK_SKEW_MS
            and type(method) is str
            and _METHOD.fullmatch(method) is not None
            and type(path) is str
            and 0 < len(path) <= MAX_PATH
            and "?" not in path
            and type(route) is str
            and 0 < len(route) <= MAX_ROUTE
            and _CONTROL.search(path) is None
            and _CONTROL.search(route) is None
            and type(status) is int
            and 100 <= status <= 599
            and (type(duration) is float and 0.0 <= duration <= MAX_DURATION_MS)
            and (size is None or (type(size) is int and 0 <= size < 2**63))
        ):
            ttfb = get("ttfb_ms")
            client = get("client.address")
            agent = get("user_agent.original")
            trace_id = get("trace_id")
            if (
                (ttfb is None or (type(ttfb) is float and 0.0 <= ttfb <= MAX_DURATION_MS))
                and (client is None or (type(client) is str and len(client) <= MAX_CLIENT))
                and (agent is None or (type(agent) is str and len(agent) <= MAX_USER_AGENT))
                and (trace_id is None or (type(trace_id) is str and len(trace_id) <= MAX_TRACE_ID))
            ):
                return RequestEvent(
                    ts, method.upper(), route, path, status, duration, ttfb, size, client,
                    agent, trace_id,
                )  # fmt: skip
    return _request_checked(obj, now_ms)


def _request_checked(obj: dict[str, Any], now_ms: int) -> RequestEvent:
    _check_fields(obj, _REQUEST_FIELDS, "request")
    ts = _timestamp(obj.get("timestamp"), now_ms)
    method = _method(_required_str(obj, "http.request.method", MAX_METHOD))
    path, _ = _split_path(_required_str(obj, "url.path", MAX_PATH, cut=True))
    route = _route(obj)

    status = obj.get("http.response.status_code")
    if type(status) is not int or not 100 <= status <= 599:
        if status is None:
            raise SchemaError("missing field 'http.response.status_code': expected 100 to 599")
        raise SchemaError(
            f"invalid http.response.status_code {_show(status)}: expected an integer 100 to 599"
        )

    size = obj.get("http.response.body.size")
    if size is not None and (type(size) is not int or not 0 <= size < 2**63):
        raise SchemaError(
            f"invalid http.response.body.size {_show(size)}: expected an integer from 0 to "
            f"{2**63 - 1}"
        )

    return RequestEvent(
        ts,
        method,
        route,
        path,
        status,
        _optional_number(obj, "duration_ms"),
        _optional_number(obj, "ttfb_ms"),
        size,
        _optional_str(obj, "client.address", MAX_CLIENT),
        _optional_str(obj, "user_agent.original", MAX_USER_AGENT),
        _optional_str(obj, "trace_id", MAX_TRACE_ID, cut=False),
    )


def _metric(obj: dict[str, Any], now_ms: int) -> MetricEvent:
    _check_fields(obj, _METRIC_FIELDS, "metric")
    ts = _timestamp(obj.get("timestamp"), now_ms)
    name = _required_str(obj, "name", MAX_NAME)
    value = obj.get("value")
    if type(value) is not float and type(value) is not int:
        raise SchemaError(f"invalid value {_show(value)}: expected a number")
    value = float(value)
    if not math.isfinite(value):
        raise SchemaError(f"invalid value {_show(value)}: expected a finite number")
    unit = _optional_str(obj, "unit", MAX_UNIT, cut=False)
    tags = orjson.dumps(_canonical_tags(obj.get("tags")), option=orjson.OPT_SORT_KEYS).decode()
    return MetricEvent(ts, name, value, unit, tags)


# --- error events --------------------------------------------------------------------


def _error(
    obj: dict[str, Any], now_ms: int, sender: str | None, scrub_fields: tuple[str, ...]
) -> ErrorEvent:
    _check_fields(obj, _ERROR_FIELDS, "error")
    ts = _timestamp(obj.get("timestamp"), now_ms)
    trace_id = _optional_str(obj, "trace_id", MAX_TRACE_ID, cut=False)
    level = obj.get("level", "error")
    if not isinstance(level, str) or level not in LEVELS:
        expected = ", ".join(sorted(LEVELS))
        raise SchemaError(f"invalid level {_show(level)}: expected one of {expected}")

    error_type = _optional_str(obj, "exception.type", MAX_TYPE, cut=False)
    message = _optional_str(obj, "exception.message", MAX_MESSAGE)
    stacktrace = _optional_str(obj, "exception.stacktrace", MAX_STACKTRACE)
    plain_message = _optional_str(obj, "message", MAX_MESSAGE)
    exceptions = _exceptions(obj.get("exceptions"))

    data: dict[str, Any] = {}
    if stacktrace is not None and not exceptions:
        parsed = parse_traceback(stacktrace)
        if parsed is not None:
            exceptions = parsed.exceptions
            error_type = error_type or parsed.type
            if message is None:
                message = parsed.message
        else:
            data["stacktrace"] = stacktrace
    if exceptions:
        error_type = error_type or exceptions[0]["type"]
        if message is None:
            message = exceptions[0]["message"]
    if error_type is None:
        if plain_message is None:
            raise SchemaError(
                "an error event needs 'exception.type', 'exception.stacktrace', 'exceptions' "
                "or 'message'"
            )
        error_type = MESSAGE_TYPE
        message = plain_message
    message = message or plain_message or ""

    data.update(
        {
            "type": error_type,
            "message": message,
            "level": level,
            "exceptions": exceptions,
            "request": _request_context(obj, scrub_fields),
            "trace_id": trace_id,
            "tags": _scrub_tags(_canonical_tags(obj.get("tags")), scrub_fields),
        }
    )
    for name in ("release", "environment"):
        label = _optional_str(obj, name, MAX_LABEL)
        if label:
            data[name] = label
    if "context" in obj:
        data["context"] = _context(obj["context"], scrub_fields)
    if sender:
        data["sender"] = sender

    fingerprint = _client_fingerprint(obj.get("fingerprint"), error_type, message, data)
    return ErrorEvent(ts, error_type, message, level, trace_id, fingerprint, data)


def _client_fingerprint(
    value: Any, error_type: str, message: str, data: dict[str, Any]
) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if type(value) is not list or not all(isinstance(part, str) for part in value):
        raise SchemaError(
            f"invalid fingerprint {_show(value)}: expected a string or an array of strings"
        )
    value = normalize_fingerprint(value)
    if value is None:
        return None
    try:
        return client_fingerprint(value, error_type, message, data)
    except ValueError as exc:
        raise SchemaError(f"invalid fingerprint: {exc}") from None


_DEFAULT_PART = re.compile(r"^\s*\{\{\s*default\s*\}\}\s*$", re.IGNORECASE)
DEFAULT_PART = "{{ default }}"


def normalize_fingerprint(parts: list[str]) -> list[str] | None:
    """Spell every "{{ default }}" part one way (any case, spaces optional).

    Returns None when every part is "{{ default }}": such a fingerprint
    groups exactly as if the client had sent none.
    """
    parts = [DEFAULT_PART if _DEFAULT_PART.match(part) else part for part in parts]
    if parts and all(part == DEFAULT_PART for part in parts):
        return None
    return parts


def _exceptions(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if type(value) is not list:
        raise SchemaError(f"invalid exceptions {_show(value)}: expected an array of objects")
    if len(value) > MAX_EXCEPTIONS:
        value = value[:MAX_EXCEPTIONS]
    result = []
    for index, item in enumerate(value):
        where = f"exceptions[{index}]"
        if type(item) is not dict:
            raise SchemaError(f"invalid {where} {_show(item)}: expected an object")
        error_type = item.get("type")
        if type(error_type) is not str or not error_type or len(error_type) > MAX_TYPE:
            raise SchemaError(f"invalid {where}.type {_show(error_type)}: expected a string")
        message = item.get("message") or ""
        if type(message) is not str:
            raise SchemaError(f"invalid {where}.message {_show(message)}: expected a string")
        relation = item.get("relation")
        if relation not in (None, "cause", "context", "member"):
            raise SchemaError(
                f"invalid {where}.relation {_show(relation)}: expected null, 'cause', "
                "'context' or 'member'"
            )
        frames, omitted = _frames(item.get("frames"), where)
        result.append(
            {
                "type": error_type,
                "message": message[:MAX_MESSAGE],
                "relation": relation if index else None,
                "parent": index - 1 if index else None,
                "frames": frames,
                "frames_omitted": omitted,
            }
        )
    return result


def _frames(value: Any, where: str) -> tuple[list[dict[str, Any]], int]:
    """Check the frames of one exception; keep the first and last ones as errors.py does."""
    if value is None:
        return [], 0
    if type(value) is not list:
        raise SchemaError(f"invalid {where}.frames {_show(value)}: expected an array")
    indexes = list(range(len(value)))
    omitted = 0
    if len(indexes) > MAX_FRAMES:
        omitted = len(indexes) - MAX_FRAMES
        indexes = indexes[:FRAMES_HEAD] + indexes[-(MAX_FRAMES - FRAMES_HEAD) :]
    frames = []
    for index in indexes:
        frame = value[index]
        if type(frame) is not dict:
            raise SchemaError(f"invalid {where}.frames[{index}]: expected an object")
        clean: dict[str, Any] = {}
        for name in _FRAME_FIELDS:
            item = frame.get(name)
            if name == "lineno":
                ok = item is None or (type(item) is int and 0 <= item < 2**31)
            elif name == "in_app":
                ok = item is None or isinstance(item, bool)
            else:
                ok = item is None or isinstance(item, str)
                if isinstance(item, str):
                    item = item[:MAX_LINE_TEXT]
            if not ok:
                raise SchemaError(
                    f"invalid {where}.frames[{index}].{name} {_show(item)}: "
                    f"expected {_FRAME_TYPES[name]}"
                )
            clean[name] = item
        clean["in_app"] = clean["in_app"] is True
        frames.append(clean)
    return frames, omitted


MAX_LINE_TEXT = 1024
_FRAME_TYPES = {
    "filename": "a string",
    "module": "a string",
    "function": "a string",
    "line": "a string",
    "lineno": "an integer >= 0",
    "in_app": "a boolean",
}


def _request_context(obj: dict[str, Any], scrub_fields: tuple[str, ...]) -> dict[str, Any] | None:
    method = _optional_str(obj, "http.request.method", MAX_METHOD, cut=False)
    full_path = _optional_str(obj, "url.path", MAX_PATH)
    route = _optional_str(obj, "http.route", MAX_ROUTE)
    user_agent = _optional_str(obj, "user_agent.original", MAX_USER_AGENT)
    client = _optional_str(obj, "client.address", MAX_CLIENT)
    if method is None and full_path is None and route is None and user_agent is None and not client:
        return None
    path, query = (None, "") if full_path is None else _split_path(full_path)
    if route is not None:
        route = _route(obj)
    headers = {"user-agent": user_agent} if user_agent else {}
    return {
        "method": _method(method) if method else None,
        "path": path,
        "route": route,
        "query": scrub_query(query, scrub_fields)[:MAX_QUERY],
        "headers": headers,
        "client": client,
    }


def _scrub_tags(tags: dict[str, Any], scrub_fields: tuple[str, ...]) -> dict[str, Any]:
    return {
        key: FILTERED if is_sensitive_key(key, scrub_fields) else value
        for key, value in tags.items()
    }


def is_sensitive_key(name: str, scrub_fields: tuple[str, ...] = DEFAULT_SCRUB_FIELDS) -> bool:
    """Tell whether a context, extra or tag key names a secret (scrub fields, words, "dsn")."""
    return is_sensitive(name, scrub_fields + EXTRA_SCRUB_FIELDS)


def scrub_value(
    value: Any, scrub_fields: tuple[str, ...] = DEFAULT_SCRUB_FIELDS, depth: int = 0
) -> Any:
    """Return a copy of JSON `value` with sensitive keys filtered at every level.

    Strings that are URLs or paths get their query string scrubbed as the
    middleware scrubs a request's. Integers outside the 64-bit range become
    floats and non-finite floats text, so the result always encodes with
    orjson. Below MAX_CONTEXT_DEPTH levels the value is replaced by its type
    name.
    """
    if depth >= MAX_CONTEXT_DEPTH:
        return f"[{_json_type(value)}]"
    if isinstance(value, dict):
        return {
            clean_text(str(key)): FILTERED
            if is_sensitive_key(str(key), scrub_fields)
            else scrub_value(item, scrub_fields, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [scrub_value(item, scrub_fields, depth + 1) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if type(value) is int and not MIN_INT <= value <= MAX_INT:
        return float(value)
    if isinstance(value, str):
        return scrub_url(clean_text(value), scrub_fields)
    if value is None or isinstance(value, bool | int | float):
        return value
    return clean_text(str(value))


def _context(value: Any, scrub_fields: tuple[str, ...]) -> Any:
    scrubbed = scrub_value(value, scrub_fields)
    text = orjson.dumps(scrubbed)
    if len(text) > MAX_CONTEXT_BYTES:
        return {"omitted": f"context of {len(text)} bytes is over {MAX_CONTEXT_BYTES}"}
    return scrubbed


def decode_json(raw: bytes | str) -> Any:
    """Decode one JSON text; raise SchemaError with the parser's reason when it is invalid.

    orjson rejects invalid UTF-8 and lone surrogate escapes ("\\ud800"). Such
    text is decoded again with the bad bytes replaced, by the standard json
    module (which accepts lone surrogates), and cleaned, so it is stored with
    U+FFFD in place of what could not be represented. NaN and Infinity are
    invalid either way.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = str(exc)
        if "UTF-8" not in reason and "surrogate" not in reason:
            raise SchemaError(f"invalid JSON: {reason}") from None
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise SchemaError(f"invalid JSON: {exc}") from None
    return clean_json(value)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def clean_json(value: Any, depth: int = 0) -> Any:
    """Return JSON `value` with lone surrogates in keys and strings replaced by U+FFFD.

    Integers outside what orjson decodes (-2**63 to 2**64 - 1) become floats,
    as orjson would return them.
    """
    if isinstance(value, str):
        return clean_text(value)
    if type(value) is int and not MIN_INT <= value <= MAX_INT:
        return float(value)
    if depth > 200:
        raise SchemaError("JSON nested more than 200 levels deep")
    if isinstance(value, dict):
        return {clean_text(key): clean_json(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [clean_json(item, depth + 1) for item in value]
    return value


def as_mapping(value: Any) -> Mapping[str, Any]:
    """Return `value` when it is a JSON object, else an empty mapping."""
    return value if isinstance(value, dict) else {}
