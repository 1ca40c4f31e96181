"""`hauswacht stats` on a small synthetic events database with hand-computed figures.

The real schema code creates the database, and the test writes the rollup
rows directly (request_hourly by the schema's own backfill statement). So
every expected number below follows by hand from the rows that
`write_rollups` inserts.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from hauswacht.writer import histogram, schema
from hauswacht.writer.queries import Window, hour_to_iso, read_stats
from tests.test_cli import run_cli

H0 = 400_000  # 2015-08-19T16:00:00Z
H1 = H0 + 1
H2 = H0 + 2
HOUR_MS = 3_600_000

# (hour, route, method, status, untimed count, durations in ms)
REQUEST_ROWS = [
    (H0, "/api/tours/{tour_id}", "GET", 200, 0, [10.0, 20.0, 30.0, 40.0]),
    (H0, "/api/tours/{tour_id}", "GET", 404, 0, [5.0]),
    (H0, "/api/slow", "GET", 500, 0, [1000.0, 2000.0]),
    (H1, "/api/tours/{tour_id}", "GET", 200, 2, [50.0]),
    (H1, "/health", "GET", 301, 5, []),
    (H2, "/upgrade", "POST", 101, 1, []),
]
ERROR_ROWS = [(H0, "fp-a", 2), (H1, "fp-a", 1), (H1, "fp-b", 4)]
DROPPED_ROWS = [(H0, "queue_full", 3), (H2, "write_failed", 1)]
RAW_TABLES = {"requests", "errors", "metrics"}


def estimate(value: float) -> float:
    """The histogram's representative value for the bucket of `value`."""
    return histogram.bucket_value(histogram.bucket_key(value))


def write_rollups(path: Path) -> None:
    schema.prepare_database(path)
    conn = sqlite3.connect(path)
    with conn:
        for hour, route, method, status, untimed, durations in REQUEST_ROWS:
            buckets: dict[str, int] = {}
            histogram.add_values(buckets, durations)
            conn.execute(
                "INSERT INTO request_rollups VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    hour,
                    route,
                    method,
                    status,
                    untimed + len(durations),
                    len(durations),
                    sum(durations),
                    min(durations, default=None),
                    max(durations, default=None),
                    100 * (untimed + len(durations)),
                    histogram.encode(buckets),
                ),
            )
        # The writer keeps request_hourly equal to request_rollups summed per hour.
        conn.execute(schema.BACKFILL_REQUEST_HOURLY_SQL)
        conn.executemany("INSERT INTO error_rollups VALUES (?, ?, ?)", ERROR_ROWS)
        conn.executemany("INSERT INTO dropped_rollups VALUES (?, ?, ?)", DROPPED_ROWS)
    conn.close()


@pytest.fixture
def stats_db(db_path: Path) -> Path:
    write_rollups(db_path)
    return db_path


def test_stats_json_all_data(stats_db: Path) -> None:
    result = run_cli("stats", "--db", str(stats_db), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)

    assert data["requests"] == 16
    assert data["status"] == {"1xx": 1, "2xx": 7, "3xx": 5, "4xx": 1, "5xx": 2}
    assert data["errors"] == 7
    assert data["error_groups"] == 2
    assert data["dropped"] == 4
    assert data["dropped_by_reason"] == {"queue_full": 3, "write_failed": 1}
    assert data["first_hour"] == "2015-08-19T16:00:00Z"
    assert data["last_hour"] == "2015-08-19T18:00:00Z"

    # Timed values: 5 10 20 30 40 50 1000 2000; nearest rank of p50 is the 4th.
    latency = data["latency_ms"]
    assert latency["p50"] == round(estimate(30.0), 3)
    assert abs(latency["p50"] - 30.0) <= 30.0 * histogram.ALPHA
    # The top rank of 8 values is the maximum itself, which the rollups keep exactly.
    assert latency["p95"] == 2000.0
    assert latency["p99"] == 2000.0
    assert latency["avg"] == 394.375
    assert latency["max"] == 2000.0


