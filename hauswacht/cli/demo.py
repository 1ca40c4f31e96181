"""`hauswacht demo`: run the example API with the middleware, drive traffic, print the stats."""

from __future__ import annotations

import argparse
import math
import sys

from hauswacht.cli.stats import (
    add_database_option,
    describe_database_error,
    fail,
    load_stats,
    print_stats,
    resolve_database,
)
from hauswacht.i18n import format_number, translate
from hauswacht.writer import schema
from hauswacht.writer.queries import Window

MAX_DURATION_SECONDS = 600.0
MAX_REQUESTS = 100_000
MAX_CLIENTS = 32

CATALOG = {
    "help": {
        "en": "run an example API with Hauswacht on 127.0.0.1, send it traffic, show the stats",
        "de": "Beispiel-API mit Hauswacht auf 127.0.0.1 starten, Last erzeugen, Statistik zeigen",
    },
    "help_duration": {
        "en": "seconds of traffic (default: 10, at most 600)",
        "de": "Sekunden Last (Standard: 10, höchstens 600)",
    },
    "help_requests": {
        "en": "maximum number of requests (default: 5000)",
        "de": "höchstens so viele Anfragen (Standard: 5000)",
    },
    "help_clients": {
        "en": "number of client threads (default: 4, at most 32)",
        "de": "Anzahl der Client-Threads (Standard: 4, höchstens 32)",
    },
    "bad_number": {
        "en": "invalid {option} value {value!r}: expected a number from {low} to {high}",
        "de": "ungültiger Wert für {option}: {value!r}; erwartet eine Zahl von {low} bis {high}",
    },
    "starting": {
        "en": "Demo: example API on 127.0.0.1 with events in {database}",
        "de": "Demo: Beispiel-API auf 127.0.0.1, Ereignisse in {database}",
    },
    "sent": {
        "en": "Sent {count} requests from {clients} clients to {url} in {seconds} s",
        "de": "{count} Anfragen von {clients} Clients an {url} in {seconds} s gesendet",
    },
    "statuses": {
        "en": "Responses by status: {statuses}",
        "de": "Antworten nach Status: {statuses}",
    },
    "failures": {
        "en": "{count} requests got no response",
        "de": "{count} Anfragen blieben ohne Antwort",
    },
    "server_failed": {
        "en": "the demo server did not start ({reason})",
        "de": "der Demo-Server ist nicht gestartet ({reason})",
    },
}


def tr(key: str, lang: str, **fields: object) -> str:
    return translate(CATALOG, key, lang, **fields)


def register(subparsers: argparse._SubParsersAction, lang: str) -> None:
    parser = subparsers.add_parser("demo", help=tr("help", lang), description=tr("help", lang))
    parser.add_argument("--duration", default="10", metavar="S", help=tr("help_duration", lang))
    parser.add_argument("--requests", default="5000", metavar="N", help=tr("help_requests", lang))
    parser.add_argument("--clients", default="4", metavar="N", help=tr("help_clients", lang))
    add_database_option(parser, lang)
    parser.set_defaults(handler=run_demo_command, lang=lang)


def _parse_number(text: str, low: float, high: float, integer: bool) -> float | None:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        return None
    if not math.isfinite(value) or not low <= value <= high:
        return None
    return value


def run_demo_command(args: argparse.Namespace) -> int:
    lang = args.lang
    limits = (
        ("--duration", args.duration, 0.1, MAX_DURATION_SECONDS, False),
        ("--requests", args.requests, 1, MAX_REQUESTS, True),
        ("--clients", args.clients, 1, MAX_CLIENTS, True),
    )
    values = []
    for option, text, low, high, integer in limits:
        value = _parse_number(text, low, high, integer)
        if value is None:
            message = tr("bad_number", lang, option=option, value=text, low=low, high=high)
            print(f"hauswacht: {message}", file=sys.stderr)
            return 2
        values.append(value)
    duration, max_requests, clients = values

    database = resolve_database(args.db)
    try:
        schema.prepare_database(database)
    except schema.DatabaseError as exc:
        return fail(describe_database_error(database, exc, lang, must_exist=False))

    # Imported here so that the other subcommands do not load uvicorn and Starlette.
    from hauswacht.demo import DemoError, run_demo

    print(tr("starting", lang, database=database), flush=True)
    try:
        result = run_demo(database, duration, int(max_requests), int(clients))
    except DemoError as exc:
        return fail(tr("server_failed", lang, reason=exc))

    print(
        tr(
            "sent",
            lang,
            count=format_number(result.sent, lang),
            clients=result.clients,
            url=result.url,
            seconds=format_number(result.seconds, lang, 1),
        )
    )
    statuses = ", ".join(
        f"{status}: {format_number(count, lang)}"
        for status, count in sorted(result.statuses.items())
    )
    print(tr("statuses", lang, statuses=statuses))
    if result.failures:
        print(tr("failures", lang, count=format_number(result.failures, lang)))
    print()

    try:
        stats = load_stats(database, Window())
    except schema.DatabaseError as exc:
        return fail(describe_database_error(database, exc, lang))
    print_stats(stats, database, None, None, lang)
    return 0
