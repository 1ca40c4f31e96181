"""Sentry endpoints on a real `hauswacht serve`: real SDK payloads and a real sentry_sdk client."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import textwrap
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.ingest_server import IngestServer, ingest_server, query, send_raw, stop

# Envelopes stored as JSON arrays whose `length` values do not match their
# payloads written compactly (the payloads were edited after capture).
MISMATCHED_LENGTHS = {"django_message.json", "django_simple.json"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestServer]:
    with ingest_server(tmp_path_factory.mktemp("sentry")) as running:
        yield running


def envelope_from_json(path: Path, keep_lengths: bool = True) -> bytes:
    parts = json.loads(path.read_text())
    if not keep_lengths:
        for part in parts[1::2]:
            part.pop("length", None)
    return b"\n".join(json.dumps(part, separators=(",", ":")).encode() for part in parts)


def post_envelope(server: IngestServer, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/1/envelope/", content=body, headers={**server.sentry_auth(), **headers}
    )


def wait_rows(db: Path, sql: str, *params: object, expected: int) -> list[tuple]:
    deadline = time.monotonic() + 10
    rows: list[tuple] = []
    while time.monotonic() < deadline:
        rows = query(db, sql, *params)
        if len(rows) >= expected:
            time.sleep(0.25)
            return query(db, sql, *params)
        time.sleep(0.05)
    return rows


def test_every_shared_file_accepted_or_clear_4xx(server: IngestServer, shared_data: Path) -> None:
    sentry = shared_data / "sentry"
    outcomes = {}
    for path in sorted(sentry.glob("envelopes/*")):
        if path.name.startswith("LICENSE"):
            continue
        outcomes[path.name] = post_envelope(server, path.read_bytes())
    for path in sorted(sentry.glob("envelopes_as_json/*.json")) + sorted(
        sentry.glob("transactions/*.json")
    ):
        outcomes[path.name] = post_envelope(server, envelope_from_json(path))
    for path in sorted(sentry.glob("events/*.json")):
        outcomes[path.name] = httpx.post(
            f"{server.url}/api/1/store/", content=path.read_bytes(), headers=server.sentry_auth()
        )

    assert len(outcomes) == 33  # 16 wire envelopes, 4 as JSON, 13 store bodies
    for name, response in outcomes.items():
        if name in MISMATCHED_LENGTHS:
            assert response.status_code == 400, name
            assert "length" in response.json()["detail"], name
            assert response.headers["x-sentry-error"] == response.json()["detail"]
        else:
            assert response.status_code == 200, (name, response.text)
            assert set(response.json()) == {"id"}


def test_event_items_become_errors(server: IngestServer, shared_data: Path) -> None:
    path = shared_data / "sentry/envelopes/envelope_javascript.txt"
    assert post_envelope(server, path.read_bytes()).status_code == 200

    rows = wait_rows(
        server.db,
        "SELECT type, message, level, data FROM errors WHERE trace_id = ?",
        "22f704e69fed4e5881220127fbb816ab",
        expected=1,
    )
    # The module's first test sent this envelope too.
    error_type, message, level, data_text = rows[-1]
    data = json.loads(data_text)
    assert (error_type, message, level) == ("SyntaxError", "Unexpected end of JSON input", "error")
    assert data["environment"] == "development"
    assert data["release"].startswith("frontend@23.12.0.dev0")
    assert data["sentry"]["event_id"] == "3c29c134e36d48cdb8f7b11b4e696077"
    frames = data["exceptions"][0]["frames"]
    assert frames
    assert all(set(frame) == {"filename", "module", "function", "lineno", "line", "in_app"}
               for frame in frames)  # fmt: skip


def test_transactions_become_requests(server: IngestServer, shared_data: Path) -> None:
    path = shared_data / "sentry/envelopes/envelope_python.txt"
    assert post_envelope(server, path.read_bytes()).status_code == 200
    simple = envelope_from_json(shared_data / "sentry/transactions/django_simple.json", False)
    assert post_envelope(server, simple).status_code == 200

    rows = wait_rows(
        server.db,
        "SELECT DISTINCT method, route, path, status, duration_ms FROM requests"
        " WHERE trace_id IN (?, ?) ORDER BY ts",
        "af9d553862794b38ad88b4b9c8159714",
        "581eb3bc1f4740eea53717cb7f7450f6",
        expected=2,
    )
    assert rows[0][:4] == ("GET", "/", "/", 200)
    assert rows[1][:4] == (
        "GET",
        "/api/0/organizations/{organization_slug}/",
        "/api/0/organizations/sentry/",
        200,
    )
    assert all(duration is not None and duration > 0 for *_, duration in rows)


def test_unknown_items_skipped(server: IngestServer, shared_data: Path) -> None:
    before = query(server.db, "SELECT count(*) FROM errors")[0][0]
    for name in ("log_envelope.txt", "envelope_with_only_span.txt", "envelope_empty_payload.txt"):
        body = (shared_data / "sentry/envelopes" / name).read_bytes()
        assert post_envelope(server, body).status_code == 200, name
    time.sleep(0.4)
    assert query(server.db, "SELECT count(*) FROM errors")[0][0] == before


def test_auth_from_query_header_or_dsn(server: IngestServer, shared_data: Path) -> None:
    body = (shared_data / "sentry/envelopes/sentry_sdk_2.2.0_flask_message.envelope").read_bytes()
    url = f"{server.url}/api/1/envelope/"
    dsn_header = json.dumps({"dsn": f"http://{server.token}@127.0.0.1:8112/1"}).encode()
    with_dsn = dsn_header + body[body.index(b"\n") :]

    assert httpx.post(url, content=body).status_code == 401
    assert httpx.post(url, params={"sentry_key": "0" * 32}, content=body).status_code == 401
    assert httpx.post(url, params={"sentry_key": server.token}, content=body).status_code == 200
    auth = {"Authorization": f"Sentry sentry_key={server.token}, sentry_version=7"}
    assert httpx.post(url, headers=auth, content=body).status_code == 200
    assert httpx.post(url, content=with_dsn).status_code == 200
    # The envelope's own DSN (another key) does not override a valid header.
    binary = (shared_data / "sentry/envelopes/envelope_binary.bin").read_bytes()
    assert post_envelope(server, binary).status_code == 200
    assert httpx.post(url, content=binary).status_code == 401


def test_compressed_envelopes(server: IngestServer, shared_data: Path) -> None:
    body = (shared_data / "sentry/envelopes/envelope_php_error.txt").read_bytes()
    raw = zlib.compressobj(wbits=-15)
    for encoded, encoding in (
        (gzip.compress(body), "gzip"),
        (zlib.compress(body), "deflate"),
        (raw.compress(body) + raw.flush(), "deflate"),
    ):
        response = post_envelope(server, encoded, **{"Content-Encoding": encoding})
        assert response.status_code == 200, response.text
    rows = wait_rows(
        server.db,
        "SELECT count FROM error_groups WHERE type = 'Exception' AND message LIKE"
        " 'This will be captured by Sentry%'",
        expected=1,
    )
    assert rows[0][0] >= 3


def test_bad_length_rejects_whole_envelope(server: IngestServer) -> None:
    header = b'{"event_id":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}\n'
    good = b'{"type":"event"}\n{"message":"length test good","level":"error"}\n'
    bad = b'{"type":"event","length":500}\n{"message":"short"}\n'

    response = post_envelope(server, header + good + bad)

    assert response.status_code == 400
    assert response.json() == {
        "detail": "item 2: length 500 runs past the end of the envelope (20 bytes left)"
    }
    time.sleep(0.3)
    assert query(server.db, "SELECT count(*) FROM errors WHERE message = 'length test good'") == [
        (0,)
    ]


def test_preflight_allows_browser_sdks(server: IngestServer) -> None:
    response = httpx.options(f"{server.url}/api/1/envelope/")
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "x-sentry-auth" in response.headers["access-control-allow-headers"]


SDK_SCRIPT = """
import sys
import sentry_sdk

