"""`hauswacht vault ...`: the secrets vault on the command line.

Each subcommand parses its arguments, calls the vault library and prints the
result in English or German. Values are printed only by `get`; `set` reads
them from a hidden prompt or stdin, never from the command line. Exit status:
0 on success, 1 when the operation failed, 2 on bad usage; `run` passes the
command's own status through (it replaces this process), or 127/126 when the
command is not found / not executable, as env(1) does.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from hauswacht.cli.vault_messages import CATALOG, GERMAN_QUOTES
from hauswacht.i18n import translate
from hauswacht.vault import Vault, init_vault
from hauswacht.vault.envfile import read_env_file, rewrite_without
from hauswacht.vault.errors import EnvKeyMissingError, VaultError, WrongMasterKeyError
from hauswacht.vault.keys import (
    ENV_KEY,
    SCRYPT_N,
    SCRYPT_P,
    SCRYPT_R,
    export_key_ring,
    key_id,
    read_key_export,
    resolve_key_file,
    write_new_key_file,
)
from hauswacht.vault.store import check_name, resolve_vault_path

Handler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """Bad usage found after argument parsing; carries a translated one-line message."""


class OperationError(Exception):
    """A failed operation found by the CLI itself; carries a translated one-line message."""


def _text(lang: str, message_key: str, /, **fields: object) -> str:
    return translate(CATALOG, message_key, lang, **fields)


def _error_text(lang: str, exc: VaultError) -> str:
    fields = dict(exc.fields)
    if exc.code == "env_quote" and lang == "de":
        fields["quote"] = GERMAN_QUOTES.get(str(fields["quote"]), fields["quote"])
    return _text(lang, f"error_{exc.code}", **fields)


def _fail(lang: str, message: str) -> None:
    print(_text(lang, "error_prefix", message=message), file=sys.stderr)


def _warn(lang: str, message: str) -> None:
    print(_text(lang, "warning_prefix", message=message), file=sys.stderr)


def _wrap(command: Callable[[argparse.Namespace, str], int], lang: str) -> Handler:
    """Turn library errors into one translated line and exit status 1 or 2."""

    def handler(args: argparse.Namespace) -> int:
        try:
            return command(args, lang)
        except VaultError as exc:
            _fail(lang, _error_text(lang, exc))
            return 2 if exc.usage else 1
        except UsageError as exc:
            _fail(lang, str(exc))
            return 2
        except OperationError as exc:
            _fail(lang, str(exc))
            return 1
        except EOFError:
            _fail(lang, _text(lang, "input_ended"))
            return 1
        except sqlite3.Error as exc:
            path = resolve_vault_path(args.vault)
            _fail(lang, _text(lang, "database_failed", path=path, reason=exc))
            return 1
        except OSError as exc:
            _fail(
                lang,
                _text(lang, "file_failed", path=exc.filename or "?", reason=exc.strerror or exc),
            )
            return 1

    return handler


def _utc(ms: int | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}"


def _print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [list(header)] + [["-" if cell is None else str(cell) for cell in row] for row in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(header))]
    for row in cells:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _open(args: argparse.Namespace) -> Vault:
    return Vault(args.vault, key_file=args.key_file, actor=args.actor)


def _integer(lang: str, minimum: int) -> Callable[[str], int]:
    """Return an argparse type that accepts whole numbers >= minimum."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(
                _text(lang, "invalid_integer", value=text, minimum=minimum)
            )
        return value

    return parse


# Reading values and passphrases


def _read_value(name: str, lang: str) -> str:
    """Read a secret value: hidden prompt (entered twice) on a terminal, else all of stdin."""
    if sys.stdin.isatty():
        first = getpass.getpass(_text(lang, "prompt_value", name=name))
        second = getpass.getpass(_text(lang, "prompt_value_again"))
        if first != second:
            raise OperationError(_text(lang, "values_differ"))
        return first

    data = sys.stdin.buffer.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise OperationError(_text(lang, "stdin_not_utf8")) from None
    # `echo value | hauswacht vault set NAME` adds one newline that is not part of the value.
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith("\n"):
        return text[:-1]
    return text


