"""Dashboard login: the users file, password hashes, signed session cookies, CSRF and throttling.

Users live in a small JSON file of their own (default
`dashboard-users.json` beside the events database), never in the events
database, which the dashboard opens read-only. The file and the session key
file are created with mode 0600 and rejected when group or others may read
them, as ssh does with private keys.

- Passwords are stored as scrypt hashes (`hashlib.scrypt`, N=2**15, r=8,
  p=1, 16-byte salt), written as `scrypt$N$r$p$salt$hash` so the cost can
  be raised later without breaking stored hashes.
- A session cookie is `payload.signature`. The payload is base64url JSON with
  the user, a random session id, the expiry (epoch ms) and a tag of the
  user's stored hash. The signature is HMAC-SHA256 with a key derived from
  the 32-byte secret in the key file. Changing a password changes the
  tag, so it ends that user's other sessions. Deleting the key file ends all.
- Logging out revokes the session. Its id and expiry go into the revoked
  sessions file (`dashboard-revoked.json` beside the users file, mode 0600),
  and a cookie with a revoked id is rejected until it expires, so a copied
  cookie stops working too. Expired entries are dropped whenever the file
  is written.
- The CSRF token of a session is an HMAC of its session id, so it needs no
  server-side state.
- Login attempts are counted per user name and per client address before
  the password is checked, so a burst of parallel requests is throttled like
  a sequence. From FREE_FAILURES_PER_USER (or FREE_FAILURES_PER_CLIENT)
  attempts on, the next attempt must wait 2**(attempts - free) seconds after
  the last one, and is rejected unchecked before that. The wait is at most
  MAX_USER_WAIT_SECONDS for a user name, so a stranger who has the name can
  only delay its owner, and at most MAX_WAIT_SECONDS for a client address.
  The counters live in memory (per process) and reset on a successful login.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import orjson

from hauswacht.i18n import translate

logger = logging.getLogger(__name__)

USERS_FILE_NAME = "dashboard-users.json"
REVOKED_FILE_NAME = "dashboard-revoked.json"
SECRET_FILE_NAME = "dashboard-secret.key"
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_MAXMEM = 64 * 1024 * 1024  # scrypt needs 128 * N * r bytes = 32 MiB at these settings
SALT_BYTES = 16
KEY_BYTES = 32
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
USER_PATTERN = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
FREE_FAILURES_PER_USER = 5
FREE_FAILURES_PER_CLIENT = 20
MAX_WAIT_SECONDS = 300  # per client address
MAX_USER_WAIT_SECONDS = 30  # per user name, which anybody who has the name can push up
THROTTLE_ENTRIES = 10_000  # per kind; the least recently failed are forgotten first
THROTTLE_FORGET_SECONDS = 3600  # a counter idle this long starts again from zero


# The messages of AuthFileError, in the form of hauswacht.i18n catalogs. The
# operating system's reason ({reason}) stays in English.
MESSAGES = {
    "open_to_others": {
        "en": "{path}: permissions {mode} let other users read it; run: chmod 600 {path}",
        "de": "{path}: die Rechte {mode} lassen andere Benutzer sie lesen; ausführen: "
        "chmod 600 {path}",
    },
    "not_file": {
        "en": "{path}: is not a file; pass the path of a file",
        "de": "{path}: ist keine Datei; den Pfad einer Datei angeben",
    },
    "cannot_read": {
        "en": "{path}: cannot read ({reason})",
        "de": "{path}: kann nicht gelesen werden (System: {reason})",
    },
    "cannot_write": {
        "en": "{path}: cannot write ({reason})",
        "de": "{path}: kann nicht geschrieben werden (System: {reason})",
    },
    "cannot_create": {
        "en": "{path}: cannot create ({reason})",
        "de": "{path}: kann nicht angelegt werden (System: {reason})",
    },
    "not_users_file": {
        "en": "{path}: not a dashboard users file ({reason}); move it away and set the "
        "passwords again",
        "de": "{path}: keine Benutzerdatei des Dashboards ({reason}); sie beiseite legen und "
        "die Passwörter neu setzen",
    },
    "not_session_key": {
        "en": "{path}: not a session key ({digits} hex digits expected); delete it to create "
        "a new one, which logs everybody out",
        "de": "{path}: kein Sitzungsschlüssel ({digits} Hex-Ziffern erwartet); löschen, um "
        "einen neuen anzulegen, was alle abmeldet",
    },
    "not_revoked_file": {
        "en": "{path}: not a revoked sessions file ({reason}); delete it, which makes cookies "
        "of earlier logouts valid again until they expire",
        "de": "{path}: keine Datei widerrufener Sitzungen ({reason}); löschen, womit Cookies "
        "früherer Abmeldungen bis zu ihrem Ablauf wieder gelten",
    },
}


class AuthFileError(Exception):
    """A users or key file that cannot be read, written or is readable by others.

    `str(error)` is the English message, for logs; `text(lang)` gives it in `lang`.
    """

    def __init__(self, code: str, /, **fields: object) -> None:
        super().__init__(translate(MESSAGES, code, "en", **fields))
        self.code = code
        self.fields = fields

    def text(self, lang: str) -> str:
        """Return the message in `lang`."""
        return translate(MESSAGES, self.code, lang, **self.fields)


def _check_private(path: Path) -> None:
    _check_mode(path, path.stat().st_mode)


def _check_mode(path: Path, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise AuthFileError("not_file", path=path)
    if mode & 0o077:
        raise AuthFileError("open_to_others", path=path, mode=stat.filemode(mode))


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically with mode 0600, creating the folder with mode 0700."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise AuthFileError("cannot_write", path=path, reason=exc.strerror or exc) from exc


# --- passwords -----------------------------------------------------------------------


def hash_password(password: str) -> str:
    """Return the scrypt hash of `password` in the stored form `scrypt$N$r$p$salt$hash`."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
        maxmem=SCRYPT_MAXMEM, dklen=KEY_BYTES,
    )  # fmt: skip
    return "$".join(("scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(key)))


def verify_password(password: str, stored: str) -> bool:
    """Return whether `password` matches the stored hash; False for a malformed hash."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(key)
        actual = hashlib.scrypt(
            password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
            maxmem=SCRYPT_MAXMEM, dklen=len(expected),
        )  # fmt: skip
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_user_name(user: str) -> str | None:
    """Return why `user` is not a valid user name, or None when it is."""
    if USER_PATTERN.match(user):
        return None
    return "1 to 64 characters from letters, digits and . _ @ -"


def check_password(password: str) -> str | None:
    """Return why `password` is not acceptable, or None when it is."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"at most {MAX_PASSWORD_LENGTH} characters"
    return None


class UserStore:
    """The users file: `{"users": {name: {"password": hash, "changed_ms": ms}}}`.

    Reads are cached until the file's modification time, size or inode
    changes, so `hauswacht dashboard passwd` takes effect without a restart.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._cache_key: tuple[int, int, int] | None = None
        self._users: dict[str, dict] = {}
        # Verified when the user name is unknown, so the response takes as long as for a real one.
        self._dummy_hash = hash_password(secrets.token_hex(8))

    def users(self) -> dict[str, dict]:
        """Return the stored users by name; an absent file means no users.

        Raises AuthFileError when the file is unreadable, malformed or readable by others.
        """
        try:
            info = self.path.stat()
        except FileNotFoundError:
            self._cache_key = None
            self._users = {}
            return {}
        except OSError as exc:
            raise AuthFileError("cannot_read", path=self.path, reason=exc.strerror) from exc
        _check_mode(self.path, info.st_mode)  # on every load: a chmod leaves mtime unchanged
        key = (info.st_mtime_ns, info.st_size, info.st_ino)
        if key == self._cache_key:
            return self._users
        try:
            data = orjson.loads(self.path.read_bytes())
            users = data["users"]
            if not isinstance(users, dict):
                raise TypeError("users is not an object")
        except OSError as exc:
            raise AuthFileError("cannot_read", path=self.path, reason=exc.strerror) from exc
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise AuthFileError("not_users_file", path=self.path, reason=exc) from exc
        self._users = users
        self._cache_key = key
        return users

    def set_password(self, user: str, password: str) -> bool:
        """Store a new hash for `user`; return True when the user is new.

        Raises ValueError for an invalid name or password and AuthFileError for file problems.
        """
        problem = check_user_name(user)
        if problem:
            raise ValueError(f"invalid user name {user!r}: {problem}")
        problem = check_password(password)
        if problem:
            raise ValueError(f"password too short or too long: {problem}")
        users = dict(self.users())
        created = user not in users
        users[user] = {"password": hash_password(password), "changed_ms": time.time_ns() // 10**6}
        _write_private(self.path, orjson.dumps({"users": users}, option=orjson.OPT_INDENT_2))
        logger.info("dashboard password %s for user %s in %s",
                    "created" if created else "changed", user, self.path)  # fmt: skip
        return created

    def verify(self, user: str, password: str) -> bool:
        """Return whether `user` exists and `password` is theirs."""
        entry = self.users().get(user)
        if not isinstance(entry, dict) or not isinstance(entry.get("password"), str):
            verify_password(password, self._dummy_hash)
            return False
        return verify_password(password, entry["password"])

    def password_tag(self, user: str) -> str | None:
        """Return a short digest of the user's stored hash, or None for an unknown user."""
        entry = self.users().get(user)
        if not isinstance(entry, dict) or not isinstance(entry.get("password"), str):
            return None
        return hashlib.sha256(entry["password"].encode()).hexdigest()[:16]


def load_or_create_secret(path: str | os.PathLike[str]) -> bytes:
    """Return the 32-byte session key from `path`, creating the file (mode 0600) on first use.

    Raises AuthFileError when the file is readable by others, malformed or cannot be written.
    """
    path = Path(path)
    try:
        exists = path.exists()
    except OSError as exc:  # a folder on the way this user may not enter
        raise AuthFileError("cannot_read", path=path, reason=exc.strerror) from exc
    if not exists:
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_hex(KEY_BYTES) + "\n")
            logger.info("created dashboard session key %s", path)
        except FileExistsError:
            pass  # another process created it first; read theirs
        except OSError as exc:
            raise AuthFileError("cannot_create", path=path, reason=exc.strerror) from exc
    try:
        _check_private(path)
        text = path.read_text().strip()
    except OSError as exc:
        raise AuthFileError("cannot_read", path=path, reason=exc.strerror) from exc
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise AuthFileError("not_session_key", path=path, digits=KEY_BYTES * 2)
    return key


# --- sessions ------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    user: str
    session_id: str
    expires_ms: int
    password_tag: str


class SessionSigner:
    """Issues and checks signed session cookies and the CSRF tokens bound to them."""

    def __init__(self, secret: bytes, lifetime_seconds: float) -> None:
        self._session_key = hmac.new(secret, b"hauswacht session", hashlib.sha256).digest()
        self._csrf_key = hmac.new(secret, b"hauswacht csrf", hashlib.sha256).digest()
        self.lifetime_seconds = lifetime_seconds

    def issue(self, user: str, password_tag: str, now_ms: int) -> tuple[Session, str]:
        """Return a new session for `user` and its cookie value."""
        session = Session(
            user=user,
            session_id=secrets.token_urlsafe(16),
            expires_ms=now_ms + int(self.lifetime_seconds * 1000),
            password_tag=password_tag,
        )
        payload = _b64(
            orjson.dumps(
                {"u": user, "s": session.session_id, "e": session.expires_ms, "t": password_tag}
            )
        )
        return session, f"{payload}.{self._sign(payload)}"

    def read(self, cookie: str | None, now_ms: int) -> Session | None:
        """Return the session of a cookie value, or None when it is forged, malformed or expired."""
        if not cookie or len(cookie) > 4096 or "." not in cookie:
            return None
        payload, _, signature = cookie.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            data = orjson.loads(_unb64(payload))
            session = Session(str(data["u"]), str(data["s"]), int(data["e"]), str(data["t"]))
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            return None
        if session.expires_ms <= now_ms:
            return None
        return session

    def csrf_token(self, session: Session) -> str:
        return hmac.new(self._csrf_key, session.session_id.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(token, self.csrf_token(session))

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._session_key, payload.encode(), hashlib.sha256).digest())


