"""The dashboard over HTTP: a real uvicorn server on 127.0.0.1 and a real events file.

The events are written by the real Writer, so the rollups and error groups
are what the pipeline produces. Every expected figure below follows by hand
from EVENTS; the latency estimates use the histogram's bucket values.
"""

from __future__ import annotations

import asyncio
import re
import socket
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from hauswacht.dashboard import create_app
from hauswacht.dashboard.auth import UserStore
from hauswacht.writer import histogram, schema
from hauswacht.writer.events import ErrorEvent, MetricEvent, RequestEvent
from hauswacht.writer.queue import EventQueue
from hauswacht.writer.writer import Writer

HOUR_MS = 3_600_000
H0 = 400_000  # 2015-08-19T16:00:00Z
H1 = H0 + 1
FROM = "2015-08-19T16:00:00Z"
TO = "2015-08-19T18:00:00Z"
WINDOW = {"from": FROM, "to": TO}
USER = "alice"
PASSWORD = "correct horse battery"
RAW_TABLES = {"requests", "errors", "metrics"}


def at(hour: int, minute: int) -> int:
    return hour * HOUR_MS + minute * 60_000


def request(ts: int, route: str, status: int, duration: float | None, method: str = "GET"):
    path = route.replace("{tour_id}", "7")
    return RequestEvent(ts, method, route, path, status, duration, None, 100, "10.0.0.1",
                        "test-agent", None)  # fmt: skip


def error_data(error_type: str, message: str, trace_id: str) -> dict[str, Any]:
    return {
        "type": error_type,
        "message": message,
        "level": "error",
        "exceptions": [
            {
                "type": error_type,
                "message": message,
                "relation": None,
                "frames": [
                    {
                        "filename": "/usr/lib/python3.11/asyncio/runners.py",
                        "module": "asyncio",
                        "function": "run",
                        "lineno": 190,
                        "line": "return runner.run(main)",
                        "in_app": False,
                    },
                    {
                        "filename": "/srv/app/tours.py",
                        "module": "app.tours",
                        "function": "get_tour",
                        "lineno": 42,
                        "line": "raise ValueError(text)",
                        "in_app": True,
                    },
                ],
                "frames_omitted": 0,
            }
        ],
        "request": {
            "method": "GET",
            "path": "/api/tours/7",
            "route": "/api/tours/{tour_id}",
            "query": "verbose=1",
            "headers": {"user-agent": "test-agent", "cookie": "[Filtered]"},
            "client": "10.0.0.1",
        },
        "trace_id": trace_id,
        "tags": {"tenant": "north"},
    }


def error(ts: int, error_type: str, message: str, fingerprint: str, trace_id: str):
    data = error_data(error_type, message, trace_id)
    return ErrorEvent(ts, error_type, message, "error", trace_id, fingerprint, data)


EVENTS = [
    *(request(at(H0, minute), "/api/tours/{tour_id}", 200, float(ms))
      for minute, ms in ((1, 10), (2, 20), (3, 30), (4, 40))),
    request(at(H0, 5), "/api/tours/{tour_id}", 404, 5.0),
    request(at(H0, 6), "/api/slow", 500, 1000.0),
    request(at(H0, 7), "/api/slow", 500, 2000.0),
    request(at(H1, 1), "/api/tours/{tour_id}", 200, 50.0),
    request(at(H1, 2), "/api/tours/{tour_id}", 200, None),
    request(at(H1, 3), "/api/tours/{tour_id}", 200, None),
    request(at(H1, 4), "/upload", 201, None, method="POST"),
    *(MetricEvent(at(hour, minute), "db.query_ms", value, "ms", '{"table":"tours"}')
      for hour, minute, value in ((H0, 1, 1.0), (H0, 2, 2.0), (H0, 3, 3.0), (H1, 1, 10.0))),
    error(at(H0, 10), "builtins.ValueError", "bad tour id 7", "fp-value", "trace-a"),
    error(at(H1, 10), "builtins.ValueError", "bad tour id 8", "fp-value", "trace-b"),
    error(at(H1, 20), "builtins.KeyError", "'driver'", "fp-key", "trace-c"),
]  # fmt: skip
DROPPED = [(H0, "queue_full", 3)]


def estimate(value: float) -> float:
    """The histogram's representative value for the bucket of `value`."""
    return histogram.bucket_value(histogram.bucket_key(value))


