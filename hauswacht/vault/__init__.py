"""The secrets vault: encrypted values in one SQLite file, read with one call.

    from hauswacht.vault import get_secret, require_secret

    dsn = require_secret("DATABASE_URL")
    sentry = get_secret("SENTRY_DSN", default="")

Settings: HAUSWACHT_VAULT (default ./hauswacht-data/vault.db) names the vault
file; the master key comes from HAUSWACHT_MASTER_KEY or the key file
(HAUSWACHT_MASTER_KEY_FILE, default ./hauswacht-data/master.key, mode 0600).
Each call opens the vault, reads one value, appends an audit row and closes
it again, so a rotation by another process is always picked up.

The vault imports no other Hauswacht part.
"""

from __future__ import annotations

import logging
import os
from typing import TypeVar

from hauswacht.vault.errors import (
    MissingSecretError,
    SecretDeletedError,
    SecretDestroyedError,
    SecretNotFoundError,
    VaultError,
    VaultLockedError,
)
from hauswacht.vault.store import Vault, init_vault, resolve_vault_path

__all__ = [
    "MissingSecretError",
    "Vault",
    "VaultError",
    "VaultLockedError",
    "get_secret",
    "init_vault",
    "require_secret",
]

# A library leaves logging output to the application; without this, Python's
# last-resort handler would print vault warnings under the CLI's own messages.
logging.getLogger(__name__).addHandler(logging.NullHandler())

T = TypeVar("T")


def get_secret(
    name: str,
    default: T | None = None,
    *,
    vault: str | os.PathLike[str] | None = None,
    key_file: str | os.PathLike[str] | None = None,
) -> str | T | None:
    """Return the current value of secret `name`, or `default` if it is unset or deleted.

    Raises VaultError subclasses for a missing vault, a missing or wrong master
    key, a damaged value and versions removed from the vault file: those are
    configuration faults, not unset secrets. VaultLockedError means another
    process held the write lock for longer than the busy timeout (10 s).
    """
    with Vault(vault, key_file=key_file) as opened:
        try:
            return opened.get(name)
        except (SecretNotFoundError, SecretDeletedError, SecretDestroyedError):
            return default


def require_secret(
    name: str,
    *,
    vault: str | os.PathLike[str] | None = None,
    key_file: str | os.PathLike[str] | None = None,
) -> str:
    """Return the current value of secret `name`; raise MissingSecretError if it is unset."""
    missing = object()
    value = get_secret(name, missing, vault=vault, key_file=key_file)
    if value is missing:
        raise MissingSecretError(name=name, path=str(resolve_vault_path(vault)))
    assert isinstance(value, str)
    return value
