"""The dashboard's Starlette app: `create_app(database, ...)`, login, security headers, errors.

The app reads the events database through short read-only connections
(`schema.open_readonly`: `mode=ro` and `query_only`), one per request, opened
in a worker thread. Each connection also gets an SQLite authorizer that
denies reads of the raw event tables (requests, errors, metrics). So a page
can only read rollups and error groups, and its cost does not grow with the
number of stored events. The one write, an error group's status, opens a
separate read-write connection for that single UPDATE.

The app keeps no open connection, so it can be served on its own
(`hauswacht dashboard`) or mounted inside another Starlette or FastAPI app
(`app.mount("/monitoring", create_app(...))`). Links, redirects and the
cookie path follow the mount point (`root_path`). At lifespan startup it reads
the overview of each preset range once in a background thread, so the first
page loads find their hours in the overview cache. Mounted apps get no
lifespan events from Starlette; there the first load of a range reads it.

Every page and API route needs a login, except /login and /static. Responses
always carry a Content-Security-Policy without inline script, `X-Frame-Options:
DENY`, `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin` and
`Cache-Control: no-store` (except static files). A POST whose Origin (or
`Sec-Fetch-Site`) shows another site is rejected before it is read.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hauswacht.dashboard import auth
from hauswacht.dashboard.cache import OverviewCache
from hauswacht.dashboard.i18n import (
    LANG_COOKIE,
    Formatter,
    choose_language,
    resolve_timezone,
    timezone_name,
    tr,
)
from hauswacht.dashboard.params import PRESET_HOURS, BadParameter
from hauswacht.i18n import LANGUAGES, normalize_language
from hauswacht.writer import queries, schema
from hauswacht.writer.queries import HOUR_MS, Window

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
SESSION_COOKIE = "hauswacht_session"
DEFAULT_SESSION_HOURS = 12.0
REFRESH_SECONDS = 60
MAX_FORM_BYTES = 8192
FORM_TYPE = "application/x-www-form-urlencoded"
# Password checks running at once; each scrypt check takes 32 MiB and a CPU core for a while.
MAX_CONCURRENT_VERIFICATIONS = 2
BUSY_RETRY_SECONDS = 1
RANGE_KEYS = ("range", "from", "to")
RAW_TABLES = frozenset({"requests", "errors", "metrics"})

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)


class DashboardConfigError(Exception):
    """A dashboard setting or file that cannot be used; the message names it and the fix."""


class SecurityHeadersMiddleware:
    """Add the security headers to every HTTP response, and no-store to all but static files."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        root = scope.get("root_path", "")
        path = scope["path"][len(root) :] if scope["path"].startswith(root) else scope["path"]
        static = path.startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    headers[name.decode()] = value.decode()
                if not static:
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _deny_raw_tables(action: int, table: str | None, *_: Any) -> int:
    if action == sqlite3.SQLITE_READ and table in RAW_TABLES:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


@dataclass
class RequestContext:
    """Per-request state of a page: language, formats, login, CSRF token and links."""

    request: Request
    lang: str
    fmt: Formatter
    zone_name: str
    session: auth.Session | None = None
    csrf: str = ""
    lang_from_query: str | None = None
    keep: dict[str, str] = field(default_factory=dict)  # range and filters of this page

    @property
    def root(self) -> str:
        return self.request.scope.get("root_path", "").rstrip("/")

    @property
    def keep_range(self) -> dict[str, str]:
        """The query parameters of the chosen range, for links to the other pages."""
        return {key: value for key, value in self.keep.items() if key in RANGE_KEYS}

    def t(self, key: str, **fields: object) -> str:
        return tr(key, self.lang, **fields)

    def url(self, path: str, params: dict[str, str] | None = None, **more: str) -> str:
        """Return the link to `path` inside the dashboard, with query parameters."""
        query = {**(params or {}), **more}
        query = {key: value for key, value in query.items() if value not in (None, "")}
        text = f"{self.root}{path}"
        return f"{text}?{urlencode(query)}" if query else text

    def here(self, **changes: str) -> str:
        """Return this page's link with some query parameters changed (None drops one)."""
        query = dict(self.request.query_params)
        query.pop("lang", None)
        for key, value in changes.items():
            if value is None:
                query.pop(key, None)
            else:
                query[key] = value
        path = self.request.url.path
        return f"{path}?{urlencode(query)}" if query else path

    def static(self, name: str) -> str:
        return f"{self.root}/static/{name}"


