"""Collector settings: keyword arguments, HAUSWACHT_* defaults and the errors for bad values."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import pytest

from hauswacht.collector import settings as settings_module
from hauswacht.collector.settings import (
    DEFAULT_DATABASE,
    DEFAULT_SCRUB_FIELDS,
    KNOWN_ENVIRONMENT_VARIABLES,
    OTHER_ENVIRONMENT_VARIABLES,
    SETTINGS,
    Settings,
    SettingsError,
    settings_table,
    unknown_environment_variables,
)


def test_defaults_without_options_or_environment() -> None:
    settings = Settings.from_options({}, environ={})
    assert settings.database == Path(DEFAULT_DATABASE)
    assert settings.queue_size == 10_000
    assert settings.batch_size == 500
    assert settings.flush_interval == 1.0
    assert settings.busy_timeout == 5000
    assert settings.trusted_proxies == ()
    assert settings.trust_all_proxies is False
    assert settings.scrub_fields == DEFAULT_SCRUB_FIELDS
    assert settings.skip_exact == frozenset()
    assert settings.skip_prefixes == ()
    assert settings.record_query is False
    assert settings.max_path_length == 512
    assert settings.max_db_mb is None


def test_environment_sets_every_setting() -> None:
    environ = {
        "HAUSWACHT_DB": "/srv/data/events.db",
        "HAUSWACHT_QUEUE_SIZE": "2000",
        "HAUSWACHT_BATCH_SIZE": " 100 ",
        "HAUSWACHT_FLUSH_INTERVAL": "0.25",
        "HAUSWACHT_BUSY_TIMEOUT": "0",
        "HAUSWACHT_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.1,::1",
        "HAUSWACHT_SCRUB_FIELDS": "X-Session, iban",
        "HAUSWACHT_SKIP_PATHS": "/healthz,/static/*",
        "HAUSWACHT_RECORD_QUERY": "yes",
        "HAUSWACHT_MAX_PATH_LENGTH": "64",
        "HAUSWACHT_MAX_DB_MB": "250",
    }
    settings = Settings.from_options({}, environ=environ)
    assert settings.database == Path("/srv/data/events.db")
    assert settings.queue_size == 2000
    assert settings.batch_size == 100
    assert settings.flush_interval == 0.25
    assert settings.busy_timeout == 0
    assert settings.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.1/32"),
        ipaddress.ip_network("::1/128"),
    )
    assert settings.scrub_fields == (*DEFAULT_SCRUB_FIELDS, "x_session", "iban")
    assert settings.skip_exact == frozenset({"/healthz"})
    assert settings.skip_prefixes == ("/static/",)
    assert settings.record_query is True
    assert settings.max_path_length == 64
    assert settings.max_db_mb == 250.0


def test_keyword_arguments_override_environment() -> None:
    environ = {"HAUSWACHT_QUEUE_SIZE": "5", "HAUSWACHT_DB": "/env.db"}
    settings = Settings.from_options(
        {"queue_size": 7, "database": Path("/kw.db"), "trusted_proxies": ["*"]}, environ=environ
    )
    assert settings.queue_size == 7
    assert settings.database == Path("/kw.db")
    assert settings.trust_all_proxies is True


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"queue_size": -1}, "queue_size=-1: expected an integer from 1 to 10,000,000"),
        ({"queue_size": "100"}, "queue_size='100': expected an integer from 1 to 10,000,000"),
        ({"queue_size": 10**20}, f"queue_size={10**20}: expected an integer from 1 to 10,000,000"),
        ({"batch_size": 0}, "batch_size=0: expected an integer from 1 to 100,000"),
        ({"batch_size": 100_001}, "batch_size=100001: expected an integer from 1 to 100,000"),
        ({"batch_size": True}, "batch_size=True: expected an integer from 1 to 100,000"),
        ({"flush_interval": 0}, "flush_interval=0: expected a number of seconds from 0.01 to 3600"),
        ({"flush_interval": 1e-9}, "flush_interval=1e-09: expected a number of seconds from 0.01"),
        ({"flush_interval": 3601}, "flush_interval=3601: expected a number of seconds from 0.01"),
        ({"flush_interval": float("nan")}, "flush_interval=nan: expected a number of seconds"),
        ({"flush_interval": float("inf")}, "flush_interval=inf: expected a number of seconds"),
        ({"busy_timeout": -5}, "busy_timeout=-5: expected an integer from 0 to 600,000"),
        ({"busy_timeout": 600_001}, "busy_timeout=600001: expected an integer from 0 to 600,000"),
        ({"max_path_length": 0}, "max_path_length=0: expected an integer from 16 to 65,536"),
        ({"max_path_length": 15}, "max_path_length=15: expected an integer from 16 to 65,536"),
        ({"max_path_length": 65_537}, "max_path_length=65537: expected an integer from 16"),
        ({"max_db_mb": -1}, "max_db_mb=-1: expected a size in MiB from 0.01 to 16,777,216"),
        ({"max_db_mb": -1}, "pass None for no cap"),
        ({"release": ""}, "release='': expected text of 1 to 200 characters"),
        ({"release": "x" * 201}, "expected text of 1 to 200 characters"),
        ({"environment": 3}, "environment=3: expected text of 1 to 200 characters"),
        ({"environment": "prod\nstaging"}, "expected text of 1 to 200 characters"),
        ({"record_query": "yes"}, "record_query='yes': expected a boolean"),
        ({"trusted_proxies": ["10.0.0.0/33"]}, "'10.0.0.0/33' is not an IP address or CIDR"),
        ({"trusted_proxies": "proxy.local"}, "'proxy.local' is not an IP address or CIDR"),
        ({"trusted_proxies": 10}, "trusted_proxies=10: expected IP addresses or CIDR"),
        ({"skip_paths": ["healthz"]}, "'healthz' does not start with '/'"),
        ({"scrub_fields": [1]}, "scrub_fields=[1]: expected field names"),
        ({"database": ""}, "database='': expected a file path"),
        ({"database": 5}, "database=5: expected a file path"),
    ],
)
def test_bad_keyword_value_names_setting(options: dict, expected: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_options(options, environ={})
    assert expected in str(raised.value)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"HAUSWACHT_QUEUE_SIZE": "lots"}, "HAUSWACHT_QUEUE_SIZE='lots': expected an integer"),
        ({"HAUSWACHT_BATCH_SIZE": "1.5"}, "HAUSWACHT_BATCH_SIZE='1.5': expected an integer"),
        ({"HAUSWACHT_FLUSH_INTERVAL": "-1"}, "HAUSWACHT_FLUSH_INTERVAL='-1': expected a number"),
        ({"HAUSWACHT_RECORD_QUERY": "maybe"}, "HAUSWACHT_RECORD_QUERY='maybe': expected a boolean"),
        ({"HAUSWACHT_TRUSTED_PROXIES": "1.2.3.4,nope"}, "'nope' is not an IP address or CIDR"),
        ({"HAUSWACHT_MAX_DB_MB": "big"}, "HAUSWACHT_MAX_DB_MB='big': expected a size in MiB"),
        (
            {"HAUSWACHT_QUEUE_SIZE": "99999999999999999999"},
            "HAUSWACHT_QUEUE_SIZE='99999999999999999999': expected an integer from 1 to 10,000,000",
        ),
        (
            {"HAUSWACHT_FLUSH_INTERVAL": "1e-9"},
            "HAUSWACHT_FLUSH_INTERVAL='1e-9': expected a number of seconds from 0.01 to 3600",
        ),
        (
            {"HAUSWACHT_MAX_DB_MB": "0"},
            "unset HAUSWACHT_MAX_DB_MB (or set it to an empty value) for no cap",
        ),
    ],
)
def test_bad_environment_value_names_variable(environ: dict, expected: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_options({}, environ=environ)
    assert "environment variable" in str(raised.value)
    assert expected in str(raised.value)


def test_unknown_setting_suggests_close_name() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_options({"queu_size": 10}, environ={})
    message = str(raised.value)
    assert "unknown Hauswacht setting 'queu_size'" in message
    assert "did you mean 'queue_size'?" in message
    assert "batch_size" in message


def test_unlimited_database_size_from_environment() -> None:
    for text in ("", "none", "unlimited"):
        assert Settings.from_options({}, environ={"HAUSWACHT_MAX_DB_MB": text}).max_db_mb is None


def test_settings_table_lists_every_setting() -> None:
    table = settings_table()
    lines = table.splitlines()
    assert len(lines) == 2 + len(SETTINGS)
    for spec in SETTINGS:
        assert f"`{spec.name}` | `{spec.env}`" in table
    assert {spec.name for spec in SETTINGS} == {
        "database",
        "queue_size",
        "batch_size",
        "flush_interval",
        "busy_timeout",
        "trusted_proxies",
        "scrub_fields",
        "skip_paths",
        "record_query",
        "max_path_length",
        "max_db_mb",
        "release",
        "environment",
    }


def test_empty_environment_variable_counts_as_unset() -> None:
    environ = {spec.env: "" for spec in SETTINGS} | {"HAUSWACHT_BATCH_SIZE": "  "}
    assert Settings.from_options({}, environ=environ) == Settings.from_options({}, environ={})


def test_release_and_environment_from_environment() -> None:
    environ = {"HAUSWACHT_RELEASE": " tours@2.4.1 ", "HAUSWACHT_ENVIRONMENT": "staging"}
    settings = Settings.from_options({}, environ=environ)
    assert settings.release == "tours@2.4.1"
    assert settings.environment == "staging"
    assert Settings.from_options({}, environ={}).release is None


def test_unknown_variable_warns_once_with_suggestion(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings_module, "_warned_variables", set())
    environ = {
        "HAUSWACHT_BACTH_SIZE": "10",
        "HAUSWACHT_UNRELATED_THING": "1",
        **{name: "x" for name in OTHER_ENVIRONMENT_VARIABLES},
    }
    with caplog.at_level(logging.WARNING, logger="hauswacht.collector.settings"):
        Settings.from_options({}, environ=environ)
        Settings.from_options({}, environ=environ)
    assert [record.getMessage() for record in caplog.records] == [
        "environment variable HAUSWACHT_BACTH_SIZE is not a Hauswacht setting and is ignored; "
        "did you mean HAUSWACHT_BATCH_SIZE?",
        "environment variable HAUSWACHT_UNRELATED_THING is not a Hauswacht setting and is ignored",
    ]


def test_known_variables_cover_settings_and_other_parts() -> None:
    environ = {name: "x" for name in KNOWN_ENVIRONMENT_VARIABLES}
    assert unknown_environment_variables(environ) == []
    assert {spec.env for spec in SETTINGS} <= KNOWN_ENVIRONMENT_VARIABLES
    assert "HAUSWACHT_DEMO_PASSWORD" in KNOWN_ENVIRONMENT_VARIABLES
    assert unknown_environment_variables({"HAUSWACHT_DBB": "x", "PATH": "/bin"}) == [
        "HAUSWACHT_DBB"
    ]
