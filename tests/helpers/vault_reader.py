"""Read every secret in a loop until a stop file appears (a reader for rotation tests).

Usage: vault_reader.py VAULT KEY_FILE EXPECTED_JSON STOP_FILE

EXPECTED_JSON maps secret names to values. Each round reads every secret once
through a long-lived Vault and once through get_secret (a fresh open per call)
and compares it with the expected value. Prints `round N` after each round.
Stops when STOP_FILE exists or after 60 s, printing `reads N`, and exits
with status 1 and an `error ...` line at the first failed or wrong read.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from hauswacht.vault import Vault, get_secret
from hauswacht.vault.errors import VaultError

DEADLINE_S = 60.0


def main() -> int:
    vault_path, key_file = sys.argv[1], sys.argv[2]
    expected = json.loads(Path(sys.argv[3]).read_text())
    stop_file = Path(sys.argv[4])
    started = time.monotonic()
    reads = 0
    rounds = 0

    with Vault(vault_path, key_file=key_file, environ={}, actor="reader") as vault:
        while not stop_file.exists() and time.monotonic() - started < DEADLINE_S:
            for name, value in expected.items():
                try:
                    first = vault.get(name)
                    second = get_secret(name, vault=vault_path, key_file=key_file)
                except VaultError as exc:
                    print(f"error {name}: {exc.code}: {exc}", flush=True)
                    return 1
                if first != value or second != value:
                    print(f"error {name}: wrong value", flush=True)
                    return 1
                reads += 2
            rounds += 1
            print(f"round {rounds}", flush=True)
    print(f"reads {reads}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
