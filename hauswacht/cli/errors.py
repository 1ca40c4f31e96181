"""`hauswacht errors list|show|resolve|ignore|reopen`: triage of error groups (writer.groups).

Output goes through `write_lines`, which handles a reader that goes away
(`hauswacht errors list | head -3`) as Unix tools do: no traceback, nothing on
stderr, and exit status BROKEN_PIPE_EXIT (128 + SIGPIPE), what a shell shows
for a tool that SIGPIPE ended. Status names are translated in text output
and stay English in JSON and in arguments.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sqlite3
import sys
from collections.abc import Iterable
from typing import Any

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
from hauswacht.writer.groups import (
    STATUSES,
    GroupDetail,
    GroupNotFound,
    list_groups,
    open_groups,
    read_group,
    set_group_status,
)

MAX_MESSAGE_WIDTH = 70
MAX_BREADCRUMB_LINES = 10
BROKEN_PIPE_EXIT = 141  # 128 + SIGPIPE (13)
STATUS_ACTIONS = {"resolve": "resolved", "ignore": "ignored", "reopen": "unresolved"}

CATALOG = {
    "help": {
        "en": "list, show, resolve, ignore and reopen error groups",
        "de": "Fehlergruppen auflisten, zeigen, erledigen, ignorieren und wieder öffnen",
    },
    "help_list": {
        "en": "list error groups, most recently seen first",
        "de": "Fehlergruppen auflisten, zuletzt gesehene zuerst",
    },
    "help_show": {
        "en": "show one group with its latest event and samples",
        "de": "eine Gruppe mit ihrem neuesten Ereignis und Beispielen zeigen",
    },
    "help_resolve": {
        "en": "mark a group resolved; a newer event reopens it as a regression",
        "de": "eine Gruppe als erledigt markieren; ein neueres Ereignis öffnet sie als "
        "Regression wieder",
    },
    "help_ignore": {
        "en": "mark a group ignored; it stays ignored whatever arrives",
        "de": "eine Gruppe ignorieren; sie bleibt ignoriert, was auch ankommt",
    },
    "help_reopen": {
        "en": "mark a group unresolved again",
        "de": "eine Gruppe wieder als offen markieren",
    },
    "help_id": {
        "en": "group id (see `hauswacht errors list`)",
        "de": "Gruppen-ID (siehe `hauswacht errors list`)",
    },
    "help_status": {
        "en": "only groups with this status: unresolved, resolved or ignored",
        "de": "nur Gruppen mit diesem Status: unresolved, resolved oder ignored",
    },
    "help_limit": {
        "en": "number of groups to list (default: 100)",
        "de": "Anzahl der aufgeführten Gruppen (Standard: 100)",
    },
    "help_json": {"en": "print JSON", "de": "JSON ausgeben"},
    "bad_status": {
        "en": "invalid --status {value!r}: expected one of unresolved, resolved, ignored",
        "de": "ungültiger --status {value!r}: erwartet unresolved, resolved oder ignored",
    },
    "status_unresolved": {"en": "unresolved", "de": "offen"},
    "status_resolved": {"en": "resolved", "de": "erledigt"},
    "status_ignored": {"en": "ignored", "de": "ignoriert"},
    "contexts": {"en": "Contexts", "de": "Kontexte"},
    "breadcrumbs": {
        "en": "Breadcrumbs (last {shown} of {count})",
        "de": "Breadcrumbs (letzte {shown} von {count})",
    },
    "bad_id": {
        "en": "invalid group id {value!r}: expected a positive integer from "
        "`hauswacht errors list`",
        "de": "ungültige Gruppen-ID {value!r}: erwartet eine positive Ganzzahl aus "
        "`hauswacht errors list`",
    },
    "bad_limit": {
        "en": "invalid --limit {value!r}: expected a number from 1 to 10000",
        "de": "ungültiges --limit {value!r}: erwartet eine Zahl von 1 bis 10000",
    },
    "not_found": {
        "en": "no error group with id {id}; see `hauswacht errors list`",
        "de": "keine Fehlergruppe mit der ID {id}; siehe `hauswacht errors list`",
    },
    "updated": {
        "en": "Error group {id} is now {status}.",
        "de": "Fehlergruppe {id} ist jetzt {status}.",
    },
    "none": {"en": "No error groups.", "de": "Keine Fehlergruppen."},
    "id": {"en": "ID", "de": "ID"},
    "status": {"en": "Status", "de": "Status"},
    "count": {"en": "Events", "de": "Ereignisse"},
    "last_seen": {"en": "Last seen (UTC)", "de": "Zuletzt (UTC)"},
    "error": {"en": "Error", "de": "Fehler"},
    "first_seen": {"en": "First seen (UTC)", "de": "Zuerst (UTC)"},
    "regressions": {"en": "Regressions", "de": "Regressionen"},
    "fingerprint": {"en": "Fingerprint", "de": "Fingerabdruck"},
    "scheme": {"en": "scheme {scheme}", "de": "Schema {scheme}"},
    "latest": {"en": "Latest event", "de": "Neuestes Ereignis"},
    "samples": {"en": "Samples", "de": "Beispiele"},
    "reason_first": {"en": "first", "de": "erstes"},
    "reason_regression": {"en": "regression", "de": "Regression"},
    "reason_sample": {"en": "sample", "de": "Beispiel"},
    "caused": {"en": "caused", "de": "verursachte"},
    "frames_omitted": {"en": "({count} frames omitted)", "de": "({count} Frames ausgelassen)"},
}


def tr(key: str, lang: str, **fields: object) -> str:
    return translate(CATALOG, key, lang, **fields)


def register(subparsers: argparse._SubParsersAction, lang: str) -> None:
    parser = subparsers.add_parser("errors", help=tr("help", lang), description=tr("help", lang))
    commands = parser.add_subparsers(dest="errors_command", metavar="ACTION")
    commands.required = True

    listing = commands.add_parser(
        "list", help=tr("help_list", lang), description=tr("help_list", lang)
    )
    listing.add_argument("--status", metavar="STATUS", help=tr("help_status", lang))
    listing.add_argument("--limit", default="100", metavar="N", help=tr("help_limit", lang))
    listing.add_argument("--json", action="store_true", help=tr("help_json", lang))
    add_database_option(listing, lang)
    listing.set_defaults(handler=run_list, lang=lang)

    show = commands.add_parser(
        "show", help=tr("help_show", lang), description=tr("help_show", lang)
    )
    show.add_argument("id", metavar="ID", help=tr("help_id", lang))
    show.add_argument("--json", action="store_true", help=tr("help_json", lang))
    add_database_option(show, lang)
    show.set_defaults(handler=run_show, lang=lang)

    for action in STATUS_ACTIONS:
        command = commands.add_parser(
            action, help=tr(f"help_{action}", lang), description=tr(f"help_{action}", lang)
        )
        command.add_argument("id", metavar="ID", help=tr("help_id", lang))
        add_database_option(command, lang)
        command.set_defaults(handler=run_set_status, lang=lang, action=action)


def write_lines(lines: Iterable[str]) -> int:
    """Write `lines` to stdout; return 0, or BROKEN_PIPE_EXIT when the reader has gone away."""
    try:
        for line in lines:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # Point stdout at /dev/null, so the interpreter's last flush at exit cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return BROKEN_PIPE_EXIT
    return 0


def write_text(lines: Iterable[str]) -> int:
    """Write human-readable `lines` like `write_lines`, with control characters escaped.

    Types, messages, frames and breadcrumbs come from events, which anyone
    with an ingest token can send, so they must not reach a terminal as
    escape sequences (see `escape_control`). JSON output escapes them itself.
    """
    return write_lines(escape_control(line) for line in lines)


def status_text(status: str, lang: str) -> str:
    """Return the name of a group status in `lang` (the stored names are English)."""
    if status in STATUSES:
        return tr(f"status_{status}", lang)
    return status


def _time(ms: int | None) -> str:
    if ms is None:
        return "–"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _group_id(text: str) -> int | None:
    if not text.isdigit():
        return None
    value = int(text)
    return value if 1 <= value < 2**63 else None


def _read_error(path: Any, exc: sqlite3.Error) -> schema.DatabaseError:
    return schema.DatabaseError.from_sqlite(path, exc, "read")


def _print_json(value: Any) -> int:
    return write_lines([orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()])


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def run_list(args: argparse.Namespace) -> int:
    lang = args.lang
    if args.status is not None and args.status not in STATUSES:
        print(f"hauswacht: {tr('bad_status', lang, value=args.status)}", file=sys.stderr)
        return 2
    limit = int(args.limit) if args.limit.isdigit() else 0
    if not 1 <= limit <= 10_000:
        print(f"hauswacht: {tr('bad_limit', lang, value=args.limit)}", file=sys.stderr)
        return 2

    path = resolve_database(args.db)
    try:
        conn = open_groups(path)
        try:
            groups = list_groups(conn, args.status, limit)
        finally:
            conn.close()
    except schema.DatabaseError as exc:
        return fail(describe_database_error(path, exc, lang))
    except sqlite3.Error as exc:
        return fail(describe_database_error(path, _read_error(path, exc), lang))

    if args.json:
        return _print_json([group.to_json() for group in groups])
    if not groups:
        return write_text([tr("none", lang)])
    rows = [
        [
            str(group.id),
            status_text(group.status, lang),
            format_number(group.count, lang),
            _time(group.last_seen),
        ]
        for group in groups
    ]
    headers = [tr(key, lang) for key in ("id", "status", "count", "last_seen")]
    lines = render_table(headers, rows, left_columns=2)
    # The error text goes last and left-aligned, outside the aligned columns.
    # Its underline is as wide as the header, because the texts have no common width.
    error_header = tr("error", lang)
    texts = [error_header, "-" * len(error_header)] + [
        _shorten(f"{group.type}: {group.message}", MAX_MESSAGE_WIDTH) for group in groups
    ]
    return write_text(f"{line}  {text}".rstrip() for line, text in zip(lines, texts, strict=True))


def run_show(args: argparse.Namespace) -> int:
    lang = args.lang
    group_id = _group_id(args.id)
    if group_id is None:
        print(f"hauswacht: {tr('bad_id', lang, value=args.id)}", file=sys.stderr)
        return 2
    path = resolve_database(args.db)
    try:
        conn = open_groups(path)
        try:
            detail = read_group(conn, group_id)
        finally:
            conn.close()
    except GroupNotFound:
        return fail(tr("not_found", lang, id=group_id))
    except schema.DatabaseError as exc:
        return fail(describe_database_error(path, exc, lang))
    except sqlite3.Error as exc:
        return fail(describe_database_error(path, _read_error(path, exc), lang))

    if args.json:
        return _print_json(detail.to_json())
    return write_text(format_detail(detail, lang))


def format_detail(detail: GroupDetail, lang: str) -> list[str]:
    """Return a group with its latest event's chain and the sample list as lines in `lang`."""
    group = detail.group
    lines = [
        f"#{group.id}  {group.type}: {_shorten(group.message, 200)}",
        f"{tr('status', lang)}: {status_text(group.status, lang)}    {tr('count', lang)}: "
        f"{format_number(group.count, lang)}    {tr('regressions', lang)}: {group.regressions}",
        f"{tr('first_seen', lang)}: {_time(group.first_seen)}    "
        f"{tr('last_seen', lang)}: {_time(group.last_seen)}",
        f"{tr('fingerprint', lang)}: {group.fingerprint} "
        f"({tr('scheme', lang, scheme=group.scheme)})",
        "",
        tr("latest", lang) + ":",
    ]
    lines.extend(_event_lines(detail.latest_event, lang))
    lines.extend(_context_lines(detail.latest_event, lang))
    lines.append("")
    lines.append(tr("samples", lang) + ":")
    for sample in detail.samples:
        reason = tr(f"reason_{sample.reason}", lang)
        message = _shorten(str(sample.event.get("message", "")), MAX_MESSAGE_WIDTH)
        lines.append(f"  {_time(sample.ts)}  {reason:<11} {message}")
    return lines


