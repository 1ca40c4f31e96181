"""`hauswacht dashboard` serves the dashboard under uvicorn; `passwd USER` sets a password.

The users file and the session key file default to dashboard-users.json and
dashboard-secret.key in the folder of the events database.
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import logging
import sys
from pathlib import Path

from hauswacht.cli.common import add_database_option, fail, resolve_database
from hauswacht.i18n import translate
from hauswacht.writer import schema

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8111

CATALOG = {
    "help": {
        "en": "serve the web dashboard (login required) over the events database",
        "de": "das Web-Dashboard (mit Anmeldung) über der Ereignisdatenbank bereitstellen",
    },
    "help_host": {
        "en": "address to listen on (default: 127.0.0.1, this machine only)",
        "de": "Adresse, auf der gelauscht wird (Standard: 127.0.0.1, nur dieser Rechner)",
    },
    "help_port": {
        "en": "TCP port (default: 8111)",
        "de": "TCP-Port (Standard: 8111)",
    },
    "help_users": {
        "en": "users file (default: dashboard-users.json beside the database)",
        "de": "Benutzerdatei (Standard: dashboard-users.json neben der Datenbank)",
    },
    "help_secret": {
        "en": "session key file, created on first start (default: dashboard-secret.key "
        "beside the database)",
        "de": "Sitzungsschlüsseldatei, wird beim ersten Start angelegt (Standard: "
        "dashboard-secret.key neben der Datenbank)",
    },
    "help_timezone": {
        "en": "IANA time zone for the times shown, e.g. Europe/Berlin (default: the server's)",
        "de": "IANA-Zeitzone der angezeigten Zeiten, z. B. Europe/Berlin (Standard: die des "
        "Servers)",
    },
    "help_lang": {
        "en": "page language for everybody: en or de (default: from the browser)",
        "de": "Seitensprache für alle: en oder de (Standard: aus dem Browser)",
    },
    "help_session_hours": {
        "en": "hours until a login expires (default: 12)",
        "de": "Stunden bis zum Ablauf einer Anmeldung (Standard: 12)",
    },
    "help_trusted_proxy": {
        "en": "address of a reverse proxy whose X-Forwarded-For and X-Forwarded-Proto headers "
        "are trusted, e.g. 127.0.0.1; comma-separated for several (default: none, so the "
        "client address is the TCP peer's)",
        "de": "Adresse eines Reverse Proxys, dessen Kopfzeilen X-Forwarded-For und "
        "X-Forwarded-Proto vertraut wird, z. B. 127.0.0.1; mehrere durch Kommas getrennt "
        "(Standard: keine, die Client-Adresse ist die des TCP-Partners)",
    },
    "help_passwd": {
        "en": "set or change a dashboard user's password (read from a prompt or stdin)",
        "de": "Passwort eines Dashboard-Benutzers setzen oder ändern (aus Eingabeaufforderung "
        "oder stdin)",
    },
    "help_user": {"en": "user name", "de": "Benutzername"},
    "bad_port": {
        "en": "invalid --port value {value!r}: expected a number from 1 to 65535",
        "de": "ungültiger Wert für --port: {value!r}; erwartet eine Zahl von 1 bis 65535",
    },
    "bad_hours": {
        "en": "invalid --session-hours value {value!r}: expected a number above 0 and at most 720",
        "de": "ungültiger Wert für --session-hours: {value!r}; erwartet eine Zahl über 0 und "
        "höchstens 720",
    },
    "public_warning": {
        "en": "warning: the dashboard listens on {host}, so other machines can reach it. "
        "Put it behind HTTPS (a reverse proxy) or use --host 127.0.0.1.",
        "de": "Warnung: Das Dashboard lauscht auf {host} und ist damit von anderen Rechnern "
        "erreichbar. Hinter HTTPS (Reverse Proxy) stellen oder --host 127.0.0.1 verwenden.",
    },
    "no_users": {
        "en": "no dashboard user exists in {path}; create one first: "
        "hauswacht dashboard passwd USER",
        "de": "in {path} gibt es keinen Dashboard-Benutzer; zuerst einen anlegen: "
        "hauswacht dashboard passwd BENUTZER",
    },
    "no_database_hint": {
        "en": "; the database {database} does not exist either, so check --db",
        "de": "; auch die Datenbank {database} existiert nicht, bitte --db prüfen",
    },
    "serving": {
        "en": "Dashboard for {database} on {url} (Ctrl-C stops it)",
        "de": "Dashboard für {database} auf {url} (Strg-C beendet es)",
    },
    "db_missing_warning": {
        "en": "warning: {path} does not exist yet; pages answer 503 until events are recorded",
        "de": "Warnung: {path} existiert noch nicht; Seiten antworten mit 503, bis Ereignisse "
        "aufgezeichnet sind",
    },
    "users_not_file": {
        "en": "{path}: is not a file; pass the path of the users file with --users",
        "de": "{path}: ist keine Datei; mit --users den Pfad der Benutzerdatei angeben",
    },
    "prompt": {"en": "New password for {user}: ", "de": "Neues Passwort für {user}: "},
    "prompt_again": {"en": "Repeat the password: ", "de": "Passwort wiederholen: "},
    "mismatch": {
        "en": "the two passwords differ; nothing was changed",
        "de": "die beiden Passwörter unterscheiden sich; nichts wurde geändert",
    },
    "empty_stdin": {
        "en": "no password on stdin; pipe it in or run in a terminal",
        "de": "kein Passwort auf stdin; per Pipe übergeben oder im Terminal ausführen",
    },
    "bad_user": {
        "en": "invalid user name {user!r}: use 1 to 64 letters, digits or . _ @ -",
        "de": "ungültiger Benutzername {user!r}: 1 bis 64 Buchstaben, Ziffern oder . _ @ - "
        "verwenden",
    },
    "bad_password": {
        "en": "password rejected: it must have {low} to {high} characters",
        "de": "Passwort abgelehnt: es muss {low} bis {high} Zeichen haben",
    },
    "created": {
        "en": "Created dashboard user {user} in {path}",
        "de": "Dashboard-Benutzer {user} in {path} angelegt",
    },
    "changed": {
        "en": "Changed the password of {user} in {path}; their other sessions have ended",
        "de": "Passwort von {user} in {path} geändert; andere Sitzungen sind beendet",
    },
}


def tr(key: str, lang: str, **fields: object) -> str:
    return translate(CATALOG, key, lang, **fields)


def register(subparsers: argparse._SubParsersAction, lang: str) -> None:
    parser = subparsers.add_parser("dashboard", help=tr("help", lang), description=tr("help", lang))
    parser.add_argument("--host", default=DEFAULT_HOST, help=tr("help_host", lang))
    parser.add_argument("--port", default=str(DEFAULT_PORT), help=tr("help_port", lang))
    add_database_option(parser, lang)
    parser.add_argument("--users", metavar="FILE", help=tr("help_users", lang))
    parser.add_argument("--secret-key", metavar="FILE", help=tr("help_secret", lang))
    parser.add_argument("--timezone", metavar="ZONE", help=tr("help_timezone", lang))
    parser.add_argument("--lang", dest="page_lang", metavar="LANG", help=tr("help_lang", lang))
    parser.add_argument(
        "--session-hours", default="12", metavar="H", help=tr("help_session_hours", lang)
    )
    parser.add_argument("--trusted-proxy", metavar="ADDRESS", help=tr("help_trusted_proxy", lang))
    parser.set_defaults(handler=run_dashboard, lang=lang)

    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    passwd = actions.add_parser(
        "passwd", help=tr("help_passwd", lang), description=tr("help_passwd", lang)
    )
    passwd.add_argument("user", metavar="USER", help=tr("help_user", lang))
    add_database_option(passwd, lang)
    passwd.add_argument("--users", metavar="FILE", help=tr("help_users", lang))
    passwd.set_defaults(handler=run_passwd, lang=lang)


def users_path(database: Path, value: str | None) -> Path:
    from hauswacht.dashboard.auth import USERS_FILE_NAME

    return Path(value) if value else database.parent / USERS_FILE_NAME


def is_loopback(host: str) -> bool:
    """Return whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_dashboard(args: argparse.Namespace) -> int:
    lang = args.lang
    try:
        port = int(args.port)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        print(f"hauswacht: {tr('bad_port', lang, value=args.port)}", file=sys.stderr)
        return 2
    try:
        session_hours = float(args.session_hours)
    except ValueError:
        session_hours = 0.0
    if not 0 < session_hours <= 720:
        print(f"hauswacht: {tr('bad_hours', lang, value=args.session_hours)}", file=sys.stderr)
        return 2

    if not is_loopback(args.host):
        print(tr("public_warning", lang, host=args.host), file=sys.stderr)

    # Imported here so that the other subcommands do not load Starlette and Jinja2.
    import uvicorn

    from hauswacht.dashboard import DashboardConfigError, auth, create_app

    database = resolve_database(args.db)
    users = users_path(database, args.users)
    for checked in (database, users):
        if schema.file_state(checked) == "denied":
            error = schema.DatabaseError.of(
                "folder_unsearchable", path=checked, folder=checked.parent
            )
            return fail(error.text(lang))
    if schema.file_state(users) == "not_file":
        return fail(tr("users_not_file", lang, path=users))
    # Checked before create_app, which creates the session key file (and its folder).
    try:
        has_users = bool(auth.UserStore(users).users())
    except auth.AuthFileError as exc:
        return fail(exc.text(lang))
    if not has_users:
        message = tr("no_users", lang, path=users)
        if schema.file_state(database) == "missing":
            message += tr("no_database_hint", lang, database=database)
        return fail(message)
    try:
        app = create_app(
            database,
            users_file=users,
            secret_key_file=args.secret_key,
            timezone=args.timezone,
            language=args.page_lang,
            session_hours=session_hours,
        )
    except DashboardConfigError as exc:
        cause = exc.__cause__
        return fail(cause.text(lang) if isinstance(cause, auth.AuthFileError) else str(exc))

    if schema.file_state(database) == "missing":
        print(tr("db_missing_warning", lang, path=database), file=sys.stderr)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(tr("serving", lang, database=database, url=f"http://{host}:{port}/"), flush=True)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        uvicorn.run(
            app,
            host=args.host,
            port=port,
            log_level="warning",
            access_log=False,
            # uvicorn trusts X-Forwarded-For from 127.0.0.1 by default, which would let any
            # local client choose the address that the login throttle counts.
            proxy_headers=args.trusted_proxy is not None,
            forwarded_allow_ips=args.trusted_proxy,
        )
    except OSError as exc:
        return fail(f"{args.host}:{port}: {exc.strerror or exc}")
    return 0


