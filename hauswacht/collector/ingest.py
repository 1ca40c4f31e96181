"""The HTTP ingest server: native NDJSON events and the Sentry protocol, into one collector.

Endpoints (every response body is JSON):
- `POST /ingest`, `Authorization: Bearer TOKEN`: NDJSON (`application/x-ndjson`,
  one event per line) or `application/json` (an array of events, or one
  event), checked line by line against the native schema (ingest_schema.py).
  202 `{"accepted": n, "rejected": [{"line": k, "error": "..."}]}` when at
  least one event was queued; 400 with the same body when every line was
  rejected. For an array, "line" is the element's position, from 1.
- `POST /api/<project_id>/envelope/` and `POST /api/<project_id>/store/`:
  the Sentry protocol (sentry.py). 200 `{"id": event_id}`, with an id made
  here when the event has none. The project id is 1 to 2**63 - 1.
- `OPTIONS` on each of these: the CORS preflight, so browser code may post.
- `GET /healthz`: status and queue and writer counters (no file paths); 503
  while the writer is not running.

Errors:
- 400 for a body that cannot be read;
- 401 without a valid token, 403 for a token whose scope does not allow
  the endpoint (tokens.py);
- 404 and 405 as JSON;
- 408 when the body does not arrive within `body_timeout` seconds;
- 413 over the body limit;
- 415 for a content type (on /ingest) or content encoding that is not
  supported;
- 429 with `Retry-After` when the queue has no room for the whole request.

A client can never cause a 500. The parse steps have a catch-all that
rejects the NDJSON line, or returns 400 when it happens outside the lines. It logs the
exception's type and stack, without its message or the body, at most once
per minute for each kind (UnexpectedErrors).

Authentication comes before the body: /ingest checks its bearer token and
/store/ its key from the headers or query before reading anything; an
envelope without such a key is read only until its header line (at most
MAX_ENVELOPE_HEADER bytes after decompression) to take the `dsn` key from it.

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

import asyncio
import contextlib
import logging
import re
import time
import traceback
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
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
from hauswacht.collector.settings import DEFAULT_SCRUB_FIELDS
from hauswacht.writer.events import Event
from hauswacht.writer.tokens import SCOPE_INGEST, SCOPE_SENTRY, TokenVerifier, scope_allows

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 5 * 1024 * 1024  # bytes, compressed and decompressed
DEFAULT_BODY_TIMEOUT = 30.0  # seconds to receive a whole request body
MAX_ENVELOPE_HEADER = 16 * 1024  # bytes of an envelope read before it is authenticated
MAX_PROJECT_ID = 2**63 - 1
UNEXPECTED_LOG_INTERVAL = 60.0  # seconds between two logs of the same unexpected error
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
INGEST_CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "retry-after",
}
_JSON_POSITION = re.compile(r"line 1 column (\d+) \(char \d+\)")


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


class UnexpectedErrors:
    """Logs unexpected exceptions of request handling, at most once per kind per interval.

    A kind is the step plus the exception type. The log line has the type and
    the stack (file, line, function) but never the exception's message, which
    may quote the body, and never the body itself.
    """

    MAX_KINDS = 1000

    def __init__(self, interval: float = UNEXPECTED_LOG_INTERVAL) -> None:
        self.interval = interval
        self._logged_at: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def report(self, step: str, exc: BaseException) -> None:
        """Log `exc`, raised while doing `step`, unless this kind was logged in the interval."""
        kind = f"{step}: {type(exc).__qualname__}"
        now = time.monotonic()
        logged_at = self._logged_at.get(kind)
        if logged_at is not None and now - logged_at < self.interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        if logged_at is None and len(self._logged_at) >= self.MAX_KINDS:
            self._logged_at.clear()
            self._suppressed.clear()
        self._logged_at[kind] = now
        suppressed = self._suppressed.pop(kind, 0)
        stack = "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__)))
        logger.error(
            "ingest: unexpected %s while %s; that input was rejected and nothing of it was "
            "stored (%d more of this kind since the last log; logged at most every %.0f s)\n%s",
            type(exc).__qualname__,
            step,
            suppressed,
            self.interval,
            stack.rstrip(),
        )


unexpected_errors = UnexpectedErrors()


# --- the request body ----------------------------------------------------------------


class BodyDecoder:
    """Decompresses a body chunk by chunk, raising RequestFailed (413, 400) as soon as it fails.

    At most `limit` + 1 bytes are held before the limit check, compressed or
    decompressed. A gzip body may have several members (`cat a.gz b.gz`);
    their output is joined, within the same limit.
    """

    def __init__(self, encoding: str, limit: int) -> None:
        self.encoding = encoding
        self.limit = limit
        self.received = 0
        self.produced = 0
        self.parts: list[bytes] = []
        self.head = b""  # deflate: the first two bytes decide between zlib and raw deflate
        self.gzip = encoding in ("gzip", "x-gzip")
        self.decompressor: Any = zlib.decompressobj(16 + zlib.MAX_WBITS) if self.gzip else None

    def feed(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.limit:
            raise _too_large(self.limit)
        if self.encoding == "deflate" and self.decompressor is None:
            self.head += chunk
            if len(self.head) < 2:
                return
            self.decompressor = zlib.decompressobj(_deflate_wbits(self.head))
            chunk, self.head = self.head, b""
        if self.decompressor is None:
            self._add(chunk)
            return
        try:
            self._inflate(chunk)
        except zlib.error as exc:
            raise RequestFailed(400, f"invalid {self.encoding} body: {exc}") from None

    def _add(self, output: bytes) -> None:
        self.produced += len(output)
        if self.produced > self.limit:
            raise _too_large(self.limit, decompressed=self.decompressor is not None)
        if output:
            self.parts.append(output)

    def _inflate(self, data: bytes) -> None:
        while data:
            if self.decompressor.eof:
                if not self.gzip:
                    raise RequestFailed(
                        400, "invalid compressed body: data after the compressed stream"
                    )
                self.decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)  # the next member
            output = self.decompressor.decompress(data, self.limit - self.produced + 1)
            self._add(output)
            if self.decompressor.eof:
                data = self.decompressor.unused_data
            else:
                data = self.decompressor.unconsumed_tail

    def first_line(self, limit: int) -> bytes | None:
        """Return the decompressed bytes before the first newline once they are known.

        Returns None while more bytes are needed, and `limit` + 1 bytes when
        no newline comes within the first `limit`.
        """
        if len(self.parts) > 1:
            self.parts = [b"".join(self.parts)]
        data = self.parts[0] if self.parts else b""
        end = data.find(b"\n", 0, limit + 1)
        if end >= 0:
            return data[:end]
        if len(data) > limit:
            return data[: limit + 1]
        return None

    def finish(self) -> bytes:
        """Check that the compressed stream ended and return the whole decompressed body."""
        if self.encoding == "deflate" and self.decompressor is None and self.head:
            raise RequestFailed(400, "invalid deflate body: shorter than 2 bytes")
        if self.decompressor is not None:
            try:
                tail = self.decompressor.flush(self.limit - self.produced + 1)
            except zlib.error as exc:
                raise RequestFailed(400, f"invalid {self.encoding} body: {exc}") from None
            self._add(tail)
            if not self.decompressor.eof:
                raise RequestFailed(400, f"invalid {self.encoding} body: truncated compressed data")
        return b"".join(self.parts)


async def read_body(
    request: Request,
    limit: int,
    seconds: float = DEFAULT_BODY_TIMEOUT,
    check_head: Callable[[bytes], None] | None = None,
) -> bytes:
    """Read and decompress the body, raising RequestFailed (408, 413, 415, 400) when it fails.

    `check_head`, when given, is called with the first line of the
    decompressed body (see BodyDecoder.first_line, at most
    MAX_ENVELOPE_HEADER + 1 bytes) as soon as that line has arrived, before
    the rest is read. It raises RequestFailed to stop the request there.
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

    decoder = BodyDecoder(encoding, limit)
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.stream():
                decoder.feed(chunk)
                if check_head is not None:
                    line = decoder.first_line(MAX_ENVELOPE_HEADER)
                    if line is not None:
                        check_head(line)
                        check_head = None
    except TimeoutError:
        raise RequestFailed(
            408,
            f"the request body did not arrive within {seconds:g} s; nothing was stored",
            {"Connection": "close"},
        ) from None
    except ClientDisconnect:
        raise RequestFailed(400, "the client closed the connection before the body ended") from None

    body = decoder.finish()
    if check_head is not None:
        check_head(body[: MAX_ENVELOPE_HEADER + 1].partition(b"\n")[0])
    return body


