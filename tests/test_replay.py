"""`hauswacht replay` on the real Apache log and on crafted files with broken lines.

Expected figures come from the log itself with the test's own simple
parsing (string splits and strptime), not from hauswacht.ops.replay.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os
import pty
import re
import sqlite3
import stat
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from hauswacht.ops.replay import MAX_PATH_LENGTH, REPLAY_BATCH_SIZE, route_for_path
from tests.test_cli import HAUSWACHT, run_cli

HOUR_MS = 3_600_000
CUT_LINE = 8899  # the line of apache_logs whose user agent has no closing quote


def log_file(shared_data: Path) -> Path:
    return shared_data / "access_logs" / "apache_logs"


def expected_from_log(path: Path) -> dict[str, Counter]:
    """Count requests per hour, status class and route with plain string splits."""
    per_hour: Counter[int] = Counter()
    per_class: Counter[str] = Counter()
    per_hour_4xx: Counter[int] = Counter()
    per_hour_5xx: Counter[int] = Counter()
    per_route: Counter[tuple[str, str]] = Counter()
    with path.open(encoding="utf-8", errors="replace") as file:
        for line in file:
            time_text = line.split("[", 1)[1].split("]", 1)[0]
            moment = dt.datetime.strptime(time_text, "%d/%b/%Y:%H:%M:%S %z")
            hour = int(moment.timestamp()) * 1000 // HOUR_MS
            status = int(line.split('"')[2].split()[0])
            per_hour[hour] += 1
            per_class[f"{status // 100}xx"] += 1
            if 400 <= status < 500:
                per_hour_4xx[hour] += 1
            if status >= 500:
                per_hour_5xx[hour] += 1
            method, target = line.split('"')[1].split(" ")[:2]
            path = target.split("?")[0][:MAX_PATH_LENGTH]
            route = "/".join("{id}" if part.isdigit() else part for part in path.split("/"))
            per_route[(method, route)] += 1
    return {
        "per_hour": per_hour,
        "per_class": per_class,
        "per_hour_4xx": per_hour_4xx,
        "per_hour_5xx": per_hour_5xx,
        "per_route": per_route,
    }


@pytest.fixture(scope="module")
def replayed(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Replay the real log once for the module; return the database, the output and expectations."""
    database = tmp_path_factory.mktemp("replay") / "events.db"
    result = run_cli("replay", str(log_file(shared_data)), "--db", str(database))
    return {
        "database": database,
        "result": result,
        "expected": expected_from_log(log_file(shared_data)),
    }


def query(database: Path, sql: str, *params: object) -> list[tuple]:
    conn = sqlite3.connect(database)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def test_replay_real_log_summary(replayed: dict) -> None:
    result = replayed["result"]

    assert result.returncode == 0, result.stderr
    assert "Lines read: 10,000 from" in result.stdout
    assert "Requests imported: 10,000 into" in result.stdout
    assert "Lines skipped: 0 (malformed)" in result.stdout
    assert "Lines salvaged: 1 with a cut-off referer or user agent" in result.stdout
    assert f"line {CUT_LINE}" in result.stdout
    assert "Time span: 2015-05-17 10:05:00 to 2015-05-20 21:05:59 UTC" in result.stdout
    assert "Traceback" not in result.stderr


def test_replay_real_log_counts_per_hour(replayed: dict) -> None:
    expected = replayed["expected"]["per_hour"]
    rows = query(
        replayed["database"],
        "SELECT hour, sum(count) FROM request_rollups GROUP BY hour ORDER BY hour",
    )

    assert len(expected) == 84
    assert len(rows) == 84
    assert dict(rows) == dict(expected)
    assert query(replayed["database"], "SELECT count(*) FROM requests") == [(10_000,)]


def test_replay_real_log_counts_per_status_class(replayed: dict) -> None:
    expected = replayed["expected"]["per_class"]
    rows = query(
        replayed["database"],
        "SELECT status / 100, sum(count) FROM request_rollups GROUP BY status / 100",
    )

    assert {f"{hundreds}xx": count for hundreds, count in rows} == dict(expected)
    assert sum(expected.values()) == 10_000


def test_replay_real_log_stats_json(replayed: dict) -> None:
    expected = replayed["expected"]
    result = run_cli("stats", "--db", str(replayed["database"]), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)

    assert data["requests"] == 10_000
    for status_class in ("2xx", "3xx", "4xx", "5xx"):
        assert data["status"][status_class] == expected["per_class"][status_class]
    assert data["status"]["1xx"] == 0
    # The log has no request-time field, so no latency is known.
    assert data["latency_ms"] == {"p50": None, "p95": None, "p99": None, "avg": None, "max": None}
    assert len(data["hours"]) == 84
    first = min(expected["per_hour"])
    assert data["hours"][0]["hour"] == "2015-05-17T10:00:00Z"
    assert data["hours"][0]["requests"] == expected["per_hour"][first]
    for hour in data["hours"]:
        hour_number = int(dt.datetime.fromisoformat(hour["hour"]).timestamp()) * 1000 // HOUR_MS
        assert hour["4xx"] == expected["per_hour_4xx"][hour_number]
        assert hour["5xx"] == expected["per_hour_5xx"][hour_number]
        assert hour["p95_ms"] is None


