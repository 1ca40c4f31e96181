"""Dashboard login parts: users file, scrypt hashes, key file, signed sessions, CSRF, throttle."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import orjson
import pytest

from hauswacht.dashboard import DashboardConfigError, create_app
from hauswacht.dashboard.auth import (
    FREE_FAILURES_PER_CLIENT,
    FREE_FAILURES_PER_USER,
    MAX_USER_WAIT_SECONDS,
    MAX_WAIT_SECONDS,
    AuthFileError,
    LoginThrottle,
    SessionSigner,
    UserStore,
    hash_password,
    load_or_create_secret,
    verify_password,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_password_hash_is_salted_scrypt() -> None:
    first = hash_password("correct horse battery")
    second = hash_password("correct horse battery")

    assert first.startswith("scrypt$32768$8$1$")
    assert first != second
    assert verify_password("correct horse battery", first)
    assert not verify_password("correct horse batterY", first)
    assert not verify_password("anything", "md5$abc")
    assert not verify_password("anything", "scrypt$x$8$1$AA$AA")


def test_users_file_is_private_and_holds_no_password(tmp_path: Path) -> None:
    path = tmp_path / "data" / "dashboard-users.json"
    store = UserStore(path)

    created = store.set_password("alice", "correct horse battery")
    changed = store.set_password("alice", "another long password")
    content = path.read_text()

    assert created is True
    assert changed is False
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert "correct horse" not in content
    assert "another long" not in content
    assert list(orjson.loads(content)["users"]) == ["alice"]
    assert store.verify("alice", "another long password")
    assert not store.verify("alice", "correct horse battery")
    assert not store.verify("bob", "another long password")


def test_password_change_changes_session_tag(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    store.set_password("alice", "correct horse battery")
    before = store.password_tag("alice")
    store.set_password("alice", "another long password")

    assert before is not None
    assert store.password_tag("alice") != before
    assert store.password_tag("nobody") is None


@pytest.mark.parametrize(
    ("user", "password", "message"),
    [
        ("al ice", "correct horse battery", "invalid user name"),
        ("", "correct horse battery", "invalid user name"),
        ("alice", "short", "at least 8 characters"),
    ],
)
def test_bad_user_or_password_rejected(
    tmp_path: Path, user: str, password: str, message: str
) -> None:
    store = UserStore(tmp_path / "users.json")

    with pytest.raises(ValueError, match=message):
        store.set_password(user, password)
    assert not (tmp_path / "users.json").exists()


def test_readable_users_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    UserStore(path).set_password("alice", "correct horse battery")
    os.chmod(path, 0o644)

    with pytest.raises(AuthFileError, match="chmod 600"):
        UserStore(path).users()


def test_malformed_users_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text("[1, 2]")
    os.chmod(path, 0o600)

    with pytest.raises(AuthFileError, match="not a dashboard users file"):
        UserStore(path).users()


def test_secret_key_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "dashboard-secret.key"

    first = load_or_create_secret(path)
    second = load_or_create_secret(path)

    assert len(first) == 32
    assert first == second
    assert mode(path) == 0o600


def test_readable_secret_key_rejected(tmp_path: Path) -> None:
    path = tmp_path / "dashboard-secret.key"
    load_or_create_secret(path)
    os.chmod(path, 0o640)

    with pytest.raises(AuthFileError, match="chmod 600"):
        load_or_create_secret(path)


def test_create_app_names_bad_settings(tmp_path: Path) -> None:
    database = tmp_path / "events.db"

    with pytest.raises(DashboardConfigError, match="unknown time zone 'Mars/Olympus'"):
        create_app(database, timezone="Mars/Olympus")
    with pytest.raises(DashboardConfigError, match="unknown language 'fr'"):
        create_app(database, language="fr")
    with pytest.raises(DashboardConfigError, match="session_hours"):
        create_app(database, session_hours=0)


def test_session_cookie_round_trip_and_expiry() -> None:
    signer = SessionSigner(b"k" * 32, lifetime_seconds=3600)
    session, cookie = signer.issue("alice", "tag", now_ms=1_000)

    assert signer.read(cookie, now_ms=2_000) == session
    assert session.expires_ms == 1_000 + 3_600_000
    assert signer.read(cookie, now_ms=session.expires_ms) is None


def test_session_cookie_rejects_forgery() -> None:
    signer = SessionSigner(b"k" * 32, lifetime_seconds=3600)
    other = SessionSigner(b"x" * 32, lifetime_seconds=3600)
    _, cookie = signer.issue("alice", "tag", now_ms=0)
    payload, signature = cookie.rsplit(".", 1)
    _, mallory = signer.issue("mallory", "tag", now_ms=0)
    swapped = mallory.rsplit(".", 1)[0] + "." + signature

    assert other.read(cookie, now_ms=1) is None
    assert signer.read(swapped, now_ms=1) is None
    assert signer.read(payload, now_ms=1) is None
    assert signer.read("", now_ms=1) is None
    assert signer.read("a.b.c", now_ms=1) is None


def test_csrf_token_bound_to_session() -> None:
    signer = SessionSigner(b"k" * 32, lifetime_seconds=3600)
    first, _ = signer.issue("alice", "tag", now_ms=0)
    second, _ = signer.issue("alice", "tag", now_ms=0)
    token = signer.csrf_token(first)

    assert signer.check_csrf(first, token)
    assert not signer.check_csrf(second, token)
    assert not signer.check_csrf(first, None)
    assert not signer.check_csrf(first, "")


def test_throttle_backs_off_per_user() -> None:
    throttle = LoginThrottle()
    for n in range(FREE_FAILURES_PER_USER - 1):
        throttle.failed("alice", f"10.0.0.{n}", now=100.0)
    allowed = throttle.wait_seconds("alice", "10.0.0.99", now=100.0)
    throttle.failed("alice", "10.0.0.98", now=100.0)
    first_wait = throttle.wait_seconds("ALICE", "10.0.0.99", now=100.0)
    throttle.failed("alice", "10.0.0.98", now=101.0)
    second_wait = throttle.wait_seconds("alice", "10.0.0.99", now=101.0)
    other_user = throttle.wait_seconds("bob", "10.0.0.99", now=101.0)
    throttle.succeeded("alice", "10.0.0.98")

    assert allowed == 0
    assert first_wait == 1
    assert second_wait == 2
    assert other_user == 0
    assert throttle.wait_seconds("alice", "10.0.0.99", now=101.0) == 0


def test_throttle_backs_off_per_client_and_caps_wait() -> None:
    throttle = LoginThrottle()
    for n in range(FREE_FAILURES_PER_CLIENT + 20):
        throttle.failed(f"user{n}", "10.0.0.1", now=50.0)

    assert throttle.wait_seconds("fresh", "10.0.0.1", now=50.0) == MAX_WAIT_SECONDS
    assert throttle.wait_seconds("fresh", "10.0.0.2", now=50.0) == 0
    assert throttle.wait_seconds("fresh", "10.0.0.1", now=50.0 + MAX_WAIT_SECONDS) == 0


def test_throttle_reserve_counts_before_check() -> None:
    throttle = LoginThrottle()
    waits = [throttle.reserve("alice", f"10.0.0.{n}", now=10.0) for n in range(8)]

    assert waits == [0] * FREE_FAILURES_PER_USER + [1, 1, 1]
    assert throttle.wait_seconds("alice", "10.0.0.99", now=10.0) == 1
    assert throttle.reserve("alice", "10.0.0.99", now=11.0) == 0
    assert throttle.wait_seconds("alice", "10.0.0.99", now=11.0) == 2


def test_throttle_user_wait_capped_shorter() -> None:
    throttle = LoginThrottle()
    for n in range(FREE_FAILURES_PER_USER + 30):
        throttle.failed("alice", f"10.0.{n}.1", now=50.0)

    assert throttle.wait_seconds("alice", "10.9.9.9", now=50.0) == MAX_USER_WAIT_SECONDS
    assert MAX_USER_WAIT_SECONDS == 30
    assert throttle.wait_seconds("alice", "10.9.9.9", now=50.0 + MAX_USER_WAIT_SECONDS) == 0


def test_users_file_mode_checked_every_load(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    store.set_password("alice", "correct horse battery")
    assert "alice" in store.users()
    info = (tmp_path / "users.json").stat()

    os.chmod(tmp_path / "users.json", 0o644)
    os.utime(tmp_path / "users.json", ns=(info.st_atime_ns, info.st_mtime_ns))

    with pytest.raises(AuthFileError, match="chmod 600"):
        store.users()