def write_events(path: Path, events: Sequence[Any]) -> None:
    """Store `events` through the real Writer (raw rows, rollups, error groups)."""

    async def run() -> None:
        queue = EventQueue(maxsize=len(events) + 1, wake_at=len(events) + 1)
        writer = Writer(path, queue, batch_size=max(1, len(events)))
        await writer.start()
        for event in events:
            assert queue.put(event)
        await writer.stop()

    asyncio.run(run())


def add_dropped(path: Path, rows: Sequence[tuple[int, str, int]]) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany("INSERT INTO dropped_rollups VALUES (?, ?, ?)", rows)
    conn.close()


def make_database(folder: Path) -> Path:
    path = folder / "events.db"
    schema.prepare_database(path)
    write_events(path, EVENTS)
    add_dropped(path, DROPPED)
    UserStore(folder / "dashboard-users.json").set_password(USER, PASSWORD)
    return path


@contextmanager
def serve(app: Any, lifespan: str = "off") -> Iterator[str]:
    """Serve `app` under uvicorn on a free 127.0.0.1 port; yield its base URL.

    Lifespan events are off by default, so the overview cache starts empty.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan))
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[sock])), name="dashboard-server"
    )
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the dashboard server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def login(client: httpx.Client, prefix: str = "", password: str = PASSWORD) -> httpx.Response:
    return client.post(
        f"{prefix}/login",
        data={"user": USER, "password": password, "next": ""},
        headers={"origin": str(client.base_url).rstrip("/")},
    )


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A seeded database and a dashboard (time zone UTC) on a real uvicorn server."""
    folder = tmp_path_factory.mktemp("dashboard")
    database = make_database(folder)
    tables_read: set[str] = set()

    def record_reads(conn: sqlite3.Connection) -> None:
        def authorizer(action: int, table: str | None, *_: Any) -> int:
            if action == sqlite3.SQLITE_READ and table:
                tables_read.add(table)
                if table in RAW_TABLES:
                    return sqlite3.SQLITE_DENY
            return sqlite3.SQLITE_OK

        conn.set_authorizer(authorizer)

    app = create_app(database, timezone="UTC", on_connect=record_reads)
    with serve(app) as url:
        yield {"url": url, "database": database, "folder": folder, "tables_read": tables_read}


@pytest.fixture
def client(site: dict[str, Any]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site["url"], follow_redirects=False, timeout=30) as http:
        response = login(http)
        assert response.status_code == 303, response.text
        yield http


# --- login and sessions --------------------------------------------------------------


def test_pages_redirect_to_login(site: dict[str, Any]) -> None:
    with httpx.Client(base_url=site["url"]) as http:
        page = http.get("/errors?status=all")
        api = http.get("/api/stats?hours=24")

    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Ferrors%3Fstatus%3Dall"
    assert api.status_code == 401
    assert api.json() == {"error": "Log in first."}