def _event_lines(event: dict[str, Any], lang: str) -> list[str]:
    lines = []
    exceptions = event.get("exceptions")
    if not isinstance(exceptions, list) or not exceptions:
        return [f"  {event.get('type', '')}: {_shorten(str(event.get('message', '')), 200)}"]
    for index, exc in enumerate(exceptions):
        if not isinstance(exc, dict):
            continue
        relation = exc.get("relation")
        prefix = f"[{relation}] " if relation else ""
        lines.append(f"  {prefix}{exc.get('type')}: {_shorten(str(exc.get('message', '')), 200)}")
        for note in exc.get("notes") or []:
            lines.append(f"    note: {_shorten(str(note), 200)}")
        frames = exc.get("frames")
        for frame in frames if isinstance(frames, list) else []:
            if not isinstance(frame, dict):
                continue
            marker = "*" if frame.get("in_app") else " "
            lines.append(
                f"   {marker} {frame.get('filename')}:{frame.get('lineno')} "
                f"in {frame.get('function')}"
            )
        omitted = exc.get("frames_omitted")
        if isinstance(omitted, int) and omitted > 0:
            lines.append("     " + tr("frames_omitted", lang, count=omitted))
        if index >= 30:
            break
    return lines


def _context_lines(event: dict[str, Any], lang: str) -> list[str]:
    """Return the names of the event's contexts and its last breadcrumbs (Sentry events)."""
    lines = []
    contexts = event.get("contexts")
    if isinstance(contexts, dict) and contexts:
        names = ", ".join(sorted(str(name) for name in contexts))
        lines.append(f"  {tr('contexts', lang)}: {_shorten(names, 200)}")
    crumbs = event.get("breadcrumbs")
    if isinstance(crumbs, list) and crumbs:
        shown = crumbs[-MAX_BREADCRUMB_LINES:]
        lines.append(f"  {tr('breadcrumbs', lang, shown=len(shown), count=len(crumbs))}:")
        for crumb in shown:
            if not isinstance(crumb, dict):
                continue
            label = crumb.get("category") or crumb.get("type") or ""
            text = crumb.get("message") or ""
            lines.append(f"    {_shorten(f'{label} {text}'.strip(), MAX_MESSAGE_WIDTH)}")
    return lines


def run_set_status(args: argparse.Namespace) -> int:
    lang = args.lang
    group_id = _group_id(args.id)
    if group_id is None:
        print(f"hauswacht: {tr('bad_id', lang, value=args.id)}", file=sys.stderr)
        return 2
    status = STATUS_ACTIONS[args.action]
    path = resolve_database(args.db)
    try:
        set_group_status(path, group_id, status)
    except GroupNotFound:
        return fail(tr("not_found", lang, id=group_id))
    except schema.DatabaseError as exc:
        return fail(describe_database_error(path, exc, lang))
    return write_text([tr("updated", lang, id=group_id, status=status_text(status, lang))])
