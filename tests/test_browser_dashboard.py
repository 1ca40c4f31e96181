"""The dashboard in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

The server is a real uvicorn on 127.0.0.1 over an events file filled by
replaying the real Apache access log (17–20 May 2015) and by error events
built from exceptions raised here. The expected totals are counted from the
log file itself, independently of the replay code.

The tests take screenshots of the overview and an error page. With
HAUSWACHT_SCREENSHOTS=1 they go to docs/overview.png and docs/error.png for
the README; otherwise to a temporary folder, so a test run leaves the
checkout unchanged.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, sync_playwright

from hauswacht.collector.errors import build_error_event
from hauswacht.dashboard import create_app
from hauswacht.dashboard.auth import UserStore
from hauswacht.ops.replay import replay
from hauswacht.writer.events import MetricEvent, RequestEvent
from tests.test_dashboard_http import serve, write_events

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS = Path(__file__).resolve().parents[1] / "docs"


def screenshot_path(name: str, tmp_path: Path) -> Path:
    """Return where to save screenshot `name`: docs/ when asked for, else `tmp_path`."""
    if os.environ.get("HAUSWACHT_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        return DOCS / name
    return tmp_path / name


USER = "operator"
PASSWORD = "morning coffee 42"
LOG_RANGE = "from=2015-05-17T00:00&to=2015-05-21T00:00"
STATUS_PATTERN = re.compile(r'^\S+ \S+ \S+ \[[^\]]*\] "(?:[^"\\]|\\.)*" (\d{3}) ')

SCRIPT_PAYLOAD = "<script>window.__xss = 'script'</script>"
ATTRIBUTE_PAYLOAD = '"><img src=x onerror="window.__xss=\'img\';alert(1)">'
PAYLOAD = f"{SCRIPT_PAYLOAD}{ATTRIBUTE_PAYLOAD}"


class RoutingEngineError(RuntimeError):
    """Raised here so the error page shows a real traceback."""


def plan_tour(tour_id: int) -> None:
    raise RoutingEngineError(f"routing engine timed out after 3000 ms for tour {tour_id}")


def optimize(tour_id: int) -> None:
    try:
        plan_tour(tour_id)
    except RoutingEngineError as exc:
        raise RuntimeError("tour optimisation failed") from exc


def real_error_event(ts: int, trace_id: str) -> Any:
    try:
        optimize(17)
    except RuntimeError as exc:
        request = {
            "method": "POST",
            "path": "/api/tours/17/optimize",
            "route": "/api/tours/{tour_id}/optimize",
            "query": "",
            "headers": {"user-agent": "dispatch-web/2.3", "authorization": "[Filtered]"},
            "client": "192.0.2.10",
        }
        return build_error_event(
            exc, ts=ts, trace_id=trace_id, request=request, tags={"tenant": "nord"}
        )
    raise AssertionError("optimize() did not raise")


def hostile_events(now_ms: int) -> list[Any]:
    """Events with script payloads in every field the dashboard shows."""
    route = f"/api/{PAYLOAD}"
    data = {
        "type": f"Hostile{PAYLOAD}",
        "message": f"message {PAYLOAD}",
        "level": "error",
        "exceptions": [
            {
                "type": f"Hostile{PAYLOAD}",
                "message": f"message {PAYLOAD}",
                "relation": None,
                "frames": [
                    {
                        "filename": f"/srv/{PAYLOAD}.py",
                        "module": PAYLOAD,
                        "function": f"handler{PAYLOAD}",
                        "lineno": 7,
                        "line": f"raise Hostile('{PAYLOAD}')",
                        "in_app": True,
                    }
                ],
                "frames_omitted": 0,
            }
        ],
        "request": {
            "method": "GET",
            "path": f"/x/{PAYLOAD}",
            "route": route,
            "query": f"q={PAYLOAD}",
            "headers": {"user-agent": f"agent {PAYLOAD}", PAYLOAD: "header name"},
            "client": "192.0.2.66",
        },
        "trace_id": f"trace{PAYLOAD}",
        "tags": {f"tag{PAYLOAD}": f"value {PAYLOAD}"},
    }
    from hauswacht.writer.events import ErrorEvent

    return [
        RequestEvent(
            now_ms,
            "GET",
            route,
            f"/x/{PAYLOAD}",
            500,
            12.5,
            None,
            10,
            "192.0.2.66",
            f"agent {PAYLOAD}",
            None,
        ),
        MetricEvent(now_ms, f"metric{PAYLOAD}", 1.5, PAYLOAD, '{"k": "' + "v" * 3 + '"}'),
        ErrorEvent(now_ms, data["type"], data["message"], "error", data["trace_id"], None, data),
    ]


def count_log(path: Path) -> dict[str, int]:
    """Count the requests, 4xx and 5xx of the access log by reading its status fields."""
    statuses: Counter[int] = Counter()
    with path.open(encoding="utf-8", errors="replace") as log:
        for line in log:
            match = STATUS_PATTERN.match(line)
            assert match, f"unexpected log line: {line[:80]}"
            statuses[int(match.group(1))] += 1
    return {
        "requests": sum(statuses.values()),
        "4xx": sum(n for status, n in statuses.items() if 400 <= status < 500),
        "5xx": sum(n for status, n in statuses.items() if 500 <= status < 600),
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("browser")
    database = folder / "events.db"
    log = shared_data / "access_logs" / "apache_logs"
    now_ms = time.time_ns() // 1_000_000
    events = [real_error_event(now_ms - 120_000, "4bf92f3577b34da6a3ce929d0e0e4736")]
    events.append(real_error_event(now_ms - 60_000, "00f067aa0ba902b7"))
    events.extend(hostile_events(now_ms))

    def fill() -> None:
        report = asyncio.run(replay(log, database))
        assert report.skipped == 0
        write_events(database, events)

    # Playwright's sync API may already run an event loop in this thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(fill).result()
    UserStore(folder / "dashboard-users.json").set_password(USER, PASSWORD)

    app = create_app(database, timezone="UTC")
    with serve(app) as url:
        yield {"url": url, "expected": count_log(log)}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Watch:
    """Collects dialogs and console messages of a page, and dismisses dialogs."""

    def __init__(self, page: Page) -> None:
        self.dialogs: list[str] = []
        self.console: list[str] = []
        page.on("dialog", self._dialog)
        page.on("console", self._console)

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _console(self, message: ConsoleMessage) -> None:
        self.console.append(message.text)


def log_in(page: Page, url: str) -> None:
    page.fill("input[name=user]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(re.compile(re.escape(url)))


@pytest.fixture
def page(browser: Browser, site: dict[str, Any]) -> Iterator[Page]:
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, extra_http_headers={"Accept-Language": "en"}
    )
    page = context.new_page()
    page.goto(f"{site['url']}/login")
    log_in(page, site["url"])
    yield page
    context.close()


def card(page: Page, name: str) -> str:
    return page.locator(f"#card-{name} .value").inner_text()


def test_login_page_then_overview(browser: Browser, site: dict[str, Any]) -> None:
    context = browser.new_context(extra_http_headers={"Accept-Language": "en"})
    page = context.new_page()
    page.goto(f"{site['url']}/?{LOG_RANGE}")
    on_login = page.url
    page.fill("input[name=user]", USER)
    page.fill("input[name=password]", "not the password")
    page.click("form button[type=submit]")
    rejected = page.locator(".error[role=alert]").inner_text()
    log_in(page, site["url"])
    landed = page.url
    context.close()

    assert "/login?next=" in on_login
    assert rejected == "Wrong user name or password."
    assert landed == f"{site['url']}/?{LOG_RANGE}"


def test_overview_totals_of_replayed_log(page: Page, site: dict[str, Any], tmp_path: Path) -> None:
    expected = site["expected"]
    page.goto(f"{site['url']}/?{LOG_RANGE}")
    page.screenshot(path=str(screenshot_path("overview.png", tmp_path)), full_page=True)

    assert expected == {"requests": 10_000, "4xx": 217, "5xx": 3}
    assert card(page, "requests") == f"{expected['requests']:,}"
    assert card(page, "4xx") == f"{expected['4xx']:,}"
    assert card(page, "5xx") == f"{expected['5xx']:,}"
    assert card(page, "error-rate") == f"{expected['5xx'] / expected['requests'] * 100:.2f} %"
    assert card(page, "p95") == "–"  # the log has no request-time field
    assert page.locator("svg.chart").count() == 3
    assert page.locator("#statuses tbody tr").count() == 8


def test_custom_range_form_keeps_range(page: Page, site: dict[str, Any]) -> None:
    page.goto(f"{site['url']}/?range=24h")
    page.fill("input[name=from]", "2015-05-18T00:00")
    page.fill("input[name=to]", "2015-05-19T00:00")
    page.click("form.custom button[type=submit]")
    page.wait_for_url(re.compile("range=custom"))
    requests_that_day = card(page, "requests")
    page.click("nav.main >> text=Endpoints")
    endpoints_url = page.url

    assert requests_that_day != "0"
    assert "from=2015-05-18T00%3A00" in page.url or "from=" in endpoints_url
    assert "/endpoints?" in endpoints_url


def test_resolve_group_changes_status(page: Page, site: dict[str, Any], tmp_path: Path) -> None:
    watch = Watch(page)
    page.goto(f"{site['url']}/errors?range=24h")
    page.click("text=builtins.RuntimeError")
    page.wait_for_url(re.compile(r"/errors/\d+"))
    page.screenshot(path=str(screenshot_path("error.png", tmp_path)), full_page=True)
    before = page.locator("#group-status").inner_text()
    in_app = page.locator("ol.frames li.in-app").count()
    chain = page.locator("p.chain").all_inner_texts()

    page.click("button.action-resolve")
    page.wait_for_url(re.compile("changed=resolved"))
    after = page.locator("#group-status").inner_text()
    page.goto(f"{site['url']}/errors?range=24h&status=resolved")
    resolved_rows = page.locator("#groups tbody tr").all_inner_texts()
    page.go_back()
    page.click("button.action-reopen")
    page.wait_for_url(re.compile("changed=unresolved"))
    reopened = page.locator("#group-status").inner_text()

    assert before == "Unresolved"
    assert in_app >= 2  # plan_tour and optimize in this file
    assert chain == ["The above was the direct cause of:"]
    assert after == "Resolved"
    assert len(resolved_rows) == 1
    assert "builtins.RuntimeError" in resolved_rows[0]
    assert reopened == "Unresolved"
    assert watch.dialogs == []


def test_german_page_under_accept_language(browser: Browser, site: dict[str, Any]) -> None:
    context = browser.new_context(extra_http_headers={"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"})
    page = context.new_page()
    page.goto(f"{site['url']}/?{LOG_RANGE}")
    login_heading = page.locator("h1").inner_text()
    log_in(page, site["url"])
    heading = page.locator("h1").inner_text()
    requests = card(page, "requests")
    label = page.locator("#card-requests .label").inner_text()
    window = page.locator(".range .window").inner_text()
    context.close()

    assert login_heading == "Anmelden"
    assert heading == "Übersicht"
    assert label == "Anfragen"
    assert requests == "10.000"
    assert window == "17.05.2015 00:00 bis 21.05.2015 00:00"


def test_event_values_never_run_as_script(page: Page, site: dict[str, Any]) -> None:
    watch = Watch(page)
    page.goto(f"{site['url']}/errors?range=24h")
    page.click("text=Hostile")
    page.wait_for_url(re.compile(r"/errors/\d+"))
    group_page = page.url
    pages = [
        f"{site['url']}/?range=24h",
        f"{site['url']}/endpoints?range=24h",
        f"{site['url']}/metrics?range=24h",
        f"{site['url']}/errors?range=24h",
        group_page,
    ]
    shown = {}
    for url in pages:
        page.goto(url)
        page.wait_for_load_state("load")
        shown[url] = page.locator("main").inner_text()
        assert page.evaluate("window.__xss") is None, url
        assert page.locator("main img").count() == 0, url
    page.goto(f"{site['url']}/endpoints/detail?range=24h&method=GET&route=/api/{PAYLOAD}")
    detail_xss = page.evaluate("window.__xss")
    detail_text = page.locator("h1").inner_text()

    assert watch.dialogs == []
    assert not [text for text in watch.console if "Content Security Policy" in text]
    assert detail_xss is None
    assert PAYLOAD in detail_text
    assert SCRIPT_PAYLOAD in shown[f"{site['url']}/?range=24h"]  # the route, as text
    assert f"metric{PAYLOAD}" in shown[f"{site['url']}/metrics?range=24h"]
    group_text = shown[group_page]
    for text in (f"message {PAYLOAD}", f"handler{PAYLOAD}", f"/x/{PAYLOAD}", f"agent {PAYLOAD}",
                 f"tag{PAYLOAD}", f"value {PAYLOAD}", f"trace{PAYLOAD}"):  # fmt: skip
        assert text in group_text, text


def test_phone_width_layout(browser: Browser, site: dict[str, Any]) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, extra_http_headers={"Accept-Language": "en"}
    )
    page = context.new_page()
    page.goto(f"{site['url']}/login")
    log_in(page, site["url"])
    overflow = {}
    for query in ("range=24h", "range=30d", LOG_RANGE):
        page.goto(f"{site['url']}/?{query}")
        overflow[query] = page.evaluate("document.documentElement.scrollWidth") - 390
    axis_px = page.evaluate(
        "Math.min(...[...document.querySelectorAll('svg.chart text.axis')]"
        ".filter(t => t.getBoundingClientRect().height > 0)"
        ".map(t => t.getBoundingClientRect().height))"
    )
    legend_px = page.evaluate(
        "parseFloat(getComputedStyle(document.querySelector('.legend')).fontSize)"
    )
    page.goto(f"{site['url']}/endpoints?{LOG_RANGE}")
    endpoints_overflow = page.evaluate("document.documentElement.scrollWidth") - 390
    route_break = page.evaluate(
        "getComputedStyle(document.querySelector('#endpoints td code')).wordBreak"
    )
    route_breaks = page.locator("#endpoints td code wbr").count()
    page.goto(f"{site['url']}/errors?range=24h")
    page.click("text=builtins.RuntimeError")
    page.wait_for_url(re.compile(r"/errors/\d+"))
    samples = page.locator("#samples")
    samples_scrolls = samples.evaluate("e => getComputedStyle(e).overflowX")
    samples_right = samples.evaluate("e => e.getBoundingClientRect().right")
    trace_column_reachable = samples.evaluate(
        "e => e.scrollWidth >= e.querySelector('table').getBoundingClientRect().width - 1"
    )
    error_overflow = page.evaluate("document.documentElement.scrollWidth") - 390
    context.close()

    assert overflow == {"range=24h": 0, "range=30d": 0, LOG_RANGE: 0}
    assert axis_px >= 9
    assert legend_px >= 12
    assert endpoints_overflow == 0
    assert route_break == "normal"
    assert route_breaks > 0
    assert samples_scrolls == "auto"
    assert samples_right <= 390
    assert trace_column_reachable
    assert error_overflow == 0


def test_refresh_drops_status_notice(page: Page, site: dict[str, Any]) -> None:
    page.clock.install()
    page.goto(f"{site['url']}/errors?range=24h&status=all&changed=resolved")
    page.clock.run_for(61_000)
    page.wait_for_url(lambda url: "changed=" not in url)
    refreshed_url = page.url

    assert refreshed_url == f"{site['url']}/errors?range=24h&status=all"
