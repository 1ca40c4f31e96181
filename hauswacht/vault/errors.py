"""Exceptions of the vault.

Every vault exception has a stable `code`, an English `template` and the
`fields` that fill it, so the CLI can show the same message in another
language. Fields hold names, versions, paths and key ids, never a secret value
or key material. `code` is also what a failed access records as its outcome in
the audit log. `usage` marks errors caused by a bad argument (exit status 2 in
the CLI); all others are failed operations (exit status 1).

The `reason` field of FileReadError, FileWriteError, NotAVaultError and
KeyExportFormatError is either one of the REASONS below, which the CLI
translates, or an operating system's error text (strerror), passed as it is.
"""

from __future__ import annotations

REASON_FILE_NOT_FOUND = "file not found"
REASON_IS_DIRECTORY = "is a directory"
REASON_NOT_REGULAR_FILE = "not a regular file"
REASON_NOT_UTF8 = "not UTF-8 text"
REASON_NOT_JSON = "not JSON"
REASON_UNKNOWN_FORMAT = "unknown format or version"
REASON_INVALID_FIELDS = "missing or invalid fields"
REASON_UNSUPPORTED_SCRYPT = "unsupported scrypt parameters"
REASON_NO_VAULT_INFO = "vault_info is empty"
REASON_NOT_A_DATABASE = "file is not a database"  # SQLite's own text for SQLITE_NOTADB

REASONS = (
    REASON_FILE_NOT_FOUND,
    REASON_IS_DIRECTORY,
    REASON_NOT_REGULAR_FILE,
    REASON_NOT_UTF8,
    REASON_NOT_JSON,
    REASON_UNKNOWN_FORMAT,
    REASON_INVALID_FIELDS,
    REASON_UNSUPPORTED_SCRYPT,
    REASON_NO_VAULT_INFO,
    REASON_NOT_A_DATABASE,
)


class VaultError(Exception):
    """Base class of all vault errors."""

    code = "error"
    template = "{detail}"
    usage = False

    def __init__(self, **fields: object) -> None:
        self.fields = fields
        super().__init__(self.template.format(**fields))


class VaultNotFoundError(VaultError):
    code = "no_vault"
    template = (
        "no vault at {path}: create one with `hauswacht vault init` "
        "or set HAUSWACHT_VAULT to the vault file"
    )


class NotAVaultError(VaultError):
    code = "not_a_vault"
    template = "{path} is not a Hauswacht vault file ({reason})"


class ForeignDatabaseError(NotAVaultError):
    code = "foreign_database"
    template = (
        "{path} is an SQLite database of another application (application_id "
        "{application_id}, user_version {user_version}), not a Hauswacht vault; point "
        "HAUSWACHT_VAULT or --vault at the vault file"
    )


class NoVaultSchemaError(NotAVaultError):
    code = "no_schema"
    template = (
        "{path} is an SQLite file without a vault schema; point HAUSWACHT_VAULT or --vault "
        "at the vault file, or move this file away and run `hauswacht vault init`"
    )


class VaultLockedError(VaultError):
    code = "vault_locked"
    template = (
        "the vault {path} stayed locked by another process for {seconds} s; nothing was "
        "changed, try again when that process is done"
    )


class VaultSchemaError(VaultError):
    code = "schema_too_new"
    template = (
        "{path} has schema version {version}, but this Hauswacht supports up to "
        "{supported}: upgrade Hauswacht"
    )


class VaultExistsError(VaultError):
    code = "vault_exists"
    template = "a vault already exists at {path}; init never overwrites it"


class MasterKeyMissingError(VaultError):
    code = "no_master_key"
    template = (
        "no master key: HAUSWACHT_MASTER_KEY is not set and the key file {path} does not "
        "exist; run `hauswacht vault init` or `hauswacht vault import-key FILE`"
    )


class InvalidMasterKeyError(VaultError):
    code = "invalid_master_key"
    template = (
        "{source} does not contain a valid master key: expected one Fernet key "
        "(44 URL-safe base64 characters) per line, newest first"
    )


class InvalidMasterKeyVariableError(InvalidMasterKeyError):
    code = "invalid_master_key_variable"
    template = (
        "HAUSWACHT_MASTER_KEY does not contain a valid master key: expected Fernet keys "
        "(44 URL-safe base64 characters each) separated by commas, newest first"
    )


class KeyFileModeError(VaultError):
    code = "key_file_mode"
    template = (
        "key file {path} has mode {mode}, so other users can read it; "
        "run `chmod 600 {path}` and try again"
    )


class KeyFileOwnerError(VaultError):
    code = "key_file_owner"
    template = (
        "key file {path} belongs to uid {owner}, not to the current user (uid {uid}); "
        "run `chown {uid} {path}` or use the owner's account"
    )


class KeyFileExistsError(VaultError):
    code = "key_file_exists"
    template = "{path} already exists and is never overwritten; move it away first"


class WrongMasterKeyError(VaultError):
    code = "wrong_master_key"
    template = (
        "wrong master key: the vault needs key id {expected}, but {source} contains "
        "key id {given}; nothing was changed"
    )


class UnknownFirstKeyError(VaultError):
    code = "unknown_first_key"
    template = (
        "the first key in {source} has key id {given}, which this vault does not use; new "
        "values are wrapped with the vault's master key id {expected}, so put that key "
        "first; nothing was changed"
    )


