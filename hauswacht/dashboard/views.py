"""The dashboard's pages and JSON API, each a handler `(request, ctx) -> Response`.

Handlers parse their parameters with `params` (bad values raise BadParameter,
which becomes a 400 response), read through `Dashboard.read` (read-only, rollups and
error groups only) and render a template or JSON. The pages keep the chosen
range and filters in their links, so the auto-refresh reload keeps them too.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from hauswacht.dashboard import charts
from hauswacht.dashboard.app import Dashboard, RequestContext
from hauswacht.dashboard.params import (
    ENDPOINT_SORTS,
    ERROR_STATUS_FILTERS,
    PRESET_HOURS,
    BadParameter,
    TimeRange,
    parse_choice,
    parse_int,
    parse_range,
    parse_text,
)
from hauswacht.writer import queries
from hauswacht.writer.queries import (
    ERROR_GROUP_STATUSES,
    EndpointStats,
    MetricSeries,
    Overview,
    TimePoint,
)

logger = logging.getLogger(__name__)

MAX_GROUPS_PER_PAGE = 500
DEFAULT_GROUPS_PER_PAGE = 100
MAX_OFFSET = 1_000_000
DEFAULT_ENDPOINTS_SHOWN = 100
MAX_ENDPOINTS_SHOWN = 5000
MAX_GROUP_ID = 2**63 - 1
STATUS_ACTIONS = {"resolve": "resolved", "ignore": "ignored", "reopen": "unresolved"}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _json(data: Any, status_code: int = 200) -> Response:
    body = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
    return Response(body, status_code=status_code, media_type="application/json")


def _range(request: Request, ctx: RequestContext) -> TimeRange:
    selected = parse_range(request.query_params, ctx.lang, ctx.fmt.zone, _now_ms())
    ctx.keep.update(selected.query())
    return selected


def _hour_labels(ctx: RequestContext, points: list[TimePoint] | list[int]) -> list[str]:
    hours = [point if isinstance(point, int) else point.hour for point in points]
    return [ctx.fmt.short_hour(hour) for hour in hours]


def _count_format(ctx: RequestContext) -> Callable[[float], str]:
    return lambda value: ctx.fmt.number(value, 0 if float(value).is_integer() else 1)


def request_charts(
    ctx: RequestContext, points: list[TimePoint], errors: bool
) -> list[charts.Chart]:
    """Render the request chart (stacked by status class), latency and optionally errors."""
    labels = _hour_labels(ctx, points)
    ok = [point.requests - point.client_errors - point.server_errors for point in points]
    result = [
        charts.bar_chart(
            ctx.t("chart_requests"),
            labels,
            [
                charts.Series(ctx.t("legend_ok"), "series-ok", ok),
                charts.Series("4xx", "series-4xx", [point.client_errors for point in points]),
                charts.Series("5xx", "series-5xx", [point.server_errors for point in points]),
            ],
            _count_format(ctx),
        )
    ]
    if errors:
        result.append(
            charts.bar_chart(
                ctx.t("chart_errors"),
                labels,
                [
                    charts.Series(
                        ctx.t("legend_captured"),
                        "series-error",
                        [point.errors for point in points],
                    )
                ],
                _count_format(ctx),
            )
        )
    result.append(
        charts.line_chart(
            ctx.t("chart_latency"),
            labels,
            [
                charts.Series("p50", "series-p50", [point.p50_ms for point in points]),
                charts.Series("p95", "series-p95", [point.p95_ms for point in points]),
            ],
            ctx.fmt.ms,
        )
    )
    return result


@dataclass
class RangeView:
    """The range selector: preset links, the custom form and the chosen window."""

    selected: TimeRange
    presets: list[tuple[str, str, bool]]  # label, link, active
    start_value: str
    end_value: str
    hidden: dict[str, str]
    description: str


def range_view(ctx: RequestContext, selected: TimeRange, hidden: dict[str, str]) -> RangeView:
    presets = [
        (ctx.t(f"range_{key}"), ctx.here(range=key, **{"from": None, "to": None, "hours": None,
                                                          "offset": None}),
         selected.key == key)
        for key in PRESET_HOURS
    ]  # fmt: skip
    description = ctx.t(
        "window",
        start=ctx.fmt.moment(selected.start_ms),
        end=ctx.fmt.moment(selected.end_ms),
    )
    return RangeView(
        selected=selected,
        presets=presets,
        start_value=ctx.fmt.input_value(selected.start_ms),
        end_value=ctx.fmt.input_value(selected.end_ms),
        hidden=hidden,
        description=description,
    )


# --- overview ------------------------------------------------------------------------


async def overview_page(dashboard: Dashboard, request: Request, ctx: RequestContext) -> Response:
    selected = _range(request, ctx)
    overview: Overview = await dashboard.read(
        dashboard.overview_cache.read_overview, selected.window
    )
    status_rows = [
        (code, count, count / overview.requests if overview.requests else None)
        for code, count in overview.status_codes.items()
    ]
    return dashboard.render(
        ctx,
        "overview.html",
        range=range_view(ctx, selected, {}),
        overview=overview,
        charts=request_charts(ctx, overview.timeseries, errors=True),
        slowest=overview.slowest,
        status_rows=status_rows,
    )


# --- endpoints -----------------------------------------------------------------------


def _sort_endpoints(endpoints: list[EndpointStats], key: str) -> list[EndpointStats]:
    def p95(endpoint: EndpointStats) -> float:
        return endpoint.latency_ms.p95 if endpoint.latency_ms.p95 is not None else -1.0

    def avg(endpoint: EndpointStats) -> float:
        return endpoint.latency_ms.avg if endpoint.latency_ms.avg is not None else -1.0

    orders: dict[str, Callable[[EndpointStats], Any]] = {
        "requests": lambda endpoint: -endpoint.requests,
        "p95": lambda endpoint: -p95(endpoint),
        "avg": lambda endpoint: -avg(endpoint),
        "errors": lambda endpoint: -(endpoint.server_errors + endpoint.client_errors),
    }
    return sorted(endpoints, key=lambda e: (orders[key](e), e.route, e.method))


def _read_endpoint_page(
    conn: Any, window: queries.Window, sort: str, limit: int
) -> tuple[list[EndpointStats], int]:
    """Read the first `limit` endpoints in `sort` order, with percentiles, and the total count.

    Percentiles are computed for the returned endpoints only, except when
    sorting by p95, which needs the p95 of every endpoint of the window.
    """
    endpoints = queries.read_endpoints(conn, window)
    if sort == "p95":
        queries.fill_percentiles(conn, window, endpoints)
    shown = _sort_endpoints(endpoints, sort)[:limit]
    if sort != "p95":
        queries.fill_percentiles(conn, window, shown)
    return shown, len(endpoints)


async def endpoints_page(dashboard: Dashboard, request: Request, ctx: RequestContext) -> Response:
    selected = _range(request, ctx)
    sort = parse_choice(request.query_params, "sort", ENDPOINT_SORTS, "requests", ctx.lang)
    limit = parse_int(request.query_params, "limit", DEFAULT_ENDPOINTS_SHOWN, 1,
                      MAX_ENDPOINTS_SHOWN, ctx.lang)  # fmt: skip
    ctx.keep["sort"] = sort
    endpoints, total = await dashboard.read(_read_endpoint_page, selected.window, sort, limit)
    return dashboard.render(
        ctx,
        "endpoints.html",
        range=range_view(ctx, selected, {"sort": sort}),
        endpoints=endpoints,
        hidden=max(0, total - limit),
        more_link=ctx.here(limit=str(MAX_ENDPOINTS_SHOWN)) if total > limit else None,
        sort=sort,
        sorts=ENDPOINT_SORTS,
    )


def _endpoint_params(request: Request, ctx: RequestContext) -> tuple[str, str]:
    route = parse_text(request.query_params, "route", ctx.lang)
    method = parse_text(request.query_params, "method", ctx.lang)
    if route is None or method is None:
        name = "route" if route is None else "method"
        reason = ctx.t("need_method")
        raise BadParameter(name, ctx.t("missing", name=name, reason=reason))
    return route, method


def _endpoint_totals(points: list[TimePoint]) -> dict[str, Any]:
    return {
        "requests": sum(point.requests for point in points),
        "4xx": sum(point.client_errors for point in points),
        "5xx": sum(point.server_errors for point in points),
    }


async def endpoint_page(dashboard: Dashboard, request: Request, ctx: RequestContext) -> Response:
    selected = _range(request, ctx)
    route, method = _endpoint_params(request, ctx)
    ctx.keep.update(route=route, method=method)

    stats, points = await dashboard.read(
        queries.read_endpoint_history, selected.window, route, method
    )
    return dashboard.render(
        ctx,
        "endpoint.html",
        range=range_view(ctx, selected, {"route": route, "method": method}),
        route=route,
        method=method,
        stats=stats,
        charts=request_charts(ctx, points, errors=False) if stats else [],
    )


# --- metrics -------------------------------------------------------------------------


@dataclass
class MetricView:
    series: MetricSeries
    chart: charts.Chart
    tags_text: str


def metric_views(ctx: RequestContext, selected: TimeRange, metrics: list[MetricSeries]) -> list:
    hours = list(range(selected.window.hour_params()["first_hour"],
                       selected.window.hour_params()["last_hour"] + 1))  # fmt: skip
    labels = _hour_labels(ctx, hours)
    views = []
    for series in metrics:
        by_hour = {point.hour: point for point in series.points}
        averages = [by_hour[hour].avg if hour in by_hour else None for hour in hours]
        p95s = [by_hour[hour].p95 if hour in by_hour else None for hour in hours]
        chart = charts.line_chart(
            ctx.t("chart_metric", name=series.name),
            labels,
            [
                charts.Series(ctx.t("avg"), "series-p50", averages),
                charts.Series("p95", "series-p95", p95s),
            ],
            lambda value: ctx.fmt.number(value, 0 if abs(value) >= 100 else 2),
        )
        tags_text = ", ".join(f"{key}={value}" for key, value in series.tags.items())
        views.append(MetricView(series, chart, tags_text))
    return views


async def metrics_page(dashboard: Dashboard, request: Request, ctx: RequestContext) -> Response:
    selected = _range(request, ctx)
    metrics = await dashboard.read(queries.read_metrics, selected.window)
    return dashboard.render(
        ctx,
        "metrics.html",
        range=range_view(ctx, selected, {}),
        metrics=metric_views(ctx, selected, metrics),
    )


# --- errors --------------------------------------------------------------------------


def _error_filters(request: Request, ctx: RequestContext) -> tuple[str, int, int]:
    status = parse_choice(request.query_params, "status", ERROR_STATUS_FILTERS, "unresolved",
                          ctx.lang)  # fmt: skip
    limit = parse_int(request.query_params, "limit", DEFAULT_GROUPS_PER_PAGE, 1,
                      MAX_GROUPS_PER_PAGE, ctx.lang)  # fmt: skip
    offset = parse_int(request.query_params, "offset", 0, 0, MAX_OFFSET, ctx.lang)
    return status, limit, offset


async def errors_page(dashboard: Dashboard, request: Request, ctx: RequestContext) -> Response:
    selected = _range(request, ctx)
    status, limit, offset = _error_filters(request, ctx)
    ctx.keep["status"] = status

    def read(conn: Any) -> tuple[list[queries.ErrorGroup], dict[str, int]]:
        groups = queries.read_error_groups(
            conn, selected.window, None if status == "all" else status, limit + 1, offset
        )
        return groups, queries.count_error_groups(conn, selected.window)

    groups, counts = await dashboard.read(read)
    has_more = len(groups) > limit
    tabs = [
        (
            ctx.t(f"error_status_{key}"),
            ctx.here(status=key, offset=None),
            key == status,
            sum(counts.values()) if key == "all" else counts[key],
        )
        for key in ERROR_STATUS_FILTERS
    ]
    next_link = ctx.here(offset=str(offset + limit)) if has_more else None
    previous_link = None
    if offset:
        previous_link = ctx.here(offset=str(offset - limit) if offset > limit else None)
    return dashboard.render(
        ctx,
        "errors.html",
        range=range_view(ctx, selected, {"status": status}),
        groups=groups[:limit],
        tabs=tabs,
        status=status,
        next_link=next_link,
        previous_link=previous_link,
    )


@dataclass
class FrameView:
    location: str
    function: str
    line: str
    in_app: bool


@dataclass
class ExceptionView:
    type: str
    message: str
    frames: list[FrameView]
    omitted: int
    intro: str | None  # the sentence that links it to the exception shown before it


@dataclass
class EventView:
    """The latest event of a group in display form; every value is text from the event."""

    level: str
    message: str
    exceptions: list[ExceptionView] = field(default_factory=list)
    request: list[tuple[str, str]] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)
    tags: list[tuple[str, str]] = field(default_factory=list)
    trace_id: str | None = None
    # Sentry SDK events: contexts by name (os, runtime, custom) and the last breadcrumbs.
    contexts: list[tuple[str, str]] = field(default_factory=list)
    breadcrumbs: list[BreadcrumbView] = field(default_factory=list)


@dataclass
class BreadcrumbView:
    """One breadcrumb of an SDK event; `ts` is epoch ms or None when missing or unreadable."""

    ts: int | None
    category: str
    level: str
    message: str


def _text(value: Any, limit: int = 4096) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return text[:limit]


def _pairs(value: Any) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [(_text(key, 256), _text(item)) for key, item in value.items()]
    if isinstance(value, list):
        pairs = []
        for item in value:
            if isinstance(item, list | tuple) and len(item) == 2:
                pairs.append((_text(item[0], 256), _text(item[1])))
        return pairs
    return []


def describe_event(ctx: RequestContext, event: dict[str, Any]) -> EventView:
    """Turn a stored event (any shape: it may come from an SDK) into an EventView."""
    view = EventView(
        level=_text(event.get("level")) or "error", message=_text(event.get("message"))
    )
    raw_exceptions = event.get("exceptions")
    chain = [item for item in raw_exceptions if isinstance(item, dict)] if isinstance(
        raw_exceptions, list
    ) else []  # fmt: skip

    # Stored outermost first; shown as Python prints it, the first cause first.
    previous_relation = None
    for item in reversed(chain):
        frames = []
        raw_frames = item.get("frames")
        for frame in raw_frames if isinstance(raw_frames, list) else []:
            if not isinstance(frame, dict):
                continue
            filename = _text(frame.get("filename") or frame.get("module") or "?", 512)
            lineno = frame.get("lineno")
            location = f"{filename}:{lineno}" if isinstance(lineno, int) else filename
            frames.append(
                FrameView(
                    location=location,
                    function=_text(frame.get("function"), 256),
                    line=_text(frame.get("line"), 1024),
                    in_app=frame.get("in_app") is True,
                )
            )
        intro = None
        if previous_relation == "cause":
            intro = ctx.t("caused_by")
        elif previous_relation == "context":
            intro = ctx.t("during_handling")
        omitted = item.get("frames_omitted")
        view.exceptions.append(
            ExceptionView(
                type=_text(item.get("type"), 256),
                message=_text(item.get("message")),
                frames=frames,
                omitted=omitted if isinstance(omitted, int) and omitted > 0 else 0,
                intro=intro,
            )
        )
        previous_relation = item.get("relation")

    request = event.get("request")
    if isinstance(request, dict):
        for key in ("method", "path", "route", "query", "client"):
            if request.get(key) not in (None, ""):
                view.request.append((key, _text(request.get(key))))
        view.headers = _pairs(request.get("headers"))
    view.tags = _pairs(event.get("tags"))
    trace_id = event.get("trace_id")
    view.trace_id = _text(trace_id, 256) if trace_id else None

    contexts = event.get("contexts")
    if isinstance(contexts, dict):
        view.contexts = [(_text(name, 256), _text(value, 2048)) for name, value in contexts.items()]
    breadcrumbs = event.get("breadcrumbs")
    for crumb in breadcrumbs[-MAX_BREADCRUMBS_SHOWN:] if isinstance(breadcrumbs, list) else []:
        if isinstance(crumb, dict):
            view.breadcrumbs.append(
                BreadcrumbView(
                    ts=_epoch_ms(crumb.get("timestamp")),
                    category=_text(crumb.get("category") or crumb.get("type"), 256),
                    level=_text(crumb.get("level"), 32),
                    message=_text(crumb.get("message"), 1024),
                )
            )
    return view


MAX_BREADCRUMBS_SHOWN = 30


def _epoch_ms(value: Any) -> int | None:
    """Read an SDK timestamp: epoch seconds as a number, or ISO 8601 text."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and math.isfinite(value):
        return int(value * 1000)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    return None