sentry_sdk.init(
    dsn=sys.argv[1],
    release="tours@1.4.2",
    environment="test",
    traces_sample_rate=1.0,
    auto_enabling_integrations=False,
)


def load_tour(tour_id):
    depot = f"550e8400-e29b-41d4-a716-44665544000{tour_id % 10}"
    raise LookupError(f"tour {tour_id} not found in depot {depot}")


def plan_route(tour_id):
    raise LookupError(f"tour {tour_id} not found in depot x")


for tour_id in (1, 22, 333):
    try:
        load_tour(tour_id)
    except LookupError:
        sentry_sdk.capture_exception()

try:
    plan_route(4)
except LookupError:
    sentry_sdk.capture_exception()

try:
    {}["tour_id"]
except KeyError:
    sentry_sdk.capture_exception()

for depth in (3, 12):
    sentry_sdk.capture_message(f"queue {depth} is {depth * 7}% full", level="warning")

for tenant in ("north", "north", "south"):
    with sentry_sdk.new_scope() as scope:
        scope.fingerprint = ["{{ default }}", tenant]
        try:
            load_tour(5)
        except LookupError:
            sentry_sdk.capture_exception()

with sentry_sdk.start_transaction(name="GET /api/tours/{tour_id}", op="http.server") as tx:
    tx.set_http_status(404)

