"""The Sentry wire protocol: authentication, envelopes and events, turned into Hauswacht events.

Authentication: the key is the public key of the DSN, which is a Hauswacht
ingest token. It is taken from the `X-Sentry-Auth` header (`Sentry
sentry_key=..., sentry_version=7, ...`), an `Authorization: Sentry ...`
header, the `sentry_key` query parameter (browser SDKs), or the `dsn` in
the envelope header, in that order.

Envelopes (https://develop.sentry.dev/sdk/envelopes/): a JSON header line,
then items, each a JSON header line and a payload. A payload is exactly
`length` bytes when the item header has `length` (followed by a newline or
the end), else it runs to the next newline or the end. `parse_envelope`
rejects anything else with EnvelopeError naming the item.

Conversion (`convert_event`):
- `event` items and store bodies become ErrorEvents: the exception chain
  (Sentry lists it oldest first; Hauswacht stores the raised one first), the
  frames (file, module, function, line number, source line, in_app), the
  message (`logentry` or `message`; for a message with parameters the
  unformatted template groups it), level, timestamp, trace id, release,
  environment, tags, scrubbed request context and the client `fingerprint`
  ("{{ default }}", in any case, expands to Hauswacht's default key, and a
  fingerprint of only "{{ default }}" parts groups as if none was sent).
  Also kept, scrubbed and bounded: `extra` (as "context"), `contexts` other
  than trace (os, runtime, device, browser, custom `set_context` ones; as
  "contexts", at most MAX_EXTRA_BYTES), the last MAX_BREADCRUMBS
  `breadcrumbs` (at most MAX_BREADCRUMB_BYTES in all, older ones dropped
  first) and `request.env` and `request.data`.
- Scrubbing follows the middleware's rules (hauswacht.collector.errors): a
  sensitive header, tag, query parameter or JSON key (password, token,
  session, private, key, dsn, ...) has its value replaced by "[Filtered]",
  and URL values (Referer, strings in extra) have their query scrubbed.
- `transaction` items, and store bodies with "type": "transaction", become
  RequestEvents: start time, duration, method, route (the transaction name
  unless its source is a raw URL), path without its query, status (from the response context,
  else from the span status; a transaction with neither counts as 200).
- Every other item type (attachment, session, client_report, span, log,
  profile, replay, ...) is skipped and counted, never an error.

An envelope is converted whole before anything is queued, so a malformed
event item rejects the envelope and nothing of it is stored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from hauswacht.collector.errors import (
    FRAMES_HEAD,
    MAX_FRAMES,
    MAX_HEADER_VALUE,
    MAX_MESSAGE,
    MAX_QUERY,
    clean_text,
    scrub_query,
    scrub_url,
)
from hauswacht.collector.ingest_schema import (
    MAX_INT,
    MAX_LABEL,
    MAX_TRACE_ID,
    MIN_INT,
    SchemaError,
    as_mapping,
    decode_json,
    is_sensitive_key,
    normalize_fingerprint,
    parse_iso_ms,
    scrub_value,
)
from hauswacht.collector.settings import DEFAULT_SCRUB_FIELDS, FILTERED
from hauswacht.writer.events import UNMATCHED_ROUTE, ErrorEvent, RequestEvent
from hauswacht.writer.fingerprint import client_fingerprint

MAX_ITEMS = 1000
MAX_EXCEPTIONS = 30
MAX_TAGS = 50
MAX_EXTRA_BYTES = 16 * 1024
MAX_BREADCRUMBS = 100
MAX_BREADCRUMB_BYTES = 32 * 1024
MAX_TYPE = 256
LEVELS = {"debug": "debug", "info": "info", "log": "info", "warning": "warning",
          "warn": "warning", "error": "error", "fatal": "fatal", "critical": "fatal"}  # fmt: skip
EVENT_ITEMS = frozenset({"event", "transaction"})
MESSAGE_TYPE = "message"

# Span status (https://develop.sentry.dev/sdk/event-payloads/span/) to an HTTP status.
SPAN_STATUS_HTTP = {
    "ok": 200,
    "cancelled": 499,
    "unknown": 500,
    "unknown_error": 500,
    "invalid_argument": 400,
    "deadline_exceeded": 504,
    "not_found": 404,
    "already_exists": 409,
    "permission_denied": 403,
    "resource_exhausted": 429,
    "failed_precondition": 400,
    "aborted": 409,
    "out_of_range": 400,
    "unimplemented": 501,
    "internal_error": 500,
    "unavailable": 503,
    "data_loss": 500,
    "unauthenticated": 401,
}

_PYTHON_MODULE = re.compile(r"^[A-Za-z_][\w.]*$")
_AUTH_PAIR = re.compile(r"([A-Za-z_]+)\s*=\s*([^,\s]*)")
_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,16}")  # an HTTP token (RFC 9110)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class EnvelopeError(ValueError):
    """A Sentry envelope or event that cannot be read."""


@dataclass
class Envelope:
    header: dict[str, Any]
    items: list[tuple[dict[str, Any], bytes]] = field(default_factory=list)


# --- authentication ------------------------------------------------------------------


def auth_key(header: str | None) -> str | None:
    """Return `sentry_key` from an X-Sentry-Auth or `Authorization: Sentry ...` value."""
    if not header:
        return None
    text = header.strip()
    if text[:7].lower() == "sentry ":
        text = text[7:]
    for name, value in _AUTH_PAIR.findall(text):
        if name == "sentry_key" and value:
            return value
    return None


def dsn_key(envelope_header: Mapping[str, Any]) -> str | None:
    """Return the public key of the `dsn` in an envelope header, or None."""
    dsn = envelope_header.get("dsn")
    if not isinstance(dsn, str) or len(dsn) > 2048:
        return None
    try:
        return urlsplit(dsn).username or None
    except ValueError:
        return None


# --- envelopes -----------------------------------------------------------------------


def _json_line(data: bytes, where: str) -> dict[str, Any]:
    try:
        value = decode_json(data)
    except SchemaError as exc:
        raise EnvelopeError(f"{where}: {exc}") from None
    if not isinstance(value, dict):
        raise EnvelopeError(f"{where}: expected a JSON object")
    return value


def envelope_header(body: bytes) -> dict[str, Any]:
    """Parse only the first line of an envelope (for its `dsn`)."""
    end = body.find(b"\n")
    return _json_line(body if end < 0 else body[:end], "envelope header")


def parse_envelope(body: bytes) -> Envelope:
    """Split an envelope into its header and (item header, payload) pairs; raise EnvelopeError."""
    if not body.strip():
        raise EnvelopeError("empty envelope: expected a header line")
    end = body.find(b"\n")
    if end < 0:
        end = len(body)
    envelope = Envelope(_json_line(body[:end], "envelope header"))
    position = end + 1

    while position < len(body):
        end = body.find(b"\n", position)
        if end < 0:
            end = len(body)
        line = body[position:end]
        position = end + 1
        if not line.strip():
            continue  # blank lines between items and at the end
        number = len(envelope.items) + 1
        if number > MAX_ITEMS:
            raise EnvelopeError(f"more than {MAX_ITEMS} items in one envelope")
        item_header = _json_line(line, f"item {number} header")

        length = item_header.get("length")
        if length is None:
            end = body.find(b"\n", position)
            if end < 0:
                end = len(body)
            payload = body[position:end]
            position = end + 1
        else:
            if type(length) is not int or length < 0:
                raise EnvelopeError(f"item {number}: invalid length {length!r}")
            if position + length > len(body):
                raise EnvelopeError(
                    f"item {number}: length {length} runs past the end of the envelope "
                    f"({len(body) - min(position, len(body))} bytes left)"
                )
            payload = body[position : position + length]
            position += length
            if position < len(body):
                if body[position : position + 1] != b"\n":
                    raise EnvelopeError(
                        f"item {number}: payload of length {length} is not followed by a newline"
                    )
                position += 1
        envelope.items.append((item_header, payload))
    return envelope


def events_from_envelope(
    envelope: Envelope,
    now_ms: int,
    project_id: int,
    sender: str | None,
    scrub_fields: tuple[str, ...] = DEFAULT_SCRUB_FIELDS,
) -> tuple[list[ErrorEvent | RequestEvent], dict[str, int]]:
    """Convert the event and transaction items; return the events and skipped item counts."""
    events: list[ErrorEvent | RequestEvent] = []
    skipped: dict[str, int] = {}
    trace = as_mapping(envelope.header.get("trace"))
    for number, (item_header, payload) in enumerate(envelope.items, start=1):
        item_type = item_header.get("type")
        if not isinstance(item_type, str) or item_type not in EVENT_ITEMS:
            key = item_type if isinstance(item_type, str) else "(none)"
            key = key[:40]
            skipped[key] = skipped.get(key, 0) + 1
            continue
        event = _json_line(payload, f"item {number} ({item_type}) payload")
        if item_type == "transaction":
            event.setdefault("type", "transaction")
        for name in ("release", "environment"):
            if name not in event and isinstance(trace.get(name), str):
                event[name] = trace[name]
        try:
            events.append(convert_event(event, now_ms, project_id, sender, scrub_fields))
        except EnvelopeError as exc:
            raise EnvelopeError(f"item {number} ({item_type}): {exc}") from None
    return events, skipped


# --- events --------------------------------------------------------------------------


def convert_event(
    event: Mapping[str, Any],
    now_ms: int,
    project_id: int,
    sender: str | None,
    scrub_fields: tuple[str, ...] = DEFAULT_SCRUB_FIELDS,
) -> ErrorEvent | RequestEvent:
    """Turn one Sentry event or transaction payload into a Hauswacht event record.

    `scrub_fields` are the names whose values are filtered (the collector
    setting, as the middleware uses).
    """
    if event.get("type") == "transaction":
        return _transaction(event, now_ms)
    return _error(event, now_ms, project_id, sender, scrub_fields)


def _timestamp(value: Any, now_ms: int) -> int | None:
    """Return epoch ms of a Sentry timestamp (seconds as a number, or RFC 3339), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if not 0 <= value < 253_402_300_800:
            return None
        ts = int(value * 1000)
    elif isinstance(value, str):
        ts = parse_iso_ms(value)
        if ts is None:
            return None
    else:
        return None
    return min(ts, now_ms + 60_000)


