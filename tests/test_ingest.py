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
from tests.helpers.ingest_server import IngestServer, ingest_server, query, send_raw, stop

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


# --- bad lines, bounds, query strings, slow bodies, scopes, protocol ------------------


def test_invalid_utf8_with_huge_integer_keeps_batch(server: IngestServer) -> None:
    trace = uuid.uuid4().hex
    name = f"valid.{trace}"
    body = (
        orjson.dumps({"type": "metric", "name": name, "value": 1})
        + b'\n{"type":"error","message":"bad \xff","trace_id":"'
        + trace.encode()
        + b'","context":{"n":99999999999999999999999},"tags":{"big":99999999999999999999999}}\n'
    )

    response = post(server, body)

    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 2, "rejected": []}
    (metric,) = wait_rows(server, "SELECT value FROM metrics WHERE name = ?", name, expected=1)
    assert metric == (1.0,)
    ((data_text,),) = wait_rows(
        server, "SELECT data FROM errors WHERE trace_id = ?", trace, expected=1
    )
    data = json.loads(data_text)
    assert data["message"] == "bad \ufffd"
    assert data["context"] == {"n": 1e23}
    assert data["tags"] == {"big": 1e23}
    assert "Traceback" not in server.output()


def test_request_bounds_reject_only_bad_lines(server: IngestServer) -> None:
    trace = uuid.uuid4().hex
    body = ndjson(
        request_event(trace),
        request_event(trace, duration_ms=1.7e308),
        request_event(trace, **{"http.request.method": "G\u0000T"}),
        request_event(trace, **{"http.route": "/a\nb"}),
        request_event(trace, **{"url.path": "/x\u0007"}),
        request_event(trace, ttfb_ms=86_400_001.0),
    )

    response = post(server, body)

    assert response.status_code == 202
    assert response.json()["accepted"] == 1
    rejected = {entry["line"]: entry["error"] for entry in response.json()["rejected"]}
    assert sorted(rejected) == [2, 3, 4, 5, 6]
    assert rejected[2].startswith("invalid duration_ms 1.7e+308")
    assert rejected[3].startswith("invalid http.request.method")
    assert rejected[4] == "invalid http.route '/a\\nb': contains a control character"
    assert rejected[5] == "invalid url.path '/x\\x07': contains a control character"
    assert rejected[6].startswith("invalid ttfb_ms")


def test_query_string_not_stored(server: IngestServer) -> None:
    trace = uuid.uuid4().hex
    error_event = {
        "type": "error",
        "trace_id": trace,
        "message": "reset failed",
        "url.path": "/reset?token=X123&page=2",
    }
    body = ndjson(request_event(trace, **{"url.path": "/reset?token=X123"}), error_event)

    assert post(server, body).json() == {"accepted": 2, "rejected": []}

    rows = wait_rows(server, "SELECT path FROM requests WHERE trace_id = ?", trace, expected=1)
    assert rows == [("/reset",)]
    ((data_text,),) = wait_rows(
        server, "SELECT data FROM errors WHERE trace_id = ?", trace, expected=1
    )
    request = json.loads(data_text)["request"]
    assert request["path"] == "/reset"
    assert request["query"] == "token=[Filtered]&page=2"
    assert "X123" not in data_text


def test_multi_member_gzip_accepted(server: IngestServer) -> None:
    trace = uuid.uuid4().hex
    body = gzip.compress(ndjson(request_event(trace)) + b"\n") + gzip.compress(
        ndjson(request_event(trace, **{"url.path": "/api/tours/18"}))
    )

    response = post(server, body, **{"Content-Encoding": "gzip"})

    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 2, "rejected": []}
    rows = wait_rows(
        server, "SELECT path FROM requests WHERE trace_id = ? ORDER BY path", trace, expected=2
    )
    assert rows == [("/api/tours/17",), ("/api/tours/18",)]


def test_multi_member_gzip_over_limit_is_413(server: IngestServer) -> None:
    member = gzip.compress(b"\n" * (200 * 1024))
    response = post(server, member + member, **{"Content-Encoding": "gzip"})

    assert response.status_code == 413
    assert "decompressed request body is larger than" in response.json()["error"]


def test_json_error_names_column_only(server: IngestServer) -> None:
    trace = uuid.uuid4().hex
    body = ndjson(request_event(trace), b"", b"", b"", b'{"type": "metric", "name": tru}')

    response = post(server, body)

    ((entry),) = response.json()["rejected"]
    assert entry["line"] == 5
    assert entry["error"] == "invalid JSON: invalid literal, expected 'true': column 28"
    assert "line 1" not in entry["error"]


def test_protocol_answers_are_json(server: IngestServer) -> None:
    missing = httpx.get(f"{server.url}/nowhere")
    wrong_method = httpx.get(f"{server.url}/ingest")
    preflight = httpx.options(
        f"{server.url}/ingest",
        headers={"Origin": "http://app.test", "Access-Control-Request-Method": "POST"},
    )
    health = httpx.get(f"{server.url}/healthz")

    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/json"
    assert "POST /ingest" in missing.json()["error"]
    assert wrong_method.status_code == 405
    assert wrong_method.headers["content-type"] == "application/json"
    assert wrong_method.json() == {"error": "method GET is not allowed here"}
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "authorization" in preflight.headers["access-control-allow-headers"]
    assert health.json()["status"] == "ok"
    assert str(server.db.parent) not in health.text
    assert "path" not in health.json()["writer"]
    assert isinstance(health.json()["writer"]["events_written"], int)


