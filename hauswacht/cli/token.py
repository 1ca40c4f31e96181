"""`hauswacht token create|list|revoke`: ingest tokens (see hauswacht.writer.tokens).

`token create` prints the database it wrote to. When that file did not exist
it is created (with missing folders, as `hauswacht serve` would), and a
notice on stderr reports it, because a mistyped --db would otherwise go
unnoticed. The Sentry DSN is printed only for tokens whose scope allows the
Sentry endpoints, the curl line only for those that allow /ingest.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from urllib.parse import urlsplit

import orjson

from hauswacht.cli.common import (
    add_database_option,
    describe_database_error,
    fail,
    render_table,
    resolve_database,
)
from hauswacht.cli.errors import write_lines, write_text
from hauswacht.i18n import translate
from hauswacht.writer import schema
from hauswacht.writer.tokens import (
    DEFAULT_SCOPE,
    SCOPE_INGEST,
    SCOPE_SENTRY,
    SCOPES,
    TokenError,
    check_name,
    create_token,
    list_tokens,
    revoke_token,
    scope_allows,
)

DEFAULT_URL = "http://127.0.0.1:8112"
SENTRY_PROJECT_ID = 1

CATALOG = {
    "help": {
        "en": "create, list and revoke tokens for the ingest server",
        "de": "Tokens für den Ingest-Server anlegen, auflisten und widerrufen",
    },
    "help_create": {
        "en": "create a token and print it once, with its Sentry DSN",
        "de": "ein Token anlegen und einmalig ausgeben, mit seiner Sentry-DSN",
    },
    "help_list": {
        "en": "list tokens by name (the tokens themselves are not stored)",
        "de": "Tokens nach Namen auflisten (die Tokens selbst werden nicht gespeichert)",
    },
    "help_revoke": {
        "en": "revoke a token; the server rejects it within 2 seconds",
        "de": "ein Token widerrufen; der Server lehnt es binnen 2 Sekunden ab",
    },
    "help_name": {
        "en": "token name: 1 to 64 letters, digits, '.', '_' or '-', e.g. frontend",
        "de": "Token-Name: 1 bis 64 Buchstaben, Ziffern, '.', '_' oder '-', z. B. frontend",
    },
    "help_url": {
        "en": "server URL as the clients reach it, used in the DSN (default: {url})",
        "de": "Server-URL, wie die Clients sie erreichen, für die DSN (Standard: {url})",
    },
    "help_json": {"en": "print JSON", "de": "JSON ausgeben"},
    "help_scope": {
        "en": "what the token may do: 'sentry' (Sentry SDK endpoints only; use it for a DSN "
        "in browser code, which anyone can read), 'ingest' (POST /ingest only) or 'all' "
        "(default: {default})",
        "de": "was das Token darf: 'sentry' (nur die Sentry-SDK-Endpunkte; für eine DSN in "
        "Browser-Code, die jeder lesen kann), 'ingest' (nur POST /ingest) oder 'all' "
        "(Standard: {default})",
    },
    "database": {"en": "Database: {path}", "de": "Datenbank: {path}"},
    "database_created": {
        "en": "note: {path} did not exist and was created as a new events database; "
        "if you meant an existing one, revoke this token and pass the right --db",
        "de": "Hinweis: {path} existierte nicht und wurde als neue Ereignisdatenbank "
        "angelegt; falls eine vorhandene gemeint war, dieses Token widerrufen und das "
        "richtige --db angeben",
    },
    "scope": {"en": "Scope", "de": "Bereich"},
    "bad_url": {
        "en": "invalid --url {value!r}: expected http://HOST:PORT or https://HOST:PORT",
        "de": "ungültige --url {value!r}: erwartet http://HOST:PORT oder https://HOST:PORT",
    },
    "created": {
        "en": "Token {name!r} created. It is shown only now; store it in a safe place:",
        "de": "Token {name!r} angelegt. Es wird nur jetzt angezeigt; sicher aufbewahren:",
    },
    "dsn": {"en": "Sentry DSN:", "de": "Sentry-DSN:"},
    "native": {
        "en": "Native ingest (NDJSON, one event per line):",
        "de": "Natives Ingest (NDJSON, ein Ereignis pro Zeile):",
    },
    "revoked": {"en": "Token {name!r} revoked.", "de": "Token {name!r} widerrufen."},
    "none": {"en": "No tokens yet.", "de": "Noch keine Tokens."},
    "name": {"en": "Name", "de": "Name"},
    "created_at": {"en": "Created (UTC)", "de": "Angelegt (UTC)"},
    "state": {"en": "State", "de": "Status"},
    "active": {"en": "active", "de": "aktiv"},
    "revoked_at": {"en": "revoked {time}", "de": "widerrufen {time}"},
    "bad_name": {
        "en": "invalid token name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-', "
        "starting with a letter or digit",
        "de": "ungültiger Token-Name {name!r}: erlaubt sind 1 bis 64 Buchstaben, Ziffern, "
        "'.', '_' oder '-', am Anfang ein Buchstabe oder eine Ziffer",
    },
    "exists": {
        "en": "a token named {name!r} already exists; revoke it first or choose another name",
        "de": "ein Token namens {name!r} existiert bereits; erst widerrufen oder anderen "
        "Namen wählen",
    },
    "missing": {
        "en": "no active token named {name!r}; see `hauswacht token list`",
        "de": "kein aktives Token namens {name!r}; siehe `hauswacht token list`",
    },
}


def tr(key: str, lang: str, **fields: object) -> str:
    return translate(CATALOG, key, lang, **fields)


def register(subparsers: argparse._SubParsersAction, lang: str) -> None:
    parser = subparsers.add_parser("token", help=tr("help", lang), description=tr("help", lang))
    commands = parser.add_subparsers(dest="token_command", metavar="ACTION")
    commands.required = True

    create = commands.add_parser(
        "create", help=tr("help_create", lang), description=tr("help_create", lang)
    )
    create.add_argument("name", metavar="NAME", help=tr("help_name", lang))
    create.add_argument("--url", default=DEFAULT_URL, help=tr("help_url", lang, url=DEFAULT_URL))
    create.add_argument(
        "--scope",
        choices=SCOPES,
        default=DEFAULT_SCOPE,
        help=tr("help_scope", lang, default=DEFAULT_SCOPE),
    )
    create.add_argument("--json", action="store_true", help=tr("help_json", lang))
    add_database_option(create, lang)
    create.set_defaults(handler=run_create, lang=lang)

    listing = commands.add_parser(
        "list", help=tr("help_list", lang), description=tr("help_list", lang)
    )
    listing.add_argument("--json", action="store_true", help=tr("help_json", lang))
    add_database_option(listing, lang)
    listing.set_defaults(handler=run_list, lang=lang)

    revoke = commands.add_parser(
        "revoke", help=tr("help_revoke", lang), description=tr("help_revoke", lang)
    )
    revoke.add_argument("name", metavar="NAME", help=tr("help_name", lang))
    add_database_option(revoke, lang)
    revoke.set_defaults(handler=run_revoke, lang=lang)


def sentry_dsn(url: str, token: str, project_id: int = SENTRY_PROJECT_ID) -> str:
    """Return the DSN that makes a Sentry SDK send to the server at `url` with `token`."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{token}@{parts.netloc}{parts.path.rstrip('/')}/{project_id}"


