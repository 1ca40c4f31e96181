"""The HTTP ingest server: native NDJSON events and the Sentry protocol, into one collector.

Endpoints (every response body is JSON):
- `POST /ingest`, `Authorization: Bearer TOKEN`: NDJSON (`application/x-ndjson`,
  one event per line) or `application/json` (an array of events, or one
  event), checked line by line against the native schema (ingest_schema.py).
  202 `{"accepted": n, "rejected": [{"line": k, "error": "..."}]}` when at
  least one event was queued; 400 with the same body when every line was
  rejected. For an array, "line" is the element's position, from 1.
- `POST /api/<project_id>/envelope/` and `POST /api/<project_id>/store/`:
  the Sentry protocol (sentry.py). 200 `{"id": event_id}`.
- `GET /healthz`: queue and writer health; 503 while the writer is not running.

Errors: 401 without a valid token, 413 over the body limit, 415 for a content
type (on /ingest) or content encoding that is not supported, 429 with
`Retry-After` when the queue has no room for the whole request, 400 for a
body that cannot be read. A client can never cause a 500: the parse steps
have a catch-all that logs the exception and answers 400.

Invariants
- All or nothing per request and line: the events of a request are checked
  and converted first; then, if the queue has room for all of them, all are
  queued in one synchronous step (no await in between, so no other request
  interleaves), else none is and the answer is 429. A rejected line queues
  nothing. This relies on the ingest handlers being the only producers of
  the collector's queue on its event loop; a producer on another thread
  could take the room in between, and its events would then be counted as
  dropped by the queue.
- The body limit (`max_body` bytes) holds while the body streams in, before
  and after decompression (gzip, and deflate with or without the zlib
  header), so neither a large upload nor a zip bomb is held in memory.
- Tokens are compared in constant time (tokens.py) and never logged. The
  server runs without uvicorn's access log, which would log the
  `sentry_key` query parameter of browser SDK requests.
"""

from __future__ import annotations

import contextlib
import logging
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from hauswacht.collector.collector import Collector
from hauswacht.collector.ingest_schema import SchemaError, clean_json, decode_json, parse_event
from hauswacht.collector.sentry import (
    EnvelopeError,
    auth_key,
    convert_event,
    dsn_key,
    envelope_header,
    events_from_envelope,
    parse_envelope,
)
from hauswacht.writer.events import Event
from hauswacht.writer.tokens import TokenVerifier

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 5 * 1024 * 1024  # bytes, compressed and decompressed
MAX_REPORTED_REJECTIONS = 100
RETRY_AFTER_SECONDS = 1

NDJSON_TYPES = frozenset(
    {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/jsonlines",
     "application/x-jsonlines"}
)  # fmt: skip
JSON_TYPES = frozenset({"application/json"})
ENCODINGS = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})

SENTRY_CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "x-sentry-error, x-sentry-rate-limits, retry-after",
}


