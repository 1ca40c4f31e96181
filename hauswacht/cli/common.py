"""What the CLI subcommands share: the `--db` option, the one-line text for an
events file that cannot be used, error output and plain-text tables."""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from hauswacht.i18n import translate
from hauswacht.writer import schema

DEFAULT_DATABASE = Path("hauswacht-data") / "events.db"
DATABASE_ENV = "HAUSWACHT_DB"

# Characters that a terminal would act on instead of showing: C0 and C1 control
# characters (ESC starts escape sequences), DEL, the Unicode line separators and
# the bidirectional overrides and isolates, which can reorder the text shown.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

CATALOG = {
    "help_db": {
        "en": "events database (default: $HAUSWACHT_DB, else ./hauswacht-data/events.db)",
        "de": "Ereignisdatenbank (Standard: $HAUSWACHT_DB, sonst ./hauswacht-data/events.db)",
    },
    "db_other": {
        "en": "{detail}",
        "de": "{path}: Ereignisdatenbank nicht nutzbar ({detail})",
    },
}


def tr(key: str, lang: str, **fields: object) -> str:
    return translate(CATALOG, key, lang, **fields)


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

    An error with a message code (see schema.DatabaseError) is shown in
    `lang` as it is. For one raised with a plain English message, the file is
    examined to name the cause in `lang`. `must_exist` is False for commands
    that create the file, so a missing file is not the cause there.
    """
    if error.code is not None:
        return error.text(lang)

    state = schema.file_state(path)
    if state == "denied":
        return schema.DatabaseError.of("folder_unsearchable", path=path, folder=path.parent).text(
            lang
        )
    if state == "missing":
        if must_exist:
            return schema.DatabaseError.of("missing", path=path).text(lang)
        return _describe_plain(path, error, lang)
    if state == "not_file":
        return schema.DatabaseError.of("not_file", path=path).text(lang)
    if not os.access(path, os.R_OK):
        return schema.DatabaseError.of("unreadable", path=path).text(lang)

    # Look again read-only to name the cause in the user's language. The
    # pragmas read through the WAL, so a live database is judged correctly.
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
        try:
            application_id = conn.execute("PRAGMA application_id").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        if getattr(exc, "sqlite_errorcode", -1) & 0xFF == sqlite3.SQLITE_NOTADB:
            return schema.DatabaseError.of("not_sqlite", path=path).text(lang)
        application_id = schema.APPLICATION_ID  # locked or similar: keep the error's message
    if application_id != schema.APPLICATION_ID:
        foreign = schema.DatabaseError.of("foreign", path=path, application_id=application_id)
        return foreign.text(lang)

    return _describe_plain(path, error, lang)


def _describe_plain(path: Path, error: schema.DatabaseError, lang: str) -> str:
    """Describe an error without a message code by its SQLite cause, else wrap its English text."""
    described = schema.describe_cause(error, path, lang)
    if described is not None:
        return described
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