def _group_id(request: Request, ctx: RequestContext) -> int:
    text = request.path_params["group_id"]
    try:
        group_id = int(text)
    except ValueError:
        group_id = -1
    if not 1 <= group_id <= MAX_GROUP_ID:
        raise BadParameter(
            "id",
            ctx.t("bad_int", value=text[:64], name="id", low=1, high=MAX_GROUP_ID),
        )
    return group_id


async def error_page(dashboard: Dashboard, request: Request, ctx: RequestContext) -> Response:
    selected = _range(request, ctx)
    group_id = _group_id(request, ctx)
    status_filter = parse_choice(request.query_params, "status", ERROR_STATUS_FILTERS,
                                 "unresolved", ctx.lang)  # fmt: skip
    ctx.keep["status"] = status_filter

    def read(conn: Any) -> tuple[queries.ErrorGroup | None, dict[int, int]]:
        group = queries.read_error_group(conn, group_id)
        if group is None:
            return None, {}
        group.samples = queries.read_error_samples(conn, group.fingerprint)
        return group, queries.read_error_group_hours(conn, group.fingerprint, selected.window)

    group, hours = await dashboard.read(read)
    if group is None:
        message = ctx.t("group_not_found", id=group_id)
        return dashboard.problem(ctx, 404, "not_found_title", message, False)

    params = selected.window.hour_params()
    all_hours = list(range(params["first_hour"], params["last_hour"] + 1))
    chart = charts.bar_chart(
        ctx.t("chart_group"),
        _hour_labels(ctx, all_hours),
        [charts.Series(ctx.t("events"), "series-error", [hours.get(h, 0) for h in all_hours])],
        _count_format(ctx),
    )
    actions = [
        (action, ctx.t(action)) for action, status in STATUS_ACTIONS.items()
        if status != group.status
    ]  # fmt: skip
    changed = request.query_params.get("changed")
    notice = None
    if changed in ERROR_GROUP_STATUSES and changed == group.status:
        # Shown only while it is true, so an old link or a reload after a later change
        # does not announce a status the group no longer has.
        notice = ctx.t("status_changed", status=ctx.t(f"error_status_{changed}"))
    return dashboard.render(
        ctx,
        "error.html",
        range=range_view(ctx, selected, {"status": status_filter}),
        group=group,
        event=describe_event(ctx, group.latest_event or {}),
        chart=chart,
        actions=actions,
        notice=notice,
        back_link=ctx.url("/errors", ctx.keep),
    )