def read_password(user: str, lang: str) -> str | None:
    """Read the new password from a prompt (asked twice) or the first line of stdin."""
    if sys.stdin.isatty():
        first = getpass.getpass(tr("prompt", lang, user=user))
        second = getpass.getpass(tr("prompt_again", lang))
        if first != second:
            print(f"hauswacht: {tr('mismatch', lang)}", file=sys.stderr)
            return None
        return first
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        print(f"hauswacht: {tr('empty_stdin', lang)}", file=sys.stderr)
        return None
    return line


def run_passwd(args: argparse.Namespace) -> int:
    from hauswacht.dashboard import auth

    lang = args.lang
    if auth.check_user_name(args.user) is not None:
        print(f"hauswacht: {tr('bad_user', lang, user=args.user)}", file=sys.stderr)
        return 2
    path = users_path(resolve_database(args.db), args.users)
    # Checked before the prompt, and because UserStore would suggest chmod for a folder.
    state = schema.file_state(path)
    if state == "denied":
        error = schema.DatabaseError.of("folder_unsearchable", path=path, folder=path.parent)
        return fail(error.text(lang))
    if state == "not_file":
        return fail(tr("users_not_file", lang, path=path))
    password = read_password(args.user, lang)
    if password is None:
        return 2
    if auth.check_password(password) is not None:
        message = tr(
            "bad_password", lang, low=auth.MIN_PASSWORD_LENGTH, high=auth.MAX_PASSWORD_LENGTH
        )
        print(f"hauswacht: {message}", file=sys.stderr)
        return 2

    store = auth.UserStore(path)
    try:
        created = store.set_password(args.user, password)
    except auth.AuthFileError as exc:
        return fail(exc.text(lang))
    print(tr("created" if created else "changed", lang, user=args.user, path=path))
    return 0