sentry_sdk.flush(timeout=10)
"""


def test_real_sentry_sdk_groups_errors(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(SDK_SCRIPT))

    with ingest_server(tmp_path) as server:
        port = server.url.rsplit(":", 1)[1]
        dsn = f"http://{server.token}@127.0.0.1:{port}/1"
        result = subprocess.run(
            # sentry_sdk marks frames under the working folder (its project_root) in_app.
            [sys.executable, str(script), dsn],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        wait_rows(server.db, "SELECT id FROM errors", expected=10)
        stop(server)

    groups = query(
        server.db, "SELECT type, message, count, scheme FROM error_groups ORDER BY count DESC, id"
    )
    assert groups[0] == (
        "LookupError",
        "tour 1 not found in depot 550e8400-e29b-41d4-a716-446655440001",
        3,
        2,
    )
    assert sorted(groups[1:]) == sorted(
        [
            ("LookupError", "tour 5 not found in depot 550e8400-e29b-41d4-a716-446655440005", 2, 0),
            ("message", "queue 3 is 21% full", 2, 2),
            ("LookupError", "tour 4 not found in depot x", 1, 2),
            ("KeyError", "'tour_id'", 1, 2),
            ("LookupError", "tour 5 not found in depot 550e8400-e29b-41d4-a716-446655440005", 1, 0),
        ]
    )
    (data_text,) = query(server.db, "SELECT data FROM errors ORDER BY id LIMIT 1")[0]
    data = json.loads(data_text)
    assert data["release"] == "tours@1.4.2"
    assert data["environment"] == "test"
    assert data["exceptions"][0]["frames"][-1]["function"] == "load_tour"
    assert data["exceptions"][0]["frames"][-1]["in_app"] is True
    assert query(server.db, "SELECT method, route, status FROM requests") == [
        ("GET", "/api/tours/{tour_id}", 404)
    ]


# --- project ids, event ids, secrets, kept data, authentication before the body -------


def post_store(server: IngestServer, body: bytes, project: str = "1") -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/{project}/store/", content=body, headers=server.sentry_auth()
    )


def latest_data(server: IngestServer, marker: str) -> dict:
    ((data_text,),) = wait_rows(
        server.db, "SELECT data FROM errors WHERE message = ?", marker, expected=1
    )
    return json.loads(data_text)


def test_project_id_out_of_range_is_400(server: IngestServer) -> None:
    body = b'{"message": "project check"}'
    for project in (str(2**64), "0", str(2**63)):
        response = post_store(server, body, project)
        assert response.status_code == 400, project
        assert response.json()["detail"].startswith(f"invalid project id {project} in the URL")
    assert post_store(server, body, str(2**63 - 1)).status_code == 200


def test_event_without_id_gets_generated_id(server: IngestServer) -> None:
    first = post_store(server, b'{"message": "no id one"}')
    second = post_envelope(server, b'{}\n{"type":"event"}\n{"message":"no id two"}\n')

    assert first.status_code == 200
    assert second.status_code == 200
    ids = [first.json()["id"], second.json()["id"]]
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in ids)
    assert ids[0] != ids[1]


def test_store_invalid_utf8_huge_integer_accepted(server: IngestServer) -> None:
    marker = f"store utf8 {time.time_ns()}"
    body = (
        b'{"message": "' + marker.encode() + b'", "extra": {"note": "bad \xff", '
        b'"n": 99999999999999999999999}, "tags": {"big": 99999999999999999999999}}'
    )

    response = post_store(server, body)

    assert response.status_code == 200, response.text
    data = latest_data(server, marker)
    assert data["context"] == {"note": "bad \ufffd", "n": 1e23}
    assert data["tags"] == {"big": "1e+23"}  # Sentry tag values are text
    assert "Traceback" not in server.output()


def test_sentry_secrets_scrubbed(server: IngestServer) -> None:
    marker = f"scrub check {time.time_ns()}"
    event = {
        "message": marker,
        "request": {
            "url": "https://app.test/reset?token=Q1&page=2",
            "method": "POST",
            "headers": {
                "Referer": "https://app.test/login?sentry_key=K2&next=/home",
                "X-Session-Id": "S3",
                "Accept": "text/html",
            },
            "data": {"password": "P4", "sid": "S5", "city": "Bremen"},
            "env": {"REMOTE_ADDR": "192.0.2.7", "HTTP_AUTHORIZATION": "Basic A6"},
        },
        "extra": {
            "private_key": "K7",
            "session_id": "S8",
            "dsn": "https://d9@sentry.test/1",
            "callback": "https://hooks.test/x?signature=G10&id=3",
            "tour": 42,
        },
    }

    assert post_store(server, json.dumps(event).encode()).status_code == 200

    data = latest_data(server, marker)
    request = data["request"]
    assert request["path"] == "/reset"
    assert request["query"] == "token=[Filtered]&page=2"
    assert request["headers"] == {
        "referer": "https://app.test/login?sentry_key=[Filtered]&next=/home",
        "x-session-id": "[Filtered]",
        "accept": "text/html",
    }
    assert request["data"] == {"password": "[Filtered]", "sid": "[Filtered]", "city": "Bremen"}
    assert request["env"] == {"REMOTE_ADDR": "192.0.2.7", "HTTP_AUTHORIZATION": "[Filtered]"}
    assert data["context"] == {
        "private_key": "[Filtered]",
        "session_id": "[Filtered]",
        "dsn": "[Filtered]",
        "callback": "https://hooks.test/x?signature=[Filtered]&id=3",
        "tour": 42,
    }
    text = json.dumps(data)
    for secret in ("Q1", "K2", "S3", "P4", "S5", "A6", "K7", "S8", "d9", "G10"):
        assert secret not in text, secret


def test_contexts_and_breadcrumbs_kept() -> None:
    from hauswacht.collector.sentry import convert_event

    event = {
        "message": "kept",
        "contexts": {
            "trace": {"trace_id": "a" * 32, "span_id": "b" * 16},
            "os": {"name": "Linux", "version": "6.1"},
            "runtime": {"name": "CPython", "version": "3.12.1"},
            "tour": {"id": 17, "api_token": "T1"},
        },
        "breadcrumbs": {
            "values": [{"category": "ui.click", "message": f"crumb {n}"} for n in range(150)]
        },
    }

    data = convert_event(event, 1_780_000_000_000, 1, "browser").data

    assert data["contexts"] == {
        "os": {"name": "Linux", "version": "6.1"},
        "runtime": {"name": "CPython", "version": "3.12.1"},
        "tour": {"id": 17, "api_token": "[Filtered]"},
    }
    assert data["trace_id"] == "a" * 32
    assert len(data["breadcrumbs"]) == 100
    assert data["breadcrumbs"][0] == {"category": "ui.click", "message": "crumb 50"}
    assert data["breadcrumbs"][-1] == {"category": "ui.click", "message": "crumb 149"}


def test_breadcrumbs_bounded_in_bytes() -> None:
    from hauswacht.collector.sentry import MAX_BREADCRUMB_BYTES, convert_event

    crumbs = [{"message": f"{n:03d} " + "x" * 1000} for n in range(100)]
    data = convert_event({"message": "big", "breadcrumbs": crumbs}, 0, 1, None).data

    kept = data["breadcrumbs"]
    assert sum(len(json.dumps(crumb, separators=(",", ":"))) + 1 for crumb in kept) <= (
        MAX_BREADCRUMB_BYTES
    )
    assert kept[-1]["message"].startswith("099 ")
    assert len(kept) == 32  # 32 * 1,018 bytes fit in 32 KiB


def test_unauthenticated_envelope_rejected_before_body(server: IngestServer) -> None:
    header = b'{"dsn": "http://0123456789abcdef0123456789abcdef@127.0.0.1/1"}\n'
    request = (
        b"POST /api/1/envelope/ HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-sentry-envelope\r\nContent-Length: 100000\r\n\r\n" + header
    )

    answer = send_raw(server.url, request)

    assert answer.startswith(b"HTTP/1.1 401 ")
    assert b"missing or invalid sentry_key" in answer


def test_store_without_key_rejected_before_body(server: IngestServer) -> None:
    request = (
        b"POST /api/1/store/ HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )

    answer = send_raw(server.url, request)

    assert answer.startswith(b"HTTP/1.1 401 ")


def test_envelope_header_over_limit_is_401(server: IngestServer) -> None:
    from hauswacht.collector.ingest import MAX_ENVELOPE_HEADER

    padding = "p" * MAX_ENVELOPE_HEADER
    body = f'{{"pad": "{padding}", "dsn": "http://{server.token}@127.0.0.1/1"}}\n'.encode()

    response = httpx.post(f"{server.url}/api/1/envelope/", content=body + b'{"type":"x"}\n{}\n')

    assert response.status_code == 401


def test_dsn_key_in_gzip_envelope_header_accepted(server: IngestServer) -> None:
    marker = f"dsn gzip {time.time_ns()}"
    body = (
        f'{{"dsn": "http://{server.token}@127.0.0.1/1"}}\n{{"type":"event"}}\n'
        f'{{"message":"{marker}"}}\n'
    ).encode()

    response = httpx.post(
        f"{server.url}/api/1/envelope/",
        content=gzip.compress(body),
        headers={"Content-Encoding": "gzip"},
    )

    assert response.status_code == 200, response.text
    assert latest_data(server, marker)["message"] == marker
