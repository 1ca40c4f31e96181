"""`hauswacht serve`: the HTTP ingest server (hauswacht.collector.ingest) under uvicorn.

Connection limits: an idle keep-alive connection is closed after
KEEP_ALIVE_SECONDS, request headers may take MAX_HEADER_BYTES (h11's
limit on an incomplete event), and a request body must arrive within
--body-timeout seconds (408 otherwise), so a slow or stalled client holds a
connection only for a bounded time.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from hauswacht.cli.common import (
    add_database_option,
    describe_database_error,
    fail,
    resolve_database,
)
from hauswacht.collector.collector import Collector
from hauswacht.collector.settings import Settings, SettingsError
from hauswacht.i18n import translate
from hauswacht.writer import schema

# Larger than the collector's defaults: one POST may carry thousands of events.
SERVE_QUEUE_SIZE = 100_000
SERVE_BATCH_SIZE = 5_000
KEEP_ALIVE_SECONDS = 5
MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_TIMEOUT = 3600.0

CATALOG = {
    "help": {
        "en": "run the HTTP ingest server (native NDJSON and Sentry SDKs)",
        "de": "den HTTP-Ingest-Server starten (natives NDJSON und Sentry-SDKs)",
    },
    "help_host": {
        "en": "address to listen on (default: 127.0.0.1; use 0.0.0.0 for every interface)",
        "de": "Adresse, auf der gelauscht wird (Standard: 127.0.0.1; 0.0.0.0 für alle "
        "Schnittstellen)",
    },
    "help_port": {"en": "TCP port (default: 8112)", "de": "TCP-Port (Standard: 8112)"},
    "help_max_body": {
        "en": "largest request body in MiB, before and after decompression (default: 5)",
        "de": "größter Anfrage-Body in MiB, vor und nach dem Entpacken (Standard: 5)",
    },
    "help_body_timeout": {
        "en": "seconds a client may take to send a whole request body; slower ones get "
        "408 (default: 30)",
        "de": "Sekunden, die ein Client für einen ganzen Anfrage-Body brauchen darf; "
        "langsamere erhalten 408 (Standard: 30)",
    },
    "bad_body_timeout": {
        "en": "invalid --body-timeout {value!r}: expected a number of seconds from 0.1 to 3600",
        "de": "ungültiges --body-timeout {value!r}: erwartet eine Zahl von 0,1 bis 3600 Sekunden",
    },
    "bad_port": {
        "en": "invalid --port {value!r}: expected a number from 1 to 65535",
        "de": "ungültiger --port {value!r}: erwartet eine Zahl von 1 bis 65535",
    },
    "bad_max_body": {
        "en": "invalid --max-body-mb {value!r}: expected a number of MiB from 0.001 to 1024",
        "de": "ungültiges --max-body-mb {value!r}: erwartet eine Zahl von 0,001 bis 1024 MiB",
    },
    "bad_setting": {"en": "{detail}", "de": "ungültige Einstellung: {detail}"},
    "start_failed": {
        "en": "the server did not start; see the log above",
        "de": "der Server ist nicht gestartet; siehe das Log oben",
    },
}


def tr(key: str, lang: str, **fields: object) -> str:
    return translate(CATALOG, key, lang, **fields)


def register(subparsers: argparse._SubParsersAction, lang: str) -> None:
    parser = subparsers.add_parser("serve", help=tr("help", lang), description=tr("help", lang))
    parser.add_argument("--host", default="127.0.0.1", help=tr("help_host", lang))
    parser.add_argument("--port", default="8112", help=tr("help_port", lang))
    parser.add_argument("--max-body-mb", default="5", metavar="MIB", help=tr("help_max_body", lang))
    parser.add_argument(
        "--body-timeout", default="30", metavar="SECONDS", help=tr("help_body_timeout", lang)
    )
    add_database_option(parser, lang)
    parser.set_defaults(handler=run_serve, lang=lang)


def _port(text: str) -> int | None:
    try:
        port = int(text)
    except ValueError:
        return None
    return port if 1 <= port <= 65535 else None


def _max_body(text: str) -> int | None:
    try:
        mib = float(text)
    except ValueError:
        return None
    if not 0.001 <= mib <= 1024:
        return None
    return int(mib * 1024 * 1024)


def _body_timeout(text: str) -> float | None:
    try:
        seconds = float(text)
    except ValueError:
        return None
    return seconds if 0.1 <= seconds <= MAX_BODY_TIMEOUT else None


def build_settings(database: os.PathLike[str] | str) -> Settings:
    """Collector settings for the server: the database and larger queue defaults.

    HAUSWACHT_QUEUE_SIZE and HAUSWACHT_BATCH_SIZE still override the defaults.
    """
    options: dict[str, object] = {"database": database}
    if "HAUSWACHT_QUEUE_SIZE" not in os.environ:
        options["queue_size"] = SERVE_QUEUE_SIZE
    if "HAUSWACHT_BATCH_SIZE" not in os.environ:
        options["batch_size"] = SERVE_BATCH_SIZE
    return Settings.from_options(options)


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from hauswacht.collector.ingest import create_app

    lang = args.lang
    port = _port(args.port)
    if port is None:
        print(f"hauswacht: {tr('bad_port', lang, value=args.port)}", file=sys.stderr)
        return 2
    max_body = _max_body(args.max_body_mb)
    if max_body is None:
        print(f"hauswacht: {tr('bad_max_body', lang, value=args.max_body_mb)}", file=sys.stderr)
        return 2

    body_timeout = _body_timeout(args.body_timeout)
    if body_timeout is None:
        print(
            f"hauswacht: {tr('bad_body_timeout', lang, value=args.body_timeout)}", file=sys.stderr
        )
        return 2

    path = resolve_database(args.db)
    try:
        settings = build_settings(path)
    except SettingsError as exc:
        return fail(tr("bad_setting", lang, detail=exc))
    try:
        schema.prepare_database(path)
    except schema.DatabaseError as exc:
        return fail(describe_database_error(path, exc, lang, must_exist=False))

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = create_app(Collector(settings), max_body=max_body, body_timeout=body_timeout)
    # No access log: browser SDKs put the token in the query string.
    config = uvicorn.Config(
        app,
        host=args.host,
        port=port,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        lifespan="on",
        log_config=None,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        return fail(tr("start_failed", lang))
    return 0
