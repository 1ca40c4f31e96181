"""The master key: where it comes from, how its file is guarded, how it is exported.

The master key is a Fernet key (32 random bytes, URL-safe base64). It comes
from HAUSWACHT_MASTER_KEY when that variable is set, else from the key file
(HAUSWACHT_MASTER_KEY_FILE, default ./hauswacht-data/master.key). Both may
hold several keys, one per line (the variable also takes commas), newest
first: during a key rotation the file contains the new and the old key, and
`MultiFernet` encrypts with the first and decrypts with any of them.

Key file rules, as ssh applies them to private keys: the file must belong to
the current user and have no group or other permission bits, else it is
rejected with the `chmod`/`chown` that fixes it. Key files are created with
O_EXCL and mode 0600 and are never overwritten, except by a rotation, which
replaces its own file atomically (temporary file, fsync, rename, fsync of the
folder).

A key id is the first 8 hex digits of SHA-256 over a fixed label and the raw
key. It names a key in messages and in the database without revealing it.

Export format (JSON): the key ring encrypted with Fernet under a key derived
from a passphrase with scrypt (N=2**15, r=8, p=1, 16-byte random salt, by
default). The parameters and salt are stored in the file, so a file written
with other parameters still imports. `read_key_export` checks them before it
derives anything. It accepts at most 64 MiB of memory (128·N·r, twice the
default) and a cost N·r·p of at most 2**20 (four times the default), so a
crafted file cannot make an import take gigabytes or minutes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import stat
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from hauswacht.vault.errors import (
    REASON_FILE_NOT_FOUND,
    REASON_INVALID_FIELDS,
    REASON_IS_DIRECTORY,
    REASON_NOT_JSON,
    REASON_NOT_REGULAR_FILE,
    REASON_NOT_UTF8,
    REASON_UNKNOWN_FORMAT,
    REASON_UNSUPPORTED_SCRYPT,
    FileReadError,
    FileWriteError,
    InvalidMasterKeyError,
    InvalidMasterKeyVariableError,
    KeyExportFormatError,
    KeyFileExistsError,
    KeyFileModeError,
    KeyFileOwnerError,
    MasterKeyMissingError,
    PassphraseTooShortError,
    ScryptCostError,
    ScryptMemoryError,
    WrongPassphraseError,
)

logger = logging.getLogger(__name__)

ENV_KEY = "HAUSWACHT_MASTER_KEY"
ENV_KEY_FILE = "HAUSWACHT_MASTER_KEY_FILE"
DEFAULT_KEY_FILE = Path("hauswacht-data") / "master.key"

KEY_FILE_HEADER = (
    "# Hauswacht vault master key. Keep this file secret and mode 0600.\n"
    "# Back it up with `hauswacht vault export-key FILE`. During a key rotation it\n"
    "# contains several keys, newest first: do not remove any of them by hand.\n"
)

SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_SALT_BYTES = 16
# Upper bounds accepted from an export file. scrypt needs 128·N·r bytes of memory
# (32 MiB at the defaults) and time in proportion to N·r·p (2**18 at the defaults).
SCRYPT_MAX_MEMORY_BYTES = 64 * 2**20
SCRYPT_MAX_COST = 2**20
MIN_PASSPHRASE_LENGTH = 12
EXPORT_FORMAT = "hauswacht-master-key"
EXPORT_VERSION = 1

_KEY_SPLIT = re.compile(r"[\s,]+")


def key_id(key: bytes) -> str:
    """Return the 8-hex-digit id of a Fernet key."""
    raw = base64.urlsafe_b64decode(key)
    return hashlib.sha256(b"hauswacht-vault-key-id\x00" + raw).hexdigest()[:8]


def generate_key() -> bytes:
    """Return a new random master key."""
    return Fernet.generate_key()


@dataclass(frozen=True)
class KeyRing:
    """The master keys in use, newest first, and where they came from."""

    keys: tuple[bytes, ...]
    source: str  # "HAUSWACHT_MASTER_KEY" or the key file path, for messages
    path: Path | None  # the key file, or None when the keys came from the environment

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(key_id(key) for key in self.keys)

    @property
    def newest_id(self) -> str:
        return key_id(self.keys[0])

    def fernet(self) -> MultiFernet:
        return MultiFernet([Fernet(key) for key in self.keys])

    def fernet_for(self, wanted_id: str) -> Fernet:
        """Return a Fernet for the key with id `wanted_id`; KeyError if the ring lacks it."""
        for key in self.keys:
            if key_id(key) == wanted_id:
                return Fernet(key)
        raise KeyError(wanted_id)


def parse_keys(text: str, source: str) -> tuple[bytes, ...]:
    """Parse key ring text (keys separated by newlines, commas or spaces; `#` comments)."""
    error = InvalidMasterKeyVariableError if source == ENV_KEY else InvalidMasterKeyError
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    words = [word for word in _KEY_SPLIT.split(" ".join(lines)) if word]
    if not words:
        raise error(source=source)

    keys = []
    for word in words:
        key = word.encode("ascii", "replace")
        try:
            Fernet(key)
        except (ValueError, binascii.Error):
            raise error(source=source) from None
        keys.append(key)
    return tuple(keys)


def resolve_key_file(
    key_file: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Path:
    """Return the key file path: the argument, else HAUSWACHT_MASTER_KEY_FILE, else the default."""
    environ = os.environ if environ is None else environ
    if key_file is not None:
        return Path(key_file)
    if environ.get(ENV_KEY_FILE):
        return Path(environ[ENV_KEY_FILE])
    return DEFAULT_KEY_FILE


def load_key_ring(
    key_file: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> KeyRing:
    """Load the master keys from HAUSWACHT_MASTER_KEY or, if it is unset, from the key file.

    Raises MasterKeyMissingError, InvalidMasterKeyError, KeyFileModeError or
    KeyFileOwnerError. An explicit `key_file` wins over the environment variable.
    """
    environ = os.environ if environ is None else environ
    if key_file is None and environ.get(ENV_KEY):
        return KeyRing(parse_keys(environ[ENV_KEY], ENV_KEY), ENV_KEY, None)

    path = resolve_key_file(key_file, environ)
    return KeyRing(parse_keys(read_key_file(path), str(path)), str(path), path)


def read_key_file(path: Path) -> str:
    """Read a key file after checking that only its owner, the current user, can read it."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; the type check follows.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise MasterKeyMissingError(path=str(path)) from None
    except OSError as exc:
        raise FileReadError(path=str(path), reason=exc.strerror or str(exc)) from None

    # Check the opened file itself (fstat), so a swap after the check cannot matter.
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise FileReadError(path=str(path), reason=REASON_IS_DIRECTORY)
        if not stat.S_ISREG(info.st_mode):
            raise FileReadError(path=str(path), reason=REASON_NOT_REGULAR_FILE)
        if info.st_uid != os.geteuid():
            raise KeyFileOwnerError(path=str(path), owner=info.st_uid, uid=os.geteuid())
        if info.st_mode & 0o077:
            raise KeyFileModeError(path=str(path), mode=f"{stat.S_IMODE(info.st_mode):04o}")
    except BaseException:
        os.close(fd)
        raise

    with os.fdopen(fd, "r", encoding="utf-8", errors="replace") as file:
        try:
            return file.read()
        except OSError as exc:
            raise FileReadError(path=str(path), reason=exc.strerror or str(exc)) from None


