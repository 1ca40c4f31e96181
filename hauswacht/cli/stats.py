"""`hauswacht stats`: request, error and latency figures from the rollup tables."""

from __future__ import annotations

import argparse
import datetime as dt
import sqlite3
import sys
from pathlib import Path
from typing import TextIO

import orjson

from hauswacht.cli.common import (
    add_database_option,
    describe_database_error,
    escape_control,
    fail,
    render_table,
    resolve_database,
)
from hauswacht.i18n import format_number, translate
from hauswacht.writer import schema
from hauswacht.writer.queries import STATUS_CLASSES, Stats, Window, read_stats

MAX_ROUTE_WIDTH = 60  # characters of a route shown in the table
# Digit strings read as epoch ms, as the dashboard reads them: 12 or 13 digits
# (from 1973-03-03 to the end of the year 9999).
MIN_EPOCH_MS = 100_000_000_000
MAX_EPOCH_MS = 253_402_300_800_000  # 10000-01-01T00:00:00Z, the end of year 9999

CATALOG = {
    "help": {
        "en": "show request, error and latency figures from the rollups",
        "de": "Anfrage-, Fehler- und Latenzzahlen aus den Rollups zeigen",
    },
    "help_from": {
        "en": "start of the window, ISO 8601, e.g. 2015-05-18T10:00:00Z (UTC if no offset), "
        "or epoch milliseconds",
        "de": "Beginn des Zeitraums, ISO 8601, z. B. 2015-05-18T10:00:00Z (UTC ohne Offset), "
        "oder Epoch-Millisekunden",
    },
    "help_to": {
        "en": "end of the window (exclusive), ISO 8601; rollups are hourly, so whole hours count",
        "de": "Ende des Zeitraums (ausschließlich), ISO 8601; Rollups sind stündlich, "
        "daher zählen ganze Stunden",
    },
    "help_json": {"en": "print JSON instead of tables", "de": "JSON statt Tabellen ausgeben"},
    "help_routes": {
        "en": "number of top routes to list (default: 10)",
        "de": "Anzahl der aufgeführten Top-Routen (Standard: 10)",
    },
    "bad_time": {
        "en": "invalid {option} value {value!r}: expected ISO 8601, e.g. 2015-05-18T10:00:00Z, "
        "or epoch milliseconds (12 or 13 digits)",
        "de": "ungültiger Wert für {option}: {value!r}; erwartet ISO 8601, "
        "z. B. 2015-05-18T10:00:00Z, oder Epoch-Millisekunden (12 oder 13 Ziffern)",
    },
    "bad_window": {
        "en": "--to ({end}) must be later than --from ({start})",
        "de": "--to ({end}) muss nach --from ({start}) liegen",
    },
    "bad_routes": {
        "en": "invalid --routes value {value}: expected a number from 1 to 1000",
        "de": "ungültiger Wert für --routes: {value}; erwartet eine Zahl von 1 bis 1000",
    },
    "title": {"en": "Hauswacht stats: {path}", "de": "Hauswacht-Statistik: {path}"},
    "window_all": {"en": "Window: all data", "de": "Zeitraum: alle Daten"},
    "window": {"en": "Window: {start} to {end}", "de": "Zeitraum: {start} bis {end}"},
    "open_start": {"en": "the beginning", "de": "Anfang"},
    "open_end": {"en": "now", "de": "jetzt"},
    "span": {
        "en": "Data: hours {first} to {last} (UTC)",
        "de": "Daten: Stunden {first} bis {last} (UTC)",
    },
    "no_data": {"en": "No requests in this window.", "de": "Keine Anfragen in diesem Zeitraum."},
    "requests": {"en": "Requests", "de": "Anfragen"},
    "errors": {"en": "Errors captured", "de": "Erfasste Fehler"},
    "error_groups": {"en": "Error groups", "de": "Fehlergruppen"},
    "dropped": {"en": "Events dropped", "de": "Verworfene Ereignisse"},
    "latency": {"en": "Latency (ms)", "de": "Latenz (ms)"},
    "latency_unknown": {
        "en": "no request in this window has a duration",
        "de": "keine Anfrage in diesem Zeitraum hat eine Dauer",
    },
    "hours_title": {"en": "Per hour (UTC)", "de": "Pro Stunde (UTC)"},
    "hour": {"en": "Hour", "de": "Stunde"},
    "routes_title": {"en": "Top routes", "de": "Top-Routen"},
    "route": {"en": "Route", "de": "Route"},
    "method": {"en": "Method", "de": "Methode"},
    "avg_ms": {"en": "avg ms", "de": "Ø ms"},
    "p95_ms": {"en": "p95 ms", "de": "p95 ms"},
}


