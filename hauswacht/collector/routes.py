"""Route templates for request events, from the route Starlette matched.

Starlette (1.x) sets `scope["route"]` at each router level it passes, so after
the app ran the scope contains the innermost matched route, and a Mount only
moves the matched prefix into `scope["root_path"]`. The full template of a
route inside mounts (`/api/tours/{tour_id}`) is therefore built by finding the
chain of Mounts from the top-level app down to that route object: one walk of
the route tree, cached by route identity, so the request path pays one dict
lookup.

Templates use Starlette's `path_format` (`{tour_id}`, without `:int`
converters). A route not found in the cached walk triggers one new walk (the
app may have added routes); a route still not found gets the mount prefix as
sent (from `root_path`) plus its own template. Routers that record the
matched route elsewhere are handled too: FastAPI 0.165's included routers
(see `_fastapi_path`) and routers that set only `scope["endpoint"]`.
"""

from __future__ import annotations

from typing import Any

from hauswacht.writer.events import UNMATCHED_ROUTE

MAX_DEPTH = 32  # nested mounts followed; deeper ones are treated as not found
MOUNT_SUFFIX = "/{path}"  # what Mount appends to its path_format


def _mount_prefix(mount: Any) -> str:
    path_format = getattr(mount, "path_format", None)
    if isinstance(path_format, str) and path_format.endswith(MOUNT_SUFFIX):
        return path_format[: -len(MOUNT_SUFFIX)]
    return getattr(mount, "path", "") or ""


def _walk(routes: Any, prefix: str, tables: _Tables, depth: int) -> None:
    if depth > MAX_DEPTH or not routes:
        return
    by_route, by_endpoint = tables
    for route in routes:
        children = getattr(route, "routes", None)
        if children is not None and hasattr(route, "app"):
            # A Mount or Host. When it stays the innermost route after the app
            # ran, its inner router matched nothing, unless it has no routes of
            # its own (StaticFiles and other plain ASGI apps).
            child_prefix = prefix + (_mount_prefix(route) if hasattr(route, "path") else "")
            if children:
                by_route.setdefault(id(route), (route, UNMATCHED_ROUTE))
                _walk(children, child_prefix, tables, depth + 1)
            else:
                template = child_prefix + MOUNT_SUFFIX
                by_route.setdefault(id(route), (route, template))
                _add_endpoint(by_endpoint, route.app, template)
            continue
        path_format = getattr(route, "path_format", None)
        if isinstance(path_format, str):
            template = prefix + path_format
            by_route.setdefault(id(route), (route, template))
            _add_endpoint(by_endpoint, getattr(route, "endpoint", None), template)


def _add_endpoint(
    by_endpoint: dict[int, tuple[Any, str | None]], endpoint: Any, template: str
) -> None:
    if endpoint is None:
        return
    entry = by_endpoint.get(id(endpoint))
    if entry is None:
        by_endpoint[id(endpoint)] = (endpoint, template)
    elif entry[1] != template:
        by_endpoint[id(endpoint)] = (endpoint, None)  # one endpoint on several paths


def _fastapi_path(fastapi_scope: Any, route: Any) -> str | None:
    """Return the full path template FastAPI recorded for the matched route, or None.

    FastAPI 0.165 keeps included routers unflattened: `scope["route"]` is the
    APIRoute as defined, without the include prefix, and the route with its
    full path is in `scope["fastapi"]["effective_route_context"]` (a private
    structure, read defensively).
    """
    if not isinstance(fastapi_scope, dict):
        return None
    context = fastapi_scope.get("effective_route_context")
    if context is None:
        return None
    if route is not None and getattr(context, "original_route", None) is not route:
        return None  # recorded at an outer level; a deeper router matched since
    path = getattr(getattr(context, "starlette_route", None), "path_format", None)
    if not path:
        path = getattr(context, "path_format", None)
    return path if isinstance(path, str) and path else None


def _literal_mount_prefix(scope: Any, entry_root_path: str) -> str:
    """Return the path consumed by mounts below the deployment root_path, as sent."""
    prefix = scope.get("root_path", "")
    if entry_root_path and prefix.startswith(entry_root_path):
        prefix = prefix[len(entry_root_path) :]
    return prefix


_Tables = tuple[dict[int, tuple[Any, str]], dict[int, tuple[Any, str | None]]]


class RouteTemplates:
    """Route templates of one top-level app, cached by route (and endpoint) identity.

    Safe to share between concurrent requests: a walk builds new dicts and
    replaces the old ones in one assignment, and entries are never changed.
    Entries keep their route alive, so an id() is never reused while cached.
    """

    MAX_UNKNOWN = 1000

    def __init__(self) -> None:
        self._by_route: dict[int, tuple[Any, str]] = {}
        self._by_endpoint: dict[int, tuple[Any, str | None]] = {}
        self._unknown: dict[int, Any] = {}

    def template(self, scope: Any, top_app: Any, entry_root_path: str) -> str:
        """Return the template of the route the app matched, without the deployment root_path."""
        route = scope.get("route")
        fastapi_scope = scope.get("fastapi")
        if fastapi_scope is not None:
            path = _fastapi_path(fastapi_scope, route)
            if path is not None:
                return _literal_mount_prefix(scope, entry_root_path) + path

        if route is not None:
            template = self._lookup(route, top_app, by_endpoint=False)
            if template is not None:
                return template
            path_format = getattr(route, "path_format", None)
            if not isinstance(path_format, str):
                return UNMATCHED_ROUTE
            # Not below top_app's routes (added at run time in an unusual
            # way): the mount prefix as sent may contain ids.
            return _literal_mount_prefix(scope, entry_root_path) + path_format

        # Routers that do not set scope["route"] for every route (FastAPI
        # 0.165 for plain Starlette routes such as /docs) still set the endpoint.
        endpoint = scope.get("endpoint")
        if endpoint is not None:
            template = self._lookup(endpoint, top_app, by_endpoint=True)
            if template is not None:
                return template
        return UNMATCHED_ROUTE

    def _lookup(self, key: Any, top_app: Any, *, by_endpoint: bool) -> str | None:
        table: dict[int, tuple[Any, Any]] = self._by_endpoint if by_endpoint else self._by_route
        entry = table.get(id(key))
        if entry is not None and entry[0] is key:
            return entry[1]
        if self._unknown.get(id(key)) is key:
            return None
        self._rewalk(top_app)
        table = self._by_endpoint if by_endpoint else self._by_route
        entry = table.get(id(key))
        if entry is not None and entry[0] is key:
            return entry[1]
        if len(self._unknown) < self.MAX_UNKNOWN:
            self._unknown[id(key)] = key
        return None

    def _rewalk(self, top_app: Any) -> None:
        by_route: dict[int, tuple[Any, str]] = {}
        by_endpoint: dict[int, tuple[Any, str | None]] = {}
        _walk(getattr(top_app, "routes", None), "", (by_route, by_endpoint), 0)
        self._by_route = by_route
        self._by_endpoint = by_endpoint
