"""`hauswacht vault ...`: the secrets vault on the command line.

Each subcommand parses its arguments, calls the vault library and prints the
result in English or German. Values are printed only by `get`; `set` reads
them from a hidden prompt or stdin, never from the command line.

Exit status: 0 on success, 1 when the operation failed, 2 on bad usage. When
the reader of stdout went away, the status is 141 (128 + SIGPIPE), as for a
Unix tool killed by SIGPIPE. `run` passes the command's own status through
(it replaces this process), or 127/126 when the command is not found / not
executable, as env(1) does.

The vault library's warnings and errors (a blocked checkpoint, an access that
could not be recorded) appear on stderr as one line each, in English after a
translated prefix. The library never logs a value.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import logging
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from hauswacht.cli.vault_messages import CATALOG, GERMAN_QUOTES, GERMAN_REASONS
from hauswacht.i18n import translate
from hauswacht.vault import Vault, init_vault
from hauswacht.vault.audit import AuditProblem, escape_controls
from hauswacht.vault.envfile import read_env_file, rewrite_without
from hauswacht.vault.errors import EnvKeyMissingError, VaultError, WrongMasterKeyError
from hauswacht.vault.keys import (
    ENV_KEY,
    ENV_KEY_FILE,
    SCRYPT_N,
    SCRYPT_P,
    SCRYPT_R,
    export_key_ring,
    key_id,
    read_key_export,
    resolve_key_file,
    unignored_in_git,
    write_new_key_file,
)
from hauswacht.vault.store import MAX_VALUE_BYTES, check_name, resolve_vault_path

Handler = Callable[[argparse.Namespace], int]

# The status a shell reports for a process killed by SIGPIPE (128 + 13).
EXIT_BROKEN_PIPE = 141


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
    reason = fields.get("reason")
    if lang == "de" and isinstance(reason, str):
        # The vault's own reasons are translated; an OS error text stays as it is.
        fields["reason"] = GERMAN_REASONS.get(reason, reason)
    return _text(lang, f"error_{exc.code}", **fields)


def _write_stderr(line: str) -> None:
    # print(file=None) would fall back to stdout, so a closed stderr means silence.
    if sys.stderr is not None:
        print(line, file=sys.stderr, flush=True)


def _fail(lang: str, message: str) -> None:
    _write_stderr(_text(lang, "error_prefix", message=message))


def _warn(lang: str, message: str) -> None:
    _write_stderr(_text(lang, "warning_prefix", message=message))


class _StderrLogHandler(logging.Handler):
    """Prints the vault library's warnings and errors as one line each, without tracebacks."""

    def __init__(self, lang: str) -> None:
        super().__init__(logging.WARNING)
        self.lang = lang

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                message = f"{message}: {record.exc_info[1]}"
            prefix = "error_prefix" if record.levelno >= logging.ERROR else "warning_prefix"
            _write_stderr(_text(self.lang, prefix, message=escape_controls(message)))
        except Exception:
            self.handleError(record)


def _show_library_logs(lang: str) -> None:
    logger = logging.getLogger("hauswacht.vault")
    if not any(isinstance(handler, _StderrLogHandler) for handler in logger.handlers):
        logger.addHandler(_StderrLogHandler(lang))


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush does not raise
    BrokenPipeError a second time."""
    if sys.stdout is None:
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def _wrap(command: Callable[[argparse.Namespace, str], int], lang: str) -> Handler:
    """Turn library errors into one translated line and exit status 1 or 2."""

    def handler(args: argparse.Namespace) -> int:
        _show_library_logs(lang)
        # Python sets sys.stdout to None when file descriptor 1 was closed at start.
        if sys.stdout is None and command is not cmd_run:
            _fail(lang, _text(lang, "stdout_closed"))
            return 1
        try:
            status = command(args, lang)
            if sys.stdout is not None:
                sys.stdout.flush()  # inside the try, so a write error is reported here
            return status
        except BrokenPipeError:
            # The reader of stdout went away (`list | head -1`): stop quietly.
            _silence_stdout()
            return EXIT_BROKEN_PIPE
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
            reason = exc.strerror or exc
            if exc.filename is None:
                _fail(lang, _text(lang, "os_failed", reason=reason))
            else:
                _fail(lang, _text(lang, "file_failed", path=exc.filename, reason=reason))
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


def _require_stdin(lang: str) -> None:
    # Python sets sys.stdin to None when file descriptor 0 was closed at start.
    if sys.stdin is None:
        raise OperationError(_text(lang, "stdin_closed"))


def _prompt_hidden(prompt: str) -> str:
    """Read a line without echo; on Ctrl-C end the prompt's line before re-raising."""
    try:
        return getpass.getpass(prompt)
    except KeyboardInterrupt:
        # getpass writes its prompt to /dev/tty when it can open it, else to stderr.
        try:
            tty = os.open("/dev/tty", os.O_WRONLY | os.O_NOCTTY)
        except OSError:
            _write_stderr("")
        else:
            with contextlib.suppress(OSError):
                os.write(tty, b"\n")
            os.close(tty)
        raise


