"""Ingest tokens: create, list, revoke and verify the bearer tokens of `hauswacht serve`.

A token is 32 hex digits from `secrets.token_hex(16)` (128 random bits), the
same shape as a Sentry DSN public key, so it fits in a DSN and in the key
formats every Sentry SDK accepts. It is shown once, at creation. The
database stores only its SHA-256 hex digest. A fast unsalted hash is enough
here, unlike for passwords: with 128 random bits there is no dictionary to
try and brute force is out of reach, so a slow KDF would add per-request cost
without adding safety. Anyone who can read events.db still cannot recover a
token from it.

`TokenVerifier` checks presented tokens for the server. It keeps the hashes
of the active tokens in memory and rereads them, over one read-only
connection it keeps open, every REFRESH_SECONDS and whenever an unknown
token arrives, so a new token works at once. A reread is one SELECT on a
table of a few rows, so a stream of wrong tokens costs little. The digest
of a presented token is compared with every stored digest using
`hmac.compare_digest`. So the time taken does not depend on which token
matched or how much of it did. A revoked token stops working within
REFRESH_SECONDS.

Scopes: each token stores what it may do. SCOPE_SENTRY tokens work only on
the Sentry endpoints; their key is public by design, because a browser SDK
ships the DSN in page source. SCOPE_INGEST tokens work only on POST /ingest,
and SCOPE_ALL (the default, and the scope of tokens created before scopes
existed) on both. The server passes the scope an endpoint needs to
`TokenVerifier.verify`, which matches only tokens that allow it.

Nothing in this module logs a token or a digest.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from hauswacht.writer.schema import BUSY_TIMEOUT_MS, DatabaseError, open_readonly, prepare_database

logger = logging.getLogger(__name__)

TOKEN_BYTES = 16
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
REFRESH_SECONDS = 2.0

SCOPE_ALL = "all"
SCOPE_INGEST = "ingest"
SCOPE_SENTRY = "sentry"
SCOPES = (SCOPE_ALL, SCOPE_INGEST, SCOPE_SENTRY)
DEFAULT_SCOPE = SCOPE_ALL

INSERT_TOKEN = "INSERT INTO ingest_tokens (name, token_hash, created_at, scope) VALUES (?, ?, ?, ?)"
DELETE_REVOKED_TOKEN = "DELETE FROM ingest_tokens WHERE name = ? AND revoked_at IS NOT NULL"
REVOKE_TOKEN = "UPDATE ingest_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL"
LIST_TOKENS = "SELECT name, created_at, revoked_at, scope FROM ingest_tokens ORDER BY name"
ACTIVE_TOKEN_HASHES = "SELECT token_hash, name, scope FROM ingest_tokens WHERE revoked_at IS NULL"


class TokenError(Exception):
    """A token operation that cannot be done: bad name, name taken, no such token."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """One stored token without its secret: name, times in UTC epoch ms and scope."""

    name: str
    created_at: int
    revoked_at: int | None
    scope: str = "all"


def hash_token(token: str) -> str:
    """Return the SHA-256 hex digest under which `token` is stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    prepare_database(path)
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as exc:
        raise DatabaseError.from_sqlite(path, exc, "open") from exc
    return conn


