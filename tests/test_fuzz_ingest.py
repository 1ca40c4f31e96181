"""Malformed bodies against every ingest endpoint of a real server: no 5xx, nothing half-written.

Each endpoint gets BODIES_PER_ENDPOINT bodies from a seeded generator:
broken JSON, wrong types, huge numbers, NaN, deep nesting, binary, invalid
UTF-8, truncated and bogus gzip, wrong envelope lengths, valid lines mixed
in. The accounting checks what "nothing half-written" means per endpoint:
- /ingest: every response accounts for every non-blank line (accepted +
  rejected), and the database contains exactly the accepted events in total.
- envelope and store: each body carries at most one event, marked with its
  own event id. A 4xx leaves no row with that id; a 200 leaves at most one.
"""

from __future__ import annotations

import gzip
import json
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.ingest_server import IngestServer, ingest_server, query, stop

BODIES_PER_ENDPOINT = 520
SEED = 20_260_528
ALLOWED = {200, 202, 400, 401, 413, 415}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestServer]:
    with ingest_server(tmp_path_factory.mktemp("fuzz"), "--max-body-mb", "0.5") as running:
        yield running


# --- building blocks -----------------------------------------------------------------


def dumps(value: object) -> bytes:
    # The standard json module writes integers past 64 bits and NaN, which orjson refuses.
    return json.dumps(value).encode()


def valid_request(rng: random.Random, marker: str) -> dict:
    return {
        "type": "request",
        "timestamp": 1_780_000_000_000 + rng.randrange(10**6),
        "http.request.method": rng.choice(["GET", "POST"]),
        "http.route": "/api/tours/{tour_id}",
        "url.path": f"/api/tours/{rng.randrange(100)}",
        "http.response.status_code": rng.choice([200, 404, 500]),
        "duration_ms": rng.random() * 100,
        "trace_id": marker,
    }


def weird_value(rng: random.Random) -> object:
    return rng.choice(
        [
            None, True, -1, 0, 2**64, -(2**70), 1.5e308, "", "x" * 5000, [], {}, [1, [2, [3]]],
            {"a": {"b": None}}, "\u0000", "☃", 3.5, "NaN", 10**40,
        ]
    )  # fmt: skip


RAW_FRAGMENTS = [
    b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e999", b"[" * 3000 + b"]" * 3000,
    b"{" * 600, b'{"a":' * 2000, b"\xff\xfe\xfd", b'"\\ud800"', b'{"type":"request",}',
    b"null", b"[]", b"{}", b'{"type":"error"}', b'{"type":"metric","name":"m","value":NaN}',
    b"123456789012345678901234567890", b'{"type":"error","message":"\\udfff"}', b"\x00\x01\x02",
]  # fmt: skip


def malformed_line(rng: random.Random, marker: str) -> bytes:
    kind = rng.randrange(5)
    event = valid_request(rng, marker)
    if kind == 0:  # a field with a wrong or odd value
        event[rng.choice(list(event))] = weird_value(rng)
        return dumps(event)
    if kind == 1:  # cut off
        text = dumps(event)
        return text[: rng.randrange(1, len(text))]
    if kind == 2:
        return rng.choice(RAW_FRAGMENTS)
    if kind == 3:  # random bytes without newlines
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60))).replace(b"\n", b" ")
    event[rng.choice(["colour", "http.status", "Type"])] = 1  # unknown field
    return dumps(event)


def ingest_body(rng: random.Random, index: int) -> tuple[bytes, dict[str, str]]:
    headers = {"Content-Type": "application/x-ndjson"}
    lines = []
    for line in range(rng.randrange(1, 8)):
        marker = f"fuzz-{index}-{line}"
        if rng.random() < 0.4:
            lines.append(dumps(valid_request(rng, marker)))
        else:
            lines.append(malformed_line(rng, marker))
    body = b"\n".join(lines)

    shape = rng.randrange(10)
    if shape == 0:
        headers["Content-Type"] = "application/json"  # NDJSON sent as one JSON text
    elif shape == 1:
        headers["Content-Encoding"] = "gzip"
        compressed = gzip.compress(body)
        body = compressed[: rng.randrange(1, len(compressed))]  # truncated gzip
    elif shape == 2:
        headers["Content-Encoding"] = "gzip"
        body = gzip.compress(body)
    elif shape == 3:
        headers["Content-Encoding"] = rng.choice(["deflate", "gzip"])  # not compressed at all
    elif shape == 4:
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
    return body, headers


def sentry_event(rng: random.Random, event_id: str) -> dict:
    event: dict = {
        "event_id": event_id,
        "timestamp": rng.choice([1_780_000_000.5, "2026-05-28T20:26:40.123456789Z", "yesterday"]),
        "level": rng.choice(["error", "warning", 5, None]),
        "platform": "python",
        "exception": {
            "values": [
                {
                    "type": "LookupError",
                    "value": f"tour {rng.randrange(100)} not found",
                    "stacktrace": {"frames": [{"function": "load", "lineno": 3, "in_app": True}]},
                }
            ]
        },
    }
    for _ in range(rng.randrange(0, 3)):
        path = rng.choice(["exception", "level", "timestamp", "tags", "request", "fingerprint",
                           "logentry", "message", "contexts", "user", "extra"])  # fmt: skip
        event[path] = weird_value(rng)
    return event