def format_key_file(keys: Sequence[bytes]) -> str:
    return KEY_FILE_HEADER + "".join(key.decode("ascii") + "\n" for key in keys)


def create_private_file(path: Path, data: bytes) -> None:
    """Create `path` with mode 0600 and write `data`; raise KeyFileExistsError if it exists."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileExistsError(path=str(path)) from None
    except OSError as exc:
        raise FileWriteError(path=str(path), reason=exc.strerror or str(exc)) from None

    try:
        os.fchmod(fd, 0o600)  # the umask may have removed owner bits
        os.write(fd, data)
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise FileWriteError(path=str(path), reason=exc.strerror or str(exc)) from None
    os.close(fd)
    _fsync_folder(path.parent)


def replace_private_file(path: Path, data: bytes) -> None:
    """Replace `path` atomically with a mode 0600 file containing `data`."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    create_private_file(temporary, data)
    try:
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise FileWriteError(path=str(path), reason=exc.strerror or str(exc)) from None
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new_key_file(path: Path, keys: Sequence[bytes]) -> None:
    """Create a key file; never overwrite one."""
    create_private_file(path, format_key_file(keys).encode("ascii"))
    logger.info("created key file %s with key ids %s", path, [key_id(key) for key in keys])


def rewrite_key_file(path: Path, keys: Sequence[bytes]) -> None:
    """Replace the key file during a rotation (atomic: readers see the old or the new file)."""
    replace_private_file(path, format_key_file(keys).encode("ascii"))
    logger.info("key file %s now contains key ids %s", path, [key_id(key) for key in keys])