def _deflate_wbits(head: bytes) -> int:
    # RFC 1950 header: compression method 8 and a check value divisible by 31.
    if head[0] & 0x0F == 8 and ((head[0] << 8) | head[1]) % 31 == 0:
        return zlib.MAX_WBITS
    return -zlib.MAX_WBITS


def _too_large(limit: int, decompressed: bool = False) -> RequestFailed:
    what = "decompressed request body" if decompressed else "request body"
    return RequestFailed(
        413, f"{what} is larger than {limit} bytes; send smaller batches or raise --max-body-mb"
    )


# --- parsing native bodies -----------------------------------------------------------


def parse_native(
    body: bytes,
    content_type: str,
    now_ms: int,
    sender: str | None,
    scrub_fields: tuple[str, ...] = DEFAULT_SCRUB_FIELDS,
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
    # every event, so the common case takes no extra steps. Whatever one line
    # raises rejects only that line.
    loads = orjson.loads
    for number, raw in lines:
        try:
            if decoded:
                value = raw
            else:
                try:
                    value = loads(raw)
                except orjson.JSONDecodeError:
                    if not raw.strip():
                        continue  # blank lines are allowed and not counted
                    value = decode_json(raw)  # invalid UTF-8 is replaced, or SchemaError
            events.append(parse_event(value, now_ms, sender, scrub_fields))
            continue
        except SchemaError as exc:
            error = str(exc) if decoded else _JSON_POSITION.sub(r"column \1", str(exc))
        except Exception as exc:
            unexpected_errors.report("checking an ingest event", exc)
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

    def __init__(
        self,
        collector: Collector,
        max_body: int = DEFAULT_MAX_BODY,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
    ) -> None:
        if max_body < 1:
            raise ValueError(f"max_body must be at least 1 byte, got {max_body}")
        if not body_timeout > 0:
            raise ValueError(f"body_timeout must be more than 0 seconds, got {body_timeout}")
        self.collector = collector
        self.max_body = max_body
        self.body_timeout = body_timeout
        self.tokens = TokenVerifier(collector.settings.database)
        self.scrub_fields = tuple(collector.settings.scrub_fields)

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
        found = self.tokens.lookup(token.strip()) if scheme.lower() == "bearer" else None
        if found is None:
            raise RequestFailed(
                401,
                "missing or invalid token: send Authorization: Bearer TOKEN "
                "(create one with `hauswacht token create NAME --scope ingest`)",
                {"WWW-Authenticate": 'Bearer realm="hauswacht"'},
            )
        name, scope = found
        if not scope_allows(scope, SCOPE_INGEST):
            raise RequestFailed(
                403,
                f"token {name!r} has scope {scope!r}, which does not allow POST /ingest; "
                "create a token with `hauswacht token create NAME --scope ingest`",
            )
        return name

    def _sentry_sender(self, key: str) -> str:
        found = self.tokens.lookup(key)
        if found is None:
            raise self._sentry_unauthorized()
        name, scope = found
        if not scope_allows(scope, SCOPE_SENTRY):
            raise RequestFailed(
                403,
                f"token {name!r} has scope {scope!r}, which does not allow the Sentry "
                "endpoints; create a token with `hauswacht token create NAME --scope sentry`",
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
            body = await read_body(request, self.max_body, self.body_timeout)
            try:
                events, rejected, rejected_count = parse_native(
                    body, content_type, _now_ms(), sender, self.scrub_fields
                )
            except RequestFailed:
                raise
            except Exception as exc:
                unexpected_errors.report("reading an ingest body", exc)
                raise RequestFailed(400, "the body could not be read; nothing was stored") from None
            if events:
                self._enqueue(events)
        except RequestFailed as failure:
            headers = {**INGEST_CORS_HEADERS, **failure.headers}
            return _json(failure.status, {"error": failure.message}, headers)

        answer: dict[str, Any] = {"accepted": len(events), "rejected": rejected}
        if rejected_count > len(rejected):
            answer["rejected_total"] = rejected_count
        if rejected_count:
            logger.debug("ingest from %s: %d rejected lines", sender, rejected_count)
        return _json(202 if events else 400, answer, INGEST_CORS_HEADERS)

    async def sentry_envelope(self, request: Request) -> Response:
        return await self._sentry(request, envelope=True)

    async def sentry_store(self, request: Request) -> Response:
        return await self._sentry(request, envelope=False)

    async def _sentry(self, request: Request, *, envelope: bool) -> Response:
        try:
            project_id = request.path_params["project_id"]
            if not 1 <= project_id <= MAX_PROJECT_ID:
                raise RequestFailed(
                    400,
                    f"invalid project id {str(project_id)[:40]} in the URL: expected 1 to "
                    f"{MAX_PROJECT_ID}, the number at the end of the DSN",
                )
            key = (
                auth_key(request.headers.get("x-sentry-auth"))
                or auth_key(request.headers.get("authorization"))
                or request.query_params.get("sentry_key")
            )
            senders: list[str] = []
            if key is not None:
                senders.append(self._sentry_sender(key))
            elif not envelope:
                raise self._sentry_unauthorized()

            def check_header(line: bytes) -> None:
                if len(line) > MAX_ENVELOPE_HEADER:
                    raise self._sentry_unauthorized()
                try:
                    header_key = dsn_key(envelope_header(line))
                except EnvelopeError:
                    header_key = None
                if header_key is None:
                    raise self._sentry_unauthorized()
                senders.append(self._sentry_sender(header_key))

            body = await read_body(
                request, self.max_body, self.body_timeout, None if senders else check_header
            )
            try:
                event_id, events = self._convert_sentry(body, envelope, project_id, senders[0])
            except EnvelopeError as exc:
                raise RequestFailed(400, str(exc)) from None
            except Exception as exc:
                unexpected_errors.report("reading a Sentry body", exc)
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
            "missing or invalid sentry_key (X-Sentry-Auth, ?sentry_key= or the dsn in the first "
            f"{MAX_ENVELOPE_HEADER} bytes of the envelope): use the DSN printed by "
            "`hauswacht token create NAME --scope sentry`",
        )

    def _convert_sentry(
        self, body: bytes, envelope: bool, project_id: int, sender: str
    ) -> tuple[str, list[Event]]:
        now_ms = _now_ms()
        if envelope:
            parsed = parse_envelope(body)
            events, skipped = events_from_envelope(
                parsed, now_ms, project_id, sender, self.scrub_fields
            )
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
            events = [convert_event(payload, now_ms, project_id, sender, self.scrub_fields)]
            event_id = payload.get("event_id")
        if isinstance(event_id, str) and 0 < len(event_id) <= 64:
            return clean_json(event_id), events
        return uuid.uuid4().hex, events

    async def sentry_preflight(self, request: Request) -> Response:
        headers = {
            **SENTRY_CORS_HEADERS,
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": "content-type, content-encoding, x-sentry-auth, "
            "authorization, sentry-trace, baggage",
            "Access-Control-Max-Age": "3600",
        }
        return Response(status_code=200, headers=headers)

    async def ingest_preflight(self, request: Request) -> Response:
        headers = {
            **INGEST_CORS_HEADERS,
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": "content-type, content-encoding, authorization",
            "Access-Control-Max-Age": "3600",
        }
        return Response(status_code=200, headers=headers)

    async def healthz(self, request: Request) -> Response:
        health = _counters(self.collector.health())
        status = 200 if health["running"] else 503
        return _json(status, {"status": "ok" if status == 200 else "writer not running", **health})

    def routes(self) -> list[Route]:
        routes = [
            Route("/ingest", self.ingest, methods=["POST"]),
            Route("/ingest", self.ingest_preflight, methods=["OPTIONS"]),
            Route("/healthz", self.healthz, methods=["GET"]),
        ]
        for suffix in ("envelope/", "envelope", "store/", "store"):
            endpoint = self.sentry_envelope if suffix.startswith("envelope") else self.sentry_store
            path = f"/api/{{project_id:int}}/{suffix}"
            routes.append(Route(path, endpoint, methods=["POST"]))
            routes.append(Route(path, self.sentry_preflight, methods=["OPTIONS"]))
        return routes


def _counters(health: dict[str, Any]) -> dict[str, Any]:
    """Keep the numbers and flags of a health report; drop text such as paths and error texts."""
    result: dict[str, Any] = {}
    for name, value in health.items():
        if isinstance(value, dict):
            result[name] = _counters(value)
        elif value is None or isinstance(value, bool | int | float):
            result[name] = value
    return result


async def _http_error(request: Request, exc: Exception) -> Response:
    """Return 404 and 405 from routing as JSON, like every other response."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        message = f"method {request.method[:16]} is not allowed here"
    else:
        message = (
            "not found: the endpoints are POST /ingest, POST /api/<project_id>/envelope/, "
            "POST /api/<project_id>/store/ and GET /healthz"
        )
    return _json(exc.status_code, {"error": message}, exc.headers)


def create_app(
    collector: Collector,
    max_body: int = DEFAULT_MAX_BODY,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
) -> Starlette:
    """Build the ingest Starlette app; its lifespan starts `collector` and drains it at shutdown."""
    server = IngestServer(collector, max_body, body_timeout)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await collector.start()
        server.tokens.refresh()
        logger.info(
            "ingest server ready: writing to %s, body limit %d bytes, body timeout %g s",
            collector.settings.database,
            max_body,
            body_timeout,
        )
        try:
            yield
        finally:
            server.tokens.close()
            await collector.stop()

    handlers = {404: _http_error, 405: _http_error}
    app = Starlette(routes=server.routes(), lifespan=lifespan, exception_handlers=handlers)
    app.state.ingest = server
    return app