def test_token_scopes_enforced(server: IngestServer) -> None:
    sentry_token = create_token(server.db, f"browser-{uuid.uuid4().hex[:8]}", "sentry")
    ingest_token = create_token(server.db, f"service-{uuid.uuid4().hex[:8]}", "ingest")
    event = ndjson(request_event(uuid.uuid4().hex))
    envelope = b'{}\n{"type":"event"}\n{"message":"scoped"}\n'

    as_bearer = httpx.post(
        f"{server.url}/ingest",
        content=event,
        headers={"Authorization": f"Bearer {sentry_token}", **NDJSON},
    )
    as_sentry_key = httpx.post(
        f"{server.url}/api/1/envelope/?sentry_key={ingest_token}", content=envelope
    )
    allowed_bearer = httpx.post(
        f"{server.url}/ingest",
        content=event,
        headers={"Authorization": f"Bearer {ingest_token}", **NDJSON},
    )
    allowed_sentry = httpx.post(
        f"{server.url}/api/1/envelope/?sentry_key={sentry_token}", content=envelope
    )

    assert as_bearer.status_code == 403
    assert "scope 'sentry'" in as_bearer.json()["error"]
    assert as_sentry_key.status_code == 403
    assert "scope 'ingest'" in as_sentry_key.json()["detail"]
    assert allowed_bearer.status_code == 202
    assert allowed_sentry.status_code == 200


def test_unexpected_errors_logged_once_per_kind(caplog: pytest.LogCaptureFixture) -> None:
    from hauswacht.collector.ingest import UnexpectedErrors

    errors = UnexpectedErrors(interval=3600)

    def fail(kind: type[Exception]) -> Exception:
        try:
            text = "body text " + "s3cr3t"
            raise kind(text)
        except Exception as exc:
            return exc

    with caplog.at_level("ERROR", logger="hauswacht.collector.ingest"):
        for _ in range(5):
            errors.report("checking an ingest event", fail(TypeError))
        errors.report("checking an ingest event", fail(KeyError))

    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("ingest: unexpected TypeError while checking an ingest event")
    assert messages[1].startswith("ingest: unexpected KeyError while checking an ingest event")
    assert "in fail" in messages[0]
    assert all("s3cr3t" not in message for message in messages)
    assert all(record.exc_info is None for record in caplog.records)


def test_slow_body_gets_408(tmp_path: Path) -> None:
    with ingest_server(tmp_path, "--body-timeout", "0.5") as slow:
        request = (
            b"POST /ingest HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {slow.token}\r\n".encode()
            + b"Content-Type: application/x-ndjson\r\nContent-Length: 100\r\n\r\n"
            + b"x" * 40
        )
        answer = send_raw(slow.url, request)
        after = httpx.post(
            f"{slow.url}/ingest",
            content=ndjson(request_event(uuid.uuid4().hex)),
            headers={**slow.bearer(), **NDJSON},
        )

    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"did not arrive within 0.5 s" in answer
    assert after.status_code == 202


def test_serve_rejects_bad_body_timeout(tmp_path: Path) -> None:
    from tests.helpers.ingest_server import run_cli

    result = run_cli("serve", "--body-timeout", "soon", "--db", str(tmp_path / "e.db"))

    assert result.returncode == 2
    assert "invalid --body-timeout 'soon'" in result.stderr


@pytest.mark.parametrize(
    ("method", "stored"),
    [("get", "GET"), ("PROPFIND", "PROPFIND"), ("GET\n", None), ("G T", None), ("A" * 17, None)],
)
def test_request_method_must_be_http_token(method: str, stored: str | None) -> None:
    from hauswacht.collector.ingest_schema import SchemaError, parse_event

    event = request_event("m", **{"http.request.method": method})
    if stored is None:
        with pytest.raises(SchemaError, match=r"^invalid http\.request\.method"):
            parse_event(event, BASE_TS)
    else:
        assert parse_event(event, BASE_TS).method == stored


def test_huge_tag_integer_rejected_by_schema() -> None:
    from hauswacht.collector.ingest_schema import SchemaError, parse_event

    metric = {"type": "metric", "name": "jobs", "value": 1, "tags": {"n": 2**64}}

    with pytest.raises(SchemaError, match="invalid tag 'n': integer out of the 64-bit range"):
        parse_event(metric, BASE_TS)
    assert parse_event({**metric, "tags": {"n": 2**64 - 1}}, BASE_TS).tags == (
        '{"n":18446744073709551615}'
    )


def test_configured_scrub_fields_apply(tmp_path: Path) -> None:
    trace = uuid.uuid4().hex
    with ingest_server(tmp_path, HAUSWACHT_SCRUB_FIELDS="tenant_code") as custom:
        native = {
            "type": "error",
            "trace_id": trace,
            "message": "native scrub",
            "tags": {"tenant_code": "N1"},
            "context": {"tenant_code": "N2"},
            "url.path": "/plan?tenant_code=N3",
        }
        assert post(custom, ndjson(native)).status_code == 202
        sentry = {
            "message": "sentry scrub",
            "tags": {"tenant_code": "S1"},
            "extra": {"tenant_code": "S2"},
            "request": {"url": "http://app.test/plan?tenant_code=S3"},
        }
        stored = httpx.post(f"{custom.url}/api/1/store/", json=sentry, headers=custom.sentry_auth())
        assert stored.status_code == 200
        rows = wait_rows(custom, "SELECT message, data FROM errors ORDER BY message", expected=2)

    data = {message: json.loads(text) for message, text in rows}
    for message, prefix in (("native scrub", "N"), ("sentry scrub", "S")):
        assert data[message]["tags"] == {"tenant_code": "[Filtered]"}
        assert data[message]["context"] == {"tenant_code": "[Filtered]"}
        assert data[message]["request"]["query"] == "tenant_code=[Filtered]"
        for number in (1, 2, 3):
            assert f"{prefix}{number}" not in json.dumps(data[message])
