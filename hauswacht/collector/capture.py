"""capture_exception(), record_metric() and measure(): events from application code.

They feed the active collector (see collector.py) with a non-blocking queue
put, so they are safe on the event loop and on any worker thread, and never
wait on the disk. Inside an HTTP request handled by HauswachtMiddleware (also
in threads started with the request's context, as Starlette's
`run_in_threadpool` does) an error event gets the request's trace id and
scrubbed request context.

Without an active collector (none created yet, or the last one stopped) the
event is discarded: the first discard logs a warning, and every discard is
counted in `discarded_without_collector()`. A full queue drops the event and
counts it in the queue's drop counter, which the writer stores.

Nothing here raises into the application while it runs. A call with invalid
arguments (a metric name that is not a non-empty str of at most MAX_NAME
characters, a value that is not a finite int or float, bools included, a
unit that is not a short str, tags that are not a mapping with str keys, or
`capture_exception()` given something that is not an exception) drops its
event. The drop is counted with reason "invalid" and logged as a warning
naming the metric and the type of the bad value, at most once a minute with
the count since the last warning.

The one exception is `measure(...)` itself: its arguments are checked when
the measure object is created, which for `@measure(...)` is when the module
is imported. A bad name, unit or tags there raises ValueError or TypeError
at once, because it is a fixed programming error rather than bad data.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar

import orjson

from hauswacht.collector.collector import LogLimiter, active_collector
from hauswacht.collector.errors import (
    build_error_event,
    current_exception,
    is_captured,
    mark_captured,
    scrub_tags,
)
from hauswacht.collector.middleware import current_request
from hauswacht.collector.settings import DEFAULT_SCRUB_FIELDS
from hauswacht.writer.events import Event, MetricEvent

logger = logging.getLogger(__name__)

MAX_NAME = 200
MAX_UNIT = 32

# Multipliers from seconds (time.perf_counter) to the unit measure() records in.
_TIME_UNITS = {"ns": 1e9, "us": 1e6, "ms": 1e3, "s": 1.0}

_discard_lock = threading.Lock()
_discarded = 0

F = TypeVar("F", bound=Callable[..., Any])


def discarded_without_collector() -> int:
    """Return how many events were discarded because no collector was active."""
    return _discarded


def _put(event: Event) -> bool:
    collector = active_collector()
    if collector is not None:
        return collector.put(event)
    global _discarded
    with _discard_lock:
        _discarded += 1
        first = _discarded == 1
    if first:
        logger.warning(
            "Hauswacht has no active collector, so a %s was discarded; create "
            "HauswachtMiddleware or Collector first (further discards are only counted)",
            type(event).__name__,
        )
    return False


_invalid_log = LogLimiter()


def _drop_invalid(event_description: str, problem: str) -> None:
    """Count one event dropped for invalid arguments and log it (rate-limited)."""
    collector = active_collector()
    if collector is not None:
        collector.count_invalid()
    else:
        global _discarded
        with _discard_lock:
            _discarded += 1
    count = _invalid_log.hit()
    if count:
        logger.warning(
            "Hauswacht dropped %s: %s (%d calls with invalid arguments since the last warning)",
            event_description,
            problem,
            count,
        )


def _describe_name(name: object) -> str:
    if isinstance(name, str):
        return repr(name[:MAX_NAME])
    return f"with a name of type {type(name).__name__}"


def _bad_name_message(name: object) -> str:
    return f"metric name must be a non-empty str of at most {MAX_NAME} characters, got {name!r}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def canonical_tags(tags: Mapping[str, Any] | None) -> str:
    """Return the canonical JSON text of a tag mapping: sorted keys, "{}" when empty."""
    if not tags:
        return "{}"
    if not isinstance(tags, Mapping):
        raise TypeError(f"tags must be a mapping of str to value, got {type(tags).__name__}")
    clean: dict[str, Any] = {}
    for key, value in tags.items():
        if not isinstance(key, str):
            raise TypeError(f"tag names must be str, got {type(key).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            clean[key] = str(value)
        elif value is None or isinstance(value, str | bool | int | float):
            clean[key] = value
        else:
            clean[key] = str(value)
    return orjson.dumps(clean, option=orjson.OPT_SORT_KEYS).decode()


def capture_exception(exc: BaseException | None = None, **tags: Any) -> str | None:
    """Queue an error event for `exc` (default: the exception being handled).

    `tags` are stored with the event (sensitive names scrubbed). Returns the
    event's trace id ("" outside a request), or None when there was no
    exception, it was captured before, or the event was dropped.
    """
    if exc is None:
        exc = current_exception()
        if exc is None:
            logger.debug("capture_exception() called outside an except block; nothing captured")
            return None
    if not isinstance(exc, BaseException):
        _drop_invalid(
            "an error event",
            f"capture_exception() takes an exception, got {type(exc).__name__}",
        )
        return None
    if is_captured(exc):
        return None

    collector = active_collector()
    settings = collector.settings if collector is not None else None
    scrub_fields = settings.scrub_fields if settings is not None else DEFAULT_SCRUB_FIELDS
    recorder = current_request()
    trace_id = recorder.trace_id if recorder is not None else None
    try:
        request = recorder.request_context() if recorder is not None else None
        event = build_error_event(
            exc,
            ts=_now_ms(),
            trace_id=trace_id,
            request=request,
            tags=scrub_tags(tags, scrub_fields),
            release=settings.release if settings is not None else None,
            environment=settings.environment if settings is not None else None,
        )
    except Exception:
        # A bug in capture must not break the app's own error handling.
        logger.exception("Hauswacht failed to build an error event for %s", type(exc).__name__)
        return None
    mark_captured(exc)
    if not _put(event):
        return None
    return trace_id or ""


def record_metric(
    name: str, value: float, unit: str | None = None, tags: Mapping[str, Any] | None = None
) -> bool:
    """Queue one observation of metric `name`; return False when it was dropped.

    `tags` become canonical JSON (sorted keys), so equal tag sets share one
    rollup row. Invalid arguments drop the observation (see the module
    docstring) instead of raising.
    """
    problem = _metric_problem(name, value, unit)
    if problem is None:
        try:
            tags_json = canonical_tags(tags)
        except TypeError as exc:
            problem = str(exc)
    if problem is not None:
        _drop_invalid(f"metric {_describe_name(name)}", problem)
        return False
    event = MetricEvent(_now_ms(), name, float(value), unit, tags_json)
    return _put(event)


def _metric_problem(name: object, value: object, unit: object) -> str | None:
    """Describe what is wrong with a metric's name, value or unit, or return None."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        return f"the name must be a non-empty str of at most {MAX_NAME} characters"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"the value must be an int or float, got {type(value).__name__}"
    if not math.isfinite(value):
        return f"the value must be finite, got a non-finite {type(value).__name__}"
    if unit is not None and (not isinstance(unit, str) or len(unit) > MAX_UNIT):
        return f"the unit must be a str of at most {MAX_UNIT} characters"
    return None


