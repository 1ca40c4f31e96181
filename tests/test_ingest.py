"""POST /ingest on a real `hauswacht serve` subprocess: schema, auth, limits, encodings, health.

One server runs for the whole module, because starting one costs about a
second. Each test uses its own trace ids or names and counts only its own rows.
"""

from __future__ import annotations

import gzip
import json
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from hauswacht.writer.events import UNMATCHED_ROUTE
from hauswacht.writer.tokens import create_token, revoke_token
from tests.helpers.ingest_server import IngestServer, ingest_server, query, stop

NDJSON = {"Content-Type": "application/x-ndjson"}
BASE_TS = 1_780_000_000_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestServer]:
    with ingest_server(tmp_path_factory.mktemp("ingest"), "--max-body-mb", "0.25") as running:
        yield running


def request_event(trace: str, **fields: object) -> dict[str, object]:
    event: dict[str, object] = {
        "type": "request",
        "timestamp": BASE_TS,
        "http.request.method": "GET",
        "http.route": "/api/tours/{tour_id}",
        "url.path": "/api/tours/17",
        "http.response.status_code": 200,
        "duration_ms": 12.5,
        "trace_id": trace,
    }
    event.update(fields)
    return event


def ndjson(*lines: object) -> bytes:
    return b"\n".join(line if isinstance(line, bytes) else orjson.dumps(line) for line in lines)


def post(server: IngestServer, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/ingest", content=body, headers={**server.bearer(), **NDJSON, **headers}
    )


def wait_rows(server: IngestServer, sql: str, *params: object, expected: int) -> list[tuple]:
    import time

    deadline = time.monotonic() + 10
    rows: list[tuple] = []
    while time.monotonic() < deadline:
        rows = query(server.db, sql, *params)
        if len(rows) >= expected:
            time.sleep(0.25)
            return query(server.db, sql, *params)
        time.sleep(0.05)
    return rows


def test_mixed_batch_stores_valid_lines(server: IngestServer) -> None:
    trace = uuid.uuid4().hex
    body = ndjson(
        request_event(trace),
        b"{not json",
        request_event(trace, **{"http.response.status_code": 700}),
        b"",
        {"type": "metric", "name": f"jobs.{trace}", "value": 3, "unit": "jobs", "tags": {"q": 1}},
        request_event(trace, **{"http.request.method": "post", "http.route": None}),
        {"type": "request", "http.request.method": "GET"},
        request_event(trace, colour="blue"),
    )

    response = post(server, body)

    assert response.status_code == 202
    answer = response.json()
    assert answer["accepted"] == 3
    assert [item["line"] for item in answer["rejected"]] == [2, 3, 7, 8]
    assert "invalid JSON" in answer["rejected"][0]["error"]
    assert "http.response.status_code 700" in answer["rejected"][1]["error"]
    assert "missing field 'url.path'" in answer["rejected"][2]["error"]
    assert "unknown field 'colour'" in answer["rejected"][3]["error"]

    rows = wait_rows(
        server,
        "SELECT ts, method, route, path, status, duration_ms FROM requests WHERE trace_id = ?"
        " ORDER BY id",
        trace,
        expected=2,
    )
    assert rows == [
        (BASE_TS, "GET", "/api/tours/{tour_id}", "/api/tours/17", 200, 12.5),
        (BASE_TS, "POST", UNMATCHED_ROUTE, "/api/tours/17", 200, 12.5),
    ]
    metrics = query(
        server.db, "SELECT value, unit, tags FROM metrics WHERE name = ?", f"jobs.{trace}"
    )
    assert metrics == [(3.0, "jobs", '{"q":1}')]


def test_json_array_numbers_elements(server: IngestServer) -> None:
    trace = uuid.uuid4().hex
    body = orjson.dumps(
        [request_event(trace), 5, request_event(trace, timestamp="2026-05-28T20:26:40Z")]
    )

    response = post(server, body, **{"Content-Type": "application/json; charset=utf-8"})

    assert response.status_code == 202
    assert response.json() == {
        "accepted": 2,
        "rejected": [{"line": 2, "error": "expected a JSON object, got a number"}],
    }
    rows = wait_rows(
        server, "SELECT ts FROM requests WHERE trace_id = ? ORDER BY ts", trace, expected=2
    )
    assert rows == [(BASE_TS,), (1_780_000_000_000,)]