class RequestFailed(Exception):
    """A request rejected with an error status before any of its events was queued."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    try:
        content = orjson.dumps(body)
    except TypeError:  # a lone surrogate in a message that quotes client input
        content = orjson.dumps(clean_json(body))
    return Response(content, status, headers, media_type="application/json")


def _header_value(text: str) -> str:
    """Return `text` as a safe header value: printable ASCII, one line, at most 200 characters."""
    return "".join(char if " " <= char <= "~" else "?" for char in text[:200])


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- the request body ----------------------------------------------------------------


async def read_body(request: Request, limit: int) -> bytes:
    """Read and decompress the body, raising RequestFailed (413, 415, 400) as soon as it fails.

    At most `limit` + 1 bytes are held before the limit check, compressed or
    decompressed.
    """
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding not in ENCODINGS:
        raise RequestFailed(
            415,
            f"unsupported Content-Encoding {encoding[:40]!r}: send gzip, deflate or no encoding",
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)

    decompressor: Any = None
    if encoding in ("gzip", "x-gzip"):
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    received = 0
    produced = 0
    parts: list[bytes] = []
    head = b""  # deflate: the first two bytes decide between zlib and raw deflate

    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise _too_large(limit)
            if encoding == "deflate" and decompressor is None:
                head += chunk
                if len(head) < 2:
                    continue
                decompressor = zlib.decompressobj(_deflate_wbits(head))
                chunk, head = head, b""
            if decompressor is None:
                parts.append(chunk)
                continue
            produced = _inflate(decompressor, chunk, parts, produced, limit)
    except ClientDisconnect:
        raise RequestFailed(400, "the client closed the connection before the body ended") from None
    except zlib.error as exc:
        raise RequestFailed(400, f"invalid {encoding} body: {exc}") from None

    if encoding == "deflate" and decompressor is None and head:
        raise RequestFailed(400, "invalid deflate body: shorter than 2 bytes")
    if decompressor is not None:
        try:
            tail = decompressor.flush(limit - produced + 1)
        except zlib.error as exc:
            raise RequestFailed(400, f"invalid {encoding} body: {exc}") from None
        produced += len(tail)
        if produced > limit:
            raise _too_large(limit)
        parts.append(tail)
        if not decompressor.eof:
            raise RequestFailed(400, f"invalid {encoding} body: truncated compressed data")
        if decompressor.unused_data:
            raise RequestFailed(400, f"invalid {encoding} body: data after the compressed stream")
    return b"".join(parts)


def _deflate_wbits(head: bytes) -> int:
    # RFC 1950 header: compression method 8 and a check value divisible by 31.
    if head[0] & 0x0F == 8 and ((head[0] << 8) | head[1]) % 31 == 0:
        return zlib.MAX_WBITS
    return -zlib.MAX_WBITS


def _inflate(decompressor: Any, data: bytes, parts: list[bytes], produced: int, limit: int) -> int:
    while data:
        if decompressor.eof:
            raise RequestFailed(400, "invalid compressed body: data after the compressed stream")
        output = decompressor.decompress(data, limit - produced + 1)
        produced += len(output)
        if produced > limit:
            raise _too_large(limit, decompressed=True)
        parts.append(output)
        data = decompressor.unconsumed_tail
    return produced


def _too_large(limit: int, decompressed: bool = False) -> RequestFailed:
    what = "decompressed request body" if decompressed else "request body"
    return RequestFailed(
        413, f"{what} is larger than {limit} bytes; send smaller batches or raise --max-body-mb"
    )


# --- parsing native bodies -----------------------------------------------------------


def parse_native(
    body: bytes, content_type: str, now_ms: int, sender: str | None
) -> tuple[list[Event], list[dict[str, Any]], int]:
    """Check every line (or array element) of a native body.

    Returns the events, the first MAX_REPORTED_REJECTIONS rejections and the
    number of rejections. Raises RequestFailed (400) when the body as a whole
    is unusable.
    """
    events: list[Event] = []
    rejected: list[dict[str, Any]] = []
    rejected_count = 0

    if content_type in JSON_TYPES:
        try:
            value = decode_json(body)
        except SchemaError as exc:
            raise RequestFailed(400, str(exc)) from None
        lines: Any = enumerate(value if isinstance(value, list) else [value], start=1)
        decoded = True
    else:
        lines = enumerate(body.split(b"\n"), start=1)
        decoded = False

    # One pass per line: decode (NDJSON), check, convert. This loop runs for
    # every event, so the common case takes no extra steps.
    loads = orjson.loads
    for number, raw in lines:
        try:
            value = raw if decoded else loads(raw)
            events.append(parse_event(value, now_ms, sender))
            continue
        except orjson.JSONDecodeError:
            if not raw.strip():
                continue  # blank lines are allowed and not counted
            try:
                events.append(parse_event(decode_json(raw), now_ms, sender))
                continue
            except SchemaError as exc:
                error = str(exc)
        except SchemaError as exc:
            error = str(exc)
        except Exception:
            logger.exception("ingest: unexpected error while checking line %d", number)
            error = "internal error while checking this event; it was not stored"
        rejected_count += 1
        if len(rejected) < MAX_REPORTED_REJECTIONS:
            rejected.append({"line": number, "error": error})

    if not events and not rejected_count:
        raise RequestFailed(400, "no events in the body: send one JSON object per line")
    return events, rejected, rejected_count


# --- the application -----------------------------------------------------------------


class IngestServer:
    """The endpoints of one ingest server; owns the token verifier and feeds one collector."""

    def __init__(self, collector: Collector, max_body: int = DEFAULT_MAX_BODY) -> None:
        if max_body < 1:
            raise ValueError(f"max_body must be at least 1 byte, got {max_body}")
        self.collector = collector
        self.max_body = max_body
        self.tokens = TokenVerifier(collector.settings.database)

    # -- shared steps --

    def _enqueue(self, events: list[Event]) -> None:
        """Queue all `events` or none; raise RequestFailed (429 or 413) when they do not fit."""
        queue = self.collector.queue
        if len(events) > queue.maxsize:
            raise RequestFailed(
                413,
                f"{len(events)} events in one request; the queue holds {queue.maxsize}, "
                "so send smaller batches",
            )
        if queue.maxsize - len(queue) < len(events):
            raise RequestFailed(
                429,
                "the event queue is full; retry after the time in Retry-After",
                {"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        put = queue.put
        for event in events:
            put(event)

    def _bearer(self, request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        name = self.tokens.verify(token.strip()) if scheme.lower() == "bearer" else None
        if name is None:
            raise RequestFailed(
                401,
                "missing or invalid token: send Authorization: Bearer TOKEN "
                "(create one with `hauswacht token create NAME`)",
                {"WWW-Authenticate": 'Bearer realm="hauswacht"'},
            )
        return name

    # -- endpoints --

    async def ingest(self, request: Request) -> Response:
        try:
            sender = self._bearer(request)
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type not in NDJSON_TYPES and content_type not in JSON_TYPES:
                raise RequestFailed(
                    415,
                    f"unsupported Content-Type {content_type[:60]!r}: send "
                    "application/x-ndjson (one event per line) or application/json",
                )
            body = await read_body(request, self.max_body)
            try:
                events, rejected, rejected_count = parse_native(
                    body, content_type, _now_ms(), sender
                )
            except RequestFailed:
                raise
            except Exception:
                logger.exception("ingest: unexpected error while reading a body from %s", sender)
                raise RequestFailed(400, "the body could not be read; nothing was stored") from None
            if events:
                self._enqueue(events)
        except RequestFailed as failure:
            return _json(failure.status, {"error": failure.message}, failure.headers)

        answer: dict[str, Any] = {"accepted": len(events), "rejected": rejected}
        if rejected_count > len(rejected):
            answer["rejected_total"] = rejected_count
        if rejected_count:
            logger.debug("ingest from %s: %d rejected lines", sender, rejected_count)
        return _json(202 if events else 400, answer)

    async def sentry_envelope(self, request: Request) -> Response:
        return await self._sentry(request, envelope=True)

    async def sentry_store(self, request: Request) -> Response:
        return await self._sentry(request, envelope=False)

    async def _sentry(self, request: Request, *, envelope: bool) -> Response:
        try:
            project_id = int(request.path_params["project_id"])
            key = (
                auth_key(request.headers.get("x-sentry-auth"))
                or auth_key(request.headers.get("authorization"))
                or request.query_params.get("sentry_key")
            )
            if key is not None and self.tokens.verify(key) is None:
                raise self._sentry_unauthorized()
            body = await read_body(request, self.max_body)
            try:
                if key is None and envelope:
                    key = dsn_key(envelope_header(body))
                sender = self.tokens.verify(key)
                if sender is None:
                    raise self._sentry_unauthorized()
                event_id, events = self._convert_sentry(body, envelope, project_id, sender)
            except EnvelopeError as exc:
                raise RequestFailed(400, str(exc)) from None
            except RequestFailed:
                raise
            except Exception:
                logger.exception("ingest: unexpected error while reading a Sentry body")
                raise RequestFailed(400, "the body could not be read; nothing was stored") from None
            self._enqueue(events)
        except RequestFailed as failure:
            headers = {
                **SENTRY_CORS_HEADERS,
                "X-Sentry-Error": _header_value(failure.message),
                **failure.headers,
            }
            return _json(failure.status, {"detail": failure.message}, headers)
        return _json(200, {"id": event_id}, SENTRY_CORS_HEADERS)

    def _sentry_unauthorized(self) -> RequestFailed:
        return RequestFailed(
            401,
            "missing or invalid sentry_key: use the DSN printed by `hauswacht token create NAME`",
        )

    def _convert_sentry(
        self, body: bytes, envelope: bool, project_id: int, sender: str
    ) -> tuple[str | None, list[Event]]:
        now_ms = _now_ms()
        if envelope:
            parsed = parse_envelope(body)
            events, skipped = events_from_envelope(parsed, now_ms, project_id, sender)
            if skipped:
                logger.debug("sentry envelope from %s: skipped items %s", sender, skipped)
            event_id = parsed.header.get("event_id")
        else:
            try:
                payload = decode_json(body)
            except SchemaError as exc:
                raise EnvelopeError(str(exc)) from None
            if not isinstance(payload, dict):
                raise EnvelopeError("expected a JSON object (one Sentry event)")
            events = [convert_event(payload, now_ms, project_id, sender)]
            event_id = payload.get("event_id")
        return (event_id if isinstance(event_id, str) else None), events

    async def sentry_preflight(self, request: Request) -> Response:
        headers = {
            **SENTRY_CORS_HEADERS,
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": "content-type, content-encoding, x-sentry-auth, "
            "authorization, sentry-trace, baggage",
            "Access-Control-Max-Age": "3600",
        }
        return Response(status_code=200, headers=headers)

    async def healthz(self, request: Request) -> Response:
        health = self.collector.health()
        status = 200 if health["running"] else 503
        return _json(status, {"status": "ok" if status == 200 else "writer not running", **health})

    def routes(self) -> list[Route]:
        routes = [
            Route("/ingest", self.ingest, methods=["POST"]),
            Route("/healthz", self.healthz, methods=["GET"]),
        ]
        for suffix in ("envelope/", "envelope", "store/", "store"):
            endpoint = self.sentry_envelope if suffix.startswith("envelope") else self.sentry_store
            path = f"/api/{{project_id:int}}/{suffix}"
            routes.append(Route(path, endpoint, methods=["POST"]))
            routes.append(Route(path, self.sentry_preflight, methods=["OPTIONS"]))
        return routes


def create_app(collector: Collector, max_body: int = DEFAULT_MAX_BODY) -> Starlette:
    """Build the ingest Starlette app; its lifespan starts `collector` and drains it at shutdown."""
    server = IngestServer(collector, max_body)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await collector.start()
        server.tokens.refresh()
        logger.info(
            "ingest server ready: writing to %s, body limit %d bytes",
            collector.settings.database,
            max_body,
        )
        try:
            yield
        finally:
            server.tokens.close()
            await collector.stop()

    app = Starlette(routes=server.routes(), lifespan=lifespan)
    app.state.ingest = server
    return app
