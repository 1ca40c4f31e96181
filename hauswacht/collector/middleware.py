"""HauswachtMiddleware: a pure ASGI middleware that records one RequestEvent per HTTP request.

    app.add_middleware(HauswachtMiddleware, database="hauswacht-data/events.db")

Scopes:
- lifespan: the writer starts when `lifespan.startup` arrives, before the
  app's own startup code runs, and is drained and closed before
  `lifespan.shutdown.complete` reaches the server. If the database cannot be
  used, or a setting is bad, the middleware sends `lifespan.startup.failed`
  with a one-line message, and uvicorn logs it and exits.
- http: recorded (unless the path is in skip_paths). Without lifespan events
  (`uvicorn --lifespan off`) the first request starts the writer, and on a
  graceful stop the writer drains when `asyncio.run()` cancels its task.
  uvicorn re-raises SIGTERM before that happens, so the first request also
  defers that re-raise to exit time (see `defer_sigterm_until_exit`).
- websocket and anything else: passed through untouched.

Settings errors are reported at startup, not when the middleware is
constructed: Starlette builds its middleware stack inside the first ASGI call
(the lifespan scope), and uvicorn's default `--lifespan auto` treats an
exception there as "lifespan unsupported" and goes on serving. A bad setting
makes every HTTP request raise SettingsError when there is no lifespan.

What a request event holds:
- ts: epoch ms when the request arrived; duration_ms: until the last body
  chunk (`more_body` false) was sent, so background tasks are excluded;
  ttfb_ms: until the app sent `http.response.start`.
- route: the template of the matched route (see routes.py) with the
  deployment root_path in front, or UNMATCHED_ROUTE. A 405 keeps its
  template because Starlette records the route that matched only the path.
- status: from `http.response.start`. It is 499 when the client
  disconnected before that, even if the app then sent a response, which
  the server discards. Otherwise it is 500 when the app raised, was
  cancelled or returned without starting a response, because uvicorn
  sends 500 then.
  An exception that is not an Exception subclass (other than
  CancelledError, KeyboardInterrupt, SystemExit and GeneratorExit) is also
  recorded as an error event and re-raised unchanged.
- response_bytes: the body bytes the app sent (0 for HEAD, whose body the
  server discards).
- client: the peer address, or the right-most untrusted hop of
  X-Forwarded-For (else Forwarded) when the peer is a trusted proxy.
- trace_id: the trace-id of a valid `traceparent`, else a sanitised
  `X-Request-ID`, else 32 random hex digits. It is sent back as
  `X-Request-ID` unless the app set that header itself.

Disconnects: the app's own receive() calls show `http.disconnect`, but many
handlers never call receive(). So a request that has not started its
response DISCONNECT_WATCH_DELAY seconds after it arrived gets a watcher task
that calls the server's receive() until it sees `http.disconnect`. Messages
it reads are buffered and handed to the app's receive() in order, so the app
sees the same stream as without the watcher. The middleware keeps a set of
its requests in flight, and one timer per event loop sweeps that set every
DISCONNECT_WATCH_DELAY / 2 seconds while it is not empty, so a request is
watched between 1 and 1.5 times the delay after it arrived. A request costs
one set insert and one removal; a timer per request would cost more. A
client that leaves and gets its response before it is watched is recorded
with the status the app sent. The watcher relies on the server answering
later receive() calls with `http.disconnect` again, as uvicorn does.

Per-request state lives in a `_RequestRecorder` created for each request,
never on the middleware. The request path does one pass over the headers, no
regular expressions and no I/O; the event is handed over with a non-blocking
queue put.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

from hauswacht.collector.collector import Collector, defer_sigterm_until_exit
from hauswacht.collector.errors import (
    build_error_event,
    is_captured,
    mark_captured,
    scrub_headers,
    scrub_query,
)
from hauswacht.collector.headers import ClientResolver, trace_id_from_headers
from hauswacht.collector.routes import RouteTemplates
from hauswacht.collector.settings import Settings, SettingsError
from hauswacht.writer.events import UNMATCHED_ROUTE, RequestEvent
from hauswacht.writer.schema import DatabaseError

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_HEADER = b"x-request-id"
MAX_USER_AGENT = 512
# Seconds without a response start before a request is watched for a client
# disconnect. Long enough that most requests never create a watcher task.
DISCONNECT_WATCH_DELAY = 0.5

# Exceptions that stop a request without being an error of the application.
_NOT_ERRORS = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)

# Request headers read on the request path, by ASGI (lower-case) name.
_USER_AGENT, _TRACEPARENT, _REQUEST_ID, _FORWARDED_FOR, _FORWARDED = range(5)
_RECORDED_HEADERS = {
    b"user-agent": _USER_AGENT,
    b"traceparent": _TRACEPARENT,
    b"x-request-id": _REQUEST_ID,
    b"x-forwarded-for": _FORWARDED_FOR,
    b"forwarded": _FORWARDED,
}

_current_request: ContextVar[_RequestRecorder | None] = ContextVar(
    "hauswacht_current_request", default=None
)


def current_request() -> _RequestRecorder | None:
    """Return the recorder of the HTTP request this code runs in, or None."""
    return _current_request.get()


class _StartupAborted(Exception):
    """Raised into the app's lifespan receive() once the middleware sent lifespan.startup.failed."""