# The `with measure(...)` blocks open in the current context, innermost first,
# as (measure, start time, next entry). Each thread and each asyncio task has
# its own context, so concurrent uses do not mix. One module-level variable
# keeps contexts from growing a key per measure object.
_open_measures: ContextVar[tuple[measure, float, Any] | None] = ContextVar(
    "hauswacht_open_measures", default=None
)


class measure:
    """Record how long a block or a function call takes, as metric `name`.

        with measure("geocode.lookup"):
            ...

        @measure("tours.plan", tags={"engine": "osrm"})
        async def plan(...): ...

    The duration is recorded in `unit` ("ms" by default; "s", "us" and "ns"
    also work), also when the block raises. A name that is not a str
    or tags that are not a mapping with str keys raise TypeError, and an
    empty or too long name or an unknown unit raise ValueError, here, when the
    object is created. One measure object may be used by
    several threads and tasks at once, and nested in itself, because start
    times are kept per context.
    """

    def __init__(self, name: str, unit: str = "ms", tags: Mapping[str, Any] | None = None) -> None:
        if not isinstance(name, str):
            raise TypeError(_bad_name_message(name))
        if not name or len(name) > MAX_NAME:
            raise ValueError(_bad_name_message(name))
        if unit not in _TIME_UNITS:
            raise ValueError(
                f"measure({name!r}): unit must be one of {sorted(_TIME_UNITS)}, got {unit!r}"
            )
        self.name = name
        self.unit = unit
        self.tags = canonical_tags(tags)
        self._scale = _TIME_UNITS[unit]

    def _record(self, seconds: float) -> None:
        _put(MetricEvent(_now_ms(), self.name, seconds * self._scale, self.unit, self.tags))

    def __enter__(self) -> measure:
        _open_measures.set((self, time.perf_counter(), _open_measures.get()))
        return self

    def __exit__(self, *exc_info: object) -> None:
        end = time.perf_counter()
        entry = _open_measures.get()
        if entry is None or entry[0] is not self:
            raise RuntimeError(f"measure({self.name!r}) exited without being entered")
        _measure, start, outer = entry
        _open_measures.set(outer)
        self._record(end - start)

    async def __aenter__(self) -> measure:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__(*exc_info)

    def __call__(self, func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return await func(*args, **kwargs)
                finally:
                    self._record(time.perf_counter() - start)

            return timed_async  # type: ignore[return-value]

        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self._record(time.perf_counter() - start)

        return timed  # type: ignore[return-value]