async def change_status(dashboard: Dashboard, request: Request, ctx: RequestContext) -> Response:
    group_id = _group_id(request, ctx)
    form = await dashboard.check_post(request, ctx)
    action = parse_choice(form, "action", tuple(STATUS_ACTIONS), "", ctx.lang)
    if not action:
        reason = ", ".join(STATUS_ACTIONS)
        raise BadParameter("action", ctx.t("missing", name="action", reason=reason))
    status = STATUS_ACTIONS[action]

    found = await _run_write(dashboard, queries.set_error_group_status, group_id, status)
    if not found:
        message = ctx.t("group_not_found", id=group_id)
        return dashboard.problem(ctx, 404, "not_found_title", message, False)
    assert ctx.session is not None
    logger.info("error group %d set to %s by %s", group_id, status, ctx.session.user)

    keep = {}
    for key in ("range", "from", "to", "status"):
        value = form.get(key)
        if value and len(value) <= 64:
            keep[key] = value
    keep["changed"] = status
    return RedirectResponse(ctx.url(f"/errors/{group_id}", keep), status_code=303)


async def _run_write(dashboard: Dashboard, function: Callable[..., Any], *args: Any) -> Any:
    return await run_in_threadpool(dashboard.write_sync, function, *args, _now_ms())


# --- JSON API ------------------------------------------------------------------------