def test_stats_json_hours_and_routes(stats_db: Path) -> None:
    result = run_cli("stats", "--db", str(stats_db), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    p95_top = 2000.0  # the top rank is the exact maximum

    # Hour H1 has one timed value, so its min and max clamp p95 to exactly 50.
    assert data["hours"] == [
        {"hour": "2015-08-19T16:00:00Z", "requests": 7, "4xx": 1, "5xx": 2, "p95_ms": p95_top},
        {"hour": "2015-08-19T17:00:00Z", "requests": 8, "4xx": 0, "5xx": 0, "p95_ms": 50.0},
        {"hour": "2015-08-19T18:00:00Z", "requests": 1, "4xx": 0, "5xx": 0, "p95_ms": None},
    ]
    assert data["routes"] == [
        {
            "route": "/api/tours/{tour_id}",
            "method": "GET",
            "requests": 8,
            "4xx": 1,
            "5xx": 0,
            "avg_ms": round(155.0 / 6, 3),
            "p95_ms": 50.0,
        },
        {
            "route": "/health",
            "method": "GET",
            "requests": 5,
            "4xx": 0,
            "5xx": 0,
            "avg_ms": None,
            "p95_ms": None,
        },
        {
            "route": "/api/slow",
            "method": "GET",
            "requests": 2,
            "4xx": 0,
            "5xx": 2,
            "avg_ms": 1500.0,
            "p95_ms": p95_top,
        },
        {
            "route": "/upgrade",
            "method": "POST",
            "requests": 1,
            "4xx": 0,
            "5xx": 0,
            "avg_ms": None,
            "p95_ms": None,
        },
    ]


def test_stats_window_selects_whole_hours(stats_db: Path) -> None:
    result = run_cli(
        "stats", "--db", str(stats_db), "--json", "--from", "2015-08-19T17:00:00Z",
        "--to", "2015-08-19T18:00:00Z",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)

    assert data["requests"] == 8
    assert data["status"] == {"1xx": 0, "2xx": 3, "3xx": 5, "4xx": 0, "5xx": 0}
    assert data["errors"] == 5
    assert data["error_groups"] == 2
    assert data["dropped"] == 0
    assert data["latency_ms"] == {"p50": 50.0, "p95": 50.0, "p99": 50.0, "avg": 50.0, "max": 50.0}
    assert [hour["hour"] for hour in data["hours"]] == ["2015-08-19T17:00:00Z"]


def test_stats_window_widens_to_hour_and_honours_offset(stats_db: Path) -> None:
    # 17:30+01:00 is 16:30 UTC, inside H0; the end is exclusive at 17:00 UTC.
    result = run_cli(
        "stats", "--db", str(stats_db), "--json", "--from", "2015-08-19T17:30:00+01:00",
        "--to", "2015-08-19T17:00:00",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)

    assert data["requests"] == 7
    assert data["errors"] == 2
    assert data["dropped"] == 3
    assert [hour["hour"] for hour in data["hours"]] == ["2015-08-19T16:00:00Z"]


def test_stats_window_without_data(stats_db: Path) -> None:
    result = run_cli("stats", "--db", str(stats_db), "--json", "--from", "2030-01-01")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)

    assert data["requests"] == 0
    assert data["status"] == {"1xx": 0, "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0}
    assert data["latency_ms"] == {"p50": None, "p95": None, "p99": None, "avg": None, "max": None}
    assert data["hours"] == []
    assert data["routes"] == []


def test_stats_reads_only_rollup_tables(stats_db: Path) -> None:
    tables_read: set[str] = set()

    def authorizer(action: int, arg1: str | None, arg2: str | None, *_: object) -> int:
        if action == sqlite3.SQLITE_READ and arg1:
            tables_read.add(arg1)
        return sqlite3.SQLITE_OK

    conn = schema.open_readonly(stats_db)
    conn.set_authorizer(authorizer)
    stats = read_stats(conn, Window())
    conn.close()

    assert stats.requests == 16
    assert "request_rollups" in tables_read
    assert tables_read & RAW_TABLES == set()


def test_stats_tables_in_english(stats_db: Path) -> None:
    result = run_cli("stats", "--db", str(stats_db), lang="en")
    assert result.returncode == 0, result.stderr
    out = result.stdout

    assert f"Hauswacht stats: {stats_db}" in out
    assert "Window: all data" in out
    assert "Errors captured" in out
    assert "394.4" in out  # average latency with an English decimal point
    assert "2,000.0" in out  # max with an English thousands separator
    assert "2015-08-19 16:00" in out
    assert "/api/tours/{tour_id}" in out
    assert "Top routes" in out


def test_stats_tables_in_german(stats_db: Path) -> None:
    result = run_cli("stats", "--db", str(stats_db), lang="de")
    assert result.returncode == 0, result.stderr
    out = result.stdout

    assert f"Hauswacht-Statistik: {stats_db}" in out
    assert "Zeitraum: alle Daten" in out
    assert "Erfasste Fehler" in out
    assert "394,4" in out
    assert "2.000,0" in out
    assert "Pro Stunde (UTC)" in out
    assert "Top-Routen" in out


def test_stats_database_from_environment(stats_db: Path, tmp_path: Path) -> None:
    result = run_cli("stats", "--json", env_db=str(stats_db))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["requests"] == 16

    # --db wins over the environment.
    missing = tmp_path / "elsewhere.db"
    result = run_cli("stats", "--db", str(missing), env_db=str(stats_db))
    assert result.returncode == 1
    assert str(missing) in result.stderr


@pytest.mark.parametrize("lang", ["en", "de"])
def test_stats_missing_file(tmp_path: Path, lang: str) -> None:
    missing = tmp_path / "nothing.db"
    result = run_cli("stats", "--db", str(missing), lang=lang)

    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(missing) in lines[0]
    assert ("no such file" if lang == "en" else "Datei nicht gefunden") in lines[0]
    assert not missing.exists()  # reading never creates the file


@pytest.mark.parametrize("lang", ["en", "de"])
def test_stats_text_file(tmp_path: Path, lang: str) -> None:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("this is not a database\n" * 20)
    result = run_cli("stats", "--db", str(text_file), lang=lang)

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(text_file) in lines[0]
    assert ("not an SQLite database" if lang == "en" else "keine SQLite-Datenbank") in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("lang", ["en", "de"])
def test_stats_foreign_sqlite_file(tmp_path: Path, lang: str) -> None:
    foreign = tmp_path / "shop.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL)")
    conn.commit()
    conn.close()
    result = run_cli("stats", "--db", str(foreign), lang=lang)

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(foreign) in lines[0]
    expected = "not a Hauswacht events database" if lang == "en" else "keine Hauswacht"
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_stats_directory_instead_of_file(tmp_path: Path) -> None:
    result = run_cli("stats", "--db", str(tmp_path))

    assert result.returncode == 1
    assert str(tmp_path) in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("option", "value"),
    [("--from", "yesterday"), ("--to", "2015-13-01"), ("--from", "17/May/2015:10:05:03")],
)
@pytest.mark.parametrize("lang", ["en", "de"])
def test_stats_bad_iso_date(stats_db: Path, option: str, value: str, lang: str) -> None:
    result = run_cli("stats", "--db", str(stats_db), option, value, lang=lang)

    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert option in lines[0]
    assert repr(value) in lines[0]
    assert "2015-05-18T10:00:00Z" in lines[0]  # an example of a valid value


