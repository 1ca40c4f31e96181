"""`hauswacht demo`: run the example API with the middleware, drive traffic, print the stats."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hauswacht.cli.common import (
    add_database_option,
    describe_database_error,
    fail,
    resolve_database,
)
from hauswacht.cli.stats import load_stats, print_stats
from hauswacht.i18n import format_number, translate, translate_count
from hauswacht.writer import schema
from hauswacht.writer.queries import Window

if TYPE_CHECKING:
    from hauswacht.demo import DemoResult

MAX_DURATION_SECONDS = 600.0
MAX_REQUESTS = 100_000
MAX_CLIENTS = 32

CATALOG = {
    "help_dashboard": {
        "en": "after the traffic, keep the example API running and serve the dashboard "
        "beside it on 127.0.0.1:8111 (a free port when taken) until Ctrl-C; creates the "
        "dashboard user 'demo' when there is none, with the password from "
        "HAUSWACHT_DEMO_PASSWORD or a generated one",
        "de": "nach der Last die Beispiel-API weiterlaufen lassen und daneben das Dashboard "
        "auf 127.0.0.1:8111 (bei belegtem Port auf einem freien) bis Strg-C bereitstellen; "
        "legt den Dashboard-Benutzer 'demo' an, wenn es keinen gibt, mit dem Passwort aus "
        "HAUSWACHT_DEMO_PASSWORD oder einem erzeugten",
    },
    "bad_demo_password": {
        "en": "invalid {variable}: {reason}; set it to another password or unset it",
        "de": "ungültiges {variable}: {reason}; ein anderes Passwort setzen oder die "
        "Variable entfernen",
    },
    "demo_user_created": {
        "en": "Dashboard login: user {user}, password {password} (shown once; stored as a "
        "hash in {path})",
        "de": "Dashboard-Anmeldung: Benutzer {user}, Passwort {password} (nur jetzt "
        "angezeigt; als Hash in {path} gespeichert)",
    },
    "demo_user_environment": {
        "en": "Dashboard login: user {user} with the password from {variable}",
        "de": "Dashboard-Anmeldung: Benutzer {user} mit dem Passwort aus {variable}",
    },
    "demo_users_exist": {
        "en": "Dashboard login: a user from {path} (hauswacht dashboard passwd USER sets "
        "a password)",
        "de": "Dashboard-Anmeldung: ein Benutzer aus {path} (hauswacht dashboard passwd "
        "BENUTZER setzt ein Passwort)",
    },
    "port_taken": {
        "en": "Port {port} is in use, so the dashboard listens on another free port.",
        "de": "Port {port} ist belegt, daher lauscht das Dashboard auf einem anderen freien Port.",
    },
    "example_url": {
        "en": "Example API: {url}",
        "de": "Beispiel-API: {url}",
    },
    "dashboard_url": {
        "en": "Dashboard: {url}",
        "de": "Dashboard: {url}",
    },
    "serving_until_interrupt": {
        "en": "Serving both until Ctrl-C.",
        "de": "Beide laufen bis Strg-C.",
    },
    "stopped": {
        "en": "Stopped the dashboard and the example API.",
        "de": "Dashboard und Beispiel-API beendet.",
    },
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
        "en": "Sent {requests} from {clients} to {url} in {seconds} s",
        "de": "{requests} von {clients} an {url} in {seconds} s gesendet",
    },
    "statuses": {
        "en": "Responses by status: {statuses}",
        "de": "Antworten nach Status: {statuses}",
    },
    "server_failed": {
        "en": "the demo server did not start ({reason})",
        "de": "der Demo-Server ist nicht gestartet ({reason})",
    },
}


PLURALS = {
    "requests": {
        "en": ("{count} request", "{count} requests"),
        "de": ("{count} Anfrage", "{count} Anfragen"),
    },
    "clients": {
        "en": ("{count} client", "{count} clients"),
        "de": ("{count} Client", "{count} Clients"),
    },
    "failures": {
        "en": ("{count} request got no response", "{count} requests got no response"),
        "de": ("{count} Anfrage blieb ohne Antwort", "{count} Anfragen blieben ohne Antwort"),
    },
}


def tr(key: str, lang: str, **fields: object) -> str:
    return translate(CATALOG, key, lang, **fields)


def tr_count(key: str, lang: str, count: int) -> str:
    return translate_count(PLURALS, key, lang, count)


def register(subparsers: argparse._SubParsersAction, lang: str) -> None:
    parser = subparsers.add_parser("demo", help=tr("help", lang), description=tr("help", lang))
    parser.add_argument("--duration", default="10", metavar="S", help=tr("help_duration", lang))
    parser.add_argument("--requests", default="5000", metavar="N", help=tr("help_requests", lang))
    parser.add_argument("--clients", default="4", metavar="N", help=tr("help_clients", lang))
    parser.add_argument("--dashboard", action="store_true", help=tr("help_dashboard", lang))
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
    if args.dashboard:
        return _run_with_dashboard(database, duration, int(max_requests), int(clients), lang)
    try:
        result = run_demo(database, duration, int(max_requests), int(clients))
    except DemoError as exc:
        return fail(tr("server_failed", lang, reason=exc))
    return _print_results(result, database, lang)


def _print_results(result: DemoResult, database: Path, lang: str) -> int:
    print(
        tr(
            "sent",
            lang,
            requests=tr_count("requests", lang, result.sent),
            clients=tr_count("clients", lang, result.clients),
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
        print(tr_count("failures", lang, result.failures))
    print()

    try:
        stats = load_stats(database, Window())
    except schema.DatabaseError as exc:
        return fail(describe_database_error(database, exc, lang))
    print_stats(stats, database, None, None, lang)
    return 0


def _run_with_dashboard(
    database: Path, duration: float, max_requests: int, clients: int, lang: str
) -> int:
    """Run the traffic, then serve the example API and the dashboard until SIGINT or SIGTERM."""
    from hauswacht.cli.dashboard import users_path
    from hauswacht.dashboard import DashboardConfigError, create_app
    from hauswacht.dashboard.auth import AuthFileError
    from hauswacht.demo import (
        DASHBOARD_PORT,
        DEMO_PASSWORD_VARIABLE,
        DashboardDemo,
        DemoError,
        ensure_demo_user,
        run_demo_with_dashboard,
    )

    users = users_path(database, None)
    try:
        login = ensure_demo_user(users, os.environ.get(DEMO_PASSWORD_VARIABLE))
        app = create_app(database, users_file=users)
    except ValueError as exc:
        return fail(tr("bad_demo_password", lang, variable=DEMO_PASSWORD_VARIABLE, reason=exc))
    except (AuthFileError, DashboardConfigError) as exc:
        return fail(str(exc))

    ready: list[DashboardDemo] = []

    def on_ready(running: DashboardDemo) -> None:
        ready.append(running)
        _print_results(running.result, database, lang)
        print()
        if login.password is not None:
            print(tr("demo_user_created", lang, user=login.user, password=login.password,
                     path=login.users_file))  # fmt: skip
        elif login.from_environment:
            print(tr("demo_user_environment", lang, user=login.user,
                     variable=DEMO_PASSWORD_VARIABLE))  # fmt: skip
        else:
            print(tr("demo_users_exist", lang, path=login.users_file))
        if running.port_taken:
            print(tr("port_taken", lang, port=DASHBOARD_PORT))
        print(tr("example_url", lang, url=running.result.url + "/"))
        print(tr("dashboard_url", lang, url=running.dashboard_url))
        print(tr("serving_until_interrupt", lang), flush=True)

    try:
        result = run_demo_with_dashboard(database, duration, max_requests, clients, app, on_ready)
    except DemoError as exc:
        return fail(tr("server_failed", lang, reason=exc))
    if not ready:  # stopped during the traffic, before the dashboard started
        _print_results(result, database, lang)
    print(tr("stopped", lang), flush=True)
    return 0