def test_replay_collapses_id_segments(replayed: dict) -> None:
    # This log's only id-like segments are numbers (/images/web/2009/banner.png).
    expected = replayed["expected"]["per_route"]
    rows = query(
        replayed["database"],
        "SELECT method, route, sum(count) FROM request_rollups GROUP BY method, route",
    )
    distinct_paths = query(replayed["database"], "SELECT count(DISTINCT path) FROM requests")

    assert {(method, route): count for method, route, count in rows} == dict(expected)
    assert expected[("GET", "/images/web/{id}/banner.png")] == 516
    assert len(rows) < distinct_paths[0][0]


def test_replay_salvages_cut_user_agent(replayed: dict, shared_data: Path) -> None:
    line = log_file(shared_data).read_text(errors="replace").splitlines()[CUT_LINE - 1]
    client = line.split(" ", 1)[0]
    cut_agent = line.rsplit('"', 1)[1]
    rows = query(
        replayed["database"],
        "SELECT method, path, status, response_bytes, user_agent FROM requests WHERE client = ? "
        "AND user_agent = ?",
        client,
        cut_agent,
    )

    assert cut_agent.startswith("Mozilla/5.0 (compatible; Googlebot/2.1")
    assert rows == [("GET", "/scripts/grok-py-test/configlib.py", 200, 235, cut_agent)]


def test_replay_keeps_client_agent_and_dash_bytes(replayed: dict) -> None:
    # Line 8896 of the log: "GET /robots.txt ... 200 -" by bingbot.
    rows = query(
        replayed["database"],
        "SELECT response_bytes, user_agent FROM requests WHERE client = '157.55.33.15' "
        "AND path = '/robots.txt' AND ts = ?",
        int(dt.datetime(2015, 5, 20, 12, 5, 34, tzinfo=dt.UTC).timestamp() * 1000),
    )

    assert rows == [
        (None, "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)")
    ]


CRAFTED_LINES = [
    # 1: combined, valid
    '10.0.0.1 - - [17/May/2015:10:05:03 +0000] "GET /api/tours/17?debug=1 HTTP/1.1" 200 512 '
    '"-" "curl/8.0"',
    # 2: not a log line
    "hello world",
    # 3: impossible month
    '10.0.0.2 - - [17/Foo/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 1 "-" "-"',
    # 4: no request (Apache logs a timed-out connection like this)
    '10.0.0.3 - - [17/May/2015:10:06:00 +0000] "-" 408 - "-" "-"',
    # 5: common format with nginx $request_time in seconds, offset +02:00
    '10.0.0.4 - alice [17/May/2015:12:07:00 +0200] "POST /api/tours/17/optimize HTTP/1.1" 201 '
    "34 0.250",
    # 6: empty line
    "",
    # 7: TLS handshake bytes sent to a plain HTTP port
    '10.0.0.5 - - [17/May/2015:10:08:00 +0000] "\\x16\\x03\\x01\\x00" 400 166 "-" "-"',
    # 8: status out of range
    '10.0.0.6 - - [17/May/2015:10:09:00 +0000] "GET / HTTP/1.1" 999 1 "-" "-"',
    # 9: cut inside the request
    '10.0.0.7 - - [17/May/2015:10:10:00 +0000] "GET /api/drivers/d-4/ro',
    # 10: combined with Apache %D in microseconds, offset -07:00
    '10.0.0.8 - - [17/May/2015:03:11:00 -0700] "GET '
    '/api/drivers/550e8400-e29b-41d4-a716-446655440000/route HTTP/1.1" 200 2048 '
    '"https://app.example/" "Mozilla/5.0" 1500',
    # 11: user agent cut off (salvaged)
    '10.0.0.9 - - [17/May/2015:10:12:00 +0000] "GET /files/9f86d081884c7d65/a.txt HTTP/1.1" '
    '404 - "-" "Mozilla/5.0 (X11; Lin',
    # 12: bytes field is neither a number nor "-"
    '10.0.0.10 - - [17/May/2015:10:13:00 +0000] "GET / HTTP/1.1" 200 12kB',
]
CRAFTED_SKIPPED = {
    2: "line 2: no [time] field",
    3: "line 3: invalid time [17/Foo/2015:10:05:03 +0000]",
    4: "line 4: no request line (logged as “-”)",
    6: "line 6: empty line",
    7: "line 7: invalid request line",
    8: "line 8: status 999 is outside 100-599",
    9: "line 9: no quoted request field",
    12: "line 12: does not match the common or combined log format",
}


def write_crafted(path: Path) -> Path:
    path.write_text("\n".join(CRAFTED_LINES) + "\n", encoding="utf-8")
    return path