def test_stats_window_end_before_start(stats_db: Path) -> None:
    result = run_cli(
        "stats", "--db", str(stats_db), "--from", "2015-08-19T18:00:00Z",
        "--to", "2015-08-19T17:00:00Z",
    )  # fmt: skip

    assert result.returncode == 2
    assert "--to" in result.stderr
    assert "Traceback" not in result.stderr


def insert_request_rollup(path: Path, hour: int, route: str, method: str = "GET") -> None:
    """Add one untimed request to the rollups of the database at `path`, as the writer would."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "INSERT INTO request_rollups VALUES (?, ?, ?, 200, 1, 0, 0.0, NULL, NULL, 0, '{}')",
            (hour, route, method),
        )
        conn.execute(
            "INSERT INTO request_hourly VALUES (?, 1, 0, 0.0, NULL, NULL, 0, 0, 0, '{}')"
            " ON CONFLICT (hour) DO UPDATE SET count = count + 1",
            (hour,),
        )
    conn.close()


def test_stats_tables_escape_control_characters(stats_db: Path) -> None:
    hostile_route = "/x\x1b[2J\x1b]0;pwned\x07/\x00/\u202eevil"
    insert_request_rollup(stats_db, H0, hostile_route, method="G\x1bET")
    result = run_cli("stats", "--db", str(stats_db), "--routes", "20")
    assert result.returncode == 0, result.stderr

    for character in ("\x1b", "\x00", "\x07", "\u202e"):
        assert character not in result.stdout
    assert "/x\\x1b[2J\\x1b]0;pwned\\x07/\\x00/\\u202eevil" in result.stdout
    assert "G\\x1bET" in result.stdout


def test_stats_json_keeps_control_characters(stats_db: Path) -> None:
    insert_request_rollup(stats_db, H0, "/x\x1b[31m")
    result = run_cli("stats", "--db", str(stats_db), "--json", "--routes", "20")
    assert result.returncode == 0, result.stderr

    routes = [route["route"] for route in json.loads(result.stdout)["routes"]]
    assert "/x\x1b[31m" in routes
    assert "\x1b" not in result.stdout  # JSON writes it as \u001b


@pytest.mark.parametrize(
    ("hour", "expected"),
    [
        (H0, "2015-08-19T16:00:00Z"),
        (0, "1970-01-01T00:00:00Z"),
        # 0001-05-16T20:00:00Z: strftime("%Y") would write the year as "1".
        (-17_256_628, "0001-05-16T20:00:00Z"),
        (-1, "1969-12-31T23:00:00Z"),
    ],
)
def test_hour_to_iso_has_four_digit_year(hour: int, expected: str) -> None:
    assert hour_to_iso(hour) == expected


def test_stats_json_hours_of_year_one(db_path: Path) -> None:
    # A database filled before replay rejected such years still has them.
    schema.prepare_database(db_path)
    insert_request_rollup(db_path, -17_256_628, "/old")
    result = run_cli("stats", "--db", str(db_path), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)

    assert data["first_hour"] == "0001-05-16T20:00:00Z"
    assert data["hours"][0]["hour"] == "0001-05-16T20:00:00Z"


def test_stats_window_in_epoch_milliseconds(stats_db: Path) -> None:
    iso = run_cli("stats", "--db", str(stats_db), "--json",
                  "--from", hour_to_iso(H0), "--to", hour_to_iso(H1))  # fmt: skip
    millis = run_cli("stats", "--db", str(stats_db), "--json",
                     "--from", str(H0 * HOUR_MS), "--to", str(H1 * HOUR_MS))  # fmt: skip
    too_late = run_cli("stats", "--db", str(stats_db), "--from", "253402300800001", lang="de")
    year = run_cli("stats", "--db", str(stats_db), "--from", "2015", "--to", "2016")

    assert millis.returncode == 0, millis.stderr
    assert json.loads(millis.stdout) == json.loads(iso.stdout)
    assert json.loads(millis.stdout)["requests"] == 7
    assert too_late.returncode == 2
    assert "ungültiger Wert für --from: '253402300800001'" in too_late.stderr
    assert year.returncode == 2
    assert year.stderr == (
        "hauswacht: invalid --from value '2015': expected ISO 8601, e.g. "
        "2015-05-18T10:00:00Z, or epoch milliseconds (12 or 13 digits)\n"
    )