def tr(key: str, lang: str, **fields: object) -> str:
    return translate(CATALOG, key, lang, **fields)


# --- stats ---------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction, lang: str) -> None:
    parser = subparsers.add_parser("stats", help=tr("help", lang), description=tr("help", lang))
    add_database_option(parser, lang)
    parser.add_argument("--from", dest="start", metavar="ISO8601", help=tr("help_from", lang))
    parser.add_argument("--to", dest="end", metavar="ISO8601", help=tr("help_to", lang))
    parser.add_argument("--json", action="store_true", help=tr("help_json", lang))
    parser.add_argument("--routes", default="10", metavar="N", help=tr("help_routes", lang))
    parser.set_defaults(handler=run_stats, lang=lang)


def parse_instant(text: str) -> int:
    """Parse an ISO 8601 date or date-time, or epoch ms, into UTC epoch ms; no offset means UTC.

    Digits alone are epoch milliseconds, as in the dashboard's links, except
    eight digits, which ISO 8601 reads as a date (20150518). Like the
    dashboard, only 12 or 13 digits count as epoch milliseconds, so a year
    such as 2015 is rejected instead of read as a moment in 1970.
    """
    stripped = text.strip()
    if stripped.isascii() and stripped.isdigit() and len(stripped) != 8:
        value = int(stripped)
        if not MIN_EPOCH_MS <= value <= MAX_EPOCH_MS or len(stripped) > 13:
            raise ValueError(f"not epoch milliseconds from 1973 to 9999: {stripped}")
        return value
    moment = dt.datetime.fromisoformat(stripped)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def parse_window(start: str | None, end: str | None, lang: str) -> Window | str:
    """Return the window of --from/--to, or the error message for a bad value."""
    bounds: list[int | None] = []
    for option, value in (("--from", start), ("--to", end)):
        if value is None:
            bounds.append(None)
            continue
        try:
            bounds.append(parse_instant(value))
        except ValueError:
            return tr("bad_time", lang, option=option, value=value)
    start_ms, end_ms = bounds
    if start_ms is not None and end_ms is not None and end_ms <= start_ms:
        return tr("bad_window", lang, start=start, end=end)
    return Window(start_ms, end_ms)


