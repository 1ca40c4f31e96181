"""`hauswacht replay FILE`: import an access log as request events (see hauswacht.ops.replay)."""

from __future__ import annotations

import argparse
import datetime as dt
import stat
import sys
import time
from pathlib import Path
from typing import IO, TextIO

from hauswacht.cli.common import (
    add_database_option,
    describe_database_error,
    escape_control,
    fail,
    resolve_database,
)
from hauswacht.i18n import format_number, translate, translate_count
from hauswacht.ops.replay import (
    ClaimLost,
    ContentMismatch,
    LogReadError,
    ReplayInProgress,
    ReplayReport,
    ReplayWriteError,
    import_log,
)
from hauswacht.writer import schema

STDIN_ARGUMENT = "-"
STDIN_NAME = "stdin"  # the log's name in the output and the bookkeeping

CATALOG = {
    "help": {
        "en": "import an Apache/Nginx access log (common or combined format) as request events",
        "de": "Apache/Nginx-Zugriffslog (Common oder Combined) als Anfrage-Ereignisse importieren",
    },
    "help_file": {
        "en": "access log, or - for standard input; plain or gzip. After the user agent, the "
        "first unquoted field is the request time: seconds if it has a decimal point "
        "(nginx $request_time), else microseconds (Apache %%D); quoted fields there are ignored",
        "de": "Zugriffslog oder - für die Standardeingabe; unkomprimiert oder gzip. Nach dem "
        "User-Agent ist das erste Feld ohne Anführungszeichen die Anfragedauer: mit "
        "Dezimalpunkt Sekunden (nginx $request_time), sonst Mikrosekunden (Apache %%D); "
        "Felder in Anführungszeichen werden dort übergangen",
    },
    "help_force": {
        "en": "import the whole log even if it was imported before (its requests are then "
        "stored twice)",
        "de": "das ganze Log importieren, auch wenn es schon importiert wurde (seine Anfragen "
        "sind dann doppelt gespeichert)",
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
    "read_failed": {
        "en": "{path}: cannot read on after line {line} ({reason}); the lines before are "
        "stored, and replaying the repaired log imports only the rest",
        "de": "{path}: Lesefehler nach Zeile {line} ({reason}); die Zeilen davor sind "
        "gespeichert, und ein erneuter Import des reparierten Logs liest nur den Rest",
    },
    "empty": {
        "en": "{path}: empty; nothing to import",
        "de": "{path}: leer; nichts zu importieren",
    },
    "nothing_new": {
        "en": "{path}: already imported on {when} UTC ({lines}, {requests}); nothing new. "
        "Pass --force to import it again.",
        "de": "{path}: bereits am {when} UTC importiert ({lines}, {requests}); nichts Neues. "
        "Mit --force erneut importieren.",
    },
    "resumed": {
        "en": "Resumed after line {line}: the lines before were imported on {when} UTC",
        "de": "Fortgesetzt nach Zeile {line}: die Zeilen davor wurden am {when} UTC importiert",
    },
    "forced": {
        "en": "Imported again from the first line (--force)",
        "de": "Erneut ab der ersten Zeile importiert (--force)",
    },
    "busy": {
        "en": "{path}: is being imported by another replay (process {pid} on {host}, since "
        "{since} UTC); wait until it has finished",
        "de": "{path}: wird gerade von einem anderen Import eingelesen (Prozess {pid} auf "
        "{host}, seit {since} UTC); warten, bis er fertig ist",
    },
    "mismatch": {
        "en": "{path}: the first 64 KiB match a log imported on {when} UTC, but the content "
        "up to byte {offset} differs; pass --force to import the whole log",
        "de": "{path}: die ersten 64 KiB gleichen einem am {when} UTC importierten Log, aber "
        "der Inhalt bis Byte {offset} weicht ab; mit --force das ganze Log importieren",
    },
    "claim_lost": {
        "en": "{path}: another replay took this import over; the lines read before are stored",
        "de": "{path}: ein anderer Import hat übernommen; die bis dahin gelesenen Zeilen sind "
        "gespeichert",
    },
    "write_stopped_empty": {
        "en": "the replay of {path} stopped after line {line}; no request from this run is stored",
        "de": "der Import von {path} brach nach Zeile {line} ab; keine Anfrage aus diesem "
        "Lauf ist gespeichert",
    },
    "read": {
        "en": "Lines read: {lines} from {path} in {seconds} s",
        "de": "Gelesene Zeilen: {lines} aus {path} in {seconds} s",
    },
    "imported": {
        "en": "Requests imported: {count} into {database}",
        "de": "Importierte Anfragen: {count} in {database}",
    },
    "imported_none": {
        "en": "Requests imported: 0",
        "de": "Importierte Anfragen: 0",
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
    "reason_bad_offset": {
        "en": "time zone offset {value} is outside -14:00 to +14:00",
        "de": "Zeitzonenversatz {value} liegt nicht zwischen -14:00 und +14:00",
    },
    "reason_time_range": {
        "en": "time [{value}] is outside the years 1970 to 9999 (UTC)",
        "de": "Zeit [{value}] liegt nicht in den Jahren 1970 bis 9999 (UTC)",
    },
    "reason_no_request": {
        "en": "no request line (logged as “-”)",
        "de": "keine Anfragezeile (als „-“ protokolliert)",
    },
    "reason_bad_request": {
        "en": 'invalid request line "{value}"',
        "de": "ungültige Anfragezeile „{value}“",
    },
    "reason_bad_status": {
        "en": "status {value} is outside 100-599",
        "de": "Status {value} liegt nicht zwischen 100 und 599",
    },
    "reason_bad_bytes": {
        "en": "response size {value} is above 1 TiB",
        "de": "Antwortgröße {value} liegt über 1 TiB",
    },
    "reason_bad_duration": {
        "en": "request time {value} is not between 0 and 24 hours",
        "de": "Anfragedauer {value} liegt nicht zwischen 0 und 24 Stunden",
    },
    "more_lines": {"en": "  … and {count} more", "de": "  … und {count} weitere"},
    "salvaged": {
        "en": "Lines salvaged: {count} with a cut-off referer or user agent, imported with "
        "the complete fields: line {numbers}",
        "de": "Gerettete Zeilen: {count} mit abgeschnittenem Referer oder User-Agent, mit den "
        "vollständigen Feldern importiert: Zeile {numbers}",
    },
    "pending": {
        "en": "Line {number} has no line end and is not a complete log line; it is left for "
        "the next replay, in case a logger is still writing it",
        "de": "Zeile {number} hat kein Zeilenende und ist keine vollständige Logzeile; sie "
        "bleibt für den nächsten Import, falls ein Logger sie noch schreibt",
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
    "lines_unit": {"en": "lines", "de": "Zeilen"},
}

PLURALS = {
    "dropped": {
        "en": (
            "{count} imported event could not be stored; see the warnings above",
            "{count} imported events could not be stored; see the warnings above",
        ),
        "de": (
            "{count} importiertes Ereignis konnte nicht gespeichert werden; "
            "siehe die Warnungen oben",
            "{count} importierte Ereignisse konnten nicht gespeichert werden; "
            "siehe die Warnungen oben",
        ),
    },
    "lines": {
        "en": ("{count} line", "{count} lines"),
        "de": ("{count} Zeile", "{count} Zeilen"),
    },
    "requests": {
        "en": ("{count} request", "{count} requests"),
        "de": ("{count} Anfrage", "{count} Anfragen"),
    },
    "write_stopped": {
        "en": (
            "the replay of {path} stopped after line {line}; {count} request read before "
            "is stored, and replaying the log again after the fix imports only the rest",
            "the replay of {path} stopped after line {line}; {count} requests read before "
            "are stored, and replaying the log again after the fix imports only the rest",
        ),
        "de": (
            "der Import von {path} brach nach Zeile {line} ab; {count} zuvor gelesene Anfrage "
            "ist gespeichert, und ein erneuter Import nach der Behebung liest nur den Rest",
            "der Import von {path} brach nach Zeile {line} ab; {count} zuvor gelesene Anfragen "
            "sind gespeichert, und ein erneuter Import nach der Behebung liest nur den Rest",
        ),
    },
}


def tr(key: str, lang: str, **fields: object) -> str:
    return translate(CATALOG, key, lang, **fields)


def tr_count(key: str, lang: str, count: int, **fields: object) -> str:
    return translate_count(PLURALS, key, lang, count, **fields)


def register(subparsers: argparse._SubParsersAction, lang: str) -> None:
    parser = subparsers.add_parser("replay", help=tr("help", lang), description=tr("help", lang))
    parser.add_argument("file", metavar="FILE", help=tr("help_file", lang))
    parser.add_argument("--force", action="store_true", help=tr("help_force", lang))
    add_database_option(parser, lang)
    parser.set_defaults(handler=run_replay, lang=lang)


class ProgressBar:
    """A one-line progress display on a terminal, redrawn at most ten times a second.

    It shows a bar when the size of the log is known, else only the line count.
    """

    WIDTH = 30

    def __init__(self, stream: TextIO, lang: str) -> None:
        self.stream = stream
        self.lang = lang
        self.last_draw = 0.0
        self.drawn = False

    def update(self, done: int | None, total: int | None, lines: int) -> None:
        now = time.monotonic()
        finished = done is not None and total is not None and done >= total
        if now - self.last_draw < 0.1 and not finished:
            return
        self.last_draw = now
        count = f"{format_number(lines, self.lang)} {tr('lines_unit', self.lang)}"
        if done is None or not total:
            self.stream.write(f"\r{count}")
        else:
            fraction = min(1.0, done / total)
            filled = int(fraction * self.WIDTH)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            self.stream.write(f"\r[{bar}] {fraction:4.0%}  {count}")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def format_ts(ts: int) -> str:
    """Return epoch ms as "YYYY-MM-DD HH:MM:SS" in UTC, always with a four-digit year."""
    moment = dt.datetime.fromtimestamp(ts / 1000, tz=dt.UTC).replace(tzinfo=None)
    return moment.isoformat(sep=" ", timespec="seconds")


def format_report(report: ReplayReport, database: Path, seconds: float, lang: str) -> list[str]:
    """Return the summary lines of an import in `lang`."""

    def number(value: int) -> str:
        return format_number(value, lang)

    path = escape_control(report.path)
    lines = []
    if report.resumed_after_line and report.previous_import_at is not None:
        when = format_ts(report.previous_import_at)
        lines.append(tr("resumed", lang, line=number(report.resumed_after_line), when=when))
    elif report.forced and report.previous_import_at is not None:
        lines.append(tr("forced", lang))
    lines += [
        tr(
            "read",
            lang,
            lines=number(report.lines_read),
            path=path,
            seconds=format_number(seconds, lang, 1),
        ),
        tr("imported", lang, count=number(report.imported), database=database)
        if report.imported
        else tr("imported_none", lang),
        tr("skipped", lang, count=number(report.skipped)),
    ]
    for skipped in report.skipped_lines:
        reason = tr(f"reason_{skipped.code}", lang, value=escape_control(skipped.value))
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
    if report.pending_line is not None:
        lines.append(tr("pending", lang, number=number(report.pending_line)))

    if report.first_ts is not None and report.last_ts is not None:
        lines.append(
            tr("span", lang, first=format_ts(report.first_ts), last=format_ts(report.last_ts))
        )
    return lines


def run_replay(args: argparse.Namespace) -> int:
    lang = args.lang
    database = resolve_database(args.db)

    if args.file == STDIN_ARGUMENT:
        return _replay(sys.stdin.buffer, STDIN_NAME, database, args.force, lang)

    log_path = Path(args.file)
    try:
        mode = log_path.stat().st_mode
    except FileNotFoundError:
        return fail(tr("log_missing", lang, path=log_path))
    except OSError as exc:
        return fail(tr("log_unreadable", lang, path=log_path, reason=exc.strerror))
    # Regular files, and pipes such as `<(zcat access.log.*.gz)` or /dev/stdin.
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
        return fail(tr("log_not_file", lang, path=log_path))
    try:
        log_file = log_path.open("rb")
    except OSError as exc:
        return fail(tr("log_unreadable", lang, path=log_path, reason=exc.strerror))
    with log_file:
        return _replay(log_file, str(log_path), database, args.force, lang)


def _replay(source: IO[bytes], name: str, database: Path, force: bool, lang: str) -> int:
    progress = ProgressBar(sys.stderr, lang) if sys.stderr.isatty() else None
    started = time.monotonic()
    path = escape_control(name)

    def summary(report: ReplayReport | None) -> None:
        if report is not None and (report.lines_read or report.pending_line is not None):
            seconds = time.monotonic() - started
            print("\n".join(format_report(report, database, seconds, lang)), flush=True)

    try:
        report = import_log(
            source,
            database,
            name=name,
            force=force,
            progress=progress.update if progress else None,
        )
    except LogReadError as exc:
        _close(progress)
        summary(exc.report)
        line = exc.report.resumed_after_line + exc.report.lines_read if exc.report else 0
        return fail(tr("read_failed", lang, path=path, line=format_number(line, lang), reason=exc))
    except ReplayInProgress as exc:
        _close(progress)
        since = format_ts(exc.claimed_at)
        return fail(tr("busy", lang, path=path, pid=exc.pid, host=exc.host, since=since))
    except ContentMismatch as exc:
        _close(progress)
        when = format_ts(exc.imported_at)
        offset = format_number(exc.offset, lang)
        return fail(tr("mismatch", lang, path=path, when=when, offset=offset))
    except ClaimLost as exc:
        _close(progress)
        summary(exc.report)
        return fail(tr("claim_lost", lang, path=path))
    except ReplayWriteError as exc:
        # No summary: its counts include the lines of the batch that was not stored.
        _close(progress)
        fail(describe_database_error(database, exc, lang, must_exist=False))
        if exc.report is None:
            return 1
        return fail(_write_stopped(exc.report, path, lang))
    except schema.DatabaseError as exc:
        _close(progress)
        return fail(describe_database_error(database, exc, lang, must_exist=False))
    except OSError as exc:
        _close(progress)
        reason = exc.strerror or exc
        return fail(tr("log_unreadable", lang, path=path, reason=reason))
    _close(progress)

    if report.empty:
        print(tr("empty", lang, path=path))
        return 0
    if report.nothing_new:
        print(
            tr(
                "nothing_new",
                lang,
                path=path,
                when=format_ts(report.previous_import_at or 0),
                lines=tr_count("lines", lang, report.resumed_after_line),
                requests=tr_count("requests", lang, report.previous_requests),
            )
        )
        return 0

    summary(report)
    if report.dropped:
        return fail(tr_count("dropped", lang, report.dropped))
    if report.lines_read and not report.imported:
        return fail(tr("nothing_imported", lang, path=path))
    return 0


def _write_stopped(report: ReplayReport, path: str, lang: str) -> str:
    """Return where a failed write stopped the import and how many requests it stored."""
    line = format_number(report.resumed_after_line + report.lines_read, lang)
    if not report.imported:
        return tr("write_stopped_empty", lang, path=path, line=line)
    return tr_count("write_stopped", lang, report.imported, path=path, line=line)


def _close(progress: ProgressBar | None) -> None:
    if progress is not None:
        progress.close()