class RevokedSessions:
    """The revoked sessions file: `{"revoked": {session_id: expires_ms}}`.

    Reads are cached until the file's modification time, size or inode
    changes, so every process serving the same files applies a logout.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._cache_key: tuple[int, int, int] | None = None
        self._revoked: dict[str, int] = {}

    def revoked(self) -> dict[str, int]:
        """Return the revoked session ids with their expiry; an absent file means none.

        Raises AuthFileError when the file is unreadable, malformed or readable by others.
        """
        try:
            info = self.path.stat()
        except FileNotFoundError:
            self._cache_key = None
            self._revoked = {}
            return {}
        except OSError as exc:
            raise AuthFileError("cannot_read", path=self.path, reason=exc.strerror) from exc
        _check_mode(self.path, info.st_mode)
        key = (info.st_mtime_ns, info.st_size, info.st_ino)
        if key == self._cache_key:
            return self._revoked
        try:
            data = orjson.loads(self.path.read_bytes())
            revoked = {str(sid): int(expires) for sid, expires in data["revoked"].items()}
        except OSError as exc:
            raise AuthFileError("cannot_read", path=self.path, reason=exc.strerror) from exc
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise AuthFileError("not_revoked_file", path=self.path, reason=exc) from exc
        self._revoked = revoked
        self._cache_key = key
        return revoked

    def is_revoked(self, session: Session) -> bool:
        return session.session_id in self.revoked()

    def revoke(self, session: Session, now_ms: int) -> None:
        """Add `session` to the file and drop the entries that have expired by `now_ms`."""
        revoked = {sid: ms for sid, ms in self.revoked().items() if ms > now_ms}
        revoked[session.session_id] = session.expires_ms
        _write_private(self.path, orjson.dumps({"revoked": revoked}))
        logger.info("dashboard session of %s revoked in %s", session.user, self.path)


# --- failed logins -------------------------------------------------------------------


class LoginThrottle:
    """Counts login attempts per user name and per client and says how long to wait."""

    def __init__(self) -> None:
        # key -> (attempts, time of the last attempt in monotonic seconds)
        self._users: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._clients: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def wait_seconds(self, user: str, client: str, now: float | None = None) -> int:
        """Return how many seconds must pass before the next attempt (0: try now)."""
        now = time.monotonic() if now is None else now
        waits = (
            self._wait(self._users, user.lower(), FREE_FAILURES_PER_USER, MAX_USER_WAIT_SECONDS,
                       now),
            self._wait(self._clients, client, FREE_FAILURES_PER_CLIENT, MAX_WAIT_SECONDS, now),
        )  # fmt: skip
        return max(waits)

    def reserve(self, user: str, client: str, now: float | None = None) -> int:
        """Count an attempt before its password is checked; return the wait instead when one is due.

        A return of 0 means the attempt was counted and may go ahead; a later
        `succeeded` clears the count. Counting first means parallel attempts
        cannot all pass the check before any of them has failed.
        """
        now = time.monotonic() if now is None else now
        wait = self.wait_seconds(user, client, now)
        if wait == 0:
            self.failed(user, client, now)
        return wait

    def failed(self, user: str, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._count(self._users, user.lower(), now)
        self._count(self._clients, client, now)

    def succeeded(self, user: str, client: str) -> None:
        self._users.pop(user.lower(), None)
        self._clients.pop(client, None)

    @staticmethod
    def _wait(
        table: OrderedDict[str, tuple[int, float]], key: str, free: int, cap: int, now: float
    ) -> int:
        failures, last = table.get(key, (0, 0.0))
        if failures < free or now - last > THROTTLE_FORGET_SECONDS:
            return 0
        delay = min(2 ** min(failures - free, 30), cap)
        left = last + delay - now
        return max(0, int(left + 0.999))

    @staticmethod
    def _count(table: OrderedDict[str, tuple[int, float]], key: str, now: float) -> None:
        failures, last = table.pop(key, (0, 0.0))
        if now - last > THROTTLE_FORGET_SECONDS:
            failures = 0
        table[key] = (failures + 1, now)
        while len(table) > THROTTLE_ENTRIES:
            table.popitem(last=False)
