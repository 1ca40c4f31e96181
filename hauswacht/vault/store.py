"""The vault file: secrets, their versions and the master-key rotation.

Envelope encryption: every stored value (one version of a secret) has its own
data key, a fresh Fernet key. The value is encrypted with the data key. The
data key is encrypted ("wrapped") with the master key ring (`MultiFernet`,
newest key first) and stored next to the ciphertext, with the id of the
master key that wrapped it. The encrypted payload starts with the secret's name and
version, so a ciphertext copied to another row fails like a damaged one.

Invariants:
- Every write, and every read (because it appends an audit row), runs in one
  `BEGIN IMMEDIATE` transaction that first checks the master key: the key ids
  the database needs (vault_info.key_id and every versions.key_id) must all be
  in the loaded ring, and vault_info.key_check must decrypt. The ring's first
  key must be a key the database uses, or the new key of a rotation that died
  before its commit. Nothing is written before that check.
- New data keys are wrapped with the vault's master key (vault_info.key_id),
  never with whatever key a ring happens to list first, so a ring with an
  extra key cannot lock later readers out.
- A failed access is recorded afterwards in its own transaction. When the
  vault stays locked longer than the busy timeout, VaultLockedError is raised
  and the failure is only logged.
- Rotation re-wraps the data keys only (ciphertexts stay as they are). It first
  adds the new key id to vault_info.pending_key_ids and commits. Then, in one
  transaction, after the key check and before the first re-wrap, it replaces
  the key file by [new, old...] and re-wraps; only after the commit does it
  replace the key file by [new]. So at every instant of a rotation the key
  file contains every key the committed database needs, and a crash or
  `kill -9` at any point leaves every secret readable. A process whose ring
  lacks a key the database needs re-reads the key file once inside its
  transaction, which covers rotations by other processes. Rotations serialize
  on an flock on `<key file>.lock` next to the key file's real path (symlinks
  resolved), so two rotations never interleave their key file writes.
- The audit log records the version of every write. Reads and writes compare
  a secret's newest stored version with it, so deleting the newest versions
  from the file (a rollback) raises SecretRolledBackError or
  SecretRemovedError instead of returning an older value.

Files: vault.db is created with mode 0600 (SQLite gives -wal and -shm the
same mode) in a folder created with mode 0700; journal_mode=WAL,
synchronous=FULL, secure_delete=ON (deleted rows are overwritten), and
`PRAGMA application_id` / `user_version` mark the file and its schema version.
Opening reads those two marks before it changes anything, so a file that is
not a vault is rejected as it was found.

Tables (STRICT; times are UTC epoch ms):
- vault_info: one row: vault id, the master key id, key_check (a Fernet token
  of a fixed text under the master key), max versions kept, last rotation,
  and the new key ids of rotations begun but not committed (pending_key_ids,
  comma-separated; a committed rotation clears it).
- secrets: name, current (highest) version, created/updated.
- versions: per (secret, version) the wrapped data key, its master key id and
  the ciphertext, plus deleted_at / destroyed_at. Destroyed versions keep no
  key and no ciphertext. Only the newest `max_versions` versions are kept.
- audit: see audit.py.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from hauswacht.vault import audit
from hauswacht.vault.errors import (
    REASON_NO_VAULT_INFO,
    CasConflictError,
    EmptyValueError,
    FileWriteError,
    ForeignDatabaseError,
    InvalidCasError,
    InvalidSecretNameError,
    InvalidVersionCountError,
    NotAVaultError,
    NoVaultSchemaError,
    RotationNeedsKeyFileError,
    SecretDeletedError,
    SecretDestroyedError,
    SecretNotFoundError,
    SecretRemovedError,
    SecretRolledBackError,
    TamperedSecretError,
    UnknownFirstKeyError,
    ValueContainsNulError,
    ValueTooLargeError,
    VaultError,
    VaultExistsError,
    VaultLockedError,
    VaultNotFoundError,
    VaultSchemaError,
    VersionNotDeletedError,
    VersionNotFoundError,
    WrongMasterKeyError,
)
from hauswacht.vault.keys import (
    ENV_KEY,
    KeyRing,
    generate_key,
    key_id,
    load_key_ring,
    resolve_key_file,
    rewrite_key_file,
    unignored_in_git,
    write_new_key_file,
)

logger = logging.getLogger(__name__)

ENV_VAULT = "HAUSWACHT_VAULT"
DEFAULT_VAULT = Path("hauswacht-data") / "vault.db"
APPLICATION_ID = 0x48575654  # "HWVT"
# How long a transaction waits for another process's write lock. SQLite's busy
# handler retries with growing sleeps (1 ms up to 100 ms) until this passes.
BUSY_TIMEOUT_S = 10.0
# How long the checkpoint after `destroy` waits for readers. The destroy is
# committed by then, and a later checkpoint finishes the job.
CHECKPOINT_WAIT_S = 1.0
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
DEFAULT_MAX_VERSIONS = 10
MAX_VERSIONS_LIMIT = 1000
MAX_VALUE_BYTES = 64 * 1024
NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
KEY_CHECK_TEXT = b"hauswacht-vault-key-check"

MIGRATIONS: list[str] = [
    # 0 -> 1: the first schema.
    """
    CREATE TABLE vault_info (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        vault_id TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        key_id TEXT NOT NULL,
        key_check BLOB NOT NULL,
        max_versions INTEGER NOT NULL CHECK (max_versions >= 1),
        rotated_at INTEGER
    ) STRICT;

    CREATE TABLE secrets (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        current_version INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE versions (
        secret_id INTEGER NOT NULL REFERENCES secrets (id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        deleted_at INTEGER,
        destroyed_at INTEGER,
        key_id TEXT,
        data_key BLOB,
        ciphertext BLOB,
        PRIMARY KEY (secret_id, version),
        CHECK ((destroyed_at IS NULL) = (ciphertext IS NOT NULL))
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX versions_key_id ON versions (key_id);
    """
    + audit.AUDIT_SCHEMA,
    # 1 -> 2: the new key ids of unfinished rotations, and an index for the newest
    # write of a secret in the audit log.
    """
    ALTER TABLE vault_info ADD COLUMN pending_key_ids TEXT;
    """
    + audit.AUDIT_ACTION_INDEX,
]
SCHEMA_VERSION = len(MIGRATIONS)

PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA secure_delete = ON",
)

SELECT_INFO = """
SELECT vault_id, key_id, key_check, max_versions, pending_key_ids FROM vault_info WHERE id = 1
"""
INSERT_INFO = """
INSERT INTO vault_info (id, vault_id, created_at, key_id, key_check, max_versions)
VALUES (1, :vault_id, :now, :key_id, :key_check, :max_versions)
"""
UPDATE_INFO_KEY = """
UPDATE vault_info
SET key_id = :key_id, key_check = :key_check, rotated_at = :now, pending_key_ids = NULL
WHERE id = 1
"""
SET_PENDING_KEYS = "UPDATE vault_info SET pending_key_ids = :key_ids WHERE id = 1"
SELECT_USED_KEY_IDS = "SELECT DISTINCT key_id FROM versions WHERE key_id IS NOT NULL"
SELECT_SECRET = "SELECT id, current_version FROM secrets WHERE name = ?"
SELECT_CURRENT_VERSIONS = "SELECT name, current_version FROM secrets"
SELECT_WRITTEN_SECRETS = "SELECT DISTINCT secret FROM audit WHERE action = 'write'"
INSERT_SECRET = """
INSERT INTO secrets (name, current_version, created_at, updated_at) VALUES (?, 0, ?, ?)
"""
UPDATE_SECRET_VERSION = "UPDATE secrets SET current_version = ?, updated_at = ? WHERE id = ?"
TOUCH_SECRET = "UPDATE secrets SET updated_at = ? WHERE id = ?"
DELETE_SECRET = "DELETE FROM secrets WHERE id = ?"
SELECT_VERSION = """
SELECT deleted_at, destroyed_at, data_key, ciphertext FROM versions
WHERE secret_id = ? AND version = ?
"""
INSERT_VERSION = """
INSERT INTO versions (secret_id, version, created_at, key_id, data_key, ciphertext)
VALUES (?, ?, ?, ?, ?, ?)
"""
PRUNE_VERSIONS = "DELETE FROM versions WHERE secret_id = ? AND version <= ?"
MARK_DELETED = "UPDATE versions SET deleted_at = ? WHERE secret_id = ? AND version = ?"
MARK_UNDELETED = "UPDATE versions SET deleted_at = NULL WHERE secret_id = ? AND version = ?"
MARK_DESTROYED = """
UPDATE versions SET destroyed_at = ?, key_id = NULL, data_key = NULL, ciphertext = NULL
WHERE secret_id = ? AND version = ?
"""
SELECT_LIST = """
SELECT s.name, s.current_version, s.updated_at, v.deleted_at, v.destroyed_at,
       (SELECT count(*) FROM versions AS k WHERE k.secret_id = s.id)
FROM secrets AS s
LEFT JOIN versions AS v ON v.secret_id = s.id AND v.version = s.current_version
ORDER BY s.name
"""
SELECT_VERSIONS = """
SELECT version, created_at, deleted_at, destroyed_at, key_id FROM versions
WHERE secret_id = ? ORDER BY version
"""
SELECT_WRAPPED_KEYS = "SELECT secret_id, version, data_key FROM versions WHERE data_key IS NOT NULL"
UPDATE_WRAPPED_KEY = """
UPDATE versions SET data_key = ?, key_id = ? WHERE secret_id = ? AND version = ?
"""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def resolve_vault_path(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Path:
    """Return the vault path: the argument, else HAUSWACHT_VAULT, else ./hauswacht-data/vault.db."""
    environ = os.environ if environ is None else environ
    if path is not None:
        return Path(path)
    if environ.get(ENV_VAULT):
        return Path(environ[ENV_VAULT])
    return DEFAULT_VAULT


def check_name(name: str) -> str:
    """Return `name` if it is a valid secret name (an environment variable name), else raise."""
    if not isinstance(name, str) or NAME_PATTERN.fullmatch(name) is None:
        raise InvalidSecretNameError(name=name)
    return name


def _check_value(name: str, value: str) -> bytes:
    data = value.encode("utf-8")
    if not data:
        raise EmptyValueError(name=name)
    _check_storable(name, data)
    return data


def _check_storable(name: str, data: bytes) -> None:
    if len(data) > MAX_VALUE_BYTES:
        raise ValueTooLargeError(name=name, size=len(data), limit=MAX_VALUE_BYTES)
    # `run` passes values as environment variables, which end at the first NUL.
    if b"\x00" in data:
        raise ValueContainsNulError(name=name)


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED)


def _locked_error(path: Path, timeout_s: float) -> VaultLockedError:
    return VaultLockedError(path=str(path), seconds=f"{timeout_s:g}")


def _begin(conn: sqlite3.Connection, path: Path, timeout_s: float) -> None:
    """Start a write transaction; raise VaultLockedError when the busy timeout passes."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if _is_busy(exc):
            raise _locked_error(path, timeout_s) from None
        raise


def _payload_prefix(name: str, version: int) -> bytes:
    return f"hauswacht-secret\x00{name}\x00{version}\x00".encode()


@dataclass(frozen=True)
class SecretInfo:
    name: str
    version: int  # the current (highest) version
    state: str  # of the current version: 'active', 'deleted' or 'destroyed'
    updated_at: int
    versions_kept: int


@dataclass(frozen=True)
class VersionInfo:
    version: int
    created_at: int
    state: str
    deleted_at: int | None
    destroyed_at: int | None
    key_id: str | None


@dataclass(frozen=True)
class ImportOutcome:
    key: str
    action: str  # 'created', 'updated', 'unchanged' or 'skipped_empty'
    version: int | None


@dataclass(frozen=True)
class RotationResult:
    old_key_ids: tuple[str, ...]
    new_key_id: str
    rewrapped: int
    key_file: Path


@dataclass(frozen=True)
class InitResult:
    path: Path
    key_source: str
    key_id: str
    created_key_file: bool
    git_root: Path | None  # set when the key file is in a git work tree and not ignored


def _state(deleted_at: int | None, destroyed_at: int | None) -> str:
    if destroyed_at is not None:
        return "destroyed"
    if deleted_at is not None:
        return "deleted"
    return "active"


def _connect(path: Path, timeout_s: float, *, new: bool = False) -> sqlite3.Connection:
    """Open the vault file, check that it is a vault, then apply the connection settings.

    Only reads happen before the check, so a file that is not a vault stays as it
    was (journal_mode=WAL, for one, is stored in the file). With `new`, the file
    must be the empty one `init_vault` has just created.
    """
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=timeout_s)
    except sqlite3.Error as exc:
        raise NotAVaultError(path=str(path), reason=str(exc)) from None

    try:
        try:
            application_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            if _is_busy(exc):
                raise _locked_error(path, timeout_s) from None
            raise NotAVaultError(path=str(path), reason=str(exc)) from None
        _check_marks(path, application_id, version, new)

        try:
            for pragma in PRAGMAS:
                conn.execute(pragma)
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise _locked_error(path, timeout_s) from None
            raise
    except BaseException:
        conn.close()
        raise
    return conn


def _check_marks(path: Path, application_id: int, version: int, new: bool) -> None:
    if application_id not in (0, APPLICATION_ID) or (application_id == 0 and version != 0):
        raise ForeignDatabaseError(
            path=str(path), application_id=f"{application_id:#x}", user_version=version
        )
    if version > SCHEMA_VERSION:
        raise VaultSchemaError(path=str(path), version=version, supported=SCHEMA_VERSION)
    if version == 0 and not new:
        raise NoVaultSchemaError(path=str(path))


def _migrate(conn: sqlite3.Connection, path: Path, timeout_s: float) -> None:
    """Apply the missing migrations, each in its own transaction with its user_version bump."""
    while True:
        _begin(conn, path, timeout_s)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version >= SCHEMA_VERSION:
                conn.execute("COMMIT")
                return
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
            logger.info("migrated vault schema from version %d to %d", version, version + 1)
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def init_vault(
    path: str | os.PathLike[str] | None = None,
    *,
    key_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    max_versions: int = DEFAULT_MAX_VERSIONS,
    actor: str | None = None,
) -> InitResult:
    """Create a new vault; never overwrite a vault or a key file.

    The master key is HAUSWACHT_MASTER_KEY if set, else the existing key file,
    else a new key written to a new key file (mode 0600).
    """
    environ = os.environ if environ is None else environ
    path = resolve_vault_path(path, environ)
    actor = audit.check_actor(actor) if actor else audit.default_actor()
    if not 1 <= max_versions <= MAX_VERSIONS_LIMIT:
        raise InvalidVersionCountError(value=max_versions, limit=MAX_VERSIONS_LIMIT)
    if path.exists():
        raise VaultExistsError(path=str(path))

    created_key_file = False
    if key_file is None and environ.get(ENV_KEY):
        ring = load_key_ring(None, environ)
    else:
        key_path = resolve_key_file(key_file, environ)
        if not key_path.exists():
            write_new_key_file(key_path, [generate_key()])
            created_key_file = True
        ring = load_key_ring(key_path, environ)
    git_root = unignored_in_git(ring.path) if ring.path is not None else None
    if git_root is not None:
        # Info, not warning: InitResult.git_root carries it, and the CLI prints its own warning.
        logger.info(
            "key file %s is inside the git work tree %s and not ignored", ring.path, git_root
        )

    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise VaultExistsError(path=str(path)) from None
    os.fchmod(fd, 0o600)
    os.close(fd)

    try:
        conn = _connect(path, BUSY_TIMEOUT_S, new=True)
        try:
            _migrate(conn, path, BUSY_TIMEOUT_S)
            vault_id = uuid.uuid4().hex
            _begin(conn, path, BUSY_TIMEOUT_S)
            conn.execute(
                INSERT_INFO,
                {
                    "vault_id": vault_id,
                    "now": now_ms(),
                    "key_id": ring.newest_id,
                    "key_check": ring.fernet().encrypt(KEY_CHECK_TEXT),
                    "max_versions": max_versions,
                },
            )
            audit.append(conn, vault_id, actor, "init")
            conn.execute("COMMIT")
        finally:
            conn.close()
    except BaseException:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        raise

    logger.info("created vault %s with master key id %s", path, ring.newest_id)
    return InitResult(path, ring.source, ring.newest_id, created_key_file, git_root)


@dataclass
class _Info:
    vault_id: str
    key_id: str
    key_check: bytes
    max_versions: int
    pending_key_ids: str | None

    @property
    def pending_ids(self) -> list[str]:
        return self.pending_key_ids.split(",") if self.pending_key_ids else []


class Vault:
    """An open vault file. Not thread-safe: use one Vault per thread.

    `busy_timeout_s` is how long each transaction waits for another process's
    write lock before it raises VaultLockedError.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        key_file: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
        actor: str | None = None,
        busy_timeout_s: float = BUSY_TIMEOUT_S,
    ) -> None:
        self._environ = os.environ if environ is None else environ
        self.path = resolve_vault_path(path, self._environ)
        self._key_file = key_file
        self.actor = audit.check_actor(actor) if actor else audit.default_actor()
        self._busy_timeout_s = busy_timeout_s
        self._ring: KeyRing | None = None
        # The ring whose key for this master key id decrypted key_check, and that id.
        self._checked: tuple[KeyRing, str] | None = None

        if not self.path.exists():
            raise VaultNotFoundError(path=str(self.path))
        self._conn = _connect(self.path, busy_timeout_s)
        try:
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version < SCHEMA_VERSION:
                _migrate(self._conn, self.path, busy_timeout_s)
            row = self._conn.execute(SELECT_INFO).fetchone()
            if row is None:
                raise NotAVaultError(path=str(self.path), reason=REASON_NO_VAULT_INFO)
        except BaseException:
            self._conn.close()
            raise
        self.vault_id = row[0]

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Transactions and the key check

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        _begin(self._conn, self.path, self._busy_timeout_s)
        try:
            yield self._conn
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def _info(self) -> _Info:
        row = self._conn.execute(SELECT_INFO).fetchone()
        return _Info(*row)

    def _load_ring(self) -> KeyRing:
        return load_key_ring(self._key_file, self._environ)

    def _check_key(self, info: _Info) -> KeyRing:
        """Return a ring that opens this vault; call inside a transaction, before any write.

        The ring must contain every key id the database uses. Its first key must be
        one of those, or the new key of an interrupted rotation, whose key file lists
        [new, old...].
        """
        needed = {info.key_id}
        needed.update(row[0] for row in self._conn.execute(SELECT_USED_KEY_IDS))
        known = needed | set(info.pending_ids)

        def fits(ring: KeyRing) -> bool:
            return needed <= set(ring.ids) and ring.newest_id in known

        ring = self._ring
        if ring is None:
            ring = self._load_ring()
        elif ring.path is not None and not fits(ring):
            # Another process may have rotated the key since this ring was read.
            ring = self._load_ring()

        if not needed <= set(ring.ids):
            self._ring = None
            raise WrongMasterKeyError(
                expected=", ".join(sorted(needed - set(ring.ids))),
                source=ring.source,
                given=", ".join(ring.ids),
            )
        if ring.newest_id not in known:
            self._ring = None
            raise UnknownFirstKeyError(
                source=ring.source, given=ring.newest_id, expected=info.key_id
            )

        if self._checked != (ring, info.key_id):
            try:
                ring.fernet_for(info.key_id).decrypt(info.key_check)
            except InvalidToken:
                raise WrongMasterKeyError(
                    expected=info.key_id, source=ring.source, given=", ".join(ring.ids)
                ) from None
            self._checked = (ring, info.key_id)
        self._ring = ring
        return ring

    def _run(
        self,
        action: str,
        name: str | None,
        work: Callable[[KeyRing, _Info], Any],
        *,
        record_success: bool = True,
    ) -> Any:
        """Run `work` in a write transaction after the key check and record it in the audit log.

        `work` returns (result, version, outcome); `version` and `outcome` go into the audit
        row. A VaultError is recorded as a failed access in a transaction of its own.
        """
        try:
            with self._transaction():
                info = self._info()
                ring = self._check_key(info)
                result, version, outcome = work(ring, info)
                if record_success:
                    audit.append(
                        self._conn, self.vault_id, self.actor, action, name, version, outcome
                    )
            return result
        except VaultError as exc:
            self._record_failure(action, name, exc)
            raise

    def _record_failure(self, action: str, name: str | None, exc: VaultError) -> None:
        version = exc.fields.get("version")
        if name is None and isinstance(exc.fields.get("name"), str):
            name = exc.fields["name"]  # the secret a multi-secret read failed on
        target = f"{action} of {name}" if name else action
        # Info, not warning: the caller gets the exception and reports it.
        logger.info("vault %s failed: %s", target, exc.code)
        if isinstance(exc, VaultLockedError):
            # Waiting for the same lock again would double the caller's wait.
            logger.error("could not record the failed %s in the audit log: %s", target, exc)
            return
        try:
            with self._transaction():
                audit.append(
                    self._conn,
                    self.vault_id,
                    self.actor,
                    action,
                    name,
                    version if isinstance(version, int) else None,
                    exc.code,
                )
        except (sqlite3.Error, VaultError) as error:
            logger.error("could not record the failed %s in the audit log: %s", target, error)

    # Values

    def _encrypt(
        self, ring: KeyRing, info: _Info, name: str, version: int, data: bytes
    ) -> tuple[str, bytes, bytes]:
        """Encrypt with a new data key and wrap that with the vault's master key."""
        data_key = Fernet.generate_key()
        ciphertext = Fernet(data_key).encrypt(_payload_prefix(name, version) + data)
        return info.key_id, ring.fernet_for(info.key_id).encrypt(data_key), ciphertext

    def _decrypt(
        self, ring: KeyRing, name: str, version: int, data_key: bytes, ciphertext: bytes
    ) -> str:
        prefix = _payload_prefix(name, version)
        try:
            plain = Fernet(ring.fernet().decrypt(data_key)).decrypt(ciphertext)
        except (InvalidToken, ValueError):
            raise TamperedSecretError(name=name, version=version) from None
        if not plain.startswith(prefix):
            raise TamperedSecretError(name=name, version=version)
        try:
            return plain[len(prefix) :].decode("utf-8")
        except UnicodeDecodeError:
            raise TamperedSecretError(name=name, version=version) from None

    def _find(self, name: str, *, check_history: bool = True) -> tuple[int, int]:
        """Return (secret id, current version); with `check_history`, compare with the audit log."""
        row = self._conn.execute(SELECT_SECRET, (name,)).fetchone()
        if row is None:
            latest = audit.latest_write(self._conn, name) if check_history else None
            if latest is not None:
                raise SecretRemovedError(name=name, recorded=latest[1])
            raise SecretNotFoundError(name=name)
        if check_history:
            self._check_not_rolled_back(name, row[1])
        return row[0], row[1]

    def _check_not_rolled_back(self, name: str, current: int) -> None:
        latest = audit.latest_write(self._conn, name)
        if latest is not None and latest[1] > current:
            raise SecretRolledBackError(name=name, current=current, recorded=latest[1])

    def _read(self, ring: KeyRing, name: str, version: int | None) -> tuple[str, int]:
        secret_id, current = self._find(name)
        version = current if version is None else version
        row = self._conn.execute(SELECT_VERSION, (secret_id, version)).fetchone()
        if row is None:
            raise VersionNotFoundError(name=name, version=version)
        deleted_at, destroyed_at, data_key, ciphertext = row
        if destroyed_at is not None:
            raise SecretDestroyedError(name=name, version=version)
        if deleted_at is not None:
            raise SecretDeletedError(name=name, version=version)
        return self._decrypt(ring, name, version, data_key, ciphertext), version

    def _write(self, ring: KeyRing, info: _Info, name: str, data: bytes, cas: int | None) -> int:
        row = self._conn.execute(SELECT_SECRET, (name,)).fetchone()
        current = row[1] if row else 0
        if row is not None:
            # A new version must not reuse a number the audit log has already seen.
            self._check_not_rolled_back(name, current)
        if cas is not None and cas != current:
            raise CasConflictError(name=name, expected=cas, current=current)

        now = now_ms()
        if row is None:
            secret_id = self._conn.execute(INSERT_SECRET, (name, now, now)).lastrowid
        else:
            secret_id = row[0]
        version = current + 1
        self._conn.execute(
            INSERT_VERSION,
            (secret_id, version, now, *self._encrypt(ring, info, name, version, data)),
        )
        self._conn.execute(UPDATE_SECRET_VERSION, (version, now, secret_id))
        self._conn.execute(PRUNE_VERSIONS, (secret_id, version - info.max_versions))
        return version

    # Public operations

    def set(self, name: str, value: str, *, cas: int | None = None) -> int:
        """Store `value` as a new version of `name` and return that version.

        With `cas`, store only if the current version is `cas` (0: the secret
        must not exist yet), else raise CasConflictError.
        """
        check_name(name)
        data = _check_value(name, value)
        if cas is not None and cas < 0:
            raise InvalidCasError(value=cas)

        def work(ring: KeyRing, info: _Info) -> tuple[int, int, str]:
            version = self._write(ring, info, name, data, cas)
            return version, version, "ok"

        version = self._run("write", name, work)
        logger.info("stored version %d of secret %s", version, name)
        return version

    def get(self, name: str, *, version: int | None = None) -> str:
        """Return the value of the current version of `name`, or of `version`."""
        check_name(name)

        def work(ring: KeyRing, info: _Info) -> tuple[str, int, str]:
            value, read_version = self._read(ring, name, version)
            return value, read_version, "ok"

        return self._run("read", name, work)

    def get_many(self, names: Sequence[str] | None = None) -> dict[str, str]:
        """Return the current values of `names`, or of every secret whose current version is
        active; one audit row per secret read."""
        for name in names or ():
            check_name(name)

        def work(ring: KeyRing, info: _Info) -> tuple[dict[str, str], None, str]:
            if names is None:
                chosen = [entry.name for entry in self._list_rows() if entry.state == "active"]
            else:
                chosen = list(dict.fromkeys(names))
            values = {}
            for name in chosen:
                values[name], version = self._read(ring, name, None)
                audit.append(self._conn, self.vault_id, self.actor, "read", name, version)
            return values, None, "ok"

        return self._run("read", None, work, record_success=False)

    def _list_rows(self) -> list[SecretInfo]:
        return [
            SecretInfo(name, version, _state(deleted_at, destroyed_at), updated_at, kept)
            for name, version, updated_at, deleted_at, destroyed_at, kept in self._conn.execute(
                SELECT_LIST
            )
        ]

    def list(self) -> list[SecretInfo]:
        """Return every secret (names and versions only, no values), sorted by name."""
        return self._run("list", None, lambda ring, info: (self._list_rows(), None, "ok"))

    def versions(self, name: str) -> list[VersionInfo]:
        """Return the versions kept for `name`, oldest first."""
        check_name(name)

        def work(ring: KeyRing, info: _Info) -> tuple[list[VersionInfo], None, str]:
            # Listing shows what is stored, which also helps after a rollback.
            secret_id, _ = self._find(name, check_history=False)
            rows = self._conn.execute(SELECT_VERSIONS, (secret_id,)).fetchall()
            result = [
                VersionInfo(
                    version,
                    created_at,
                    _state(deleted_at, destroyed_at),
                    deleted_at,
                    destroyed_at,
                    used_key,
                )
                for version, created_at, deleted_at, destroyed_at, used_key in rows
            ]
            return result, None, "ok"

        return self._run("versions", name, work)

    def _change_state(self, action: str, name: str, version: int | None) -> int:
        check_name(name)

        def work(ring: KeyRing, info: _Info) -> tuple[int, int, str]:
            # Destroying must stay possible after a rollback: it is one way to recover.
            secret_id, current = self._find(name, check_history=action != "destroy")
            target = current if version is None else version
            row = self._conn.execute(SELECT_VERSION, (secret_id, target)).fetchone()
            if row is None:
                raise VersionNotFoundError(name=name, version=target)
            if row[1] is not None:
                raise SecretDestroyedError(name=name, version=target)
            if action == "undelete" and row[0] is None:
                raise VersionNotDeletedError(name=name, version=target)

            now = now_ms()
            if action == "delete":
                self._conn.execute(MARK_DELETED, (now, secret_id, target))
            elif action == "undelete":
                self._conn.execute(MARK_UNDELETED, (secret_id, target))
            else:
                self._conn.execute(MARK_DESTROYED, (now, secret_id, target))
            self._conn.execute(TOUCH_SECRET, (now, secret_id))
            return target, target, "ok"

        return self._run(action, name, work)

    def delete(self, name: str, *, version: int | None = None) -> int:
        """Mark the current version (or `version`) as deleted; `undelete` restores it."""
        return self._change_state("delete", name, version)

    def undelete(self, name: str, *, version: int | None = None) -> int:
        """Restore a deleted version (the current one unless `version` is given).

        Raises VersionNotDeletedError when that version is not deleted.
        """
        return self._change_state("undelete", name, version)

    def destroy(self, name: str, *, version: int | None = None) -> int | None:
        """Erase one version's key and ciphertext, or with no `version` the whole secret.

        Returns the destroyed version, or None when the whole secret was removed.
        Afterwards the WAL is checkpointed and truncated, so with secure_delete the
        erased bytes leave the files (as far as SQLite controls them).
        """
        check_name(name)
        if version is not None:
            destroyed = self._change_state("destroy", name, version)
        else:

            def work(ring: KeyRing, info: _Info) -> tuple[None, None, str]:
                secret_id, _ = self._find(name, check_history=False)
                self._conn.execute(DELETE_SECRET, (secret_id,))
                return None, None, "ok"

            destroyed = self._run("destroy", name, work)
        self._checkpoint()
        logger.info("destroyed secret %s version %s", name, "all" if version is None else version)
        return destroyed

    def _checkpoint(self) -> None:
        self._conn.execute(f"PRAGMA busy_timeout = {int(CHECKPOINT_WAIT_S * 1000)}")
        try:
            busy, _, _ = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
            busy = 1
        finally:
            self._conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
        if busy:
            logger.warning(
                "WAL checkpoint of %s was blocked by another connection; the "
                "destroyed bytes stay in the WAL until the next checkpoint",
                self.path,
            )

    def import_values(self, values: Mapping[str, str]) -> list[ImportOutcome]:
        """Store several values in one transaction; a value equal to the current one is
        left as it is, and empty values are skipped."""
        for name in values:
            check_name(name)
        checked = {name: value.encode("utf-8") for name, value in values.items()}
        for name, data in checked.items():
            _check_storable(name, data)

        def work(ring: KeyRing, info: _Info) -> tuple[list[ImportOutcome], None, str]:
            outcomes = []
            for name, data in checked.items():
                outcome = self._import_one(ring, info, name, data)
                outcomes.append(outcome)
                if outcome.action != "skipped_empty":
                    result = "unchanged" if outcome.action == "unchanged" else "ok"
                    audit.append(
                        self._conn,
                        self.vault_id,
                        self.actor,
                        "write",
                        name,
                        outcome.version,
                        result,
                    )
            return outcomes, None, "ok"

        return self._run("write", None, work, record_success=False)

    def _import_one(self, ring: KeyRing, info: _Info, name: str, data: bytes) -> ImportOutcome:
        if not data:
            return ImportOutcome(name, "skipped_empty", None)
        row = self._conn.execute(SELECT_SECRET, (name,)).fetchone()
        if row is not None:
            try:
                current, version = self._read(ring, name, None)
            except (SecretDeletedError, SecretDestroyedError, VersionNotFoundError):
                current, version = None, row[1]
            if current is not None and current.encode("utf-8") == data:
                return ImportOutcome(name, "unchanged", version)
        version = self._write(ring, info, name, data, None)
        return ImportOutcome(name, "created" if row is None else "updated", version)

    def verify_key(self) -> str:
        """Check that the master key fits this vault and return its key id."""
        return self._run(
            "verify-key", None, lambda ring, info: (info.key_id, None, "ok"), record_success=False
        )

    def key_ring_for_export(self) -> KeyRing:
        """Return the checked master key ring for `export-key`; recorded in the audit log."""
        return self._run("export-key", None, lambda ring, info: (ring, None, "ok"))

    def max_versions(self) -> int:
        return self._info().max_versions

    # Rotation

    def rotate_master_key(
        self, progress: Callable[[int, int], None] | None = None
    ) -> RotationResult:
        """Replace the master key: re-wrap every data key with a new key in one transaction.

        `progress(done, total)` is called after each re-wrapped data key, inside
        the transaction. See the module docstring for the crash guarantees.
        """
        try:
            ring = self._load_ring()
            if ring.path is None:
                raise RotationNeedsKeyFileError(path=str(resolve_key_file(None, self._environ)))
            # Write to the file a symlink points at: os.replace on the link would turn it
            # into a regular file, and the lock belongs next to the file that changes.
            key_path = Path(os.path.realpath(ring.path))
            lock_path = key_path.with_name(key_path.name + ".lock")
            try:
                lock_fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o600)
            except OSError as exc:
                raise FileWriteError(path=str(lock_path), reason=exc.strerror or str(exc)) from None
        except VaultError as exc:
            self._record_failure("rotate", None, exc)
            raise

        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            return self._rotate_locked(key_path, progress)
        finally:
            os.close(lock_fd)

    def _rotate_locked(
        self, key_path: Path, progress: Callable[[int, int], None] | None
    ) -> RotationResult:
        self._ring = None  # re-read the key file now that no other rotation runs
        new_key = generate_key()
        new_id = key_id(new_key)
        state: dict[str, Any] = {}

        def prepare(ring: KeyRing, info: _Info) -> tuple[None, None, str]:
            # Committed before the key file lists the new key first, so that after a
            # crash the vault accepts the file's first key. Earlier ids stay, because
            # the key file may still list one of them first.
            key_ids = ",".join([*info.pending_ids, new_id])
            self._conn.execute(SET_PENDING_KEYS, {"key_ids": key_ids})
            return None, None, "ok"

        self._run("rotate", None, prepare, record_success=False)

        def work(ring: KeyRing, info: _Info) -> tuple[int, None, str]:
            state["old"] = ring
            # From here on the key file contains the new key and every old one.
            rewrite_key_file(key_path, [new_key, *ring.keys])
            new_ring = KeyRing((new_key, *ring.keys), ring.source, ring.path)
            fernet = new_ring.fernet()

            rows = self._conn.execute(SELECT_WRAPPED_KEYS).fetchall()
            for done, (secret_id, version, data_key) in enumerate(rows, start=1):
                try:
                    rewrapped = fernet.rotate(data_key)
                except InvalidToken:
                    name = self._conn.execute(
                        "SELECT name FROM secrets WHERE id = ?", (secret_id,)
                    ).fetchone()[0]
                    raise TamperedSecretError(name=name, version=version) from None
                self._conn.execute(UPDATE_WRAPPED_KEY, (rewrapped, new_id, secret_id, version))
                if progress is not None:
                    progress(done, len(rows))

            self._conn.execute(
                UPDATE_INFO_KEY,
                {
                    "key_id": new_id,
                    "key_check": Fernet(new_key).encrypt(KEY_CHECK_TEXT),
                    "now": now_ms(),
                },
            )
            return len(rows), None, "ok"

        rewrapped = self._run("rotate", None, work)
        old: KeyRing = state["old"]
        assert old.path is not None

        # The commit is done: the old keys are no longer needed.
        rewrite_key_file(key_path, [new_key])
        self._ring = KeyRing((new_key,), old.source, old.path)
        logger.info(
            "rotated master key %s -> %s, re-wrapped %d data keys",
            ", ".join(old.ids),
            new_id,
            rewrapped,
        )
        return RotationResult(old.ids, new_id, rewrapped, old.path)

    # Audit log

    def audit_rows(self, *, secret: str | None = None, limit: int = 50) -> list[audit.AuditRow]:
        """Return the newest `limit` audit rows, oldest first (reading needs no master key)."""
        return audit.read_rows(self._conn, secret, limit)

    def verify_audit(self) -> audit.ChainReport:
        """Recompute the audit hash chain and report every break. If the chain is intact,
        also report every secret whose newest stored version is below the newest one the
        log records as written."""
        report = audit.verify_chain(self._conn, self.vault_id)
        if not report.intact:
            return report  # the log itself was changed, so its versions prove nothing
        stored = dict(self._conn.execute(SELECT_CURRENT_VERSIONS).fetchall())
        written = [row[0] for row in self._conn.execute(SELECT_WRITTEN_SECRETS).fetchall()]
        for name in sorted(written):
            latest = audit.latest_write(self._conn, name)
            if latest is not None and latest[1] > stored.get(name, 0):
                report.problems.append(
                    audit.AuditProblem(
                        latest[0],
                        "rolled_back",
                        secret=name,
                        recorded=latest[1],
                        current=stored.get(name, 0),
                    )
                )
        return report