def test_all_lines_rejected_is_400(server: IngestServer) -> None:
    response = post(server, ndjson({"type": "nope"}, b"[]"))

    assert response.status_code == 400
    assert response.json()["accepted"] == 0
    assert response.json()["rejected"][0] == {
        "line": 1,
        "error": "invalid type 'nope': expected 'request', 'error' or 'metric'",
    }


def test_error_event_fields_and_scrubbing(server: IngestServer) -> None:
    trace = uuid.uuid4().hex
    event = {
        "type": "error",
        "trace_id": trace,
        "exception.type": "dispatch.RoutingError",
        "exception.message": "route 42 failed",
        "level": "warning",
        "release": "2.3.1",
        "environment": "staging",
        "tags": {"tenant": "north", "api_token": "s3cr3t"},
        "context": {"tour": 42, "password": "hunter2", "nested": {"secret_key": "x"}},
        "http.request.method": "post",
        "url.path": "/api/plan",
    }

    assert post(server, ndjson(event)).status_code == 202

    rows = wait_rows(
        server,
        "SELECT type, message, level, data FROM errors WHERE trace_id = ?",
        trace,
        expected=1,
    )
    ((error_type, message, level, data_text),) = rows
    data = json.loads(data_text)
    assert (error_type, message, level) == ("dispatch.RoutingError", "route 42 failed", "warning")
    assert data["release"] == "2.3.1"
    assert data["environment"] == "staging"
    assert data["tags"] == {"tenant": "north", "api_token": "[Filtered]"}
    assert data["context"] == {
        "tour": 42,
        "password": "[Filtered]",
        "nested": {"secret_key": "[Filtered]"},
    }
    assert data["request"]["method"] == "POST"
    assert data["request"]["path"] == "/api/plan"
    assert data["sender"] == "test-client"
    assert "s3cr3t" not in data_text
    assert "hunter2" not in data_text


def test_stacktrace_text_becomes_frames(server: IngestServer, shared_data: Path) -> None:
    trace = uuid.uuid4().hex
    text = (shared_data / "tracebacks/pygments/error_locations.pytb").read_text()
    event = {"type": "error", "trace_id": trace, "exception.stacktrace": text}

    assert post(server, ndjson(event)).status_code == 202

    rows = wait_rows(
        server, "SELECT type, message, data FROM errors WHERE trace_id = ?", trace, expected=1
    )
    ((error_type, message, data_text),) = rows
    assert (error_type, message) == ("ZeroDivisionError", "division by zero")
    frames = json.loads(data_text)["exceptions"][0]["frames"]
    assert [frame["function"] for frame in frames] == [
        "<module>", "in_Python_3_11", "error_locations", "are_provided", "in_tracebacks",
    ]  # fmt: skip
    assert frames[-1]["line"] == "return 1/0"
    assert frames[-1]["lineno"] == 11


def test_invalid_utf8_and_lone_surrogates_replaced(server: IngestServer) -> None:
    trace = uuid.uuid4().hex
    raw_bytes = b'{"type":"error","trace_id":"' + trace.encode() + b'","message":"bad \xff byte"}'
    escaped = b'{"type":"error","trace_id":"' + trace.encode() + b'","message":"lone \\ud800 half"}'

    response = post(server, ndjson(raw_bytes, escaped))

    assert response.status_code == 202
    assert response.json()["accepted"] == 2
    rows = wait_rows(
        server, "SELECT message FROM errors WHERE trace_id = ? ORDER BY id", trace, expected=2
    )
    assert rows == [("bad \ufffd byte",), ("lone \ufffd half",)]


def test_gzip_and_deflate_bodies(server: IngestServer) -> None:
    trace = uuid.uuid4().hex
    body = ndjson(request_event(trace), request_event(trace))
    raw_deflate = zlib.compressobj(wbits=-15)
    raw = raw_deflate.compress(body) + raw_deflate.flush()

    for encoded, encoding in (
        (gzip.compress(body), "gzip"),
        (zlib.compress(body), "deflate"),
        (raw, "deflate"),
    ):
        response = post(server, encoded, **{"Content-Encoding": encoding})
        assert response.status_code == 202, response.text
        assert response.json() == {"accepted": 2, "rejected": []}

    assert (
        len(wait_rows(server, "SELECT id FROM requests WHERE trace_id = ?", trace, expected=6)) == 6
    )