def check_crafted_import(result: subprocess.CompletedProcess, database: Path) -> None:
    assert result.returncode == 0, result.stderr
    assert "Lines read: 12 from" in result.stdout
    assert "Requests imported: 4 into" in result.stdout
    assert "Lines skipped: 8 (malformed)" in result.stdout
    for text in CRAFTED_SKIPPED.values():
        assert text in result.stdout
    assert "Lines salvaged: 1" in result.stdout
    assert "line 11" in result.stdout

    rows = query(
        database,
        "SELECT ts, method, route, path, status, duration_ms, response_bytes, client, user_agent "
        "FROM requests ORDER BY client",
    )
    assert rows == [
        (
            int(dt.datetime(2015, 5, 17, 10, 5, 3, tzinfo=dt.UTC).timestamp() * 1000),
            "GET",
            "/api/tours/{id}",
            "/api/tours/17",
            200,
            None,
            512,
            "10.0.0.1",
            "curl/8.0",
        ),
        (
            int(dt.datetime(2015, 5, 17, 10, 7, tzinfo=dt.UTC).timestamp() * 1000),
            "POST",
            "/api/tours/{id}/optimize",
            "/api/tours/17/optimize",
            201,
            250.0,
            34,
            "10.0.0.4",
            None,
        ),
        (
            int(dt.datetime(2015, 5, 17, 10, 11, tzinfo=dt.UTC).timestamp() * 1000),
            "GET",
            "/api/drivers/{id}/route",
            "/api/drivers/550e8400-e29b-41d4-a716-446655440000/route",
            200,
            1.5,
            2048,
            "10.0.0.8",
            "Mozilla/5.0",
        ),
        (
            int(dt.datetime(2015, 5, 17, 10, 12, tzinfo=dt.UTC).timestamp() * 1000),
            "GET",
            "/files/{id}/a.txt",
            "/files/9f86d081884c7d65/a.txt",
            404,
            None,
            None,
            "10.0.0.9",
            "Mozilla/5.0 (X11; Lin",
        ),
    ]


def test_replay_malformed_lines_reported(tmp_path: Path, db_path: Path) -> None:
    log = write_crafted(tmp_path / "access.log")
    result = run_cli("replay", str(log), "--db", str(db_path))

    check_crafted_import(result, db_path)


def test_replay_gzip_log(tmp_path: Path, db_path: Path) -> None:
    log = tmp_path / "access.log.1.gz"
    with gzip.open(log, "wt", encoding="utf-8") as file:
        file.write("\n".join(CRAFTED_LINES) + "\n")
    result = run_cli("replay", str(log), "--db", str(db_path))

    check_crafted_import(result, db_path)


def test_replay_latency_from_request_time(tmp_path: Path, db_path: Path) -> None:
    log = write_crafted(tmp_path / "access.log")
    assert run_cli("replay", str(log), "--db", str(db_path)).returncode == 0
    result = run_cli("stats", "--db", str(db_path), "--json")
    data = json.loads(result.stdout)

    assert data["requests"] == 4
    assert data["status"] == {"1xx": 0, "2xx": 3, "3xx": 0, "4xx": 1, "5xx": 0}
    assert data["latency_ms"]["max"] == 250.0
    assert data["latency_ms"]["avg"] == 125.75


def test_replay_reasons_in_german(tmp_path: Path, db_path: Path) -> None:
    log = write_crafted(tmp_path / "access.log")
    result = run_cli("replay", str(log), "--db", str(db_path), lang="de")

    assert result.returncode == 0, result.stderr
    assert "Gelesene Zeilen: 12 aus" in result.stdout
    assert "Übersprungene Zeilen: 8 (fehlerhaft)" in result.stdout
    assert "Zeile 6: leere Zeile" in result.stdout
    assert "Zeile 8: Status 999 liegt nicht zwischen 100 und 599" in result.stdout
    assert "Zeile 4: keine Anfragezeile" in result.stdout


def test_replay_lists_first_ten_skipped(tmp_path: Path, db_path: Path) -> None:
    good = CRAFTED_LINES[0]
    lines = [good] + [f"garbage {n}" for n in range(15)] + [good]
    log = tmp_path / "noisy.log"
    log.write_text("\n".join(lines) + "\n")
    result = run_cli("replay", str(log), "--db", str(db_path))

    assert result.returncode == 0, result.stderr
    assert "Lines skipped: 15 (malformed)" in result.stdout
    assert "line 2: " in result.stdout
    assert "line 11: " in result.stdout
    assert "line 12: " not in result.stdout
    assert "… and 5 more" in result.stdout
    assert query(db_path, "SELECT count(*) FROM requests") == [(2,)]


def test_replay_nothing_importable(tmp_path: Path, db_path: Path) -> None:
    log = tmp_path / "notes.txt"
    log.write_text("first\nsecond\n")
    result = run_cli("replay", str(log), "--db", str(db_path))

    assert result.returncode == 1
    assert "Lines skipped: 2 (malformed)" in result.stdout
    assert str(log) in result.stderr
    assert "no line could be imported" in result.stderr


