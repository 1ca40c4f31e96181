"""Parsing of the dashboard's query parameters; every bad value raises BadParameter.

BadParameter carries the parameter's name and a message in the request's
language, and the app turns it into a 400 response (an HTML page or JSON),
never a 500.

A time range comes from one of:
- `range=1h|24h|7d|30d`: the last 1, 24, 168 or 720 hours up to now;
- `from=` and optionally `to=` (default now), also spelled `range=custom`:
  ISO 8601 dates or times (`2015-05-17`, `2015-05-17T10:00`,
  `2015-05-17T10:00:00+02:00`), read in the dashboard's time zone when they
  have no offset, or integer epoch milliseconds;
- `hours=N` (1 to 87,600), the form of `/api/stats?hours=24`.
The window is [start, end) in epoch ms; the rollups widen it to whole hours.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from hauswacht.dashboard.i18n import timezone_name, tr
from hauswacht.writer.queries import HOUR_MS, Window

PRESET_HOURS = {"1h": 1, "24h": 24, "7d": 168, "30d": 720}
DEFAULT_RANGE = "24h"
CUSTOM_RANGE = "custom"
MAX_HOURS = 87_600  # ten years
MAX_TEXT = 1024  # characters of a route or other free-text parameter
MAX_TIME_TEXT = 64
ERROR_STATUS_FILTERS = ("unresolved", "resolved", "ignored", "all")
ENDPOINT_SORTS = ("requests", "p95", "avg", "errors")


class BadParameter(ValueError):
    """A query or form parameter with an invalid value; the message names it."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


@dataclass(frozen=True)
class TimeRange:
    """The range a page shows: a preset key or "custom", and its window in epoch ms."""

    key: str
    start_ms: int
    end_ms: int

    @property
    def window(self) -> Window:
        return Window(self.start_ms, self.end_ms)

    def query(self) -> dict[str, str]:
        """Return the query parameters that select this range again."""
        if self.key in PRESET_HOURS:
            return {"range": self.key}
        return {"from": str(self.start_ms), "to": str(self.end_ms)}


def parse_int(
    params: Mapping[str, str], name: str, default: int, low: int, high: int, lang: str
) -> int:
    """Return integer parameter `name` (or `default`), checked to lie in [low, high]."""
    text = params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text.strip())
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        shown = text if len(text) <= MAX_TIME_TEXT else text[:MAX_TIME_TEXT] + "…"
        raise BadParameter(name, tr("bad_int", lang, value=shown, name=name, low=low, high=high))
    return value


def parse_choice(
    params: Mapping[str, str], name: str, choices: tuple[str, ...], default: str, lang: str
) -> str:
    """Return parameter `name` (or `default`), which must be one of `choices`."""
    value = params.get(name)
    if value is None or value == "":
        return default
    if value not in choices:
        shown = value if len(value) <= MAX_TIME_TEXT else value[:MAX_TIME_TEXT] + "…"
        raise BadParameter(
            name, tr("bad_choice", lang, value=shown, name=name, choices=", ".join(choices))
        )
    return value


def parse_text(params: Mapping[str, str], name: str, lang: str) -> str | None:
    """Return free-text parameter `name`, or None when absent; at most MAX_TEXT characters."""
    value = params.get(name)
    if value is None:
        return None
    if len(value) > MAX_TEXT:
        raise BadParameter(name, tr("too_long", lang, name=name, limit=MAX_TEXT))
    return value


def parse_moment(text: str, name: str, zone: dt.tzinfo, lang: str) -> int:
    """Parse an ISO 8601 date or time, or epoch ms, into epoch ms; no offset means `zone`."""
    stripped = text.strip()
    if stripped.isdigit() and len(stripped) <= 15:
        return int(stripped)
    try:
        if len(stripped) > MAX_TIME_TEXT:
            raise ValueError("too long")
        moment = dt.datetime.fromisoformat(stripped)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone)
        return int(moment.timestamp() * 1000)
    except (ValueError, OverflowError, OSError):
        shown = text if len(text) <= MAX_TIME_TEXT else text[:MAX_TIME_TEXT] + "…"
        raise BadParameter(
            name, tr("bad_time", lang, value=shown, name=name, zone=timezone_name(zone))
        ) from None


def parse_range(
    params: Mapping[str, str],
    lang: str,
    zone: dt.tzinfo,
    now_ms: int,
    default: str = DEFAULT_RANGE,
) -> TimeRange:
    """Return the time range selected by `params`; see the module docstring for the forms."""
    has_hours = params.get("hours") not in (None, "")
    has_bounds = params.get("from") not in (None, "") or params.get("to") not in (None, "")
    if has_hours and has_bounds:
        raise BadParameter("hours", tr("hours_and_from", lang))
    if has_hours:
        hours = parse_int(params, "hours", 24, 1, MAX_HOURS, lang)
        return TimeRange(f"{hours}h", now_ms - hours * HOUR_MS, now_ms + 1)

    choices = (*PRESET_HOURS, CUSTOM_RANGE)
    key = parse_choice(params, "range", choices, CUSTOM_RANGE if has_bounds else default, lang)
    if key != CUSTOM_RANGE:
        return TimeRange(key, now_ms - PRESET_HOURS[key] * HOUR_MS, now_ms + 1)

    start_text = params.get("from")
    end_text = params.get("to")
    if not start_text:
        raise BadParameter("from", tr("missing", lang, name="from", reason=tr("need_from", lang)))
    start_ms = parse_moment(start_text, "from", zone, lang)
    end_ms = parse_moment(end_text, "to", zone, lang) if end_text else now_ms + 1
    if end_ms <= start_ms:
        raise BadParameter("to", tr("bad_order", lang, value=end_text or "", start=start_text))
    return TimeRange(CUSTOM_RANGE, start_ms, end_ms)