async def api_stats(dashboard: Dashboard, request: Request, ctx: RequestContext) -> Response:
    selected = _range(request, ctx)
    routes = parse_int(request.query_params, "routes", 10, 1, 1000, ctx.lang)
    stats = await dashboard.read(queries.read_stats, selected.window, routes)
    return _json(stats.to_json())


def _window_json(selected: TimeRange) -> dict[str, Any]:
    return {"from_ms": selected.start_ms, "to_ms": selected.end_ms, "range": selected.key}


async def api_timeseries(dashboard: Dashboard, request: Request, ctx: RequestContext) -> Response:
    selected = _range(request, ctx)
    route = parse_text(request.query_params, "route", ctx.lang)
    method = parse_text(request.query_params, "method", ctx.lang)
    if (route is None) != (method is None):
        route, method = _endpoint_params(request, ctx)  # raises for the missing one
    points = await dashboard.read(queries.read_timeseries, selected.window, route, method)
    return _json(
        {
            "window": _window_json(selected),
            "route": route,
            "method": method,
            "hours": [point.to_json() for point in points],
        }
    )


async def api_endpoints(dashboard: Dashboard, request: Request, ctx: RequestContext) -> Response:
    selected = _range(request, ctx)
    sort = parse_choice(request.query_params, "sort", ENDPOINT_SORTS, "requests", ctx.lang)
    limit = parse_int(request.query_params, "limit", DEFAULT_ENDPOINTS_SHOWN, 1,
                      MAX_ENDPOINTS_SHOWN, ctx.lang)  # fmt: skip
    endpoints, total = await dashboard.read(_read_endpoint_page, selected.window, sort, limit)
    return _json(
        {
            "window": _window_json(selected),
            "sort": sort,
            "total": total,
            "endpoints": [endpoint.to_json() for endpoint in endpoints],
        }
    )