@pytest.mark.parametrize("lang", ["en", "de"])
def test_replay_missing_log(tmp_path: Path, db_path: Path, lang: str) -> None:
    missing = tmp_path / "access.log"
    result = run_cli("replay", str(missing), "--db", str(db_path), lang=lang)

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(missing) in lines[0]
    assert ("no such file" if lang == "en" else "Datei nicht gefunden") in lines[0]
    assert not db_path.exists()  # no database is created for a missing log


def test_replay_into_foreign_database(tmp_path: Path) -> None:
    log = write_crafted(tmp_path / "access.log")
    foreign = tmp_path / "shop.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    result = run_cli("replay", str(log), "--db", str(foreign))

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(foreign) in lines[0]
    assert "not a Hauswacht events database" in lines[0]
    assert query(foreign, "SELECT name FROM sqlite_schema") == [("orders",)]


def test_replay_progress_bar_on_terminal(tmp_path: Path, db_path: Path, shared_data: Path) -> None:
    controller, terminal = pty.openpty()
    env = {key: value for key, value in os.environ.items() if key != "HAUSWACHT_DB"}
    env["HAUSWACHT_LANG"] = "en"
    process = subprocess.run(
        [str(HAUSWACHT), "replay", str(log_file(shared_data)), "--db", str(db_path)],
        stdout=subprocess.PIPE,
        stderr=terminal,
        env=env,
        timeout=120,
    )
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal side is closed and drained
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)

    assert process.returncode == 0
    text = output.decode()
    assert "\r[" in text
    assert "100%" in text
    assert "10,000 lines" in text


def test_replay_no_progress_bar_when_piped(replayed: dict) -> None:
    assert "\r" not in replayed["result"].stderr
    assert "lines" not in replayed["result"].stderr


# --- importing the same log again (bookkeeping in replay_files) ------------------------