def run_stats(args: argparse.Namespace) -> int:
    lang = args.lang
    window = parse_window(args.start, args.end, lang)
    if isinstance(window, str):
        print(f"hauswacht: {window}", file=sys.stderr)
        return 2
    try:
        route_limit = int(args.routes)
    except ValueError:
        route_limit = 0
    if not 1 <= route_limit <= 1000:
        print(f"hauswacht: {tr('bad_routes', lang, value=args.routes)}", file=sys.stderr)
        return 2

    path = resolve_database(args.db)
    try:
        stats = load_stats(path, window, route_limit)
    except schema.DatabaseError as exc:
        return fail(describe_database_error(path, exc, lang))

    if args.json:
        sys.stdout.write(orjson.dumps(stats.to_json(), option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
    else:
        print_stats(stats, path, args.start, args.end, lang)
    return 0


def load_stats(path: Path, window: Window, route_limit: int = 10) -> Stats:
    """Open `path` read-only and read its stats; raise schema.DatabaseError if it is unusable."""
    conn = schema.open_readonly(path)
    try:
        return read_stats(conn, window, route_limit)
    except sqlite3.Error as exc:
        raise schema.DatabaseError.from_sqlite(path, exc, "read") from exc
    finally:
        conn.close()


# --- tables --------------------------------------------------------------------------


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _hour_label(iso_hour: str) -> str:
    return iso_hour.replace("T", " ")[:16]  # "2015-05-17 10:00"


def format_stats(
    stats: Stats, path: Path, start: str | None, end: str | None, lang: str
) -> list[str]:
    """Return the stats as readable lines in `lang`."""

    def number(value: float | None, decimals: int = 0) -> str:
        return format_number(value, lang, decimals)

    lines = [tr("title", lang, path=escape_control(str(path)))]
    if start is None and end is None:
        lines.append(tr("window_all", lang))
    else:
        lines.append(
            tr(
                "window",
                lang,
                start=start or tr("open_start", lang),
                end=end or tr("open_end", lang),
            )
        )
    if stats.first_hour is not None:
        first, last = _hour_label(stats.first_hour), _hour_label(stats.last_hour or "")
        lines.append(tr("span", lang, first=first, last=last))
    lines.append("")

    summary = [[tr("requests", lang), number(stats.requests)]]
    for key in (*STATUS_CLASSES, *sorted(set(stats.status) - set(STATUS_CLASSES))):
        summary.append([f"  {key}", number(stats.status.get(key, 0))])
    summary.append([tr("errors", lang), number(stats.errors)])
    summary.append([tr("error_groups", lang), number(stats.error_groups)])
    summary.append([tr("dropped", lang), number(stats.dropped)])
    for row in summary:
        lines.append(f"{row[0]:<24}{row[1]:>12}")
    lines.append("")

    latency = stats.latency_ms
    lines.append(tr("latency", lang))
    if latency.max is None:
        lines.append(f"  {tr('latency_unknown', lang)}")
    else:
        headers = ["p50", "p95", "p99", "avg" if lang == "en" else "Ø", "max"]
        values = [latency.p50, latency.p95, latency.p99, latency.avg, latency.max]
        lines.extend(
            "  " + text
            for text in render_table(headers, [[number(v, 1) for v in values]], left_columns=0)
        )
    lines.append("")

    if stats.requests == 0:
        lines.append(tr("no_data", lang))
        return lines

    lines.append(tr("hours_title", lang))
    hour_rows = [
        [
            _hour_label(hour.hour),
            number(hour.requests),
            number(hour.client_errors),
            number(hour.server_errors),
            number(hour.p95_ms, 1),
        ]
        for hour in stats.hours
    ]
    headers = [tr("hour", lang), tr("requests", lang), "4xx", "5xx", tr("p95_ms", lang)]
    lines.extend(render_table(headers, hour_rows))
    lines.append("")

    lines.append(tr("routes_title", lang))
    route_rows = [
        [
            route.method,
            _shorten(route.route, MAX_ROUTE_WIDTH),
            number(route.requests),
            number(route.client_errors),
            number(route.server_errors),
            number(route.avg_ms, 1),
            number(route.p95_ms, 1),
        ]
        for route in stats.routes
    ]
    headers = [
        tr("method", lang),
        tr("route", lang),
        tr("requests", lang),
        "4xx",
        "5xx",
        tr("avg_ms", lang),
        tr("p95_ms", lang),
    ]
    lines.extend(render_table(headers, route_rows, left_columns=2))
    return lines


def print_stats(
    stats: Stats,
    path: Path,
    start: str | None,
    end: str | None,
    lang: str,
    file: TextIO | None = None,
) -> None:
    print("\n".join(format_stats(stats, path, start, end, lang)), file=file or sys.stdout)
