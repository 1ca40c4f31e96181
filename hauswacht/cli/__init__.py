"""The `hauswacht` command: one subcommand per job.

The CLI only parses arguments and calls library functions. Each subcommand
module has `register(subparsers, lang)`, which adds its parser and sets
`handler` to a function that takes the parsed arguments and returns the exit
status: 0 on success, 1 when the operation failed, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from hauswacht.i18n import LANGUAGES, argparse_language, detect_language, normalize_language

BROKEN_PIPE_STATUS = 128 + 13  # 128 + SIGPIPE, as a shell reports it

SUBCOMMAND_MODULES = ("replay", "stats", "demo", "vault", "dashboard", "serve", "token", "errors")


def build_parser(lang: str) -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="hauswacht",
        description=(
            "Self-hosted observability for Python web services."
            if lang == "en"
            else "Selbst betriebene Überwachung für Python-Webdienste."
        ),
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(f"hauswacht.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"hauswacht.cli.{name}":
                continue  # that part is not built yet
            raise
        module.register(subparsers, lang)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    lang = detect_language()
    chosen = os.environ.get("HAUSWACHT_LANG")
    if chosen and normalize_language(chosen) is None:
        # Only the explicit setting: LANG=fr_FR.UTF-8 falling back to English is expected.
        print(
            f"hauswacht: HAUSWACHT_LANG={chosen!r} is not a supported language "
            f"({', '.join(LANGUAGES)}); using English",
            file=sys.stderr,
        )
    # argparse formats its usage, help and error texts inside parse_args.
    with argparse_language(lang):
        parser = build_parser(lang)
        args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted" if lang == "en" else "abgebrochen", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of the output has gone (`hauswacht stats | head`). Exit
        # quietly with the status a shell reports for SIGPIPE, and point stdout
        # at /dev/null so flushing it at exit raises nothing more.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return BROKEN_PIPE_STATUS


if __name__ == "__main__":
    sys.exit(main())