class RotationNeedsKeyFileError(VaultError):
    code = "rotation_needs_key_file"
    template = (
        "rotate-key writes the new master key to the key file, but the key comes from "
        "HAUSWACHT_MASTER_KEY; write that key into {path} (mode 0600), unset the "
        "variable and run rotate-key again"
    )


class TamperedSecretError(VaultError):
    code = "tampered"
    template = (
        "version {version} of secret {name} failed decryption: the stored value was "
        "altered or damaged"
    )


class SecretNotFoundError(VaultError):
    code = "not_found"
    template = "secret {name} does not exist; store it with `hauswacht vault set {name}`"


class VersionNotFoundError(VaultError):
    code = "version_not_found"
    template = (
        "secret {name} has no version {version}; `hauswacht vault versions {name}` "
        "lists the versions kept"
    )


class SecretDeletedError(VaultError):
    code = "deleted"
    template = (
        "version {version} of secret {name} is deleted; restore it with "
        "`hauswacht vault undelete {name} --version {version}`"
    )


class SecretDestroyedError(VaultError):
    code = "destroyed"
    template = "version {version} of secret {name} was destroyed and cannot be restored"


class VersionNotDeletedError(VaultError):
    code = "not_deleted"
    template = "version {version} of secret {name} is not deleted; nothing was restored"


class SecretRolledBackError(VaultError):
    code = "rolled_back"
    template = (
        "the newest stored version of secret {name} is {current}, but the audit log "
        "records that version {recorded} was written: versions were removed from the vault "
        "file; restore it from a backup"
    )


class SecretRemovedError(VaultError):
    code = "removed"
    template = (
        "secret {name} is missing from the vault file, but the audit log records that "
        "version {recorded} was written and never destroyed: restore the vault file from "
        "a backup"
    )


class CasConflictError(VaultError):
    code = "cas_conflict"
    template = (
        "check-and-set failed for secret {name}: expected version {expected}, "
        "but the current version is {current}; nothing was stored"
    )


class InvalidSecretNameError(VaultError):
    code = "invalid_name"
    usage = True
    template = (
        "invalid secret name {name!r}: use letters, digits and underscores, starting "
        "with a letter or underscore, at most 128 characters"
    )


class EmptyValueError(VaultError):
    code = "empty_value"
    template = "the value for secret {name} is empty; nothing was stored"


class ValueContainsNulError(VaultError):
    code = "value_nul"
    template = (
        "the value for secret {name} contains a NUL byte, which an environment variable "
        "cannot hold; nothing was stored"
    )


class ValueTooLargeError(VaultError):
    code = "value_too_large"
    template = (
        "the value for secret {name} has {size} bytes, more than the limit of "
        "{limit} bytes; nothing was stored"
    )


class InvalidActorError(VaultError):
    code = "invalid_actor"
    usage = True
    template = (
        "invalid actor {actor!r}: it contains control characters, which would break the "
        "audit log display; use a name without them"
    )


class InvalidCasError(VaultError):
    code = "invalid_cas"
    usage = True
    template = "the check-and-set version must be 0 or more, got {value}"


class InvalidVersionCountError(VaultError):
    code = "invalid_max_versions"
    usage = True
    template = "max versions must be between 1 and {limit}, got {value}"


class EnvFileSyntaxError(VaultError):
    code = "env_syntax"
    template = (
        "{path} line {line}: expected KEY=VALUE, an `export KEY=VALUE`, a comment or a blank line"
    )


class EnvFileQuoteError(VaultError):
    code = "env_quote"
    template = "{path} line {line}: the {quote} quote that starts here is never closed"


class FileReadError(VaultError):
    code = "read_failed"
    template = "cannot read {path}: {reason}"


class EnvKeyMissingError(VaultError):
    code = "env_key_missing"
    template = "{path} has no key {key}; nothing was stored"


class KeyExportFormatError(VaultError):
    code = "export_format"
    template = "{path} is not a Hauswacht master key export ({reason})"


class ScryptMemoryError(VaultError):
    code = "scrypt_memory"
    template = (
        "{path} asks for scrypt N={n} and r={r}, which need {memory_mib} MiB of memory "
        "(128·N·r), more than the limit of {limit_mib} MiB; export the key again with the "
        "default parameters"
    )


class ScryptCostError(VaultError):
    code = "scrypt_cost"
    template = (
        "{path} asks for scrypt N={n}, r={r} and p={p}, a cost N·r·p of {cost}, more than "
        "the limit of {limit}; export the key again with the default parameters"
    )


class WrongPassphraseError(VaultError):
    code = "wrong_passphrase"
    template = "wrong passphrase for {path}, or the file was altered; nothing was written"


class PassphraseTooShortError(VaultError):
    code = "passphrase_too_short"
    template = "the passphrase has {length} characters; use at least {minimum}"


class MissingSecretError(VaultError, LookupError):
    code = "missing_secret"
    template = (
        "secret {name} is not set in the vault {path}; store it with `hauswacht vault set {name}`"
    )


class FileWriteError(VaultError):
    code = "write_failed"
    template = "cannot write {path}: {reason}"