def _valid_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and "@" not in parts.netloc


def _time(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def run_create(args: argparse.Namespace) -> int:
    lang = args.lang
    if not _valid_url(args.url):
        print(f"hauswacht: {tr('bad_url', lang, value=args.url)}", file=sys.stderr)
        return 2
    try:
        check_name(args.name)
    except TokenError:
        return fail(tr("bad_name", lang, name=args.name))
    path = resolve_database(args.db)
    existed = path.exists()
    try:
        token = create_token(path, args.name, args.scope)
    except TokenError:
        return fail(tr("exists", lang, name=args.name))
    except schema.DatabaseError as exc:
        return fail(describe_database_error(path, exc, lang, must_exist=False))
    if not existed:
        print(f"hauswacht: {tr('database_created', lang, path=path)}", file=sys.stderr)

    dsn = sentry_dsn(args.url, token) if scope_allows(args.scope, SCOPE_SENTRY) else None
    ingest_url = args.url.rstrip("/") + "/ingest"
    native = scope_allows(args.scope, SCOPE_INGEST)
    if args.json:
        body = {
            "name": args.name,
            "token": token,
            "scope": args.scope,
            "dsn": dsn,
            "ingest_url": ingest_url if native else None,
            "database": str(path.absolute()),
            "database_created": not existed,
        }
        return write_lines([orjson.dumps(body).decode()])
    lines = [
        tr("created", lang, name=args.name),
        f"  {token}",
        tr("database", lang, path=path.absolute()),
        f"{tr('scope', lang)}: {args.scope}",
    ]
    if dsn is not None:
        lines += [tr("dsn", lang), f"  {dsn}"]
    if native:
        lines += [
            tr("native", lang),
            f'  curl -H "Authorization: Bearer {token}" -H "Content-Type: application/x-ndjson" '
            f"--data-binary @events.ndjson {ingest_url}",
        ]
    return write_text(lines)


def run_list(args: argparse.Namespace) -> int:
    lang = args.lang
    path = resolve_database(args.db)
    try:
        tokens = list_tokens(path)
    except schema.DatabaseError as exc:
        return fail(describe_database_error(path, exc, lang))
    if args.json:
        rows = [
            {
                "name": t.name,
                "scope": t.scope,
                "created_at": t.created_at,
                "revoked_at": t.revoked_at,
            }
            for t in tokens
        ]
        return write_lines([orjson.dumps(rows).decode()])
    if not tokens:
        return write_text([tr("none", lang)])
    rows_text = []
    for info in tokens:
        if info.revoked_at is None:
            state = tr("active", lang)
        else:
            state = tr("revoked_at", lang, time=_time(info.revoked_at))
        rows_text.append([info.name, info.scope, _time(info.created_at), state])
    headers = [tr("name", lang), tr("scope", lang), tr("created_at", lang), tr("state", lang)]
    return write_text(render_table(headers, rows_text, left_columns=4))


def run_revoke(args: argparse.Namespace) -> int:
    lang = args.lang
    path = resolve_database(args.db)
    if not path.exists():
        return fail(schema.DatabaseError.of("missing", path=path).text(lang))
    try:
        revoke_token(path, args.name)
    except TokenError:
        return fail(tr("missing", lang, name=args.name))
    except schema.DatabaseError as exc:
        return fail(describe_database_error(path, exc, lang))
    return write_text([tr("revoked", lang, name=args.name)])
