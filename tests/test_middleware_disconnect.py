"""Client disconnects, cancellation and BaseException in HauswachtMiddleware, with in-process ASGI.

A scripted server side (its receive() returns a fixed list of messages, then
http.disconnect again and again, as uvicorn does) drives the middleware, and
the events land in a real SQLite file. The disconnect-watch delay is shortened
so the tests stay quick; the uvicorn tests in test_middleware_server.py use
the real delay.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.responses import PlainTextResponse

from hauswacht import HauswachtMiddleware
from hauswacht.collector import middleware as middleware_module

WATCH_DELAY = 0.02  # seconds; the apps below sleep APP_DELAY, well past it
APP_DELAY = 0.2


class Abort(BaseException):
    pass


def db_rows(db: Path, sql: str) -> list[sqlite3.Row]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def http_scope(path: str = "/report") -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("192.0.2.4", 5000),
        "server": ("127.0.0.1", 8000),
    }


class ScriptedServer:
    """The server side of one request: receive() yields `messages`, then waits or disconnects.

    With `disconnect_after_response`, receive() blocks after the messages
    until the response is complete, as with a client that stays connected.
    Otherwise it returns http.disconnect at once and on every later call.
    """

    def __init__(self, messages: list[dict], disconnect_after_response: bool = False) -> None:
        self.messages = list(messages)
        self.disconnect_after_response = disconnect_after_response
        self.response_complete = asyncio.Event()
        self.sent: list[dict] = []
        self.receive_calls = 0

    async def receive(self) -> dict:
        self.receive_calls += 1
        if self.messages:
            return self.messages.pop(0)
        if self.disconnect_after_response:
            await self.response_complete.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.response_complete.set()


def run(middleware: HauswachtMiddleware, server: ScriptedServer, path: str = "/report") -> None:
    async def scenario() -> None:
        try:
            await middleware(http_scope(path), server.receive, server.send)
        finally:
            await middleware.collector.stop()
            # Nothing the middleware started may outlive the request.
            current = asyncio.current_task()
            assert [task for task in asyncio.all_tasks() if task is not current] == []

    asyncio.run(scenario())


@pytest.fixture(autouse=True)
def short_watch_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(middleware_module, "DISCONNECT_WATCH_DELAY", WATCH_DELAY)


def test_disconnect_seen_without_app_receive(db_path: Path) -> None:
    async def never_receives(scope: dict, receive: Callable, send: Callable) -> None:
        await asyncio.sleep(APP_DELAY)
        await PlainTextResponse("too late")(scope, receive, send)

    server = ScriptedServer([{"type": "http.request", "body": b"", "more_body": False}])
    run(HauswachtMiddleware(never_receives, database=db_path), server)

    (request,) = db_rows(db_path, "SELECT * FROM requests")
    assert request["status"] == 499
    assert request["response_bytes"] == 0
    assert request["ttfb_ms"] is None
    assert server.receive_calls == 2  # the body, then http.disconnect


def test_watched_messages_reach_app_in_order(db_path: Path) -> None:
    seen: list[tuple[str, bytes]] = []

    async def reads_late(scope: dict, receive: Callable, send: Callable) -> None:
        await asyncio.sleep(APP_DELAY)
        for _ in range(4):
            message = await receive()
            seen.append((message["type"], message.get("body", b"")))
        await PlainTextResponse("read")(scope, receive, send)

    server = ScriptedServer(
        [
            {"type": "http.request", "body": b"first", "more_body": True},
            {"type": "http.request", "body": b"second", "more_body": False},
        ]
    )
    run(HauswachtMiddleware(reads_late, database=db_path), server)

    assert seen == [
        ("http.request", b"first"),
        ("http.request", b"second"),
        ("http.disconnect", b""),
        ("http.disconnect", b""),  # a later call goes to the server, which repeats it
    ]
    (request,) = db_rows(db_path, "SELECT * FROM requests")
    assert request["status"] == 499


def test_app_waiting_in_receive_gets_watched_message(db_path: Path) -> None:
    seen: list[str] = []

    async def reads_body_then_waits(scope: dict, receive: Callable, send: Callable) -> None:
        await receive()  # the body
        await asyncio.sleep(APP_DELAY)
        seen.append((await receive())["type"])
        await PlainTextResponse("late")(scope, receive, send)

    server = ScriptedServer([{"type": "http.request", "body": b"x", "more_body": False}])
    run(HauswachtMiddleware(reads_body_then_waits, database=db_path), server)

    assert seen == ["http.disconnect"]
    (request,) = db_rows(db_path, "SELECT * FROM requests")
    assert request["status"] == 499


class SlowDisconnectServer(ScriptedServer):
    """A server whose first receive() takes APP_DELAY and then reports the disconnect."""

    def __init__(self) -> None:
        super().__init__([])
        self.concurrent_calls = 0
        self.waiting = 0

    async def receive(self) -> dict:
        self.receive_calls += 1
        if self.waiting:
            self.concurrent_calls += 1
        self.waiting += 1
        try:
            await asyncio.sleep(APP_DELAY)
        finally:
            self.waiting -= 1
        return {"type": "http.disconnect"}


def test_app_inside_receive_is_not_raced(db_path: Path) -> None:
    async def waits_in_receive(scope: dict, receive: Callable, send: Callable) -> None:
        assert (await receive())["type"] == "http.disconnect"
        await PlainTextResponse("late")(scope, receive, send)

    server = SlowDisconnectServer()
    run(HauswachtMiddleware(waits_in_receive, database=db_path), server)

    assert server.concurrent_calls == 0
    assert server.receive_calls == 1
    (request,) = db_rows(db_path, "SELECT * FROM requests")
    assert request["status"] == 499


def test_slow_response_to_connected_client_keeps_status(db_path: Path) -> None:
    async def slow_ok(scope: dict, receive: Callable, send: Callable) -> None:
        await asyncio.sleep(APP_DELAY)
        await PlainTextResponse("ok", status_code=201)(scope, receive, send)

    server = ScriptedServer(
        [{"type": "http.request", "body": b"", "more_body": False}],
        disconnect_after_response=True,
    )
    run(HauswachtMiddleware(slow_ok, database=db_path), server)

    (request,) = db_rows(db_path, "SELECT * FROM requests")
    assert request["status"] == 201
    assert request["response_bytes"] == 2
    assert [message["type"] for message in server.sent] == [
        "http.response.start",
        "http.response.body",
    ]


def test_fast_response_starts_no_watcher(db_path: Path) -> None:
    async def fast_ok(scope: dict, receive: Callable, send: Callable) -> None:
        await PlainTextResponse("ok")(scope, receive, send)
        await asyncio.sleep(APP_DELAY)  # after the response: no watching needed

    server = ScriptedServer([{"type": "http.request", "body": b"", "more_body": False}])
    run(HauswachtMiddleware(fast_ok, database=db_path), server)

    (request,) = db_rows(db_path, "SELECT * FROM requests")
    assert request["status"] == 200
    assert server.receive_calls == 0


def test_cancelled_request_without_response_is_500(db_path: Path) -> None:
    async def cancelled(scope: dict, receive: Callable, send: Callable) -> None:
        raise asyncio.CancelledError("graceful shutdown timed out")

    server = ScriptedServer([], disconnect_after_response=True)
    with pytest.raises(asyncio.CancelledError):
        run(HauswachtMiddleware(cancelled, database=db_path), server)

    (request,) = db_rows(db_path, "SELECT * FROM requests")
    assert request["status"] == 500
    assert db_rows(db_path, "SELECT * FROM errors") == []


def test_base_exception_recorded_as_500_error(db_path: Path) -> None:
    raised = Abort("stop right here")

    async def aborts(scope: dict, receive: Callable, send: Callable) -> None:
        raise raised

    server = ScriptedServer([], disconnect_after_response=True)
    with pytest.raises(Abort) as caught:
        run(HauswachtMiddleware(aborts, database=db_path), server)
    assert caught.value is raised

    (request,) = db_rows(db_path, "SELECT * FROM requests")
    assert request["status"] == 500
    (error,) = db_rows(db_path, "SELECT * FROM errors")
    assert error["type"] == "tests.test_middleware_disconnect.Abort"
    assert error["message"] == "stop right here"
    assert error["trace_id"] == request["trace_id"]
    assert json.loads(error["data"])["request"]["path"] == "/report"