async def api_metrics(dashboard: Dashboard, request: Request, ctx: RequestContext) -> Response:
    selected = _range(request, ctx)
    metrics = await dashboard.read(queries.read_metrics, selected.window)
    return _json(
        {"window": _window_json(selected), "metrics": [metric.to_json() for metric in metrics]}
    )


async def api_errors(dashboard: Dashboard, request: Request, ctx: RequestContext) -> Response:
    selected = _range(request, ctx)
    status, limit, offset = _error_filters(request, ctx)

    def read(conn: Any) -> tuple[list[queries.ErrorGroup], dict[str, int]]:
        groups = queries.read_error_groups(
            conn, selected.window, None if status == "all" else status, limit, offset
        )
        return groups, queries.count_error_groups(conn, selected.window)

    groups, counts = await dashboard.read(read)
    return _json(
        {
            "window": _window_json(selected),
            "status": status,
            "counts": counts,
            "groups": [group.to_json() for group in groups],
        }
    )


async def api_error(dashboard: Dashboard, request: Request, ctx: RequestContext) -> Response:
    group_id = _group_id(request, ctx)

    def read(conn: Any) -> queries.ErrorGroup | None:
        group = queries.read_error_group(conn, group_id)
        if group is not None:
            group.samples = queries.read_error_samples(conn, group.fingerprint)
        return group

    group = await dashboard.read(read)
    if group is None:
        return JSONResponse({"error": ctx.t("group_not_found", id=group_id)}, status_code=404)
    return _json(group.to_json())


