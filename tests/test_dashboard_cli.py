"""`hauswacht dashboard` and `dashboard passwd` as a user runs them, in real subprocesses."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.test_cli import HAUSWACHT, run_cli
from tests.test_dashboard_http import PASSWORD, USER, make_database


def passwd(folder: Path, user: str, password: str, lang: str = "en") -> subprocess.CompletedProcess:
    env = {**os.environ, "HAUSWACHT_LANG": lang}
    env.pop("HAUSWACHT_DB", None)
    return subprocess.run(
        [str(HAUSWACHT), "dashboard", "passwd", user, "--db", str(folder / "events.db")],
        input=f"{password}\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_passwd_creates_private_users_file(tmp_path: Path) -> None:
    created = passwd(tmp_path, "alice", "correct horse battery")
    changed = passwd(tmp_path, "alice", "another long password", lang="de")
    users = tmp_path / "dashboard-users.json"

    assert created.returncode == 0, created.stderr
    assert created.stdout == f"Created dashboard user alice in {users}\n"
    assert changed.returncode == 0, changed.stderr
    assert "Passwort von alice" in changed.stdout
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    assert "correct horse" not in users.read_text()


def test_passwd_rejects_short_password_and_bad_name(tmp_path: Path) -> None:
    short = passwd(tmp_path, "alice", "short")
    bad_name = passwd(tmp_path, "al/ice", "correct horse battery")

    assert short.returncode == 2
    assert short.stderr == "hauswacht: password rejected: it must have 8 to 1024 characters\n"
    assert bad_name.returncode == 2
    assert "invalid user name 'al/ice'" in bad_name.stderr
    assert not (tmp_path / "dashboard-users.json").exists()


def test_dashboard_rejects_bad_port(tmp_path: Path) -> None:
    result = run_cli("dashboard", "--port", "99999", "--db", str(tmp_path / "events.db"))

    assert result.returncode == 2
    assert result.stderr == (
        "hauswacht: invalid --port value '99999': expected a number from 1 to 65535\n"
    )


def test_dashboard_needs_a_user(tmp_path: Path) -> None:
    result = run_cli("dashboard", "--db", str(tmp_path / "events.db"))

    assert result.returncode == 1
    assert "no dashboard user exists" in result.stderr
    assert "hauswacht dashboard passwd USER" in result.stderr


def test_dashboard_warns_when_not_on_loopback(tmp_path: Path) -> None:
    # No user exists, so the command stops before it binds any socket.
    result = run_cli("dashboard", "--host", "0.0.0.0", "--db", str(tmp_path / "events.db"))

    assert result.returncode == 1
    assert "warning: the dashboard listens on 0.0.0.0" in result.stderr


def test_dashboard_help_in_german() -> None:
    result = run_cli("dashboard", "--help", lang="de")

    assert result.returncode == 0
    assert "das Web-Dashboard (mit Anmeldung)" in result.stdout
    assert "Adresse, auf der gelauscht wird" in result.stdout


def test_dashboard_serves_on_loopback(tmp_path: Path) -> None:
    make_database(tmp_path)
    port = free_port()
    env = {**os.environ, "HAUSWACHT_LANG": "en"}
    process = subprocess.Popen(
        [str(HAUSWACHT), "dashboard", "--port", str(port), "--db", str(tmp_path / "events.db"),
         "--timezone", "UTC"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    try:
        first_line = process.stdout.readline()
        deadline = time.monotonic() + 20
        response = None
        while response is None and time.monotonic() < deadline:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/login", timeout=2)
            except httpx.TransportError:
                time.sleep(0.05)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            login = http.post(
                "/login",
                data={"user": USER, "password": PASSWORD},
                headers={"origin": f"http://127.0.0.1:{port}"},
            )
            stats = http.get("/api/stats?from=2015-08-19T16:00:00Z&to=2015-08-19T18:00:00Z")
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)

    assert first_line.startswith("Dashboard for ")
    assert f"http://127.0.0.1:{port}/" in first_line
    assert response is not None and response.status_code == 200
    assert response.headers["x-frame-options"] == "DENY"
    assert login.status_code == 303
    assert stats.json()["requests"] == 11
    assert (tmp_path / "dashboard-secret.key").exists()
    assert stat.S_IMODE((tmp_path / "dashboard-secret.key").stat().st_mode) == 0o600


def test_dashboard_typo_db_creates_nothing(tmp_path: Path) -> None:
    typo = tmp_path / "hauswacht-dta" / "events.db"
    result = run_cli("dashboard", "--db", str(typo))

    assert result.returncode == 1
    assert "no dashboard user exists" in result.stderr
    assert f"the database {typo} does not exist either, so check --db" in result.stderr
    assert not typo.parent.exists()


def login_client_address(folder: Path, *options: str) -> str:
    """Serve the dashboard, send one wrong login with X-Forwarded-For, return the logged line."""
    port = free_port()
    env = {**os.environ, "HAUSWACHT_LANG": "en"}
    process = subprocess.Popen(
        [str(HAUSWACHT), "dashboard", "--port", str(port), "--db", str(folder / "events.db"),
         "--timezone", "UTC", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    try:
        process.stdout.readline()
        deadline = time.monotonic() + 20
        response = None
        while response is None and time.monotonic() < deadline:
            try:
                response = httpx.post(
                    f"http://127.0.0.1:{port}/login",
                    data={"user": USER, "password": "wrong password"},
                    headers={"x-forwarded-for": "203.0.113.9"},
                    timeout=10,
                )
            except httpx.TransportError:
                time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    assert response is not None and response.status_code == 401
    lines = [line for line in stderr.splitlines() if "dashboard login failed" in line]
    assert len(lines) == 1, stderr
    return lines[0]


def test_dashboard_ignores_forwarded_for(tmp_path: Path) -> None:
    make_database(tmp_path)

    untrusted = login_client_address(tmp_path)
    trusted = login_client_address(tmp_path, "--trusted-proxy", "127.0.0.1")

    assert untrusted.endswith("from 127.0.0.1")
    assert trusted.endswith("from 203.0.113.9")


def test_users_file_open_to_others_in_german(tmp_path: Path) -> None:
    assert passwd(tmp_path, "alice", "correct horse battery").returncode == 0
    users = tmp_path / "dashboard-users.json"
    users.chmod(0o644)

    changed = passwd(tmp_path, "alice", "another long password", lang="de")
    served = run_cli("dashboard", "--db", str(tmp_path / "events.db"), lang="de")

    expected = (
        f"hauswacht: {users}: die Rechte -rw-r--r-- lassen andere Benutzer sie lesen; "
        f"ausführen: chmod 600 {users}\n"
    )
    assert changed.returncode == 1
    assert changed.stderr == expected
    assert served.returncode == 1
    assert served.stderr == expected


def test_key_folder_is_not_a_file(tmp_path: Path) -> None:
    from hauswacht.dashboard import DashboardConfigError, create_app

    folder = tmp_path / "key"
    folder.mkdir(mode=0o700)
    with pytest.raises(DashboardConfigError) as caught:
        create_app(tmp_path / "events.db", secret_key_file=folder)
    assert str(caught.value) == f"{folder}: is not a file; pass the path of a file"