def envelope_body(rng: random.Random, index: int) -> tuple[bytes, dict[str, str]]:
    event_id = f"{index:032x}"
    payload = dumps(sentry_event(rng, event_id))
    header = dumps({"event_id": event_id})
    item = {"type": "event"}
    kind = rng.randrange(8)
    if kind == 0:
        item["length"] = len(payload) + rng.choice([-5, -1, 1, 7, 10**6])  # wrong length
    elif kind == 1:
        item["length"] = rng.choice([-1, "12", 1.5, None])
    elif kind == 2:
        payload = payload[: rng.randrange(1, len(payload))]
    elif kind == 3:
        header = rng.choice(RAW_FRAGMENTS)
    elif kind == 4:
        item = rng.choice([{"type": 7}, {"type": ["event"]}, {"length": 3}, {}])
    elif kind == 5:
        payload = rng.choice(RAW_FRAGMENTS)
    elif kind == 6:
        item["length"] = len(payload)
    body = b"\n".join([header, dumps(item), payload])
    if rng.random() < 0.2:
        body = gzip.compress(body)
        body = body[: rng.randrange(1, len(body) + 1)]
        return body, {"Content-Encoding": "gzip"}
    return body, {}


def store_body(rng: random.Random, index: int) -> tuple[bytes, dict[str, str]]:
    event_id = f"{index:032x}"
    body = dumps(sentry_event(rng, event_id))
    kind = rng.randrange(5)
    if kind == 0:
        body = body[: rng.randrange(1, len(body))]
    elif kind == 1:
        body = rng.choice(RAW_FRAGMENTS)
    elif kind == 2:
        body = dumps([sentry_event(rng, event_id)])
    elif kind == 3:
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
    return body, {}


def send_all(
    server: IngestServer,
    path: str,
    build: Callable[[random.Random, int], tuple[bytes, dict[str, str]]],
    auth: dict[str, str],
    first_index: int,
) -> list[tuple[int, bytes, httpx.Response]]:
    rng = random.Random(SEED + first_index)
    results = []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for offset in range(BODIES_PER_ENDPOINT):
            index = first_index + offset
            body, headers = build(rng, index)
            response = client.post(path, content=body, headers={**auth, **headers})
            assert response.status_code in ALLOWED, (index, body[:200], response.text)
            results.append((index, body, response))
    return results


def settle(db: Path) -> None:
    """Wait until two reads 0.3 s apart agree (the writer flushes every 0.1 s)."""
    previous = None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        current = query(db, "SELECT (SELECT count(*) FROM requests), (SELECT count(*) FROM errors)")
        if current == previous:
            return
        previous = current
        time.sleep(0.3)


# --- the tests -----------------------------------------------------------------------


def test_fuzz_native_ingest(server: IngestServer) -> None:
    results = send_all(server, "/ingest", ingest_body, server.bearer(), 0)

    accepted = 0
    statuses = set()
    for _index, body, response in results:
        statuses.add(response.status_code)
        answer = response.json()
        if "accepted" not in answer:
            assert response.status_code in (400, 413, 415)
            assert answer["error"]
            continue
        accepted += answer["accepted"]
        rejected = answer.get("rejected_total", len(answer["rejected"]))
        if response.request.headers.get("content-type") == "application/x-ndjson" and not (
            response.request.headers.get("content-encoding")
        ):
            lines = [line for line in body.split(b"\n") if line.strip()]
            assert answer["accepted"] + rejected == len(lines)

    assert {202, 400}.issubset(statuses)
    assert accepted > 50
    stop(server)
    stored = query(
        server.db,
        "SELECT (SELECT count(*) FROM requests) + (SELECT count(*) FROM errors)"
        " + (SELECT count(*) FROM metrics WHERE name NOT LIKE 'hauswacht.writer.%')",
    )[0][0]
    assert stored == accepted
    assert "Traceback" not in server.output()  # the catch-all never had to step in


@pytest.fixture(scope="module")
def sentry_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestServer]:
    with ingest_server(tmp_path_factory.mktemp("fuzz-sentry"), "--max-body-mb", "0.5") as running:
        yield running


@pytest.mark.parametrize(
    ("path", "build", "first_index"),
    [("/api/1/envelope/", envelope_body, 10_000), ("/api/1/store/", store_body, 20_000)],
    ids=["envelope", "store"],
)
def test_fuzz_sentry_endpoints(
    sentry_server: IngestServer, path: str, build: Callable, first_index: int
) -> None:
    results = send_all(sentry_server, path, build, sentry_server.sentry_auth(), first_index)
    settle(sentry_server.db)

    rows = dict(
        query(
            sentry_server.db,
            "SELECT json_extract(data, '$.sentry.event_id'), count(*) FROM errors GROUP BY 1",
        )
    )
    ok = 0
    for index, _body, response in results:
        stored = rows.get(f"{index:032x}", 0)
        if response.status_code == 200:
            ok += 1
            assert stored <= 1, index
        else:
            assert response.status_code in (400, 413, 415), index
            assert response.json()["detail"]
            assert stored == 0, (index, response.text)
    assert ok > 20
    assert len(results) == BODIES_PER_ENDPOINT
    assert "Traceback" not in sentry_server.output()  # the catch-all never had to step in