def test_login_sets_signed_strict_cookie(site: dict[str, Any]) -> None:
    with httpx.Client(base_url=site["url"]) as http:
        response = login(http)
        cookie = response.headers["set-cookie"]
        overview = http.get("/", params=WINDOW)

    assert response.status_code == 303
    assert response.headers["location"] == "/"
    assert cookie.startswith("hauswacht_session=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Max-Age=43200" in cookie
    assert overview.status_code == 200
    assert "Signed in as alice" in overview.text


def test_wrong_password_rejected(site: dict[str, Any]) -> None:
    with httpx.Client(base_url=site["url"]) as http:
        response = login(http, password="wrong password")

    assert response.status_code == 401
    assert "Wrong user name or password." in response.text
    assert "set-cookie" not in response.headers


def test_tampered_cookie_rejected(site: dict[str, Any]) -> None:
    with httpx.Client(base_url=site["url"]) as http:
        cookie = login(http).cookies["hauswacht_session"]
        payload, signature = cookie.rsplit(".", 1)
        forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + signature
        http.cookies.clear()
        http.cookies.set("hauswacht_session", forged)
        response = http.get("/api/stats?hours=1")

    assert response.status_code == 401


def test_login_next_stays_inside_dashboard(site: dict[str, Any]) -> None:
    with httpx.Client(base_url=site["url"]) as http:
        outside = http.post(
            "/login",
            data={"user": USER, "password": PASSWORD, "next": "//evil.example/"},
            headers={"origin": site["url"]},
        )
        inside = http.post(
            "/login",
            data={"user": USER, "password": PASSWORD, "next": "/errors?status=all"},
            headers={"origin": site["url"]},
        )

    assert outside.headers["location"] == "/"
    assert inside.headers["location"] == "/errors?status=all"


def test_login_from_other_site_rejected(site: dict[str, Any]) -> None:
    with httpx.Client(base_url=site["url"]) as http:
        response = http.post(
            "/login",
            data={"user": USER, "password": PASSWORD},
            headers={"origin": "http://evil.example"},
        )

    assert response.status_code == 403
    assert "http://evil.example" in response.text


def test_repeated_failures_throttle_login(tmp_path: Path) -> None:
    database = make_database(tmp_path)
    with serve(create_app(database, timezone="UTC")) as url, httpx.Client(base_url=url) as http:
        statuses = [login(http, password=f"wrong {n}").status_code for n in range(5)]
        throttled = login(http)  # the right password, but too soon after five failures

    assert statuses == [401, 401, 401, 401, 401]
    assert throttled.status_code == 429
    assert throttled.headers["retry-after"] == "1"
    assert "Too many failed logins. Try again in 1 s." in throttled.text
    assert "set-cookie" not in throttled.headers


def test_parallel_wrong_logins_throttled(tmp_path: Path) -> None:
    database = make_database(tmp_path)
    app = create_app(database, timezone="UTC")
    verifications: list[str] = []
    store = app.state.dashboard.users
    original_verify = store.verify

    def counting_verify(user: str, password: str) -> bool:
        verifications.append(password)
        return original_verify(user, password)

    store.verify = counting_verify
    barrier = threading.Barrier(30)
    answers: list[tuple[int, str]] = []

    with serve(app) as url:

        def attempt(n: int) -> None:
            with httpx.Client(base_url=url, timeout=60) as http:
                barrier.wait(timeout=30)
                response = login(http, password=f"wrong {n}")
                answers.append((response.status_code, response.headers.get("retry-after", "")))

        threads = [threading.Thread(target=attempt, args=(n,)) for n in range(30)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

    statuses = [status for status, _ in answers]
    assert len(statuses) == 30
    assert set(statuses) <= {401, 429}
    assert statuses.count(401) == len(verifications)
    assert len(verifications) <= 5
    assert statuses.count(429) >= 25
    assert all(wait.isdigit() for status, wait in answers if status == 429)


def test_multipart_login_is_415_uncounted(tmp_path: Path) -> None:
    database = make_database(tmp_path)
    with serve(create_app(database, timezone="UTC")) as url, httpx.Client(base_url=url) as http:
        multipart = [
            http.post(
                "/login",
                files={"user": (None, USER), "password": (None, PASSWORD)},
                headers={"origin": url},
            )
            for _ in range(6)
        ]
        urlencoded = login(http)

    assert [response.status_code for response in multipart] == [415] * 6
    assert "application/x-www-form-urlencoded" in unescape(multipart[0].text)
    assert "multipart/form-data" in unescape(multipart[0].text)
    assert urlencoded.status_code == 303


def test_logout_revokes_copied_cookie(tmp_path: Path) -> None:
    database = make_database(tmp_path)
    with serve(create_app(database, timezone="UTC")) as url, httpx.Client(base_url=url) as http:
        login(http)
        copied = http.cookies["hauswacht_session"]
        with httpx.Client(base_url=url) as other:
            login(other)
            page = http.get("/", params=WINDOW)
            http.post("/logout", data={"csrf": csrf_of(page.text)}, headers={"origin": url})
            other_after = other.get("/api/stats?hours=1").status_code
        http.cookies.set("hauswacht_session", copied)
        copied_after = http.get("/api/stats?hours=1").status_code
    with serve(create_app(database, timezone="UTC")) as url, httpx.Client(base_url=url) as http:
        http.cookies.set("hauswacht_session", copied)
        after_restart = http.get("/api/stats?hours=1").status_code

    assert copied_after == 401
    assert after_restart == 401
    assert other_after == 200
    assert stat.S_IMODE((tmp_path / "dashboard-revoked.json").stat().st_mode) == 0o600


def test_logout_needs_csrf_and_ends_session(client: httpx.Client) -> None:
    page = client.get("/", params=WINDOW)
    refused = client.post("/logout", data={"csrf": "0" * 64})
    done = client.post("/logout", data={"csrf": csrf_of(page.text)})

    assert refused.status_code == 403
    assert done.status_code == 303
    assert done.headers["location"] == "/login?logged_out=1"
    assert 'hauswacht_session=""' in done.headers["set-cookie"]


# --- headers -------------------------------------------------------------------------


def test_security_headers_on_every_answer(client: httpx.Client) -> None:
    for path in ("/", "/login", "/api/stats?hours=1", "/static/dashboard.css", "/missing"):
        response = client.get(path)
        csp = response.headers["content-security-policy"]

        assert "script-src 'self'" in csp, path
        assert "unsafe-inline" not in csp, path
        assert "frame-ancestors 'none'" in csp, path
        assert response.headers["x-frame-options"] == "DENY", path
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["referrer-policy"] == "same-origin", path


def test_pages_have_no_inline_script_or_external_url(client: httpx.Client) -> None:
    for path in ("/", "/endpoints", "/metrics", "/errors?status=all", "/errors/1"):
        html = client.get(path, params=WINDOW).text

        assert re.findall(r"<script[^>]*>", html) == [
            '<script src="/static/dashboard.js" defer>'
        ], path
        assert not re.search(r"\son[a-z]+=", html), path
        assert not re.search(r'(src|href)="(https?:)?//', html), path


# --- pages ---------------------------------------------------------------------------


def test_overview_shows_window_figures(client: httpx.Client) -> None:
    html = client.get("/", params=WINDOW).text

    assert re.search(r'id="card-requests".*?<span class="value">11</span>', html, re.S)
    assert re.search(r'id="card-4xx".*?<span class="value">1</span>', html, re.S)
    assert re.search(r'id="card-5xx".*?<span class="value">2</span>', html, re.S)
    assert re.search(r'id="card-error-rate".*?<span class="value">18.18 %</span>', html, re.S)
    assert re.search(r'id="card-avg".*?<span class="value">394 ms</span>', html, re.S)
    assert re.search(r'id="card-p95".*?<span class="value">2,000 ms</span>', html, re.S)
    assert re.search(r'id="card-errors".*?<span class="value">3</span>', html, re.S)
    assert re.search(r'id="card-dropped".*?<span class="value">3</span>', html, re.S)
    assert html.count('<svg class="chart"') == 3
    assert "2015-08-19 16:00 to 2015-08-19 18:00" in html


def test_overview_in_german_formats_numbers(client: httpx.Client) -> None:
    html = client.get("/", params=WINDOW, headers={"accept-language": "de-DE,de;q=0.9"}).text

    assert '<html lang="de">' in html
    assert "Übersicht" in html
    assert re.search(r'id="card-p95".*?<span class="value">2.000 ms</span>', html, re.S)
    assert re.search(r'id="card-error-rate".*?<span class="value">18,18 %</span>', html, re.S)
    assert "19.08.2015 16:00 bis 19.08.2015 18:00" in html


def test_lang_parameter_is_kept_in_cookie(client: httpx.Client) -> None:
    chosen = client.get("/", params={**WINDOW, "lang": "de"})
    later = client.get("/", params=WINDOW, headers={"accept-language": "en"})
    client.get("/", params={**WINDOW, "lang": "en"})

    assert "hauswacht_lang=de" in chosen.headers["set-cookie"]
    assert '<html lang="de">' in later.text


def test_slowest_endpoints_and_statuses(client: httpx.Client) -> None:
    html = client.get("/", params=WINDOW).text
    slowest = html.split('id="slowest"')[1].split("</table>")[0].replace("<wbr>", "")
    statuses = html.split('id="statuses"')[1].split("</table>")[0]

    assert slowest.index("/api/slow") < slowest.index("/api/tours/{tour_id}")
    assert "/upload" not in slowest  # no request of it has a duration
    assert '<code class="route">/<wbr>api/<wbr>slow</code>' in html
    assert re.findall(r"<td>(\d{3})</td>", statuses) == ["200", "201", "404", "500"]


def test_endpoint_history_page(client: httpx.Client) -> None:
    params = {**WINDOW, "route": "/api/tours/{tour_id}", "method": "GET"}
    html = client.get("/endpoints/detail", params=params).text

    assert "<title>Endpoint GET /api/tours/{tour_id}" in html
    assert "<h1>Endpoint: <code>GET /api/tours/{tour_id}</code></h1>" in html
    assert re.search(r"Requests</span><span class=\"value\">8</span>", html)
    assert html.count('<svg class="chart"') == 2


def test_metrics_page_lists_metric(client: httpx.Client) -> None:
    html = client.get("/metrics", params=WINDOW).text
    row = html.split('id="metrics"')[1].split("</tr>")[1]
    cells = re.findall(r'<td class="num">([^<]*)</td>', row)

    assert "<code>db.query_ms</code>" in row
    assert "table=tours" in row
    # count, avg, p50 (the bucket of 2.0), p95 (the top rank: the maximum), max
    assert cells == ["4", "4.00", f"{estimate(2.0):.2f}", "10.00", "10.00"]


def test_errors_page_filters_by_status(client: httpx.Client) -> None:
    all_groups = client.get("/errors", params={**WINDOW, "status": "all"}).text
    resolved = client.get("/errors", params={**WINDOW, "status": "resolved"}).text

    assert all_groups.count("data-group=") == 2
    assert "builtins.ValueError" in all_groups
    assert "builtins.KeyError" in all_groups
    assert "No error groups with this status in this range." in resolved


def test_error_group_page_shows_trace_and_context(client: httpx.Client) -> None:
    group_id = client.get("/api/errors", params={**WINDOW, "status": "all"}).json()["groups"][1]
    html = client.get(f"/errors/{group_id['id']}", params=WINDOW).text

    assert "builtins.ValueError" in html
    assert '<li class="in-app">' in html
    assert '<li class="library">' in html
    assert "/srv/app/tours.py:42" in html
    assert '<pre class="source">raise ValueError(text)</pre>' in html
    assert '<code id="trace-id">trace-b</code>' in html
    assert "verbose=1" in html
    assert "[Filtered]" in html
    assert "tenant" in html


def test_status_change_needs_csrf(client: httpx.Client, site: dict[str, Any]) -> None:
    response = client.post("/errors/1/status", data={"action": "resolve", "csrf": "bad"})

    assert response.status_code == 403
    assert "The form token is missing or invalid." in response.text


def test_resolve_and_reopen_group(client: httpx.Client, site: dict[str, Any]) -> None:
    groups = client.get("/api/errors", params={**WINDOW, "status": "all"}).json()["groups"]
    group_id = next(g["id"] for g in groups if g["type"] == "builtins.KeyError")
    page = client.get(f"/errors/{group_id}", params=WINDOW)
    token = csrf_of(page.text)

    resolved = client.post(
        f"/errors/{group_id}/status",
        data={"action": "resolve", "csrf": token, "from": FROM, "to": TO},
    )
    after_resolve = client.get(f"/api/errors/{group_id}").json()
    shown = client.get(resolved.headers["location"]).text
    reopened = client.post(f"/errors/{group_id}/status", data={"action": "reopen", "csrf": token})
    after_reopen = client.get(f"/api/errors/{group_id}").json()
    stale_notice = client.get(resolved.headers["location"]).text

    assert resolved.status_code == 303
    assert after_resolve["status"] == "resolved"
    assert after_resolve["resolved_at"] > at(H1, 20)
    assert '<span class="badge badge-resolved" id="group-status">Resolved</span>' in shown
    assert "Status set to: Resolved" in shown
    assert reopened.status_code == 303
    assert after_reopen["status"] == "unresolved"
    assert after_reopen["resolved_at"] is None
    assert "Status set to" not in stale_notice


def test_unknown_group_is_404(client: httpx.Client) -> None:
    page = client.get("/errors/999999")
    api = client.get("/api/errors/999999")

    assert page.status_code == 404
    assert "There is no error group 999999." in page.text
    assert api.status_code == 404
    assert api.json() == {"error": "There is no error group 999999."}


# --- JSON API ------------------------------------------------------------------------


def test_api_stats_matches_cli_keys(client: httpx.Client) -> None:
    data = client.get("/api/stats", params=WINDOW).json()

    assert set(data) == {
        "requests", "status", "errors", "error_groups", "dropped", "dropped_by_reason",
        "latency_ms", "first_hour", "last_hour", "hours", "routes",
    }  # fmt: skip
    assert data["requests"] == 11
    assert data["status"] == {"1xx": 0, "2xx": 8, "3xx": 0, "4xx": 1, "5xx": 2}
    assert data["errors"] == 3
    assert data["error_groups"] == 2
    assert data["dropped"] == 3
    assert data["latency_ms"]["avg"] == 394.375
    assert data["latency_ms"]["max"] == 2000.0
    assert data["latency_ms"]["p50"] == round(estimate(30.0), 3)
    assert data["first_hour"] == "2015-08-19T16:00:00Z"
    assert data["last_hour"] == "2015-08-19T17:00:00Z"


def test_api_stats_hours_window(client: httpx.Client) -> None:
    data = client.get("/api/stats", params={"hours": "24"}).json()

    assert data["requests"] == 0  # the seeded events are from 2015
    assert data["hours"] == []


def test_api_timeseries(client: httpx.Client) -> None:
    data = client.get("/api/timeseries", params=WINDOW).json()
    route = client.get(
        "/api/timeseries", params={**WINDOW, "route": "/api/slow", "method": "GET"}
    ).json()

    assert [point["hour"] for point in data["hours"]] == [
        "2015-08-19T16:00:00Z", "2015-08-19T17:00:00Z",
    ]  # fmt: skip
    first, second = data["hours"]
    assert (first["requests"], first["4xx"], first["5xx"], first["errors"]) == (7, 1, 2, 1)
    assert first["dropped"] == 3
    assert first["p95_ms"] == 2000.0
    assert (second["requests"], second["errors"], second["dropped"]) == (4, 2, 0)
    assert second["p50_ms"] == 50.0
    assert [point["requests"] for point in route["hours"]] == [2, 0]
    assert route["hours"][0]["avg_ms"] == 1500.0


def test_api_endpoints(client: httpx.Client) -> None:
    data = client.get("/api/endpoints", params={**WINDOW, "sort": "p95"}).json()
    endpoints = [(e["method"], e["route"], e["requests"]) for e in data["endpoints"]]

    assert endpoints == [
        ("GET", "/api/slow", 2),
        ("GET", "/api/tours/{tour_id}", 8),
        ("POST", "/upload", 1),
    ]
    assert data["endpoints"][0]["latency_ms"]["p95"] == 2000.0
    assert data["endpoints"][1]["latency_ms"]["avg"] == round(155.0 / 6, 3)
    assert data["endpoints"][2]["latency_ms"]["avg"] is None


def test_api_metrics(client: httpx.Client) -> None:
    (metric,) = client.get("/api/metrics", params=WINDOW).json()["metrics"]

    assert metric["name"] == "db.query_ms"
    assert metric["tags"] == {"table": "tours"}
    assert metric["unit"] == "ms"
    assert (metric["count"], metric["avg"], metric["min"], metric["max"]) == (4, 4.0, 1.0, 10.0)
    assert [(h["hour"], h["count"], h["avg"]) for h in metric["hours"]] == [
        ("2015-08-19T16:00:00Z", 3, 2.0),
        ("2015-08-19T17:00:00Z", 1, 10.0),
    ]


def test_api_errors_and_group(client: httpx.Client) -> None:
    data = client.get("/api/errors", params={**WINDOW, "status": "all"}).json()
    by_type = {group["type"]: group for group in data["groups"]}
    detail = client.get(f"/api/errors/{by_type['builtins.ValueError']['id']}").json()

    assert sum(data["counts"].values()) == 2
    assert by_type["builtins.ValueError"]["count"] == 2
    assert by_type["builtins.ValueError"]["events_in_window"] == 2
    assert by_type["builtins.ValueError"]["first_seen"] == at(H0, 10)
    assert by_type["builtins.ValueError"]["last_seen"] == at(H1, 10)
    assert by_type["builtins.KeyError"]["count"] == 1
    assert detail["latest_event"]["trace_id"] == "trace-b"
    assert detail["latest_event"]["exceptions"][0]["frames"][1]["function"] == "get_tour"


@pytest.mark.parametrize(
    ("path", "params", "name"),
    [
        ("/api/stats", {"hours": "abc"}, "'hours'"),
        ("/api/stats", {"hours": "0"}, "'hours'"),
        ("/api/stats", {"hours": "24", "from": FROM}, "'hours'"),
        ("/api/stats", {"from": "yesterday"}, "'from'"),
        ("/api/stats", {"from": TO, "to": FROM}, "'to'"),
        ("/api/stats", {"range": "2d"}, "'range'"),
        ("/api/stats", {"routes": "-1"}, "'routes'"),
        ("/api/timeseries", {"route": "/api/slow"}, "'method'"),
        ("/api/endpoints", {"sort": "name"}, "'sort'"),
        ("/api/errors", {"status": "open"}, "'status'"),
        ("/api/errors", {"limit": "100000"}, "'limit'"),
        ("/api/errors", {"offset": "x"}, "'offset'"),
        ("/api/errors/abc", {}, "'id'"),
        ("/api/metrics", {"lang": "fr"}, "'lang'"),
        ("/api/metrics", {"from": "2015-08-19T16:00:00" + "0" * 100}, "'from'"),
    ],
)
def test_api_bad_parameter_is_400(
    client: httpx.Client, path: str, params: dict[str, str], name: str
) -> None:
    response = client.get(path, params=params)

    assert response.status_code == 400
    assert name in response.json()["error"]


@pytest.mark.parametrize(
    ("path", "params", "name"),
    [
        ("/", {"range": "1y"}, "'range'"),
        ("/endpoints", {"limit": "0"}, "'limit'"),
        ("/endpoints/detail", {"route": "/x"}, "'method'"),
        ("/errors", {"status": "x"}, "'status'"),
        ("/errors/0", {}, "'id'"),
        ("/metrics", {"to": "2015-13-45"}, "'from'"),
    ],
)
def test_page_bad_parameter_is_400(
    client: httpx.Client, path: str, params: dict[str, str], name: str
) -> None:
    english = client.get(path, params=params)
    german = client.get(path, params=params, headers={"accept-language": "de"})

    assert english.status_code == 400
    assert name in unescape(english.text)
    assert "Invalid request" in english.text
    assert german.status_code == 400
    assert "Ungültige Anfrage" in german.text


# --- reading aggregates only -----------------------------------------------------------


def test_dashboard_reads_only_aggregates(client: httpx.Client, site: dict[str, Any]) -> None:
    site["tables_read"].clear()
    groups = client.get("/api/errors", params={**WINDOW, "status": "all"}).json()["groups"]
    paths = [
        "/", "/endpoints", "/endpoints/detail?route=/api/slow&method=GET", "/metrics",
        "/errors?status=all", f"/errors/{groups[0]['id']}", "/api/stats", "/api/timeseries",
        "/api/endpoints", "/api/metrics", "/api/errors", f"/api/errors/{groups[0]['id']}",
    ]  # fmt: skip
    statuses = {}
    for path in paths:
        separator = "&" if "?" in path else "?"
        statuses[path] = client.get(f"{path}{separator}from={FROM}&to={TO}").status_code

    assert set(statuses.values()) == {200}, statuses
    assert site["tables_read"] & RAW_TABLES == set()
    assert {"request_rollups", "metric_rollups", "error_rollups", "error_groups",
            "dropped_rollups"} <= site["tables_read"]  # fmt: skip


def test_database_opened_read_only(tmp_path: Path) -> None:
    database = make_database(tmp_path)
    connections: list[sqlite3.Connection] = []
    app = create_app(database, timezone="UTC", on_connect=connections.append)
    dashboard = app.state.dashboard

    def try_write(conn: sqlite3.Connection) -> str:
        try:
            conn.execute("DELETE FROM error_groups")
        except sqlite3.OperationalError as exc:
            return str(exc)
        return "written"

    message = dashboard.read_sync(lambda conn: try_write(conn))
    count = sqlite3.connect(database).execute("SELECT count(*) FROM error_groups").fetchone()

    assert "readonly" in message.replace(" ", "") or "read-only" in message
    assert count == (2,)


def test_missing_database_is_503(tmp_path: Path) -> None:
    UserStore(tmp_path / "dashboard-users.json").set_password(USER, PASSWORD)
    app = create_app(tmp_path / "events.db", timezone="UTC")
    with serve(app) as url, httpx.Client(base_url=url) as http:
        login(http)
        page = http.get("/")
        api = http.get("/api/stats")

    assert page.status_code == 503
    assert "no such file" in page.text
    assert api.status_code == 503


# --- mounting ------------------------------------------------------------------------


def test_mounted_under_prefix(tmp_path: Path) -> None:
    database = make_database(tmp_path)
    outer = Starlette(routes=[Mount("/monitoring", create_app(database, timezone="UTC"))])
    with serve(outer) as url, httpx.Client(base_url=url) as http:
        redirect = http.get("/monitoring/errors")
        response = login(http, prefix="/monitoring")
        cookie = response.headers["set-cookie"]
        page = http.get("/monitoring/", params=WINDOW)

    assert redirect.headers["location"] == "/monitoring/login?next=%2Fmonitoring%2Ferrors"
    assert response.headers["location"] == "/monitoring/"
    assert "Path=/monitoring" in cookie
    assert page.status_code == 200
    assert 'href="/monitoring/static/dashboard.css"' in page.text
    assert 'href="/monitoring/endpoints?from=' in page.text


@pytest.mark.parametrize("path", ["/", "/errors", "/metrics", "/endpoints", "/api/timeseries"])
@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("from=1431820800000&to=4102444800000", "'from' to 'to'"),
        ("from=0&to=4102444800000", "'from'"),
        ("from=1431820800000&to=999999999999999", "'to'"),
        ("from=9999-12-31T23:00&to=9999-12-31T23:59:59-14:00", "'to'"),
        ("from=0001-01-01T00:00%2B14:00&to=0001-01-01T05:00%2B14:00", "'from'"),
        ("from=253402300799000&to=253402310799000", "'from'"),
    ],
)
def test_extreme_range_is_400(client: httpx.Client, path: str, query: str, name: str) -> None:
    response = client.get(f"{path}?{query}")

    assert response.status_code == 400
    assert name in unescape(response.text)