def _text(value: Any, limit: int) -> str | None:
    if not isinstance(value, str):
        return None
    return clean_text(value[:limit])


def _method(value: Any) -> str | None:
    """Return an HTTP method upper-cased, or None when `value` is not an HTTP token."""
    if isinstance(value, str) and _METHOD.fullmatch(value):
        return value.upper()
    return None


def _printable(text: str) -> str:
    """Replace control characters (paths and routes are shown in terminals and pages)."""
    return _CONTROL.sub("\ufffd", text)


def _trace_id(event: Mapping[str, Any]) -> str | None:
    trace = as_mapping(as_mapping(event.get("contexts")).get("trace"))
    trace_id = trace.get("trace_id")
    if isinstance(trace_id, str) and 0 < len(trace_id) <= MAX_TRACE_ID:
        return clean_text(trace_id)
    return None


def _message(event: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Return the formatted message and, for a message with parameters, its template."""
    for name in ("logentry", "message"):
        value = event.get(name)
        if isinstance(value, str) and value:
            return _text(value, MAX_MESSAGE), None
        if isinstance(value, dict):
            template = value.get("message")
            formatted = value.get("formatted")
            params = value.get("params")
            text = formatted if isinstance(formatted, str) and formatted else template
            if isinstance(text, str) and text:
                has_params = isinstance(params, list | dict) and bool(params)
                template_text = _text(template, MAX_MESSAGE) if has_params else None
                return _text(text, MAX_MESSAGE), template_text
    return None, None


def _exception_values(event: Mapping[str, Any]) -> list[Any]:
    value = event.get("exception")
    if isinstance(value, dict):
        value = value.get("values")
    return value if isinstance(value, list) else []


def _type_name(item: Mapping[str, Any], platform: Any) -> str:
    error_type = _text(item.get("type"), MAX_TYPE) or "Error"
    module = item.get("module")
    if (
        platform == "python"
        and isinstance(module, str)
        and _PYTHON_MODULE.match(module)
        and "." not in error_type
    ):
        return f"{module}.{error_type}"[:MAX_TYPE]
    return error_type


def _frames(stacktrace: Any) -> tuple[list[dict[str, Any]], int]:
    raw = as_mapping(stacktrace).get("frames")
    if not isinstance(raw, list):
        return [], 0
    raw = [frame for frame in raw if isinstance(frame, dict)]
    omitted = 0
    if len(raw) > MAX_FRAMES:
        omitted = len(raw) - MAX_FRAMES
        raw = raw[:FRAMES_HEAD] + raw[-(MAX_FRAMES - FRAMES_HEAD) :]
    frames = []
    for frame in raw:
        lineno = frame.get("lineno")
        frames.append(
            {
                "filename": _text(frame.get("abs_path") or frame.get("filename"), 1024),
                "module": _text(frame.get("module"), 512),
                "function": _text(frame.get("function"), 512),
                "lineno": lineno if type(lineno) is int and 0 <= lineno < 2**31 else None,
                "line": _text(frame.get("context_line"), 1024),
                "in_app": frame.get("in_app") is True,
            }
        )
    return frames, omitted


def _exceptions(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    values = [item for item in _exception_values(event) if isinstance(item, dict)]
    values = values[-MAX_EXCEPTIONS:]
    platform = event.get("platform")
    # An Elixir-style event puts the frames beside the exception list.
    top_stacktrace = event.get("stacktrace")
    exceptions = []
    for index, item in enumerate(reversed(values)):
        frames, omitted = _frames(item.get("stacktrace") or (top_stacktrace if not index else None))
        exceptions.append(
            {
                "type": _type_name(item, platform),
                "message": _text(item.get("value"), MAX_MESSAGE) or "",
                "relation": _relation(item) if index else None,
                "parent": index - 1 if index else None,
                "frames": frames,
                "frames_omitted": omitted,
            }
        )
    return exceptions


def _relation(item: Mapping[str, Any]) -> str:
    # sentry-python 1.38+ marks chained exceptions in their mechanism.
    source = as_mapping(item.get("mechanism")).get("source")
    if source == "__context__":
        return "context"
    if isinstance(source, str) and source.startswith("exceptions["):
        return "member"
    return "cause"


def _tags(value: Any, scrub_fields: tuple[str, ...] = DEFAULT_SCRUB_FIELDS) -> dict[str, Any]:
    if isinstance(value, list):
        pairs = [item for item in value if isinstance(item, list) and len(item) == 2]
    elif isinstance(value, dict):
        pairs = list(value.items())
    else:
        return {}
    tags: dict[str, Any] = {}
    for key, item in pairs[:MAX_TAGS]:
        if not isinstance(key, str):
            continue
        key = clean_text(key[:64])
        if is_sensitive_key(key, scrub_fields):
            tags[key] = FILTERED
        elif isinstance(item, str):
            tags[key] = clean_text(item[:200])
        elif (
            isinstance(item, bool)
            or item is None
            or (isinstance(item, int) and MIN_INT <= item <= MAX_INT)
        ):
            tags[key] = item
        else:
            tags[key] = clean_text(str(item)[:200])
    return tags


def _headers(value: Any, scrub_fields: tuple[str, ...] = DEFAULT_SCRUB_FIELDS) -> dict[str, str]:
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list):
        pairs = [tuple(item) for item in value if isinstance(item, list) and len(item) == 2]
    else:
        return {}
    headers: dict[str, str] = {}
    for name, item in pairs[:100]:
        if not isinstance(name, str):
            continue
        name = clean_text(name.lower()[:128])
        if is_sensitive_key(name, scrub_fields):
            headers[name] = FILTERED
        else:
            value = scrub_url(clean_text(str(item)), scrub_fields)
            headers[name] = value[:MAX_HEADER_VALUE]
    return headers


def _request_context(
    event: Mapping[str, Any], scrub_fields: tuple[str, ...]
) -> dict[str, Any] | None:
    request = as_mapping(event.get("request"))
    if not request:
        return None
    url = _text(request.get("url"), 2048) or ""
    try:
        parts = urlsplit(url)
        path, query = parts.path, parts.query
    except ValueError:
        path, query = url, ""
    query_string = request.get("query_string")
    if isinstance(query_string, str) and query_string:
        query = query_string
    route = _text(event.get("transaction"), 256)
    context: dict[str, Any] = {
        "method": _method(request.get("method")),
        "path": _printable(path[:2048]) or None,
        "route": _printable(route) if route else None,
        "query": scrub_query(clean_text(query), scrub_fields)[:MAX_QUERY],
        "headers": _headers(request.get("headers"), scrub_fields),
        "client": None,
    }
    env = as_mapping(request.get("env"))
    if isinstance(env.get("REMOTE_ADDR"), str):
        context["client"] = clean_text(env["REMOTE_ADDR"][:64])
    if env:
        context["env"] = _bounded(env, scrub_fields)
    if "data" in request:
        context["data"] = _bounded(request.get("data"), scrub_fields)
    return context


def _bounded(value: Any, scrub_fields: tuple[str, ...], limit: int = MAX_EXTRA_BYTES) -> Any:
    """Return `value` scrubbed, or a note of its size when its JSON is over `limit` bytes."""
    scrubbed = scrub_value(value, scrub_fields)
    size = len(orjson.dumps(scrubbed))
    if size > limit:
        return {"omitted": f"{size} bytes is over {limit}"}
    return scrubbed


def _contexts(value: Any, scrub_fields: tuple[str, ...]) -> dict[str, Any] | None:
    """Return the event's contexts other than trace (kept in its own fields), scrubbed."""
    contexts = {key: item for key, item in as_mapping(value).items() if key != "trace" and item}
    return _bounded(contexts, scrub_fields) if contexts else None


def _breadcrumbs(value: Any, scrub_fields: tuple[str, ...]) -> list[Any] | None:
    """Return the last MAX_BREADCRUMBS breadcrumbs, scrubbed, dropping the oldest to fit."""
    if isinstance(value, dict):
        value = value.get("values")
    if not isinstance(value, list) or not value:
        return None
    crumbs = [
        scrub_value(item, scrub_fields)
        for item in value[-MAX_BREADCRUMBS:]
        if isinstance(item, dict)
    ]
    sizes = [len(orjson.dumps(item)) + 1 for item in crumbs]
    total = sum(sizes)
    start = 0
    while start < len(crumbs) and total > MAX_BREADCRUMB_BYTES:
        total -= sizes[start]
        start += 1
    return crumbs[start:] or None


def _error(
    event: Mapping[str, Any],
    now_ms: int,
    project_id: int,
    sender: str | None,
    scrub_fields: tuple[str, ...],
) -> ErrorEvent:
    ts = _timestamp(event.get("timestamp"), now_ms) or now_ms
    level = LEVELS.get(str(event.get("level") or "error").lower(), "error")
    exceptions = _exceptions(event)
    message, template = _message(event)

    if exceptions:
        error_type = exceptions[0]["type"]
        text = exceptions[0]["message"]
    else:
        error_type = MESSAGE_TYPE
        text = message or "<unlabeled event>"
    trace_id = _trace_id(event)

    data: dict[str, Any] = {
        "type": error_type,
        "message": text,
        "level": level,
        "exceptions": exceptions,
        "request": _request_context(event, scrub_fields),
        "trace_id": trace_id,
        "tags": _tags(event.get("tags"), scrub_fields),
    }
    if exceptions and message and message != text:
        data["log_message"] = message
    if template:
        data["message_template"] = template
    for name in ("release", "environment"):
        label = _text(event.get(name), MAX_LABEL)
        if label:
            data[name] = label
    sentry: dict[str, Any] = {"project_id": project_id}
    for name in ("event_id", "platform", "logger", "server_name", "transaction"):
        value = _text(event.get(name), 256)
        if value:
            sentry[name] = value
    sdk = as_mapping(event.get("sdk"))
    if isinstance(sdk.get("name"), str):
        sentry["sdk"] = clean_text(f"{sdk['name']} {sdk.get('version') or ''}".strip()[:128])
    data["sentry"] = sentry
    user = as_mapping(event.get("user"))
    if isinstance(user.get("id"), str | int):
        data["user"] = {"id": clean_text(str(user["id"])[:128])}
    if event.get("extra"):
        data["context"] = _bounded(event.get("extra"), scrub_fields)
    contexts = _contexts(event.get("contexts"), scrub_fields)
    if contexts:
        data["contexts"] = contexts
    breadcrumbs = _breadcrumbs(event.get("breadcrumbs"), scrub_fields)
    if breadcrumbs:
        data["breadcrumbs"] = breadcrumbs
    if sender:
        data["sender"] = sender

    fingerprint = None
    parts = event.get("fingerprint")
    if isinstance(parts, str):
        parts = [parts]
    if isinstance(parts, list) and parts and all(isinstance(part, str) for part in parts):
        normalized = normalize_fingerprint([clean_text(part) for part in parts])
        try:
            if normalized is not None:
                fingerprint = client_fingerprint(normalized, error_type, text, data)
        except ValueError as exc:
            raise EnvelopeError(f"invalid fingerprint: {exc}") from None
    return ErrorEvent(ts, error_type, text, level, trace_id, fingerprint, data)


def _transaction(event: Mapping[str, Any], now_ms: int) -> RequestEvent:
    end = _timestamp(event.get("timestamp"), now_ms)
    start = _timestamp(event.get("start_timestamp"), now_ms)
    ts = now_ms
    if start is not None:
        ts = start
    elif end is not None:
        ts = end
    duration = None
    start_value, end_value = event.get("start_timestamp"), event.get("timestamp")
    if isinstance(start_value, int | float) and isinstance(end_value, int | float):
        if not isinstance(start_value, bool) and not isinstance(end_value, bool):
            seconds = float(end_value) - float(start_value)
            if 0 <= seconds < 86_400:
                duration = seconds * 1000
    elif start is not None and end is not None and 0 <= end - start < 86_400_000:
        duration = float(end - start)

    contexts = as_mapping(event.get("contexts"))
    trace = as_mapping(contexts.get("trace"))
    request = as_mapping(event.get("request"))
    name = _text(event.get("transaction"), 256) or ""
    source = as_mapping(event.get("transaction_info")).get("source")

    method = _method(request.get("method"))
    # Some integrations name transactions "GET /tours/{id}": the method goes to its field.
    first, _, rest = name.partition(" ")
    if first.isalpha() and first.isupper() and rest.startswith("/"):
        method = method or _method(first)
        name = rest
    if not method:
        method = "GET" if trace.get("op") in ("pageload", "navigation") else "-"
    name = _printable(name)
    route = name if name and source != "url" else UNMATCHED_ROUTE

    path = ""
    url = _text(request.get("url"), 2048)
    if url:
        try:
            path = urlsplit(url).path
        except ValueError:
            path = ""
    if not path:
        path = name.partition("?")[0] if name.startswith("/") else "/"
    path = _printable(path)

    status = as_mapping(contexts.get("response")).get("status_code")
    if type(status) is not int or not 100 <= status <= 599:
        tag_status = _tags(event.get("tags")).get("http.status_code")
        if isinstance(tag_status, str) and tag_status.isdigit() and 100 <= int(tag_status) <= 599:
            status = int(tag_status)
        else:
            status = SPAN_STATUS_HTTP.get(str(trace.get("status") or "ok"), 500)

    headers = _headers(request.get("headers"))
    trace_id = _trace_id(event)
    return RequestEvent(
        ts,
        method.upper(),
        route,
        path[:2048],
        status,
        duration,
        None,
        None,
        None,
        headers.get("user-agent"),
        trace_id,
    )
