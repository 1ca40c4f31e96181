"""Rotate the master key slowly, so a test can kill this process inside the transaction.

Usage: vault_rotate.py VAULT KEY_FILE PAUSE_SECONDS

Prints `rewrapped DONE/TOTAL` after each re-wrapped data key (inside the
rotation's transaction), sleeps PAUSE_SECONDS, and prints `done` at the end.
"""

from __future__ import annotations

import sys
import time

from hauswacht.vault import Vault


def main() -> None:
    vault_path, key_file, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])

    def progress(done: int, total: int) -> None:
        print(f"rewrapped {done}/{total}", flush=True)
        time.sleep(pause)

    with Vault(vault_path, key_file=key_file, environ={}, actor="rotator") as vault:
        vault.rotate_master_key(progress)
    print("done", flush=True)


if __name__ == "__main__":
    main()