def run_replay_input(
    data: bytes, *args: str, lang: str = "en", umask: int | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `hauswacht replay ARGS` with `data` on standard input."""
    env = {key: value for key, value in os.environ.items() if key != "HAUSWACHT_DB"}
    env["HAUSWACHT_LANG"] = lang
    process = subprocess.run(
        [str(HAUSWACHT), "replay", *args],
        input=data,
        capture_output=True,
        env=env,
        timeout=120,
        preexec_fn=None if umask is None else lambda: os.umask(umask),
    )
    return subprocess.CompletedProcess(
        process.args, process.returncode, process.stdout.decode(), process.stderr.decode()
    )


def imported_count(output: str) -> int:
    """Return N of "Requests imported: N" in a replay summary, 0 when there is none."""
    match = re.search(r"^Requests imported: ([\d,]+)", output, re.MULTILINE)
    return 0 if match is None else int(match.group(1).replace(",", ""))


def test_replay_twice_imports_nothing_new(replayed: dict, shared_data: Path) -> None:
    database = replayed["database"]
    result = run_cli("replay", str(log_file(shared_data)), "--db", str(database))

    assert result.returncode == 0, result.stderr
    assert "already imported on " in result.stdout
    assert "(10,000 lines, 10,000 requests); nothing new." in result.stdout
    assert "Requests imported" not in result.stdout
    assert query(database, "SELECT count(*) FROM requests") == [(10_000,)]
    assert query(database, "SELECT sum(count) FROM request_rollups") == [(10_000,)]


def test_replay_records_imported_log(replayed: dict, shared_data: Path) -> None:
    log = log_file(shared_data)
    content = log.read_bytes()
    rows = query(
        replayed["database"],
        "SELECT head_sha256, head_bytes, source, imported_bytes, imported_lines, "
        "content_sha256, requests, skipped, first_ts, last_ts, claim_id FROM replay_files",
    )

    assert rows == [
        (
            hashlib.sha256(content[: 64 * 1024]).hexdigest(),
            64 * 1024,
            str(log),
            len(content),
            10_000,
            hashlib.sha256(content).hexdigest(),
            10_000,
            0,
            int(dt.datetime(2015, 5, 17, 10, 5, tzinfo=dt.UTC).timestamp() * 1000),
            int(dt.datetime(2015, 5, 20, 21, 5, 59, tzinfo=dt.UTC).timestamp() * 1000),
            None,
        )
    ]


def test_replay_grown_log_imports_new_lines(
    replayed: dict, shared_data: Path, tmp_path: Path, db_path: Path
) -> None:
    lines = log_file(shared_data).read_bytes().splitlines(keepends=True)
    log = tmp_path / "access.log"
    log.write_bytes(b"".join(lines[:6000]))
    first = run_cli("replay", str(log), "--db", str(db_path))
    log.write_bytes(b"".join(lines))
    second = run_cli("replay", str(log), "--db", str(db_path))

    assert first.returncode == 0, first.stderr
    assert imported_count(first.stdout) == 6000
    assert second.returncode == 0, second.stderr
    assert "Resumed after line 6,000: the lines before were imported on " in second.stdout
    assert "Lines read: 4,000 from" in second.stdout
    assert imported_count(second.stdout) == 4000
    assert f"line {CUT_LINE}" in second.stdout  # line numbers count from the top of the log
    rows = query(db_path, "SELECT hour, sum(count) FROM request_rollups GROUP BY hour")
    assert dict(rows) == dict(replayed["expected"]["per_hour"])
    assert query(db_path, "SELECT count(*) FROM requests") == [(10_000,)]


def test_replay_small_log_grows(tmp_path: Path, db_path: Path) -> None:
    # Below 64 KiB the identity covers the whole content, and it grows with the log.
    log = tmp_path / "access.log"
    log.write_text(CRAFTED_LINES[0] + "\n")
    first = run_cli("replay", str(log), "--db", str(db_path))
    log.write_text(CRAFTED_LINES[0] + "\n" + CRAFTED_LINES[4] + "\n")
    second = run_cli("replay", str(log), "--db", str(db_path))
    third = run_cli("replay", str(log), "--db", str(db_path))

    assert imported_count(first.stdout) == 1
    assert "Resumed after line 1:" in second.stdout
    assert imported_count(second.stdout) == 1
    assert "(2 lines, 2 requests); nothing new." in third.stdout
    assert query(db_path, "SELECT path FROM requests ORDER BY id") == [
        ("/api/tours/17",),
        ("/api/tours/17/optimize",),
    ]
    assert query(db_path, "SELECT head_bytes, imported_lines FROM replay_files") == [
        (log.stat().st_size, 2)
    ]


def test_replay_force_imports_again(tmp_path: Path, db_path: Path) -> None:
    log = write_crafted(tmp_path / "access.log")
    run_cli("replay", str(log), "--db", str(db_path))
    result = run_cli("replay", str(log), "--db", str(db_path), "--force")

    assert result.returncode == 0, result.stderr
    assert "Imported again from the first line (--force)" in result.stdout
    assert imported_count(result.stdout) == 4
    assert query(db_path, "SELECT count(*) FROM requests") == [(8,)]
    assert query(db_path, "SELECT requests, imported_lines FROM replay_files") == [(4, 12)]


def test_replay_gzip_copy_is_same_log(tmp_path: Path, db_path: Path) -> None:
    # logrotate compresses access.log.1 into access.log.1.gz.
    log = write_crafted(tmp_path / "access.log.1")
    compressed = tmp_path / "access.log.1.gz"
    compressed.write_bytes(gzip.compress(log.read_bytes()))
    run_cli("replay", str(log), "--db", str(db_path))
    result = run_cli("replay", str(compressed), "--db", str(db_path))

    assert result.returncode == 0, result.stderr
    assert "(12 lines, 4 requests); nothing new." in result.stdout
    assert query(db_path, "SELECT count(*) FROM requests") == [(4,)]


def test_replay_parallel_runs_import_once(shared_data: Path, db_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "HAUSWACHT_DB"}
    env["HAUSWACHT_LANG"] = "en"
    command = [str(HAUSWACHT), "replay", str(log_file(shared_data)), "--db", str(db_path)]
    processes = [
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for _ in range(3)
    ]
    results = [(process.wait(timeout=120), *process.communicate()) for process in processes]

    assert query(db_path, "SELECT count(*) FROM requests") == [(10_000,)]
    assert sum(imported_count(stdout) for _, stdout, _ in results) == 10_000
    for returncode, stdout, stderr in results:
        if returncode == 0:
            assert imported_count(stdout) == 10_000 or "nothing new" in stdout
        else:
            assert returncode == 1
            assert "is being imported by another replay (process " in stderr
            assert stdout == ""


def test_replay_resumes_after_kill(shared_data: Path, tmp_path: Path, db_path: Path) -> None:
    content = log_file(shared_data).read_bytes()
    lines = content.splitlines(keepends=True)
    env = {key: value for key, value in os.environ.items() if key != "HAUSWACHT_DB"}
    process = subprocess.Popen(
        [str(HAUSWACHT), "replay", "-", "--db", str(db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    # The first batch of REPLAY_BATCH_SIZE lines commits; the rest waits in memory
    # while the process waits for more input.
    assert process.stdin is not None
    process.stdin.write(b"".join(lines[:3000]))
    process.stdin.flush()
    deadline = time.monotonic() + 60
    committed: list[tuple] = []
    while time.monotonic() < deadline and committed != [(REPLAY_BATCH_SIZE,)]:
        time.sleep(0.05)
        try:
            committed = query(db_path, "SELECT imported_lines FROM replay_files")
        except sqlite3.OperationalError:  # not created yet
            continue
    process.kill()
    process.wait(timeout=30)
    process.stdin.close()

    assert committed == [(REPLAY_BATCH_SIZE,)]
    assert query(db_path, "SELECT count(*) FROM requests") == [(REPLAY_BATCH_SIZE,)]
    assert query(db_path, "SELECT claim_pid FROM replay_files") == [(process.pid,)]

    result = run_cli("replay", str(log_file(shared_data)), "--db", str(db_path))
    assert result.returncode == 0, result.stderr
    assert f"Resumed after line {REPLAY_BATCH_SIZE:,}:" in result.stdout
    assert imported_count(result.stdout) == 10_000 - REPLAY_BATCH_SIZE
    assert query(db_path, "SELECT count(*) FROM requests") == [(10_000,)]
    assert query(db_path, "SELECT claim_pid, imported_bytes FROM replay_files") == [
        (None, len(content))
    ]


def test_replay_changed_content_rejected(tmp_path: Path, db_path: Path, shared_data: Path) -> None:
    lines = log_file(shared_data).read_bytes().splitlines(keepends=True)
    log = tmp_path / "access.log"
    log.write_bytes(b"".join(lines[:5000]))
    run_cli("replay", str(log), "--db", str(db_path))
    # Same first 64 KiB (under 300 lines), a different line 4000, more lines after.
    changed = [*lines[:3999], lines[0], *lines[4000:6000]]
    log.write_bytes(b"".join(changed))
    rejected = run_cli("replay", str(log), "--db", str(db_path))
    forced = run_cli("replay", str(log), "--db", str(db_path), "--force")

    assert rejected.returncode == 1
    offset = sum(len(line) for line in lines[:5000])
    assert re.fullmatch(
        f"hauswacht: {re.escape(str(log))}: the first 64 KiB match a log imported on "
        rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC, but the content up to byte {offset:,} "
        "differs; pass --force to import the whole log\n",
        rejected.stderr,
    )
    assert forced.returncode == 0, forced.stderr
    assert imported_count(forced.stdout) == 6000
    assert query(db_path, "SELECT count(*) FROM requests") == [(11_000,)]


# --- read errors, empty and junk logs ---------------------------------------------------


def test_replay_damaged_gzip_stores_and_resumes(
    shared_data: Path, tmp_path: Path, db_path: Path
) -> None:
    whole = gzip.compress(log_file(shared_data).read_bytes())
    damaged = tmp_path / "access.log.2.gz"
    damaged.write_bytes(whole[: len(whole) // 2])
    first = run_cli("replay", str(damaged), "--db", str(db_path))
    stored = query(db_path, "SELECT count(*) FROM requests")[0][0]

    assert first.returncode == 1
    assert 0 < stored < 10_000
    assert f"Lines read: {stored:,} from {damaged}" in first.stdout
    assert imported_count(first.stdout) == stored
    assert first.stderr.strip() == (
        f"hauswacht: {damaged}: cannot read on after line {stored:,} (the gzip data ends "
        "early); the lines before are stored, and replaying the repaired log imports only "
        "the rest"
    )
    assert query(db_path, "SELECT imported_lines, requests FROM replay_files") == [(stored, stored)]

    repaired = tmp_path / "access.log.2.repaired.gz"
    repaired.write_bytes(whole)
    second = run_cli("replay", str(repaired), "--db", str(db_path))
    assert second.returncode == 0, second.stderr
    assert f"Resumed after line {stored:,}:" in second.stdout
    assert query(db_path, "SELECT count(*) FROM requests") == [(10_000,)]


@pytest.mark.parametrize(
    ("name", "content"),
    [("access.log", b""), ("access.log.1.gz", gzip.compress(b""))],
    ids=["plain", "gzip"],
)
def test_replay_empty_log_is_no_error(tmp_path: Path, name: str, content: bytes) -> None:
    log = tmp_path / name
    log.write_bytes(content)
    database = tmp_path / "data" / "events.db"
    result = run_cli("replay", str(log), "--db", str(database))

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{log}: empty; nothing to import"
    assert result.stderr == ""
    assert not (tmp_path / "data").exists()


def test_replay_junk_log_creates_no_database(tmp_path: Path) -> None:
    log = tmp_path / "notes.txt"
    log.write_text("first\nsecond\n")
    database = tmp_path / "data" / "events.db"
    result = run_cli("replay", str(log), "--db", str(database))

    assert result.returncode == 1
    assert "Requests imported: 0\n" in result.stdout
    assert "no line could be imported" in result.stderr
    assert not (tmp_path / "data").exists()


def test_replay_incomplete_last_line_left_for_later(tmp_path: Path, db_path: Path) -> None:
    log = tmp_path / "access.log"
    cut = CRAFTED_LINES[4][:60]  # a logger still writing line 2
    log.write_text(CRAFTED_LINES[0] + "\n" + cut)
    first = run_cli("replay", str(log), "--db", str(db_path))
    log.write_text(CRAFTED_LINES[0] + "\n" + CRAFTED_LINES[4] + "\n")
    second = run_cli("replay", str(log), "--db", str(db_path))

    assert first.returncode == 0, first.stderr
    assert "Line 2 has no line end and is not a complete log line" in first.stdout
    assert "Lines skipped: 0 (malformed)" in first.stdout
    assert "Resumed after line 1:" in second.stdout
    assert imported_count(second.stdout) == 1
    assert "Lines skipped: 0 (malformed)" in second.stdout
    assert query(db_path, "SELECT count(*) FROM requests") == [(2,)]


def test_replay_creates_each_folder_0700(tmp_path: Path) -> None:
    log = write_crafted(tmp_path / "access.log")
    database = tmp_path / "um" / "sub" / "events.db"
    result = run_replay_input(b"", str(log), "--db", str(database), umask=0)

    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((tmp_path / "um").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "um" / "sub").stat().st_mode) == 0o700
    assert stat.S_IMODE(database.stat().st_mode) == 0o600


# --- field validation -------------------------------------------------------------------

ABSURD_LINES = [
    # 1: valid, nginx request time 0.125 s
    '10.0.0.1 - - [17/May/2015:10:05:03 +0000] "GET /a HTTP/1.1" 200 512 "-" "curl" 0.125',
    # 2: a 26-digit %D field (microseconds)
    '10.0.0.1 - - [17/May/2015:10:05:03 +0000] "GET /a HTTP/1.1" 200 512 "-" "curl" '
    "12345678901234567890123456",
    # 3: a 23-digit byte count
    '10.0.0.1 - - [17/May/2015:10:05:03 +0000] "GET /a HTTP/1.1" 200 12345678901234567890123 '
    '"-" "curl"',
    # 4: offset -9999
    '10.0.0.1 - - [17/May/2015:10:05:03 -9999] "GET /a HTTP/1.1" 200 5 "-" "curl"',
    # 5: year 0001
    '10.0.0.1 - - [16/May/0001:20:00:00 +0000] "GET /a HTTP/1.1" 200 5 "-" "curl"',
    # 6: 25 hours in seconds
    '10.0.0.1 - - [17/May/2015:10:05:03 +0000] "GET /a HTTP/1.1" 200 5 "-" "curl" 90000.0',
    # 7: offset +1400 is the largest real one, 24 h the longest accepted request time
    '10.0.0.1 - - [18/May/2015:00:05:03 +1400] "GET /a HTTP/1.1" 200 5 "-" "curl" 86400.000',
    # 8: offset +1401
    '10.0.0.1 - - [17/May/2015:10:05:03 +1401] "GET /a HTTP/1.1" 200 5 "-" "curl"',
    # 9: 1969 in UTC
    '10.0.0.1 - - [01/Jan/1970:00:30:00 +0100] "GET /a HTTP/1.1" 200 5 "-" "curl"',
    # 10: 1 TiB, the largest accepted response size
    '10.0.0.1 - - [17/May/2015:10:05:03 +0000] "GET /a HTTP/1.1" 200 1099511627776 "-" "curl"',
    # 11: one byte more
    '10.0.0.1 - - [17/May/2015:10:05:03 +0000] "GET /a HTTP/1.1" 200 1099511627777 "-" "curl"',
]


def test_replay_rejects_absurd_values(tmp_path: Path, db_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text("\n".join(ABSURD_LINES) + "\n")
    result = run_cli("replay", str(log), "--db", str(db_path))
    stats = json.loads(run_cli("stats", "--db", str(db_path), "--json").stdout)

    assert result.returncode == 0, result.stderr
    assert "Requests imported: 3 into" in result.stdout
    assert "Lines skipped: 8 (malformed)" in result.stdout
    expected = [
        "line 2: request time 12345678901234567890123456 is not between 0 and 24 hours",
        "line 3: response size 12345678901234567890123 is above 1 TiB",
        "line 4: time zone offset -9999 is outside -14:00 to +14:00",
        "line 5: time [16/May/0001:20:00:00 +0000] is outside the years 1970 to 9999 (UTC)",
        "line 6: request time 90000.0 is not between 0 and 24 hours",
        "line 8: time zone offset +1401 is outside -14:00 to +14:00",
        "line 9: time [01/Jan/1970:00:30:00 +0100] is outside the years 1970 to 9999 (UTC)",
        "line 11: response size 1099511627777 is above 1 TiB",
    ]
    for text in expected:
        assert f"  {text}\n" in result.stdout
    assert query(db_path, "SELECT max(response_bytes) FROM requests") == [(2**40,)]
    assert stats["latency_ms"]["max"] == 86_400_000.0
    assert stats["requests"] == 3
    assert [hour["hour"] for hour in stats["hours"]] == ["2015-05-17T10:00:00Z"]


# --- formats and decoding ----------------------------------------------------------------

NGINX_MAIN_LINES = [
    # nginx's stock `main` format: combined + "$http_x_forwarded_for"
    '10.0.0.1 - - [17/May/2015:10:05:03 +0000] "GET /api/tours/17 HTTP/1.1" 200 512 "-" '
    '"curl/8.0" "203.0.113.9"',
    # main + $request_time + $upstream_response_time
    '10.0.0.2 - - [17/May/2015:10:05:04 +0000] "GET /api/tours/18 HTTP/1.1" 200 512 "-" '
    '"curl/8.0" "203.0.113.9, 10.0.0.7" 0.250 0.249',
    # combined + "$http_x_forwarded_for" unset + $request_time
    '10.0.0.3 - - [17/May/2015:10:05:05 +0000] "GET /api/tours/19 HTTP/1.1" 200 512 "-" '
    '"curl/8.0" "-" 0.125',
    # combined + "-" request time (unknown)
    '10.0.0.4 - - [17/May/2015:10:05:06 +0000] "GET /api/tours/20 HTTP/1.1" 200 512 "-" '
    '"curl/8.0" -',
]


def test_replay_nginx_main_format(tmp_path: Path, db_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text("\n".join(NGINX_MAIN_LINES) + "\n")
    result = run_cli("replay", str(log), "--db", str(db_path))

    assert result.returncode == 0, result.stderr
    assert "Requests imported: 4 into" in result.stdout
    assert "Lines skipped: 0 (malformed)" in result.stdout
    assert query(
        db_path, "SELECT client, route, duration_ms, user_agent FROM requests ORDER BY id"
    ) == [
        ("10.0.0.1", "/api/tours/{id}", None, "curl/8.0"),
        ("10.0.0.2", "/api/tours/{id}", 250.0, "curl/8.0"),
        ("10.0.0.3", "/api/tours/{id}", 125.0, "curl/8.0"),
        ("10.0.0.4", "/api/tours/{id}", None, "curl/8.0"),
    ]


def test_replay_from_stdin(tmp_path: Path, db_path: Path) -> None:
    data = ("\n".join(CRAFTED_LINES) + "\n").encode()
    first = run_replay_input(data, "-", "--db", str(db_path))
    second = run_replay_input(data, "-", "--db", str(db_path))

    check_crafted_import(first, db_path)
    assert "Lines read: 12 from stdin in" in first.stdout
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("stdin: already imported on ")
    assert query(db_path, "SELECT source FROM replay_files") == [("stdin",)]


def test_replay_from_named_pipe(tmp_path: Path, db_path: Path) -> None:
    # What `hauswacht replay <(zcat access.log.gz)` passes: a pipe under a path.
    pipe = tmp_path / "access.pipe"
    os.mkfifo(pipe)
    data = ("\n".join(CRAFTED_LINES) + "\n").encode()
    writer = threading.Thread(target=pipe.write_bytes, args=(data,))
    writer.start()
    result = run_cli("replay", str(pipe), "--db", str(db_path))
    writer.join(timeout=30)

    check_crafted_import(result, db_path)


def test_replay_ignores_byte_order_mark(tmp_path: Path, db_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"\xef\xbb\xbf" + ("\n".join(CRAFTED_LINES) + "\n").encode())
    result = run_cli("replay", str(log), "--db", str(db_path))

    check_crafted_import(result, db_path)


def test_replay_decodes_escapes(tmp_path: Path, db_path: Path) -> None:
    lines = [
        # nginx writes a quote as \x22 and UTF-8 bytes one by one
        '10.0.0.1 - - [17/May/2015:10:05:03 +0000] "GET /say/\\x22hi\\x22/\\xC3\\xA4 HTTP/1.1" '
        '200 5 "-" "agent \\x22x\\x22"',
        # Apache writes \" and \\ and ESC as \x1b
        '10.0.0.2 - - [17/May/2015:10:05:03 +0000] "GET /a\\"b\\\\c\\x1b[31m HTTP/1.1" 200 5 '
        '"-" "say \\"hi\\""',
    ]
    log = tmp_path / "access.log"
    log.write_text("\n".join(lines) + "\n")
    result = run_cli("replay", str(log), "--db", str(db_path))
    stats = run_cli("stats", "--db", str(db_path))

    assert result.returncode == 0, result.stderr
    assert query(db_path, "SELECT path, user_agent FROM requests ORDER BY id") == [
        ('/say/"hi"/ä', 'agent "x"'),
        ('/a"b\\c\x1b[31m', 'say "hi"'),
    ]
    assert "\x1b" not in stats.stdout
    assert '/a"b\\c\\x1b[31m' in stats.stdout


def test_replay_bad_request_reason_not_doubled(tmp_path: Path, db_path: Path) -> None:
    log = write_crafted(tmp_path / "access.log")
    result = run_cli("replay", str(log), "--db", str(db_path))

    assert '  line 7: invalid request line "\\x16\\x03\\x01\\x00"\n' in result.stdout
    assert "\\\\x16" not in result.stdout
    assert "\x16" not in result.stdout


@pytest.mark.parametrize(
    ("path", "route"),
    [
        (
            "/reset/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQ"
            "ssw5c/confirm",
            "/reset/{id}/confirm",
        ),
        ("/unsubscribe/eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.", "/unsubscribe/{id}"),
        ("/users/alice@example.com/orders", "/users/{id}/orders"),
        ("/users/alice.b%40example.co.uk", "/users/{id}"),
        ("/static/js/app.min.js", "/static/js/app.min.js"),
        ("/img/icon@2x.png", "/img/icon@2x.png"),
        ("/img/logo@1.5x.webp", "/img/logo@1.5x.webp"),
    ],
)
def test_route_collapses_tokens_and_addresses(path: str, route: str) -> None:
    assert route_for_path(path) == route