def unignored_in_git(path: Path) -> Path | None:
    """Return the git work tree root if `path` lies in one and git does not ignore it.

    Returns None when git is not installed, `path` is outside a work tree, or
    the path is ignored.
    """
    git = shutil.which("git")
    if git is None:
        return None
    folder = path.resolve().parent
    try:
        inside = subprocess.run(
            [git, "-C", str(folder), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if inside.returncode != 0:
            return None
        ignored = subprocess.run(
            [git, "-C", str(folder), "check-ignore", "-q", str(path.resolve())],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("could not ask git whether %s is ignored: %s", path, exc)
        return None
    # check-ignore: 0 = ignored, 1 = not ignored, 128 = error (treated as unknown).
    if ignored.returncode == 1:
        return Path(inside.stdout.strip())
    return None


def _derive_fernet(passphrase: str, salt: bytes, n: int, r: int, p: int) -> Fernet:
    kdf = Scrypt(salt=salt, length=32, n=n, r=r, p=p)
    return Fernet(base64.urlsafe_b64encode(kdf.derive(passphrase.encode("utf-8"))))


def export_key_ring(
    ring: KeyRing,
    path: Path,
    passphrase: str,
    *,
    n: int = SCRYPT_N,
    r: int = SCRYPT_R,
    p: int = SCRYPT_P,
) -> None:
    """Write the key ring to a new file `path`, encrypted with a key derived from `passphrase`.

    Lower scrypt parameters exist for tests; the defaults are the documented ones.
    """
    if len(passphrase) < MIN_PASSPHRASE_LENGTH:
        raise PassphraseTooShortError(length=len(passphrase), minimum=MIN_PASSPHRASE_LENGTH)
    check_scrypt_limits(path, n, r, p)  # never write a file that import-key rejects

    salt = os.urandom(SCRYPT_SALT_BYTES)
    token = _derive_fernet(passphrase, salt, n, r, p).encrypt(
        "\n".join(key.decode("ascii") for key in ring.keys).encode("ascii")
    )
    document = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "key_ids": list(ring.ids),
        "kdf": {
            "name": "scrypt",
            "n": n,
            "r": r,
            "p": p,
            "salt": base64.b64encode(salt).decode("ascii"),
        },
        "cipher": "fernet",
        "token": token.decode("ascii"),
    }
    create_private_file(path, (json.dumps(document, indent=2) + "\n").encode("ascii"))
    logger.info("exported master key ids %s to %s", list(ring.ids), path)


def check_scrypt_limits(path: Path, n: int, r: int, p: int) -> None:
    """Raise ScryptMemoryError or ScryptCostError if deriving with N, r, p would cost too much."""
    memory = 128 * n * r
    if memory > SCRYPT_MAX_MEMORY_BYTES:
        raise ScryptMemoryError(
            path=str(path),
            n=n,
            r=r,
            memory_mib=memory // 2**20,
            limit_mib=SCRYPT_MAX_MEMORY_BYTES // 2**20,
        )
    if n * r * p > SCRYPT_MAX_COST:
        raise ScryptCostError(path=str(path), n=n, r=r, p=p, cost=n * r * p, limit=SCRYPT_MAX_COST)


def read_key_export(path: Path, passphrase: str) -> tuple[bytes, ...]:
    """Decrypt a key export file and return its keys, newest first."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyExportFormatError(path=str(path), reason=REASON_FILE_NOT_FOUND) from None
    except IsADirectoryError:
        raise KeyExportFormatError(path=str(path), reason=REASON_IS_DIRECTORY) from None
    except UnicodeDecodeError:
        raise KeyExportFormatError(path=str(path), reason=REASON_NOT_UTF8) from None
    except OSError as exc:
        raise FileReadError(path=str(path), reason=exc.strerror or str(exc)) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        raise KeyExportFormatError(path=str(path), reason=REASON_NOT_JSON) from None

    try:
        if document["format"] != EXPORT_FORMAT or document["version"] != EXPORT_VERSION:
            raise KeyExportFormatError(path=str(path), reason=REASON_UNKNOWN_FORMAT)
        kdf = document["kdf"]
        n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
        salt = base64.b64decode(kdf["salt"], validate=True)
        token = document["token"].encode("ascii")
    except (KeyError, TypeError, ValueError, AttributeError, binascii.Error):
        raise KeyExportFormatError(path=str(path), reason=REASON_INVALID_FIELDS) from None
    if kdf.get("name") != "scrypt" or not (n >= 2 and n & (n - 1) == 0 and r >= 1 and p >= 1):
        raise KeyExportFormatError(path=str(path), reason=REASON_UNSUPPORTED_SCRYPT)
    check_scrypt_limits(path, n, r, p)

    try:
        text = _derive_fernet(passphrase, salt, n, r, p).decrypt(token)
    except InvalidToken:
        raise WrongPassphraseError(path=str(path)) from None
    return parse_keys(text.decode("ascii", "replace"), str(path))