# --- routing -------------------------------------------------------------------------


def routes(dashboard: Dashboard) -> list[Route]:
    """Return the dashboard's routes bound to `dashboard`."""

    def bind(handler: Callable[..., Any], **options: bool) -> Callable:
        async def bound(request: Request, ctx: RequestContext) -> Response:
            return await handler(dashboard, request, ctx)

        return dashboard.endpoint(bound, **options)

    return [
        Route("/login", dashboard.endpoint(dashboard.login_page, public=True), methods=["GET"]),
        Route("/login", dashboard.endpoint(dashboard.login, public=True), methods=["POST"]),
        Route("/logout", dashboard.endpoint(dashboard.logout), methods=["POST"]),
        Route("/", bind(overview_page), methods=["GET"]),
        Route("/endpoints", bind(endpoints_page), methods=["GET"]),
        Route("/endpoints/detail", bind(endpoint_page), methods=["GET"]),
        Route("/metrics", bind(metrics_page), methods=["GET"]),
        Route("/errors", bind(errors_page), methods=["GET"]),
        Route("/errors/{group_id}", bind(error_page), methods=["GET"]),
        Route("/errors/{group_id}/status", bind(change_status), methods=["POST"]),
        Route("/api/stats", bind(api_stats, api=True), methods=["GET"]),
        Route("/api/timeseries", bind(api_timeseries, api=True), methods=["GET"]),
        Route("/api/endpoints", bind(api_endpoints, api=True), methods=["GET"]),
        Route("/api/metrics", bind(api_metrics, api=True), methods=["GET"]),
        Route("/api/errors", bind(api_errors, api=True), methods=["GET"]),
        Route("/api/errors/{group_id}", bind(api_error, api=True), methods=["GET"]),
    ]