def check_name(name: str) -> None:
    """Raise TokenError unless `name` is 1 to 64 letters, digits, '.', '_' or '-'."""
    if not NAME_PATTERN.match(name):
        raise TokenError(
            f"invalid token name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


def check_scope(scope: str) -> None:
    """Raise TokenError unless `scope` is one of SCOPES."""
    if scope not in SCOPES:
        raise TokenError(f"invalid token scope {scope!r}: expected one of {', '.join(SCOPES)}")


def scope_allows(scope: str, needed: str) -> bool:
    """Tell whether a token of `scope` may be used where `needed` is required."""
    return scope in (SCOPE_ALL, needed)


def create_token(path: str | os.PathLike[str], name: str, scope: str = DEFAULT_SCOPE) -> str:
    """Create a token called `name` with `scope` and return it; only its hash is stored.

    A revoked token of the same name is replaced. Raises TokenError when an
    active token has that name or the scope is invalid, DatabaseError when the
    file cannot be used.
    """
    check_name(name)
    check_scope(scope)
    token = secrets.token_hex(TOKEN_BYTES)
    conn = _connect(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(DELETE_REVOKED_TOKEN, (name,))
            conn.execute(INSERT_TOKEN, (name, hash_token(token), _now_ms(), scope))
            conn.execute("COMMIT")
        except sqlite3.IntegrityError:
            conn.execute("ROLLBACK")
            raise TokenError(
                f"a token named {name!r} already exists; revoke it first or choose another name"
            ) from None
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise DatabaseError.from_sqlite(path, exc, "write") from exc
    finally:
        conn.close()
    logger.info("ingest token %r (scope %s) created in %s", name, scope, path)
    return token


def revoke_token(path: str | os.PathLike[str], name: str) -> None:
    """Revoke the active token called `name`; raise TokenError when there is none."""
    conn = _connect(path)
    try:
        changed = conn.execute(REVOKE_TOKEN, (_now_ms(), name)).rowcount
    except sqlite3.Error as exc:
        raise DatabaseError.from_sqlite(path, exc, "write") from exc
    finally:
        conn.close()
    if not changed:
        raise TokenError(f"no active token named {name!r}; see `hauswacht token list`")
    logger.info("ingest token %r revoked in %s", name, path)


def list_tokens(path: str | os.PathLike[str]) -> list[TokenInfo]:
    """Return every stored token (active and revoked) by name, without secrets."""
    conn = open_readonly(path)
    try:
        return [TokenInfo(*row) for row in conn.execute(LIST_TOKENS)]
    except sqlite3.Error as exc:
        raise DatabaseError.from_sqlite(path, exc, "read") from exc
    finally:
        conn.close()


class TokenVerifier:
    """Checks presented tokens against the active tokens of one events database."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Prepare a verifier; the connection opens at the first check (on the caller's thread)."""
        self.path = Path(path)
        self._tokens: list[tuple[bytes, str, str]] = []
        self._loaded_at = -float("inf")
        self._conn: sqlite3.Connection | None = None

    def refresh(self) -> None:
        """Reread the active token hashes; keep the old list and log when the read fails."""
        self._loaded_at = time.monotonic()
        try:
            if self._conn is None:
                uri = f"{self.path.absolute().as_uri()}?mode=ro"
                self._conn = sqlite3.connect(uri, uri=True)
                self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            rows = self._conn.execute(ACTIVE_TOKEN_HASHES).fetchall()
        except sqlite3.Error as exc:
            logger.warning("cannot read ingest tokens from %s: %s", self.path, exc)
            self.close()
            return
        self._tokens = [(bytes.fromhex(digest), name, scope) for digest, name, scope in rows]

    def close(self) -> None:
        """Close the read connection; the next check opens it again."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def verify(self, token: str | None, scope: str = SCOPE_ALL) -> str | None:
        """Return the name of the active token `token` if it allows `scope`, else None.

        With the default `scope` (SCOPE_ALL) any active token matches.
        """
        found = self.lookup(token)
        if found is None:
            return None
        name, token_scope = found
        if scope != SCOPE_ALL and not scope_allows(token_scope, scope):
            return None
        return name

    def lookup(self, token: str | None) -> tuple[str, str] | None:
        """Return (name, scope) of the active token `token`, or None when it is not one."""
        if not token:
            return None
        refreshed = False
        if time.monotonic() - self._loaded_at >= REFRESH_SECONDS:
            self.refresh()
            refreshed = True
        found = self._match(token)
        if found is None and not refreshed:
            self.refresh()
            found = self._match(token)
        return found

    def _match(self, token: str) -> tuple[str, str] | None:
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found = None
        # No early exit: every stored digest is compared.
        for stored, name, scope in self._tokens:
            if hmac.compare_digest(stored, digest):
                found = (name, scope)
        return found