Handler = Callable[[Request, RequestContext], Awaitable[Response]]


class Dashboard:
    """The state of one dashboard app: settings, session signer, users, throttle, templates."""

    def __init__(
        self,
        database: str | os.PathLike[str],
        *,
        users_file: str | os.PathLike[str] | None = None,
        secret_key_file: str | os.PathLike[str] | None = None,
        timezone: str | None = None,
        language: str | None = None,
        session_hours: float = DEFAULT_SESSION_HOURS,
        on_connect: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        self.database = Path(database)
        folder = self.database.parent
        self.users = auth.UserStore(users_file or folder / auth.USERS_FILE_NAME)
        self.secret_key_file = Path(secret_key_file or folder / auth.SECRET_FILE_NAME)
        self.revoked = auth.RevokedSessions(self.users.path.parent / auth.REVOKED_FILE_NAME)
        try:
            self.zone = resolve_timezone(timezone)
        except ValueError as exc:
            raise DashboardConfigError(str(exc)) from exc
        if language is not None and normalize_language(language) is None:
            raise DashboardConfigError(
                f"unknown language {language!r}: expected one of {', '.join(LANGUAGES)}"
            )
        self.language = normalize_language(language)
        if not 0 < session_hours <= 24 * 30:
            raise DashboardConfigError(
                f"invalid session_hours {session_hours}: expected more than 0 and at most 720"
            )
        try:
            secret = auth.load_or_create_secret(self.secret_key_file)
            self.users.users()  # fail now, not at the first login, on a bad users file
            self.revoked.revoked()
        except auth.AuthFileError as exc:
            raise DashboardConfigError(str(exc)) from exc
        self.signer = auth.SessionSigner(secret, session_hours * 3600)
        self.throttle = auth.LoginThrottle()
        self.verifications = 0  # password checks running now; changed only on the event loop
        self.on_connect = on_connect
        self.overview_cache = OverviewCache()  # per process; see cache.py for when it is valid
        self.templates = Environment(
            loader=FileSystemLoader(PACKAGE_DIR / "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["slash_breaks"] = slash_breaks

    # -- database ----------------------------------------------------------------------

    def connect(self) -> sqlite3.Connection:
        """Open a read-only connection that cannot read the raw event tables."""
        conn = schema.open_readonly(self.database)
        conn.set_authorizer(_deny_raw_tables)
        if self.on_connect is not None:
            self.on_connect(conn)
        return conn

    def read_sync(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run `function(conn, *args)` in one read transaction on a fresh read-only connection."""
        conn = self.connect()
        try:
            with queries.snapshot(conn):
                return function(conn, *args)
        except sqlite3.Error as exc:
            raise schema.DatabaseError.from_sqlite(self.database, exc, "read") from exc
        finally:
            conn.close()

    async def read(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run `function(conn, *args)` on a fresh read-only connection in a worker thread."""
        return await run_in_threadpool(self.read_sync, function, *args)

    def write_sync(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run `function(conn, *args)` on a short read-write connection, then close it."""
        if not self.database.is_file():
            raise schema.DatabaseError.of("missing", path=self.database)
        try:
            conn = sqlite3.connect(self.database, timeout=schema.BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error as exc:
            raise schema.DatabaseError.from_sqlite(self.database, exc, "open") from exc
        try:
            return function(conn, *args)
        except sqlite3.Error as exc:
            raise schema.DatabaseError.from_sqlite(self.database, exc, "write") from exc
        finally:
            conn.close()

    # -- requests ----------------------------------------------------------------------

    def context(self, request: Request) -> RequestContext:
        query_lang = request.query_params.get("lang")
        lang = choose_language(
            query_lang,
            request.cookies.get(LANG_COOKIE),
            self.language,
            request.headers.get("accept-language"),
        )
        ctx = RequestContext(
            request=request,
            lang=lang,
            fmt=Formatter(lang, self.zone),
            zone_name=timezone_name(self.zone),
        )
        if query_lang is not None:
            if normalize_language(query_lang) is None:
                raise BadParameter(
                    "lang",
                    tr("bad_choice", lang, value=query_lang[:64], name="lang",
                       choices=", ".join(LANGUAGES)),
                )  # fmt: skip
            ctx.lang_from_query = lang
        session = self.signer.read(request.cookies.get(SESSION_COOKIE), _now_ms())
        if session is not None and self._session_valid(session):
            ctx.session = session
            ctx.csrf = self.signer.csrf_token(session)
        return ctx

    def _session_valid(self, session: auth.Session) -> bool:
        try:
            if self.users.password_tag(session.user) != session.password_tag:
                return False
            return not self.revoked.is_revoked(session)
        except auth.AuthFileError as exc:
            logger.error("dashboard users file cannot be read: %s", exc)
            return False

    def render(
        self, ctx: RequestContext, template: str, status_code: int = 200, **data: Any
    ) -> HTMLResponse:
        page = self.templates.get_template(template)
        html = page.render(ctx=ctx, t=ctx.t, fmt=ctx.fmt, refresh=REFRESH_SECONDS, **data)
        return HTMLResponse(html, status_code=status_code)

    def problem(
        self, ctx: RequestContext, status_code: int, title_key: str, message: str, api: bool
    ) -> Response:
        if api:
            return JSONResponse({"error": message}, status_code=status_code)
        return self.render(
            ctx, "problem.html", status_code, title=ctx.t(title_key), message=message
        )

    def endpoint(self, handler: Handler, *, api: bool = False, public: bool = False) -> Callable:
        """Wrap a handler with language, login, parameter and database error handling."""

        async def run(request: Request) -> Response:
            try:
                ctx = self.context(request)
            except BadParameter as exc:
                fallback = self._fallback_context(request)
                return self.problem(fallback, 400, "bad_request_title", exc.message, api)

            if not public and ctx.session is None:
                if api:
                    return JSONResponse({"error": ctx.t("not_logged_in")}, status_code=401)
                target = request.url.path
                if request.url.query:
                    target += "?" + request.url.query
                login = ctx.url("/login", next=target)
                return RedirectResponse(login, status_code=303)

            try:
                response = await handler(request, ctx)
            except BadParameter as exc:
                response = self.problem(ctx, 400, "bad_request_title", exc.message, api)
            except schema.DatabaseError as exc:
                logger.error("dashboard cannot use the events database: %s", exc)
                message = schema.describe_error(exc, self.database, ctx.lang)
                response = self.problem(ctx, 503, "database_title", message, api)
            except auth.AuthFileError as exc:
                logger.error("dashboard users file cannot be used: %s", exc)
                response = self.problem(ctx, 503, "database_title", exc.text(ctx.lang), api)
            except CsrfFailed as exc:
                logger.warning("dashboard POST %s rejected: %s", request.url.path, exc)
                response = self.problem(ctx, 403, "forbidden_title", str(exc), api)
            except UnsupportedFormType as exc:
                logger.warning("dashboard POST %s rejected: content type %s", request.url.path, exc)
                message = ctx.t("form_type", content_type=str(exc), expected=FORM_TYPE)
                response = self.problem(ctx, 415, "bad_request_title", message, api)

            if ctx.lang_from_query is not None:
                self._set_cookie(request, response, LANG_COOKIE, ctx.lang, 365 * 24 * 3600)
            return response

        return run

    def _fallback_context(self, request: Request) -> RequestContext:
        lang = choose_language(
            None,
            request.cookies.get(LANG_COOKIE),
            self.language,
            request.headers.get("accept-language"),
        )
        return RequestContext(request, lang, Formatter(lang, self.zone), timezone_name(self.zone))

    def _set_cookie(
        self, request: Request, response: Response, name: str, value: str, max_age: int
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=request.scope.get("root_path", "").rstrip("/") or "/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )

    # -- cross-site checks -------------------------------------------------------------

    @staticmethod
    def cross_site(request: Request) -> str | None:
        """Return the foreign origin of a cross-site POST, or None when it is same-origin."""
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return request.headers.get("origin") or request.headers["sec-fetch-site"]
        origin = request.headers.get("origin")
        if origin is None:
            return None
        # Compare hosts only, because behind a TLS proxy the request URL is http while the
        # browser's Origin is https.
        host = origin.partition("://")[2]
        return None if host and host == request.headers.get("host") else origin

    async def read_form(self, request: Request) -> dict[str, str]:
        """Read an urlencoded form body of at most MAX_FORM_BYTES; extra bytes are an error.

        Raises UnsupportedFormType for any other declared content type (multipart forms too),
        before reading the body.
        """
        content_type = request.headers.get("content-type", FORM_TYPE)
        if content_type.partition(";")[0].strip().lower() != FORM_TYPE:
            raise UnsupportedFormType(content_type[:100])
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise BadParameter("body", f"form body larger than {MAX_FORM_BYTES} bytes")
        pairs = parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        return dict(pairs)

    # -- login -------------------------------------------------------------------------

    async def login_page(self, request: Request, ctx: RequestContext) -> Response:
        next_url = _safe_next(request.query_params.get("next"), ctx.root)
        if ctx.session is not None:
            return RedirectResponse(next_url or ctx.url("/"), status_code=303)
        notice = None
        if request.query_params.get("logged_out"):
            notice = ctx.t("logged_out")
        elif next_url:
            notice = ctx.t("session_expired")
        return self._login_form(ctx, next_url, notice=notice)

    def _login_form(
        self,
        ctx: RequestContext,
        next_url: str | None,
        *,
        error: str | None = None,
        notice: str | None = None,
        user: str = "",
        status_code: int = 200,
    ) -> HTMLResponse:
        no_users = not self.users.users()
        return self.render(
            ctx,
            "login.html",
            status_code,
            next_url=next_url or "",
            error=error,
            notice=notice,
            user=user,
            no_users=no_users,
        )

    async def login(self, request: Request, ctx: RequestContext) -> Response:
        foreign = self.cross_site(request)
        if foreign is not None:
            message = ctx.t("origin_failed", origin=foreign[:100])
            return self.problem(ctx, 403, "forbidden_title", message, False)
        form = await self.read_form(request)
        user = form.get("user", "").strip()[:64]
        password = form.get("password", "")[: auth.MAX_PASSWORD_LENGTH]
        next_url = _safe_next(form.get("next"), ctx.root)
        client = request.client.host if request.client else "unknown"

        if self.verifications >= MAX_CONCURRENT_VERIFICATIONS:
            logger.warning("dashboard login for %r from %s rejected: %d password checks running",
                           user, client, self.verifications)  # fmt: skip
            return self._throttled(ctx, next_url, user, BUSY_RETRY_SECONDS)
        wait = self.throttle.reserve(user, client)
        if wait:
            logger.warning("dashboard login for %r from %s throttled (%d s)", user, client, wait)
            return self._throttled(ctx, next_url, user, wait)

        self.verifications += 1
        try:
            verified = await run_in_threadpool(self.users.verify, user, password)
        finally:
            self.verifications -= 1
        tag = self.users.password_tag(user) if verified else None
        if not verified or tag is None:
            logger.warning("dashboard login failed for %r from %s", user, client)
            return self._login_form(
                ctx, next_url, error=ctx.t("login_failed"), user=user, status_code=401
            )

        self.throttle.succeeded(user, client)
        _, cookie = self.signer.issue(user, tag, _now_ms())
        logger.info("dashboard login: %s from %s", user, client)
        response = RedirectResponse(next_url or ctx.url("/"), status_code=303)
        self._set_cookie(
            request, response, SESSION_COOKIE, cookie, int(self.signer.lifetime_seconds)
        )
        return response

    def _throttled(
        self, ctx: RequestContext, next_url: str | None, user: str, wait: int
    ) -> HTMLResponse:
        response = self._login_form(
            ctx, next_url, error=ctx.t("login_throttled", seconds=wait), user=user,
            status_code=429,
        )  # fmt: skip
        response.headers["retry-after"] = str(wait)
        return response

    async def logout(self, request: Request, ctx: RequestContext) -> Response:
        await self.check_post(request, ctx)
        assert ctx.session is not None
        await run_in_threadpool(self.revoked.revoke, ctx.session, _now_ms())
        response = RedirectResponse(ctx.url("/login", logged_out="1"), status_code=303)
        response.delete_cookie(
            SESSION_COOKIE,
            path=request.scope.get("root_path", "").rstrip("/") or "/",
            httponly=True,
            samesite="strict",
        )
        return response

    async def check_post(self, request: Request, ctx: RequestContext) -> dict[str, str]:
        """Read a logged-in POST form; raise CsrfFailed when its origin or token is wrong."""
        foreign = self.cross_site(request)
        if foreign is not None:
            raise CsrfFailed(ctx.t("origin_failed", origin=foreign[:100]))
        form = await self.read_form(request)
        assert ctx.session is not None
        if not self.signer.check_csrf(ctx.session, form.get("csrf")):
            raise CsrfFailed(ctx.t("csrf_failed"))
        return form


class CsrfFailed(Exception):
    """A state-changing POST without a valid CSRF token or from another site."""


class UnsupportedFormType(Exception):
    """A POST body that is not application/x-www-form-urlencoded; the message is its type."""


def _safe_next(value: str | None, root: str) -> str | None:
    """Return `value` when it is a path inside this dashboard, else None (no open redirect)."""
    if not value or len(value) > 2048:
        return None
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return None
    if root and not (value == root or value.startswith(root + "/")):
        return None
    return value


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def slash_breaks(text: str) -> Markup:
    """Escape `text` and allow a line break after each `/` (for routes in narrow tables)."""
    return Markup(str(escape(text)).replace("/", "/<wbr>"))


def warm_overview_cache(dashboard: Dashboard) -> None:
    """Read the overview of each preset range, the longest first, to fill the overview cache.

    A missing or unusable database is logged and left to the pages, which report it.
    """
    now_ms = time.time_ns() // 1_000_000
    started = time.perf_counter()
    try:
        for hours in sorted(PRESET_HOURS.values(), reverse=True):
            window = Window(now_ms - hours * HOUR_MS, now_ms + 1)
            dashboard.read_sync(dashboard.overview_cache.read_overview, window)
    except schema.DatabaseError as exc:
        logger.info("dashboard: overview cache not filled at startup: %s", exc)
        return
    logger.info(
        "dashboard: overview cache filled with %d hours in %.0f ms",
        len(dashboard.overview_cache),
        (time.perf_counter() - started) * 1000,
    )


def create_app(
    database: str | os.PathLike[str],
    *,
    users_file: str | os.PathLike[str] | None = None,
    secret_key_file: str | os.PathLike[str] | None = None,
    timezone: str | None = None,
    language: str | None = None,
    session_hours: float = DEFAULT_SESSION_HOURS,
    on_connect: Callable[[sqlite3.Connection], None] | None = None,
) -> Starlette:
    """Build the dashboard for the events database at `database`.

    `users_file` and `secret_key_file` default to dashboard-users.json and
    dashboard-secret.key beside the database; the key file is created on
    first use. `timezone` is an IANA zone name for the times shown (default:
    the server's local zone); `language` ("en" or "de") overrides the
    browser's Accept-Language. `on_connect` is called with every read-only
    connection the app opens (for example to install an SQLite authorizer).

    Raises DashboardConfigError naming the setting or file that cannot be used.
    A missing or unusable database is not checked here, so pages return 503 until it works.
    """
    from hauswacht.dashboard import views

    dashboard = Dashboard(
        database,
        users_file=users_file,
        secret_key_file=secret_key_file,
        timezone=timezone,
        language=language,
        session_hours=session_hours,
        on_connect=on_connect,
    )
    routes = views.routes(dashboard)
    routes.append(Mount("/static", StaticFiles(directory=PACKAGE_DIR / "static"), name="static"))

    async def not_found(request: Request, exc: HTTPException) -> Response:
        ctx = dashboard._fallback_context(request)
        api = request.url.path.startswith(f"{ctx.root}/api/")
        if exc.status_code == 404:
            message = ctx.t("not_found", path=request.url.path[:200])
            return dashboard.problem(ctx, 404, "not_found_title", message, api)
        return dashboard.problem(ctx, exc.status_code, "bad_request_title", str(exc.detail), api)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        threading.Thread(
            target=warm_overview_cache,
            args=(dashboard,),
            name="hauswacht dashboard cache warm-up",
            daemon=True,  # never delays a shutdown; the cache is only in memory
        ).start()
        yield

    app = Starlette(routes=routes, exception_handlers={HTTPException: not_found}, lifespan=lifespan)
    app.add_middleware(SecurityHeadersMiddleware)
    app.state.dashboard = dashboard
    return app
