"""Dashboard helpers on their own: language choice, formats, parameters, charts, hourly series."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from hauswacht.dashboard import charts
from hauswacht.dashboard.i18n import Formatter, choose_language, parse_accept_language
from hauswacht.dashboard.params import BadParameter, parse_range
from hauswacht.writer import schema
from hauswacht.writer.queries import HOUR_MS, Window, read_overview
from tests.test_dashboard_http import EVENTS, H0, write_events

NOW_MS = 1_431_900_000_000  # 2015-05-17T22:00:00Z
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("de-DE,de;q=0.9,en;q=0.8", "de"),
        ("fr-FR,en;q=0.5,de;q=0.7", "de"),
        ("en-GB, de", "en"),
        ("de;q=0, en;q=0.1", "en"),
        ("fr, it", None),
        ("de;q=abc, en", "en"),
        ("", None),
    ],
)
def test_accept_language_choice(header: str, expected: str | None) -> None:
    assert parse_accept_language(header) == expected


def test_language_order_query_cookie_setting_header() -> None:
    assert choose_language("de", "en", "en", "en") == "de"
    assert choose_language(None, "de", "en", "en") == "de"
    assert choose_language(None, None, "de", "en") == "de"
    assert choose_language(None, None, None, "de-AT") == "de"
    assert choose_language(None, "xx", None, None) == "en"


def test_formatter_follows_language_and_zone() -> None:
    moment = int(dt.datetime(2015, 5, 17, 10, 5, tzinfo=dt.UTC).timestamp() * 1000)
    german = Formatter("de", BERLIN)
    english = Formatter("en", dt.UTC)

    assert german.moment(moment) == "17.05.2015 12:05"
    assert english.moment(moment) == "2015-05-17 10:05"
    assert german.number(1234.5, 1) == "1.234,5"
    assert english.number(1234.5, 1) == "1,234.5"
    assert german.ms_unit(12.345) == "12,3 ms"
    assert english.ms_unit(1234.5) == "1,234 ms"
    assert german.ms_unit(None) == "–"
    assert german.percent(0.1234, 2) == "12,34 %"
    assert german.input_value(moment) == "2015-05-17T12:05"


def test_range_presets_and_custom() -> None:
    day = parse_range({}, "en", dt.UTC, NOW_MS)
    hour = parse_range({"range": "1h"}, "en", dt.UTC, NOW_MS)
    custom = parse_range({"from": "2015-05-17T12:00", "to": "2015-05-17T14:00"}, "en",
                         BERLIN, NOW_MS)  # fmt: skip
    epoch = parse_range({"from": "1431820800000"}, "en", dt.UTC, NOW_MS)
    hours = parse_range({"hours": "48"}, "en", dt.UTC, NOW_MS)

    assert (day.key, day.start_ms, day.end_ms) == ("24h", NOW_MS - 24 * HOUR_MS, NOW_MS + 1)
    assert hour.start_ms == NOW_MS - HOUR_MS
    assert custom.key == "custom"
    assert custom.start_ms == int(dt.datetime(2015, 5, 17, 10, tzinfo=dt.UTC).timestamp() * 1000)
    assert custom.end_ms - custom.start_ms == 2 * HOUR_MS
    assert epoch.start_ms == 1431820800000
    assert epoch.end_ms == NOW_MS + 1
    assert hours.query() == {"from": str(NOW_MS - 48 * HOUR_MS), "to": str(NOW_MS + 1)}
    assert day.query() == {"range": "24h"}


@pytest.mark.parametrize(
    ("params", "name", "text"),
    [
        ({"range": "custom"}, "from", "Missing parameter 'from'"),
        ({"to": "2015-05-17"}, "from", "Missing parameter 'from'"),
        ({"from": "2015-05-18", "to": "2015-05-17"}, "to", "must be later than 'from'"),
        ({"from": "17.05.2015"}, "from", "expected an ISO 8601 date"),
        ({"hours": "87601"}, "hours", "from 1 to 87,600"),
        ({"range": "3h"}, "range", "expected one of 1h, 24h, 7d, 30d, custom"),
    ],
)
def test_range_errors_name_parameter(params: dict[str, str], name: str, text: str) -> None:
    with pytest.raises(BadParameter) as caught:
        parse_range(params, "en", dt.UTC, NOW_MS)

    assert caught.value.name == name
    assert text in caught.value.message


def test_range_error_in_german() -> None:
    with pytest.raises(BadParameter) as caught:
        parse_range({"hours": "x"}, "de", dt.UTC, NOW_MS)

    assert caught.value.message == (
        "Ungültiger Wert 'x' für Parameter 'hours': erwartet eine ganze Zahl von 1 bis 87.600."
    )


@pytest.mark.parametrize(
    ("value", "expected"), [(0, 1), (1, 1), (7, 10), (13, 20), (2400, 2500), (0.3, 0.5)]
)
def test_nice_ceiling(value: float, expected: float) -> None:
    assert charts.nice_ceiling(value) == pytest.approx(expected)


def test_line_chart_breaks_at_missing_values() -> None:
    chart = charts.line_chart(
        "latency", ["a", "b", "c", "d", "e"],
        [charts.Series("p95", "series-p95", [1.0, 2.0, None, 4.0, None])], str,
    )  # fmt: skip

    assert chart.svg.count("<polyline") == 1
    assert chart.svg.count("<circle") == 1
    assert chart.empty is False


def test_bar_chart_escapes_labels_and_stacks() -> None:
    chart = charts.bar_chart(
        "<b>requests</b>", ["<x>", "y"],
        [charts.Series("ok", "series-ok", [3, 0]), charts.Series("5xx", "series-5xx", [1, 0])],
        str,
    )  # fmt: skip

    assert "<b>" not in chart.svg
    assert "&lt;b&gt;requests&lt;/b&gt;" in chart.svg
    assert chart.svg.count("<rect") == 2
    assert chart.legend == [("ok", "series-ok"), ("5xx", "series-5xx")]


def test_overview_fills_empty_hours(tmp_path: Path) -> None:
    database = tmp_path / "events.db"
    schema.prepare_database(database)
    write_events(database, EVENTS)
    conn = schema.open_readonly(database)
    try:
        overview = read_overview(conn, Window((H0 - 1) * HOUR_MS, (H0 + 3) * HOUR_MS))
        empty = read_overview(conn, Window(0, HOUR_MS))
        everything = read_overview(conn, Window())
    finally:
        conn.close()

    assert [point.hour for point in overview.timeseries] == [H0 - 1, H0, H0 + 1, H0 + 2]
    assert [point.requests for point in overview.timeseries] == [0, 7, 4, 0]
    assert overview.requests == 11
    assert overview.status_codes == {200: 7, 201: 1, 404: 1, 500: 2}
    assert overview.error_rate == pytest.approx(2 / 11)
    assert empty.requests == 0
    assert empty.error_rate is None
    assert [point.requests for point in empty.timeseries] == [0]
    assert [point.hour for point in everything.timeseries] == [H0, H0 + 1]


@pytest.mark.parametrize(
    ("params", "name", "text"),
    [
        ({"from": "0", "to": "4102444800000"}, "from", "12 or 13 digits"),
        ({"from": "1431820800000", "to": "4102444800000"}, "to", "more than 87,600 hours"),
        ({"from": "999999999999999"}, "from", "12 or 13 digits"),
        ({"from": "1431820800000", "to": "999999999999999"}, "to", "12 or 13 digits"),
        ({"from": "9999-12-31T23:00", "to": "9999-12-31T23:59:59-14:00"}, "to", "1970 to 9999"),
        ({"from": "0001-01-01T00:00+14:00"}, "from", "1970 to 9999"),
        ({"from": "1969-12-31T23:00Z"}, "from", "1970 to 9999"),
        ({"from": "253402300799000", "to": "253402310799000"}, "from", "12 or 13 digits"),
    ],
)
def test_range_bounds_rejected(params: dict[str, str], name: str, text: str) -> None:
    with pytest.raises(BadParameter) as caught:
        parse_range(params, "en", dt.UTC, NOW_MS)

    assert caught.value.name == name
    assert text in caught.value.message


def test_range_span_limit_accepted() -> None:
    start = 1_431_820_800_000
    longest = parse_range(
        {"from": str(start), "to": str(start + 87_600 * HOUR_MS)}, "en", dt.UTC, NOW_MS
    )

    assert longest.end_ms - longest.start_ms == 87_600 * HOUR_MS


def test_range_limit_in_german_numbers() -> None:
    with pytest.raises(BadParameter) as caught:
        parse_range({"from": "2000-01-01", "to": "2015-01-01"}, "de", dt.UTC, NOW_MS)

    assert "mehr als 87.600 Stunden" in caught.value.message


def test_range_basic_date_not_epoch() -> None:
    basic = parse_range({"from": "20150517", "to": "20150518"}, "en", dt.UTC, NOW_MS)

    assert basic.start_ms == int(dt.datetime(2015, 5, 17, tzinfo=dt.UTC).timestamp() * 1000)
    assert basic.end_ms - basic.start_ms == 24 * HOUR_MS


def test_range_future_start_shows_now() -> None:
    with pytest.raises(BadParameter) as caught:
        parse_range({"from": "4102444800000"}, "en", dt.UTC, NOW_MS)

    assert caught.value.name == "to"
    assert "Invalid value 'now, 2015-05-17T22:00:00+00:00'" in caught.value.message
    assert "''" not in caught.value.message


def test_range_dst_gap_named() -> None:
    with pytest.raises(BadParameter) as caught:
        parse_range({"from": "2026-03-29T02:30"}, "en", BERLIN, NOW_MS)

    assert caught.value.name == "from"
    assert "does not exist in Europe/Berlin" in caught.value.message


def test_formatter_extreme_times_never_raise() -> None:
    east = Formatter("en", ZoneInfo("Pacific/Kiritimati"))
    west = Formatter("de", dt.timezone(dt.timedelta(hours=-14)))
    last_ms = 253_402_300_800_000  # 10000-01-01T00:00Z, the end bound of a range

    assert east.moment(last_ms - 1000) == "9999-12-31 23:59 +00:00"
    assert east.moment(last_ms) == "253402300800000 ms"
    assert east.short_hour(last_ms // HOUR_MS - 1) == "12-31 23:00 +00:00"
    assert east.input_value(last_ms - 1000) == ""
    assert west.moment(-1000) == "31.12.1969 09:59"
    assert west.moment(10**20) == f"{10**20} ms"


def test_formatter_marks_repeated_hour() -> None:
    berlin = Formatter("en", BERLIN)
    first = int(dt.datetime(2026, 10, 25, 0, tzinfo=dt.UTC).timestamp()) // 3600

    labels = [berlin.short_hour(hour) for hour in range(first - 1, first + 3)]

    assert labels == ["10-25 01:00", "10-25 02:00 +02:00", "10-25 02:00 +01:00", "10-25 03:00"]
    assert berlin.moment(first * HOUR_MS) == "2026-10-25 02:00 +02:00"
    assert berlin.moment((first + 2) * HOUR_MS) == "2026-10-25 03:00"
