"""The `hauswacht` command as a user runs it: the installed console script in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HAUSWACHT = Path(sys.executable).with_name("hauswacht")


def run_cli(
    *args: str,
    lang: str = "en",
    env_db: str | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run the installed `hauswacht` command with HAUSWACHT_LANG=`lang` and return its result."""
    env = {key: value for key, value in os.environ.items() if key != "HAUSWACHT_DB"}
    env["HAUSWACHT_LANG"] = lang
    if env_db is not None:
        env["HAUSWACHT_DB"] = env_db
    return subprocess.run(
        [str(HAUSWACHT), *args],
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