def test_truncated_gzip_is_400(server: IngestServer) -> None:
    trace = uuid.uuid4().hex
    compressed = gzip.compress(ndjson(request_event(trace)))

    response = post(server, compressed[:-6], **{"Content-Encoding": "gzip"})

    assert response.status_code == 400
    assert "truncated" in response.json()["error"]


def test_missing_or_wrong_token_is_401(server: IngestServer) -> None:
    body = ndjson(request_event("x"))
    for headers in ({}, {"Authorization": "Bearer 00000000000000000000000000000000"},
                    {"Authorization": f"Basic {server.token}"}):  # fmt: skip
        response = httpx.post(f"{server.url}/ingest", content=body, headers={**NDJSON, **headers})
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer realm="hauswacht"'
        assert "hauswacht token create" in response.json()["error"]


def test_revoked_token_stops_working(server: IngestServer) -> None:
    token = create_token(server.db, "short-lived")
    headers = {"Authorization": f"Bearer {token}", **NDJSON}
    body = ndjson(request_event(uuid.uuid4().hex))
    assert httpx.post(f"{server.url}/ingest", content=body, headers=headers).status_code == 202

    revoke_token(server.db, "short-lived")

    import time

    deadline = time.monotonic() + 5
    status = 202
    while time.monotonic() < deadline and status != 401:
        status = httpx.post(f"{server.url}/ingest", content=body, headers=headers).status_code
        time.sleep(0.1)
    assert status == 401


def test_other_content_type_is_415(server: IngestServer) -> None:
    response = post(server, b"a=1", **{"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415
    assert "application/x-ndjson" in response.json()["error"]

    response = post(server, b"{}", **{"Content-Encoding": "br"})
    assert response.status_code == 415


def test_body_over_limit_is_413(server: IngestServer) -> None:
    trace = uuid.uuid4().hex
    line = orjson.dumps(request_event(trace, **{"url.path": "/" + "x" * 1000}))
    body = b"\n".join([line] * 300)  # about 330 KB, over the 0.25 MiB limit

    def chunks() -> Iterator[bytes]:
        # Streamed without Content-Length, so the limit must hold while reading.
        for start in range(0, len(body), 16_384):
            yield body[start : start + 16_384]

    assert post(server, body).status_code == 413
    response = httpx.post(
        f"{server.url}/ingest", content=chunks(), headers={**server.bearer(), **NDJSON}
    )
    assert response.status_code == 413
    assert "larger than 262144 bytes" in response.json()["error"]
    bomb = gzip.compress(b"\n" * (20 * 1024 * 1024))  # 20 MiB of newlines, 20 KB compressed
    response = post(server, bomb, **{"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert "decompressed" in response.json()["error"]
    assert query(server.db, "SELECT count(*) FROM requests WHERE trace_id = ?", trace) == [(0,)]


def test_healthz_reports_writer(server: IngestServer) -> None:
    response = httpx.get(f"{server.url}/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["running"] is True
    assert body["queue_size"] == 100_000


def test_full_queue_is_429_and_stores_nothing(tmp_path: Path) -> None:
    trace = uuid.uuid4().hex
    # A tiny queue and a long flush interval, so the second batch finds no room.
    with ingest_server(
        tmp_path,
        HAUSWACHT_QUEUE_SIZE="5",
        HAUSWACHT_BATCH_SIZE="1000",
        HAUSWACHT_FLUSH_INTERVAL="30",
    ) as small:
        first = post(small, ndjson(*[request_event(trace, duration_ms=1.0)] * 4))
        second = post(small, ndjson(*[request_event(trace, duration_ms=2.0)] * 2))
        too_big = post(small, ndjson(*[request_event(trace, duration_ms=3.0)] * 6))
        stop(small)

    assert first.status_code == 202
    assert second.status_code == 429
    assert second.headers["retry-after"] == "1"
    assert too_big.status_code == 413
    assert query(small.db, "SELECT duration_ms, count(*) FROM requests GROUP BY 1") == [(1.0, 4)]