def _read_value(name: str, lang: str) -> str:
    """Read a secret value: hidden prompt (entered twice) on a terminal, else stdin.

    From stdin, at most the value limit plus a trailing CRLF is read; longer input
    is rejected without reading the rest.
    """
    _require_stdin(lang)
    if sys.stdin.isatty():
        first = _prompt_hidden(_text(lang, "prompt_value", name=name))
        second = _prompt_hidden(_text(lang, "prompt_value_again"))
        if first != second:
            raise OperationError(_text(lang, "values_differ"))
        return first

    limit = MAX_VALUE_BYTES + 2
    data = sys.stdin.buffer.read(limit + 1)
    if len(data) > limit:
        raise OperationError(_text(lang, "stdin_too_large", name=name, limit=MAX_VALUE_BYTES))
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
    _require_stdin(lang)
    if args.passphrase_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise UsageError(_text(lang, "no_terminal"))
    first = _prompt_hidden(_text(lang, "prompt_passphrase"))
    if confirm and _prompt_hidden(_text(lang, "prompt_passphrase_again")) != first:
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
    _require_stdin(lang)
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
        # Rows written by other tools may hold control characters: escape them so one row
        # is always one line.
        _print_table(
            header,
            [
                (
                    _utc(row.ts),
                    escape_controls(row.actor),
                    escape_controls(row.action),
                    None if row.secret is None else escape_controls(row.secret),
                    row.version,
                    escape_controls(row.outcome),
                    row.pid,
                    escape_controls(row.host),
                )
                for row in rows
            ],
        )
        return 0

    if report.intact:
        print(_text(lang, "audit_intact", rows=report.rows, head=report.head or "-"))
        return 0
    for problem in report.problems:
        print(_problem_text(lang, problem))
    count = len(report.problems)
    raise OperationError(
        _text(lang, "audit_broken_one" if count == 1 else "audit_broken", count=count)
    )


def _problem_text(lang: str, problem: AuditProblem) -> str:
    key = f"problem_{problem.kind}"
    if problem.kind in ("missing", "truncated") and problem.row == problem.last_row:
        key += "_one"
    if problem.kind == "rolled_back" and problem.current == 0:
        key = "problem_removed"
    return _text(
        lang,
        key,
        row=problem.row,
        last_row=problem.last_row,
        secret=problem.secret,
        recorded=problem.recorded,
        current=problem.current,
    )


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
        git_root = unignored_in_git(backup)
        if git_root is not None:
            pattern = f"{path.name}.*.bak"
            _warn(
                lang,
                _text(lang, "backup_git_warning", backup=backup, root=git_root, pattern=pattern),
            )
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
    for name, value in values.items():
        if "\x00" in value:  # stored before set rejected NUL bytes
            raise OperationError(_text(lang, "run_value_nul", name=name))

    # The command gets the secrets it needs, not the key that opens all of them.
    environment = {
        key: value for key, value in os.environ.items() if key not in (ENV_KEY, ENV_KEY_FILE)
    }
    environment.update(values)

    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    # Python ignores SIGPIPE, and an ignored signal stays ignored across exec; the
    # command should see the default, as when a shell starts it.
    previous_sigpipe = signal.signal(signal.SIGPIPE, signal.SIG_DFL)
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
    except ValueError as exc:  # an argument or environment entry the OS cannot take
        _fail(lang, _text(lang, "run_not_executable", command=command[0], reason=exc))
        return 126
    finally:
        # Reached only when execvpe failed, so this process goes on printing.
        signal.signal(signal.SIGPIPE, previous_sigpipe)
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
