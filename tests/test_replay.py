"""`hauswacht replay` on the real Apache log and on crafted files with broken lines.

Expected figures come from the log itself with the test's own simple
parsing (string splits and strptime), not from hauswacht.ops.replay.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import pty
import sqlite3
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from hauswacht.ops.replay import MAX_PATH_LENGTH
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
