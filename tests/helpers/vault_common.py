"""Shared setup of the vault tests: fresh vault files and the CLI run in a subprocess."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hauswacht.vault import Vault, init_vault

HAUSWACHT = Path(sys.executable).with_name("hauswacht")
HELPERS = Path(__file__).resolve().parent


@dataclass(frozen=True)
class VaultFiles:
    db: Path
    key_file: Path

    def open(self, actor: str = "tester") -> Vault:
        return Vault(self.db, key_file=self.key_file, environ={}, actor=actor)

    def env(self, lang: str = "en") -> dict[str, str]:
        """Return an environment for subprocesses that points at these files only."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("HAUSWACHT_")}
        env["HAUSWACHT_VAULT"] = str(self.db)
        env["HAUSWACHT_MASTER_KEY_FILE"] = str(self.key_file)
        env["HAUSWACHT_LANG"] = lang
        return env


def make_vault(folder: Path, max_versions: int = 10) -> VaultFiles:
    files = VaultFiles(folder / "data" / "vault.db", folder / "data" / "master.key")
    init_vault(
        files.db, key_file=files.key_file, environ={}, max_versions=max_versions, actor="tester"
    )
    return files


def run_cli(
    files: VaultFiles,
    *args: str,
    stdin: str | bytes = b"",
    lang: str = "en",
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run `hauswacht vault ARGS` with the vault files in the environment."""
    data = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
    result = subprocess.run(
        [str(HAUSWACHT), "vault", *args],
        input=data,
        capture_output=True,
        env=env if env is not None else files.env(lang),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    return subprocess.CompletedProcess(
        result.args,
        result.returncode,
        result.stdout.decode("utf-8"),
        result.stderr.decode("utf-8"),
    )


def table_rows(db: Path, table: str) -> list[tuple[object, ...]]:
    """Read every row of `table` with a plain SQLite connection."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
    finally:
        conn.close()
