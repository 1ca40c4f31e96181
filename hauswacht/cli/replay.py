"""`hauswacht replay FILE`: import an access log as request events (see hauswacht.ops.replay)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import time
from pathlib import Path
from typing import TextIO

from hauswacht.cli.stats import (
    add_database_option,
    describe_database_error,
    fail,
    resolve_database,
)
from hauswacht.i18n import format_number, translate
from hauswacht.ops.replay import ReplayReport, replay
from hauswacht.writer import schema

CATALOG = {
    "help": {
        "en": "import an Apache/Nginx access log (common or combined format) as request events",
        "de": "Apache/Nginx-Zugriffslog (Common oder Combined) als Anfrage-Ereignisse importieren",
    },
    "help_file": {
        "en": "access log; a trailing request-time field is seconds if it has a decimal point "
        "(nginx $request_time), else microseconds (Apache %%D); gzip files are read as well",
        "de": "Zugriffslog; ein abschließendes Feld mit der Anfragedauer gilt mit Dezimalpunkt "
        "als Sekunden (nginx $request_time), sonst als Mikrosekunden (Apache %%D); "
        "gzip-Dateien werden ebenfalls gelesen",
    },
    "log_missing": {
        "en": "{path}: no such file; pass the path of an access log",
        "de": "{path}: Datei nicht gefunden; den Pfad eines Zugriffslogs angeben",
    },
    "log_not_file": {
        "en": "{path}: is not a file; pass the path of an access log",
        "de": "{path}: ist keine Datei; den Pfad eines Zugriffslogs angeben",
    },
    "log_unreadable": {
        "en": "{path}: cannot read ({reason})",
        "de": "{path}: kann nicht gelesen werden ({reason})",
    },
    "read": {
        "en": "Lines read: {lines} from {path} in {seconds} s",
        "de": "Gelesene Zeilen: {lines} aus {path} in {seconds} s",
    },
    "imported": {
        "en": "Requests imported: {count} into {database}",
        "de": "Importierte Anfragen: {count} in {database}",
    },
    "skipped": {
        "en": "Lines skipped: {count} (malformed)",
        "de": "Übersprungene Zeilen: {count} (fehlerhaft)",
    },
    "skipped_line": {"en": "  line {number}: {reason}", "de": "  Zeile {number}: {reason}"},
    "reason_empty": {"en": "empty line", "de": "leere Zeile"},
    "reason_no_time": {"en": "no [time] field", "de": "kein [Zeit]-Feld"},
    "reason_no_request_field": {
        "en": "no quoted request field",
        "de": "kein Anfragefeld in Anführungszeichen",
    },
    "reason_format": {
        "en": "does not match the common or combined log format",
        "de": "passt nicht zum Common- oder Combined-Logformat",
    },
    "reason_bad_time": {"en": "invalid time [{value}]", "de": "ungültige Zeit [{value}]"},
    "reason_no_request": {
        "en": "no request line (logged as “-”)",
        "de": "keine Anfragezeile (als „-“ protokolliert)",
    },
    "reason_bad_request": {
        "en": "invalid request line {value}",
        "de": "ungültige Anfragezeile {value}",
    },
    "reason_bad_status": {
        "en": "status {value} is outside 100-599",
        "de": "Status {value} liegt nicht zwischen 100 und 599",
    },
    "more_lines": {"en": "  … and {count} more", "de": "  … und {count} weitere"},
    "salvaged": {
        "en": "Lines salvaged: {count} with a cut-off referer or user agent, imported with "
        "the complete fields: line {numbers}",
        "de": "Gerettete Zeilen: {count} mit abgeschnittenem Referer oder User-Agent, mit den "
        "vollständigen Feldern importiert: Zeile {numbers}",
    },
    "span": {
        "en": "Time span: {first} to {last} UTC",
        "de": "Zeitspanne: {first} bis {last} UTC",
    },
    "nothing_imported": {
        "en": "{path}: no line could be imported; is it an access log in common or "
        "combined format?",
        "de": "{path}: keine Zeile importierbar; ist es ein Zugriffslog im Common- oder "
        "Combined-Format?",
    },
    "dropped": {
        "en": "{count} imported events could not be stored; see the warnings above",
        "de": "{count} importierte Ereignisse konnten nicht gespeichert werden; "
        "siehe die Warnungen oben",
    },
    "lines_unit": {"en": "lines", "de": "Zeilen"},
}


def tr(key: str, lang: str, **fields: object) -> str:
    return translate(CATALOG, key, lang, **fields)


def register(subparsers: argparse._SubParsersAction, lang: str) -> None:
    parser = subparsers.add_parser("replay", help=tr("help", lang), description=tr("help", lang))
    parser.add_argument("file", metavar="FILE", help=tr("help_file", lang))
    add_database_option(parser, lang)
    parser.set_defaults(handler=run_replay, lang=lang)


class ProgressBar:
    """A one-line progress bar on a terminal, redrawn at most ten times a second."""

    WIDTH = 30

    def __init__(self, stream: TextIO, lang: str) -> None:
        self.stream = stream
        self.lang = lang
        self.last_draw = 0.0
        self.drawn = False

    def update(self, done: int, total: int, lines: int) -> None:
        now = time.monotonic()
        if now - self.last_draw < 0.1 and done < total:
            return
        self.last_draw = now
        fraction = min(1.0, done / total) if total else 1.0
        filled = int(fraction * self.WIDTH)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        count = format_number(lines, self.lang)
        self.stream.write(f"\r[{bar}] {fraction:4.0%}  {count} {tr('lines_unit', self.lang)}")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def _format_ts(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def format_report(report: ReplayReport, database: Path, seconds: float, lang: str) -> list[str]:
    """Return the summary lines of an import in `lang`."""

    def number(value: int) -> str:
        return format_number(value, lang)

    lines = [
        tr(
            "read",
            lang,
            lines=number(report.lines_read),
            path=report.path,
            seconds=format_number(seconds, lang, 1),
        ),
        tr("imported", lang, count=number(report.imported), database=database),
        tr("skipped", lang, count=number(report.skipped)),
    ]
    for skipped in report.skipped_lines:
        reason = tr(f"reason_{skipped.code}", lang, value=skipped.value)
        lines.append(tr("skipped_line", lang, number=skipped.number, reason=reason))
    if report.skipped > len(report.skipped_lines):
        lines.append(
            tr("more_lines", lang, count=number(report.skipped - len(report.skipped_lines)))
        )

    if report.salvaged:
        numbers = ", ".join(str(n) for n in report.salvaged_lines)
        if report.salvaged > len(report.salvaged_lines):
            numbers += ", …"
        lines.append(tr("salvaged", lang, count=number(report.salvaged), numbers=numbers))

    if report.first_ts is not None and report.last_ts is not None:
        lines.append(
            tr("span", lang, first=_format_ts(report.first_ts), last=_format_ts(report.last_ts))
        )
    return lines


def run_replay(args: argparse.Namespace) -> int:
    lang = args.lang
    log_path = Path(args.file)
    if not log_path.exists():
        return fail(tr("log_missing", lang, path=log_path))
    if not log_path.is_file():
        return fail(tr("log_not_file", lang, path=log_path))
    try:
        with log_path.open("rb"):
            pass
    except OSError as exc:
        return fail(tr("log_unreadable", lang, path=log_path, reason=exc.strerror))

    database = resolve_database(args.db)
    try:
        schema.prepare_database(database)
    except schema.DatabaseError as exc:
        return fail(describe_database_error(database, exc, lang, must_exist=False))

    progress = ProgressBar(sys.stderr, lang) if sys.stderr.isatty() else None
    started = time.monotonic()
    try:
        report = asyncio.run(
            replay(log_path, database, progress=progress.update if progress else None)
        )
    except schema.DatabaseError as exc:
        return fail(describe_database_error(database, exc, lang, must_exist=False))
    except (OSError, EOFError) as exc:
        # EOFError: a gzip file that ends early.
        reason = getattr(exc, "strerror", None) or exc
        return fail(tr("log_unreadable", lang, path=log_path, reason=reason))
    finally:
        if progress is not None:
            progress.close()

    print("\n".join(format_report(report, database, time.monotonic() - started, lang)))
    if report.dropped:
        return fail(tr("dropped", lang, count=format_number(report.dropped, lang)))
    if report.lines_read and not report.imported:
        return fail(tr("nothing_imported", lang, path=log_path))
    return 0
