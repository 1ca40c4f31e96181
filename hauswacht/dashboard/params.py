"""Parsing of the dashboard's query parameters; every bad value raises BadParameter.

BadParameter carries the parameter's name and a message in the request's
language, and the app turns it into a 400 response (an HTML page or JSON),
never a 500.

A time range comes from one of:
- `range=1h|24h|7d|30d`: the last 1, 24, 168 or 720 hours up to now;
- `from=` and optionally `to=` (default now), also spelled `range=custom`.
  Each is an ISO 8601 date or time (`2015-05-17`, `20150517`,
  `2015-05-17T10:00`, `2015-05-17T10:00:00+02:00`), read in the dashboard's
  time zone when it has no offset. Or it is integer epoch milliseconds of 12
  or 13 digits, at least 100000000000 (1973-03-03), so that an 8-digit
  basic date is never read as milliseconds;
- `hours=N` (1 to 87,600), the form of `/api/stats?hours=24`.
The window is [start, end) in epoch ms; the rollups widen it to whole hours.
Every range spans at most MAX_HOURS hours and lies within the years 1970 to
9999, so pages that build one entry per hour stay bounded and every time in
the window can be formatted.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass

from hauswacht.dashboard.i18n import timezone_name, tr
from hauswacht.i18n import format_number
from hauswacht.writer.queries import HOUR_MS, Window

PRESET_HOURS = {"1h": 1, "24h": 24, "7d": 168, "30d": 720}
DEFAULT_RANGE = "24h"
CUSTOM_RANGE = "custom"
MAX_HOURS = 87_600  # ten years
MAX_TEXT = 1024  # characters of a route or other free-text parameter
MAX_TIME_TEXT = 64
MIN_EPOCH_MS = 0  # 1970-01-01T00:00:00Z
MAX_EPOCH_MS = 253_402_300_800_000  # 10000-01-01T00:00:00Z, the end of year 9999
MIN_EPOCH_DIGITS_MS = 100_000_000_000  # shorter digit strings are not read as epoch ms
BASIC_DATE_DIGITS = 8  # 20150517 is an ISO 8601 basic date, not epoch ms
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
        raise BadParameter(
            name,
            tr(
                "bad_int",
                lang,
                value=shown,
                name=name,
                low=format_number(low, lang),
                high=format_number(high, lang),
            ),
        )
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


def _shown(text: str) -> str:
    return text if len(text) <= MAX_TIME_TEXT else text[:MAX_TIME_TEXT] + "…"


def _local_time_exists(moment: dt.datetime) -> bool:
    """Tell whether naive-turned-aware `moment` is a real wall time (not in a DST gap)."""
    try:
        round_trip = moment.astimezone(dt.UTC).astimezone(moment.tzinfo)
    except (ValueError, OverflowError):
        return True  # at the ends of the datetime range; the bounds check rejects it
    return round_trip.replace(tzinfo=None) == moment.replace(tzinfo=None)


# A "+" typed into a query string arrives as a space ("10:00+02:00" becomes
# "10:00 02:00"): a space between a time of day and a UTC offset is read as "+".
_PLUS_SENT_AS_SPACE = re.compile(r"(:\d\d(?:\.\d+)?) (\d\d(?::?\d\d)?)$")


def parse_moment(text: str, name: str, zone: dt.tzinfo, lang: str) -> int:
    """Parse an ISO 8601 date or time, or epoch ms, into epoch ms; no offset means `zone`.

    The result lies in [MIN_EPOCH_MS, MAX_EPOCH_MS]; anything else raises BadParameter.
    """
    stripped = _PLUS_SENT_AS_SPACE.sub(r"\1+\2", text.strip())
    bad_time = BadParameter(
        name, tr("bad_time", lang, value=_shown(text), name=name, zone=timezone_name(zone))
    )
    if stripped.isascii() and stripped.isdigit() and len(stripped) != BASIC_DATE_DIGITS:
        if len(stripped) > 13 or int(stripped) < MIN_EPOCH_DIGITS_MS:
            raise bad_time
        value = int(stripped)
    else:
        if len(stripped) > MAX_TIME_TEXT:
            raise bad_time
        try:
            moment = dt.datetime.fromisoformat(stripped)
        except ValueError:
            raise bad_time from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone)
            if not _local_time_exists(moment):
                raise BadParameter(
                    name,
                    tr("time_gap", lang, value=_shown(text), name=name, zone=timezone_name(zone)),
                )
        try:
            value = int(moment.timestamp() * 1000)
        except (ValueError, OverflowError, OSError):
            value = MAX_EPOCH_MS + 1 if moment.year > 1970 else MIN_EPOCH_MS - 1
    if not MIN_EPOCH_MS <= value <= MAX_EPOCH_MS:
        raise BadParameter(name, tr("time_bounds", lang, value=_shown(text), name=name))
    return value


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
        shown_end = end_text or tr("now_at", lang, time=_iso_in_zone(now_ms, zone))
        raise BadParameter("to", tr("bad_order", lang, value=shown_end, start=start_text))
    if end_ms - start_ms > MAX_HOURS * HOUR_MS:
        raise BadParameter(
            "to", tr("range_too_long", lang, max_hours=format_number(MAX_HOURS, lang))
        )
    return TimeRange(CUSTOM_RANGE, start_ms, end_ms)


def _iso_in_zone(epoch_ms: int, zone: dt.tzinfo) -> str:
    moment = dt.datetime.fromtimestamp(epoch_ms / 1000, tz=zone)
    return moment.isoformat(timespec="seconds")
