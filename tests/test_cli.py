"""The `hauswacht` command as a user runs it: the installed console script in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hauswacht.cli import replay as replay_cli
from hauswacht.i18n import translate_count

HAUSWACHT = Path(sys.executable).with_name("hauswacht")


def run_cli(
    *args: str,
    lang: str = "en",
    env_db: str | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
    uid: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the installed `hauswacht` command with HAUSWACHT_LANG=`lang` and return its result.

    With `uid`, the command runs as that user and group id (through setpriv),
    because the tests run as root, who may read and write every file.
    """
    env = {key: value for key, value in os.environ.items() if key != "HAUSWACHT_DB"}
    env["HAUSWACHT_LANG"] = lang
    if env_db is not None:
        env["HAUSWACHT_DB"] = env_db
    command = [str(HAUSWACHT), *args]
    if uid is not None:
        command = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *command]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )


def test_console_script_is_installed() -> None:
    assert HAUSWACHT.is_file(), f"{HAUSWACHT} is missing; install the package with pip install -e ."


@pytest.mark.parametrize(
    ("lang", "expected"),
    [("en", "show request, error and latency figures"), ("de", "Anfrage-, Fehler- und Latenz")],
)
def test_help_in_both_languages(lang: str, expected: str) -> None:
    result = run_cli("--help", lang=lang)

    assert result.returncode == 0, result.stderr
    assert "replay" in result.stdout
    assert "stats" in result.stdout
    assert "demo" in result.stdout
    assert expected in result.stdout


@pytest.mark.parametrize("command", ["replay", "stats", "demo"])
def test_subcommand_help_names_default_database(command: str) -> None:
    result = run_cli(command, "--help")

    assert result.returncode == 0, result.stderr
    assert "--db" in result.stdout
    assert "HAUSWACHT_DB" in result.stdout


def test_default_database_is_under_working_folder(tmp_path: Path) -> None:
    result = run_cli("stats", cwd=tmp_path)

    assert result.returncode == 1
    assert result.stderr.strip() == (
        "hauswacht: hauswacht-data/events.db: no such file; record events first or pass --db"
    )
    assert not (tmp_path / "hauswacht-data").exists()


def test_unknown_option_is_usage_error() -> None:
    result = run_cli("stats", "--since", "1h")

    assert result.returncode == 2
    assert "--since" in result.stderr
    assert "Traceback" not in result.stderr


# Every subcommand, for the argparse texts; only those of the built parts are listed in --help.
SUBCOMMANDS = ("replay", "stats", "demo", "vault", "dashboard", "serve", "token", "errors")


@pytest.mark.parametrize("command", [(), *((name,) for name in SUBCOMMANDS)])
def test_help_argparse_texts_in_german(command: tuple[str, ...]) -> None:
    result = run_cli(*command, "--help", lang="de")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Aufruf: hauswacht {' '.join(command)}".rstrip() + " ")
    assert "\nOptionen:\n" in result.stdout
    assert "-h, --help" in result.stdout
    assert "diese Hilfe anzeigen und beenden" in result.stdout
    for english in ("usage:", "options:", "show this help message", "positional arguments"):
        assert english not in result.stdout


def test_missing_argument_in_german() -> None:
    result = run_cli("replay", lang="de")

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "Aufruf: hauswacht replay [-h] [--force] [--db PATH] FILE",
        "hauswacht replay: Fehler: diese Argumente fehlen: FILE",
    ]


def test_invalid_choice_in_german() -> None:
    result = run_cli("frobnicate", lang="de")

    assert result.returncode == 2
    last = result.stderr.splitlines()[-1]
    assert last.startswith(
        "hauswacht: Fehler: Argument COMMAND: ungültige Auswahl: 'frobnicate' (möglich sind "
    )
    assert "'replay'" in last
    assert "invalid choice" not in result.stderr


def test_argparse_errors_stay_english_in_english() -> None:
    result = run_cli("replay", lang="en")

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "usage: hauswacht replay [-h] [--force] [--db PATH] FILE",
        "hauswacht replay: error: the following arguments are required: FILE",
    ]


@pytest.mark.parametrize(
    ("lang", "count", "expected"),
    [
        ("en", 1, "1 imported event could not be stored; see the warnings above"),
        ("en", 2, "2 imported events could not be stored; see the warnings above"),
        ("en", 0, "0 imported events could not be stored; see the warnings above"),
        (
            "de",
            1,
            "1 importiertes Ereignis konnte nicht gespeichert werden; siehe die Warnungen oben",
        ),
        (
            "de",
            1234,
            "1.234 importierte Ereignisse konnten nicht gespeichert werden; "
            "siehe die Warnungen oben",
        ),
    ],
)
def test_dropped_message_singular_and_plural(lang: str, count: int, expected: str) -> None:
    assert translate_count(replay_cli.PLURALS, "dropped", lang, count) == expected


@pytest.mark.parametrize(
    ("lang", "expected"),
    [("en", "Sent 1 request from 1 client to "), ("de", "1 Anfrage von 1 Client an ")],
)
def test_demo_singular_forms(tmp_path: Path, lang: str, expected: str) -> None:
    result = run_cli(
        "demo",
        "--requests",
        "1",
        "--clients",
        "1",
        "--db",
        str(tmp_path / "events.db"),
        lang=lang,
    )

    assert result.returncode == 0, result.stderr
    assert expected in result.stdout


def test_closed_output_pipe_exits_quietly(tmp_path: Path, shared_data: Path) -> None:
    db = tmp_path / "events.db"
    log = shared_data / "access_logs" / "apache_logs"
    assert run_cli("replay", str(log), "--db", str(db)).returncode == 0

    # `hauswacht stats --routes 1000 | head -1`: the table (over 100 KiB) is
    # larger than a pipe buffer, and the reader closes the pipe after one line.
    process = subprocess.Popen(
        [str(HAUSWACHT), "stats", "--db", str(db), "--routes", "1000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdout.readline()
    process.stdout.close()
    stderr = process.stderr.read().decode()
    process.wait(timeout=60)

    assert process.returncode == 141
    assert stderr == ""


def test_unsupported_language_setting_warns() -> None:
    chosen = run_cli("--help", lang="fr")
    locale_env = {key: value for key, value in os.environ.items() if key != "HAUSWACHT_LANG"}
    locale_env.update(LANG="fr_FR.UTF-8", LC_ALL="", LC_MESSAGES="")
    from_locale = subprocess.run(
        [str(HAUSWACHT), "--help"], capture_output=True, text=True, env=locale_env, timeout=60
    )

    assert chosen.returncode == 0
    assert chosen.stderr == (
        "hauswacht: HAUSWACHT_LANG='fr' is not a supported language (en, de); using English\n"
    )
    assert "show request, error and latency figures" in chosen.stdout
    assert from_locale.returncode == 0
    assert from_locale.stderr == ""