def _read_passphrase(args: argparse.Namespace, lang: str, *, confirm: bool) -> str:
    if args.passphrase_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise UsageError(_text(lang, "no_terminal"))
    first = getpass.getpass(_text(lang, "prompt_passphrase"))
    if confirm and getpass.getpass(_text(lang, "prompt_passphrase_again")) != first:
        raise OperationError(_text(lang, "passphrases_differ"))
    return first


# Subcommands


def cmd_init(args: argparse.Namespace, lang: str) -> int:
    result = init_vault(
        args.vault, key_file=args.key_file, max_versions=args.max_versions, actor=args.actor
    )
    print(_text(lang, "init_done", path=result.path, key_id=result.key_id))
    if result.created_key_file:
        print(_text(lang, "init_key_created", path=result.key_source))
    else:
        print(_text(lang, "init_key_existing", source=result.key_source))
    if result.git_root is not None:
        _warn(lang, _text(lang, "git_warning", path=result.key_source, root=result.git_root))
    return 0


def cmd_set(args: argparse.Namespace, lang: str) -> int:
    check_name(args.name)
    with _open(args) as vault:
        vault.verify_key()  # fail before the prompt, not after the value was typed
        value = _read_value(args.name, lang)
        version = vault.set(args.name, value, cas=args.cas)
    print(_text(lang, "set_done", name=args.name, version=version))
    return 0


def cmd_get(args: argparse.Namespace, lang: str) -> int:
    with _open(args) as vault:
        value = vault.get(args.name, version=args.version)
    sys.stdout.write(value if args.no_newline else value + "\n")
    return 0


def cmd_list(args: argparse.Namespace, lang: str) -> int:
    with _open(args) as vault:
        secrets = vault.list()
    if not secrets:
        print(_text(lang, "list_empty"))
        return 0
    header = [
        _text(lang, key)
        for key in ("col_name", "col_version", "col_state", "col_versions_kept", "col_updated")
    ]
    rows = [
        (
            info.name,
            info.version,
            _text(lang, f"state_{info.state}"),
            info.versions_kept,
            _utc(info.updated_at),
        )
        for info in secrets
    ]
    _print_table(header, rows)
    return 0


def cmd_versions(args: argparse.Namespace, lang: str) -> int:
    with _open(args) as vault:
        versions = vault.versions(args.name)
    header = [_text(lang, key) for key in ("col_version", "col_state", "col_created", "col_key_id")]
    rows = [
        (info.version, _text(lang, f"state_{info.state}"), _utc(info.created_at), info.key_id)
        for info in versions
    ]
    _print_table(header, rows)
    return 0


def cmd_delete(args: argparse.Namespace, lang: str) -> int:
    with _open(args) as vault:
        version = vault.delete(args.name, version=args.version)
    print(_text(lang, "delete_done", name=args.name, version=version))
    return 0


def cmd_undelete(args: argparse.Namespace, lang: str) -> int:
    with _open(args) as vault:
        version = vault.undelete(args.name, version=args.version)
    print(_text(lang, "undelete_done", name=args.name, version=version))
    return 0


def cmd_destroy(args: argparse.Namespace, lang: str) -> int:
    with _open(args) as vault:
        version = vault.destroy(args.name, version=args.version)
    if version is None:
        print(_text(lang, "destroy_all_done", name=args.name))
    else:
        print(_text(lang, "destroy_version_done", name=args.name, version=version))
    return 0


def cmd_rotate_key(args: argparse.Namespace, lang: str) -> int:
    with _open(args) as vault:
        result = vault.rotate_master_key()
    print(
        _text(
            lang,
            "rotate_done",
            count=result.rewrapped,
            new_id=result.new_key_id,
            old_ids=", ".join(result.old_key_ids),
            key_file=result.key_file,
        )
    )
    print(_text(lang, "rotate_export_hint"))
    return 0