def test_last_hour_of_year_9999_renders(client: httpx.Client) -> None:
    page = client.get("/?from=9999-12-31T23:00Z&to=9999-12-31T23:59:59Z")
    series = client.get("/api/timeseries?from=9999-12-31T23:00Z&to=9999-12-31T23:59:59Z")

    assert page.status_code == 200
    assert series.status_code == 200
    assert len(series.json()["hours"]) == 1


def test_group_page_lists_stored_samples(tmp_path: Path) -> None:
    database = tmp_path / "events.db"
    schema.prepare_database(database)
    # Two writes of one group: the first event is kept as 'first', the later
    # one as a recent 'sample'.
    write_events(database, [error(at(H0, 10), "builtins.ValueError", "bad 1", "fp-s", "trace-1")])
    write_events(database, [error(at(H1, 10), "builtins.ValueError", "bad 2", "fp-s", "trace-2")])
    UserStore(tmp_path / "dashboard-users.json").set_password(USER, PASSWORD)

    app = create_app(database, timezone="UTC")
    with serve(app) as url, httpx.Client(base_url=url) as http:
        login(http)
        group_id = http.get("/api/errors", params={**WINDOW, "status": "all"}).json()["groups"][0]
        api = http.get(f"/api/errors/{group_id['id']}").json()
        html = http.get(f"/errors/{group_id['id']}", params=WINDOW).text

    assert [(sample["reason"], sample["trace_id"]) for sample in api["samples"]] == [
        ("sample", "trace-2"),
        ("first", "trace-1"),
    ]
    assert api["samples"][1]["message"] == "bad 1"
    assert html.count("<code>trace-2</code>") == 1
    assert "first event" in html
    assert "recent" in html


