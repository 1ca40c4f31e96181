"""`hauswacht stats`: request, error and latency figures from the rollup tables.

Also home of what the event subcommands (replay, stats, demo) share: the
`--db` option with its defaults and the one-line text for an events file that
cannot be used.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sqlite3
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

import orjson

from hauswacht.i18n import format_number, translate
from hauswacht.writer import schema
from hauswacht.writer.queries import STATUS_CLASSES, Stats, Window, read_stats

DEFAULT_DATABASE = Path("hauswacht-data") / "events.db"
DATABASE_ENV = "HAUSWACHT_DB"
MAX_ROUTE_WIDTH = 60  # characters of a route shown in the table

# Characters that a terminal would act on instead of showing: C0 and C1 control
# characters (ESC starts escape sequences), DEL, the Unicode line separators and
# the bidirectional overrides and isolates, which can reorder the text shown.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

CATALOG = {
    "help": {
        "en": "show request, error and latency figures from the rollups",
        "de": "Anfrage-, Fehler- und Latenzzahlen aus den Rollups zeigen",
    },
    "help_db": {
        "en": "events database (default: $HAUSWACHT_DB, else ./hauswacht-data/events.db)",
        "de": "Ereignisdatenbank (Standard: $HAUSWACHT_DB, sonst ./hauswacht-data/events.db)",
    },
    "help_from": {
        "en": "start of the window, ISO 8601, e.g. 2015-05-18T10:00:00Z (UTC if no offset)",
        "de": "Beginn des Zeitraums, ISO 8601, z. B. 2015-05-18T10:00:00Z (UTC ohne Offset)",
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
        "en": "invalid {option} value {value!r}: expected ISO 8601, e.g. 2015-05-18T10:00:00Z",
        "de": "ungültiger Wert für {option}: {value!r}; erwartet ISO 8601, "
        "z. B. 2015-05-18T10:00:00Z",
    },
    "bad_window": {
        "en": "--to ({end}) must be later than --from ({start})",
        "de": "--to ({end}) muss nach --from ({start}) liegen",
    },
    "bad_routes": {
        "en": "invalid --routes value {value}: expected a number from 1 to 1000",
        "de": "ungültiger Wert für --routes: {value}; erwartet eine Zahl von 1 bis 1000",
    },
    "db_missing": {
        "en": "{path}: no such file; record events first or pass --db",
        "de": "{path}: Datei nicht gefunden; erst Ereignisse aufzeichnen oder --db angeben",
    },
    "db_not_file": {
        "en": "{path}: is not a file; pass the path of an events database with --db",
        "de": "{path}: ist keine Datei; mit --db den Pfad einer Ereignisdatenbank angeben",
    },
    "db_unreadable": {
        "en": "{path}: not readable by this user; check its permissions",
        "de": "{path}: für diesen Benutzer nicht lesbar; Zugriffsrechte prüfen",
    },
    "db_not_sqlite": {
        "en": "{path}: not an SQLite database; pass an events database with --db",
        "de": "{path}: keine SQLite-Datenbank; mit --db eine Ereignisdatenbank angeben",
    },
    "db_foreign": {
        "en": "{path}: not a Hauswacht events database (application_id {application_id:#x})",
        "de": "{path}: keine Hauswacht-Ereignisdatenbank (application_id {application_id:#x})",
    },
    "db_other": {
        "en": "{detail}",
        "de": "{path}: Ereignisdatenbank nicht nutzbar ({detail})",
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


# --- shared by the event subcommands -------------------------------------------------


def add_database_option(parser: argparse.ArgumentParser, lang: str) -> None:
    parser.add_argument("--db", metavar="PATH", help=tr("help_db", lang))


def resolve_database(value: str | None, environ: Mapping[str, str] | None = None) -> Path:
    """Return the events database: `value` (--db), else $HAUSWACHT_DB, else the default path."""
    environ = os.environ if environ is None else environ
    if value:
        return Path(value)
    if environ.get(DATABASE_ENV):
        return Path(environ[DATABASE_ENV])
    return DEFAULT_DATABASE


def describe_database_error(
    path: Path, error: schema.DatabaseError, lang: str, *, must_exist: bool = True
) -> str:
    """Return one line in `lang` saying why the events file at `path` cannot be used.

    `must_exist` is False for commands that create the file, so a missing file
    is not the cause there.
    """
    if not path.exists():
        if must_exist:
            return tr("db_missing", lang, path=path)
        return tr("db_other", lang, path=path, detail=_strip_path(path, error, lang))
    if not path.is_file():
        return tr("db_not_file", lang, path=path)
    if not os.access(path, os.R_OK):
        return tr("db_unreadable", lang, path=path)

    # Look again read-only to name the cause in the user's language. The
    # pragmas read through the WAL, so a live database is judged correctly.
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
        try:
            application_id = conn.execute("PRAGMA application_id").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:
        application_id = schema.APPLICATION_ID  # locked or similar: keep the writer's message
    except sqlite3.DatabaseError:
        return tr("db_not_sqlite", lang, path=path)
    if application_id != schema.APPLICATION_ID:
        return tr("db_foreign", lang, path=path, application_id=application_id)

    return tr("db_other", lang, path=path, detail=_strip_path(path, error, lang))


def _strip_path(path: Path, error: schema.DatabaseError, lang: str) -> str:
    # The writer's messages start with the path; the German text names it itself.
    detail = str(error)
    prefix = f"{path}: "
    if lang != "en" and detail.startswith(prefix):
        detail = detail[len(prefix) :]
    return detail


def fail(message: str) -> int:
    print(f"hauswacht: {message}", file=sys.stderr)
    return 1


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
    """Parse an ISO 8601 date or date-time into UTC epoch ms; no offset means UTC."""
    moment = dt.datetime.fromisoformat(text.strip())
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
        raise schema.DatabaseError(f"{path}: cannot read ({exc})") from exc
    finally:
        conn.close()


# --- tables --------------------------------------------------------------------------


def escape_control(text: str) -> str:
    """Return `text` with control characters written as `\\xHH` or `\\uHHHH`, safe to print."""
    return _CONTROL_CHARACTERS.sub(_escape_character, text)


def _escape_character(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def render_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], left_columns: int = 1
) -> list[str]:
    """Return the lines of a plain-text table; the first `left_columns` are left-aligned.

    Control characters in the cells are escaped (see `escape_control`), so
    values taken from events cannot send escape sequences to the terminal.
    """
    headers = [escape_control(header) for header in headers]
    rows = [[escape_control(cell) for cell in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))

    def line(cells: Sequence[str]) -> str:
        parts = []
        for index, cell in enumerate(cells):
            if index < left_columns:
                parts.append(cell.ljust(widths[index]))
            else:
                parts.append(cell.rjust(widths[index]))
        return "  ".join(parts).rstrip()

    lines = [line(headers), "  ".join("-" * width for width in widths)]
    lines.extend(line(row) for row in rows)
    return lines


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