def cmd_audit(args: argparse.Namespace, lang: str) -> int:
    if args.secret is not None:
        check_name(args.secret)
    with _open(args) as vault:
        if args.verify:
            report = vault.verify_audit()
        else:
            rows = vault.audit_rows(secret=args.secret, limit=args.limit)

    if not args.verify:
        if not rows:
            print(_text(lang, "audit_empty"))
            return 0
        header = [
            _text(lang, key)
            for key in (
                "col_time",
                "col_actor",
                "col_action",
                "col_secret",
                "col_version",
                "col_outcome",
                "col_pid",
                "col_host",
            )
        ]
        _print_table(
            header,
            [
                (
                    _utc(row.ts),
                    row.actor,
                    row.action,
                    row.secret,
                    row.version,
                    row.outcome,
                    row.pid,
                    row.host,
                )
                for row in rows
            ],
        )
        return 0

    if report.intact:
        print(_text(lang, "audit_intact", rows=report.rows, head=report.head or "-"))
        return 0
    for problem in report.problems:
        print(_text(lang, f"problem_{problem.kind}", row=problem.row, last_row=problem.last_row))
    raise OperationError(_text(lang, "audit_broken", count=len(report.problems)))


def cmd_import_env(args: argparse.Namespace, lang: str) -> int:
    path = Path(args.file)
    text, entries = read_env_file(path)
    values = {entry.key: entry.value for entry in entries}  # the last one wins, as in a shell
    for key in args.keys:
        check_name(key)
        if key not in values:
            raise EnvKeyMissingError(path=str(path), key=key)
    chosen = {key: values[key] for key in (args.keys or values)}
    if not chosen:
        raise OperationError(_text(lang, "import_no_keys", path=path))

    with _open(args) as vault:
        outcomes = vault.import_values(chosen)
    for outcome in outcomes:
        print(_text(lang, f"import_{outcome.action}", key=outcome.key, version=outcome.version))
    stored = [outcome.key for outcome in outcomes if outcome.action != "skipped_empty"]
    print(_text(lang, "import_summary", count=len(stored), total=len(outcomes), path=path))

    if args.rewrite and stored:
        backup = rewrite_without(path, text, entries, set(stored))
        print(_text(lang, "rewrite_done", path=path, count=len(stored), backup=backup))
    return 0


def cmd_export_key(args: argparse.Namespace, lang: str) -> int:
    with _open(args) as vault:
        ring = vault.key_ring_for_export()  # checks the key before the passphrase is typed
    passphrase = _read_passphrase(args, lang, confirm=True)
    export_key_ring(ring, Path(args.file), passphrase)
    print(
        _text(
            lang,
            "export_done",
            key_ids=", ".join(ring.ids),
            path=args.file,
            n=SCRYPT_N,
            r=SCRYPT_R,
            p=SCRYPT_P,
        )
    )
    return 0


def cmd_import_key(args: argparse.Namespace, lang: str) -> int:
    passphrase = _read_passphrase(args, lang, confirm=False)
    keys = read_key_export(Path(args.file), passphrase)
    key_path = resolve_key_file(args.key_file)
    write_new_key_file(key_path, keys)

    vault_path = resolve_vault_path(args.vault)
    if vault_path.exists():
        try:
            with Vault(vault_path, key_file=key_path, actor=args.actor) as vault:
                vault.verify_key()
        except WrongMasterKeyError:
            key_path.unlink()  # this command created it; a key for another vault is no use here
            raise
    print(
        _text(
            lang, "import_key_done", key_ids=", ".join(key_id(key) for key in keys), path=key_path
        )
    )
    if vault_path.exists():
        print(_text(lang, "import_key_fits", vault=vault_path))
    if os.environ.get(ENV_KEY) and args.key_file is None:
        _warn(lang, _text(lang, "import_key_env_wins", path=key_path))
    return 0


def cmd_run(args: argparse.Namespace, lang: str) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UsageError(_text(lang, "run_missing_command"))

    with _open(args) as vault:
        values = vault.get_many(args.only)
    environment = dict(os.environ)
    environment.update(values)

    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], command, environment)
    except FileNotFoundError:
        _fail(lang, _text(lang, "run_not_found", command=command[0]))
        return 127
    except OSError as exc:
        _fail(
            lang, _text(lang, "run_not_executable", command=command[0], reason=exc.strerror or exc)
        )
        return 126
    return 0  # not reached: execvpe replaces this process