class HauswachtMiddleware:
    def __init__(self, app: ASGIApp, **options: Any) -> None:
        """Wrap `app`; `options` are the settings (see settings.py), checked at startup."""
        self.app = app
        self.settings_error: SettingsError | None = None
        try:
            settings = Settings.from_options(options)
        except SettingsError as exc:
            # Not logged here: the server logs lifespan.startup.failed, and
            # without lifespan every request raises it.
            self.settings_error = exc
            settings = Settings()
        self.settings = settings
        self.collector = Collector(settings) if self.settings_error is None else None
        self.routes = RouteTemplates()
        self.clients = ClientResolver(settings)
        self._skip_exact = settings.skip_exact
        self._skip_prefixes = settings.skip_prefixes
        self._put = self.collector.put if self.collector is not None else None
        self._start_failure_logged = False
        # Requests in flight on `_sweep_loop`, for the disconnect sweep (see
        # the module docstring). Each request adds and removes only itself.
        self._in_flight: set[_RequestRecorder] = set()
        self._sweep_loop: asyncio.AbstractEventLoop | None = None
        self._sweep_timer: asyncio.TimerHandle | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope_type = scope["type"]
        if scope_type != "http":
            if scope_type == "lifespan":
                await self._lifespan(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return

        collector = self.collector
        if collector is None:
            raise self.settings_error  # type: ignore[misc]
        if not collector.ready:
            await self._start_lazily(collector)

        path = scope["path"]
        if path in self._skip_exact or (
            self._skip_prefixes and path.startswith(self._skip_prefixes)
        ):
            await self.app(scope, receive, send)
            return

        recorder = _RequestRecorder(self, scope, receive, send)
        in_flight = self._in_flight
        if self._sweep_timer is None or self._sweep_loop is not asyncio.get_running_loop():
            in_flight = self._start_sweeping()
        in_flight.add(recorder)
        token = _current_request.set(recorder)
        try:
            await self.app(scope, recorder.receive, recorder.send)
        except BaseException as exc:
            if not isinstance(exc, _NOT_ERRORS):
                recorder.record_error(exc)
            raise
        finally:
            _current_request.reset(token)
            in_flight.discard(recorder)
            recorder.stop_watching()
            try:
                recorder.finish()
            except Exception:
                # A bug here must not replace the app's response or exception.
                _log_recording_failure()

    def _start_sweeping(self) -> set[_RequestRecorder]:
        loop = asyncio.get_running_loop()
        if self._sweep_loop is not loop:
            # A new event loop (the old one ended, as in tests that call
            # asyncio.run() again): requests of the old loop are not swept.
            self._sweep_loop = loop
            self._in_flight = set()
        self._sweep_timer = loop.call_later(DISCONNECT_WATCH_DELAY / 2, self._sweep)
        return self._in_flight

    def _sweep(self) -> None:
        """Start watching requests that have waited DISCONNECT_WATCH_DELAY for a response."""
        self._sweep_timer = None
        if asyncio.get_running_loop() is not self._sweep_loop:
            return  # a timer of a loop this middleware no longer sweeps
        if not self._in_flight:
            return  # the next request starts the timer again
        delay = DISCONNECT_WATCH_DELAY
        now = time.perf_counter()
        for recorder in list(self._in_flight):
            waiting = recorder.status is None and recorder.watcher is None
            if waiting and now - recorder.start >= delay:
                recorder.start_watching()
        self._sweep_timer = self._sweep_loop.call_later(delay / 2, self._sweep)

    async def _start_lazily(self, collector: Collector) -> None:
        # The app keeps serving when the database cannot be used. The
        # collector then drops and counts every event, and logs the drops
        # (rate-limited) with the path and the reason.
        try:
            await collector.start()
        except DatabaseError as exc:
            if not self._start_failure_logged:
                self._start_failure_logged = True
                logger.error(
                    "Hauswacht failed to start, so the app keeps serving without recording: %s",
                    exc,
                )
            return
        defer_sigterm_until_exit()

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        collector = self.collector
        settings_error = self.settings_error

        async def lifespan_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if settings_error is not None:
                    await send({"type": "lifespan.startup.failed", "message": str(settings_error)})
                    raise _StartupAborted()
                try:
                    await collector.start()
                except DatabaseError as exc:
                    message_text = f"Hauswacht failed to start: {exc}"
                    await send({"type": "lifespan.startup.failed", "message": message_text})
                    raise _StartupAborted() from None
            return message

        async def lifespan_send(message: Message) -> None:
            if collector is not None and message["type"] in (
                "lifespan.shutdown.complete",
                "lifespan.shutdown.failed",
            ):
                await collector.stop()
            await send(message)

        try:
            await self.app(scope, lifespan_receive, lifespan_send)
        except _StartupAborted:
            return
        except BaseException:
            # The app's lifespan failed: close the writer, whose aiosqlite
            # thread would otherwise keep the process from exiting.
            if collector is not None:
                await collector.stop()
            raise


class _RequestRecorder:
    """State of one HTTP request, from its arrival until its event is queued."""

    __slots__ = (
        "_receive",
        "_send",
        "arrived",
        "body_bytes",
        "buffer",
        "count_body",
        "disconnected",
        "end",
        "entry_app",
        "forwarded",
        "forwarded_for",
        "method",
        "middleware",
        "path",
        "receiving",
        "root_path",
        "scope",
        "start",
        "status",
        "trace_header",
        "trace_id",
        "ts",
        "ttfb",
        "user_agent",
        "watcher",
    )

    def __init__(self, middleware: HauswachtMiddleware, scope: Scope, receive: Receive, send: Send):
        self.ts = time.time_ns() // 1_000_000
        self.start = time.perf_counter()
        self.middleware = middleware
        self.scope = scope
        self._receive = receive
        self._send = send
        # Routers rewrite scope["app"] and scope["root_path"] as they descend,
        # so keep the values seen on entry.
        self.entry_app = scope.get("app") or middleware.app
        self.root_path = scope.get("root_path", "")
        self.method = scope["method"]
        self.path = scope["path"]
        self.count_body = self.method != "HEAD"
        self.status: int | None = None
        self.ttfb: float | None = None
        self.end: float | None = None
        self.body_bytes = 0
        self.disconnected = False
        # Disconnect watching (see the module docstring): the watcher task,
        # and the messages it read that the app has not.
        self.watcher: asyncio.Task | None = None
        self.buffer: deque[Message] = deque()
        self.arrived: asyncio.Event | None = None
        self.receiving = False

        user_agent = traceparent = request_id = forwarded_for = forwarded = None
        recorded = _RECORDED_HEADERS
        for name, value in scope["headers"]:
            kind = recorded.get(name)
            if kind is None:
                continue
            if kind == _USER_AGENT:
                user_agent = value
            elif kind == _TRACEPARENT:
                traceparent = value
            elif kind == _REQUEST_ID:
                request_id = value
            elif kind == _FORWARDED_FOR:
                forwarded_for = value if forwarded_for is None else forwarded_for + b"," + value
            else:
                forwarded = value if forwarded is None else forwarded + b"," + value

        self.user_agent = (
            user_agent.decode("latin-1")[:MAX_USER_AGENT] if user_agent is not None else None
        )
        self.forwarded_for = forwarded_for
        self.forwarded = forwarded
        self.trace_id = trace_id_from_headers(traceparent, request_id)
        self.trace_header = self.trace_id.encode("ascii")

    async def receive(self) -> Message:
        if self.watcher is not None:
            return await self._receive_watched()
        self.receiving = True
        try:
            message = await self._receive()
        finally:
            self.receiving = False
        if message["type"] == "http.disconnect" and self.status is None:
            self.disconnected = True
        return message

    async def _receive_watched(self) -> Message:
        buffer = self.buffer
        while not buffer:
            if self.watcher.done():
                # The watcher stopped at http.disconnect, which the app already
                # took from the buffer. uvicorn returns http.disconnect again.
                return await self._receive()
            self.arrived.clear()
            await self.arrived.wait()
        return buffer.popleft()

    def start_watching(self) -> None:
        """Start the watcher task, unless the app is inside the server's receive() right now.

        That app receives a disconnect itself, and a second concurrent
        receive() would race with it, so the next sweep tries again.
        """
        if self.receiving:
            return
        self.arrived = asyncio.Event()
        self.watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        receive = self._receive
        while True:
            try:
                message = await receive()
            except Exception:
                # The app's next receive() meets the same server error itself.
                logger.debug("Hauswacht stopped watching a request for disconnects", exc_info=True)
                self.arrived.set()
                return
            self.buffer.append(message)
            self.arrived.set()
            if message["type"] == "http.disconnect":
                if self.status is None:
                    self.disconnected = True
                return

    def stop_watching(self) -> None:
        """Cancel the watcher task; runs when the app returned or raised."""
        if self.watcher is not None and not self.watcher.done():
            self.watcher.cancel()

    async def send(self, message: Message) -> None:
        message_type = message["type"]
        if message_type == "http.response.body":
            if self.count_body:
                self.body_bytes += len(message.get("body", b""))
            if not message.get("more_body", False):
                await self._send(message)
                self.end = time.perf_counter()
                return
        elif message_type == "http.response.start":
            self.ttfb = time.perf_counter()
            self.status = message["status"]
            message = self._with_request_id(message)
        await self._send(message)

    def _with_request_id(self, message: Message) -> Message:
        headers = message.get("headers", ())
        for name, _value in headers:
            if name.lower() == REQUEST_ID_HEADER:
                return message
        # A new dict and list: the app may reuse its own header list.
        return {**message, "headers": [*headers, (REQUEST_ID_HEADER, self.trace_header)]}

    def client(self) -> str | None:
        peer = self.scope.get("client")
        host = peer[0] if peer else None
        return self.middleware.clients.resolve(host, self.forwarded_for, self.forwarded)

    def route(self) -> str:
        template = self.middleware.routes.template(self.scope, self.entry_app, self.root_path)
        if not self.root_path or template == UNMATCHED_ROUTE:
            return template
        return self.root_path + template

    def request_context(self) -> dict[str, Any]:
        """Describe the request for an error event, with secrets scrubbed."""
        scrub_fields = self.middleware.settings.scrub_fields
        query = self.scope.get("query_string", b"").decode("latin-1")
        return {
            "method": self.method,
            "path": self.path[: self.middleware.settings.max_path_length],
            "route": self.route(),
            "query": scrub_query(query, scrub_fields),
            "headers": scrub_headers(self.scope["headers"], scrub_fields),
            "client": self.client(),
        }

    def record_error(self, exc: BaseException) -> None:
        """Queue an ErrorEvent for an exception the app raised, unless it was captured already."""
        if is_captured(exc):
            return
        settings = self.middleware.settings
        try:
            event = build_error_event(
                exc,
                ts=time.time_ns() // 1_000_000,
                trace_id=self.trace_id,
                request=self.request_context(),
                tags={},
                release=settings.release,
                environment=settings.environment,
            )
        except Exception:
            _log_recording_failure()
            return
        mark_captured(exc)
        self.middleware._put(event)

    def finish(self) -> None:
        """Queue the RequestEvent; runs once, after the app returned or raised."""
        end = self.end if self.end is not None else time.perf_counter()
        start = self.start
        ttfb = self.ttfb
        body_bytes = self.body_bytes
        if self.disconnected:
            # The server discards a response sent after the client left.
            status = 499
            ttfb = None
            body_bytes = 0
        elif self.status is not None:
            status = self.status
        else:
            status = 500

        settings = self.middleware.settings
        path = self.path
        if settings.record_query:
            query = self.scope.get("query_string", b"")
            if query:
                path = f"{path}?{scrub_query(query.decode('latin-1'), settings.scrub_fields)}"
        if len(path) > settings.max_path_length:
            path = path[: settings.max_path_length]

        event = RequestEvent(
            self.ts,
            self.method,
            self.route(),
            path,
            status,
            (end - start) * 1000.0,
            (ttfb - start) * 1000.0 if ttfb is not None else None,
            body_bytes,
            self.client(),
            self.user_agent,
            self.trace_id,
        )
        self.middleware._put(event)


_recording_failures = 0


def _log_recording_failure() -> None:
    # Logged with its traceback for the first few, then every 1000th, so a
    # bug that hits every request cannot flood the log.
    global _recording_failures
    _recording_failures += 1
    if _recording_failures <= 3 or _recording_failures % 1000 == 0:
        logger.exception("Hauswacht failed to record a request (failure %d)", _recording_failures)
