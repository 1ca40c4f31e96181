"""Hold the write lock of DB for SECONDS, as another writer or a long maintenance job would.

Usage: writer_lock_holder.py DB SECONDS

Prints "locked" once BEGIN IMMEDIATE succeeded and "released" after COMMIT.
"""

from __future__ import annotations

import sqlite3
import sys
import time


def main(path: str, seconds: float) -> None:
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    time.sleep(seconds)
    conn.execute("COMMIT")
    conn.close()
    print("released", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