# Parser


def register(subparsers: argparse._SubParsersAction, lang: str) -> None:
    """Add `hauswacht vault` and its subcommands."""

    def text(key: str) -> str:
        return _text(lang, key)

    vault_parser = subparsers.add_parser(
        "vault", help=text("help_vault"), description=text("help_vault")
    )
    commands = vault_parser.add_subparsers(dest="vault_command", metavar="COMMAND")
    commands.required = True

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--vault", metavar="PATH", help=text("help_opt_vault"))
    common.add_argument("--key-file", metavar="PATH", help=text("help_opt_key_file"))
    common.add_argument("--actor", metavar="NAME", help=text("help_opt_actor"))

    def add(
        name: str, help_key: str, command: Callable[[argparse.Namespace, str], int]
    ) -> argparse.ArgumentParser:
        parser = commands.add_parser(
            name, parents=[common], help=text(help_key), description=text(help_key)
        )
        parser.set_defaults(handler=_wrap(command, lang))
        return parser

    parser = add("init", "help_init", cmd_init)
    parser.add_argument(
        "--max-versions",
        type=_integer(lang, 1),
        default=10,
        metavar="N",
        help=text("help_max_versions"),
    )

    parser = add("set", "help_set", cmd_set)
    parser.add_argument("name", metavar="NAME", help=text("help_name"))
    parser.add_argument("--cas", type=_integer(lang, 0), metavar="N", help=text("help_cas"))

    parser = add("get", "help_get", cmd_get)
    parser.add_argument("name", metavar="NAME", help=text("help_name"))
    parser.add_argument("--version", type=_integer(lang, 1), metavar="N", help=text("help_version"))
    parser.add_argument("-n", "--no-newline", action="store_true", help=text("help_no_newline"))

    add("list", "help_list", cmd_list)

    parser = add("versions", "help_versions", cmd_versions)
    parser.add_argument("name", metavar="NAME", help=text("help_name"))

    for name, help_key, command, version_help in (
        ("delete", "help_delete", cmd_delete, "help_version"),
        ("undelete", "help_undelete", cmd_undelete, "help_version"),
        ("destroy", "help_destroy", cmd_destroy, "help_destroy_version"),
    ):
        parser = add(name, help_key, command)
        parser.add_argument("name", metavar="NAME", help=text("help_name"))
        parser.add_argument(
            "--version", type=_integer(lang, 1), metavar="N", help=text(version_help)
        )

    add("rotate-key", "help_rotate", cmd_rotate_key)

    parser = add("audit", "help_audit", cmd_audit)
    parser.add_argument("--secret", metavar="NAME", help=text("help_audit_secret"))
    parser.add_argument(
        "--limit", type=_integer(lang, 1), default=50, metavar="N", help=text("help_audit_limit")
    )
    parser.add_argument("--verify", action="store_true", help=text("help_audit_verify"))

    parser = add("import-env", "help_import_env", cmd_import_env)
    parser.add_argument("file", metavar="FILE", help=text("help_env_file"))
    parser.add_argument("keys", metavar="KEY", nargs="*", help=text("help_env_keys"))
    parser.add_argument("--rewrite", action="store_true", help=text("help_rewrite"))

    for name, help_key, command in (
        ("export-key", "help_export_key", cmd_export_key),
        ("import-key", "help_import_key", cmd_import_key),
    ):
        parser = add(name, help_key, command)
        parser.add_argument("file", metavar="FILE", help=text("help_key_export_file"))
        parser.add_argument(
            "--passphrase-stdin", action="store_true", help=text("help_passphrase_stdin")
        )

    parser = add("run", "help_run", cmd_run)
    parser.add_argument("--only", action="append", metavar="NAME", help=text("help_only"))
    parser.add_argument(
        "command", nargs=argparse.REMAINDER, metavar="COMMAND", help=text("help_command")
    )