def test_group_page_shows_contexts_and_breadcrumbs(tmp_path: Path) -> None:
    database = tmp_path / "events.db"
    schema.prepare_database(database)
    event = error(at(H0, 10), "builtins.ValueError", "bad 1", "fp-c", "trace-1")
    event.data["contexts"] = {"runtime": {"name": "CPython", "version": "3.11.7"}}
    event.data["breadcrumbs"] = [
        {"timestamp": 1440000000.5, "category": "http", "level": "info", "message": "GET /a"},
        {"timestamp": "2015-08-19T16:05:00Z", "category": "ui.click", "message": "<b>x</b>"},
        {"timestamp": "not a time", "type": "query"},
    ]
    write_events(database, [event])
    UserStore(tmp_path / "dashboard-users.json").set_password(USER, PASSWORD)

    app = create_app(database, timezone="UTC")
    with serve(app) as url, httpx.Client(base_url=url) as http:
        login(http)
        group = http.get("/api/errors", params={**WINDOW, "status": "all"}).json()["groups"][0]
        html = http.get(f"/errors/{group['id']}", params=WINDOW).text

    assert "<th>runtime</th><td><code>{&#34;name&#34;:&#34;CPython&#34;" in html
    assert "<td>2015-08-19 16:00:00</td><td>http</td><td>info</td><td>GET /a</td>" in html
    assert "<td>ui.click</td>" in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html
    assert "<b>x</b>" not in html
    assert "<td>–</td><td>query</td>" in html


def test_plus_offset_typed_unencoded(client: httpx.Client) -> None:
    # A "+" left unencoded in a query string arrives as a space. H0 is 16:00 UTC.
    encoded = client.get("/api/stats?from=2015-08-19T18:00%2B02:00&to=2015-08-19T21:00%2B02:00")
    typed = client.get("/api/stats?from=2015-08-19T18:00+02:00&to=2015-08-19T21:00+02:00")
    utc = client.get("/api/stats?from=2015-08-19T16:00Z&to=2015-08-19T19:00Z")

    assert typed.status_code == 200, typed.text
    assert typed.json()["requests"] > 0
    assert typed.json() == encoded.json() == utc.json()


def test_unicode_digits_in_range_are_400(client: httpx.Client) -> None:
    superscripts = "\u00b2" * 12  # str.isdigit() is true for them, int() fails
    response = client.get("/api/stats", params={"from": superscripts, "to": "1431820800000"})

    assert response.status_code == 400
    assert "'from'" in response.json()["error"]
