"""Collector settings: keyword arguments, HAUSWACHT_* defaults and the errors for bad values."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from hauswacht.collector.settings import (
    DEFAULT_DATABASE,
    DEFAULT_SCRUB_FIELDS,
    SETTINGS,
    Settings,
    SettingsError,
    settings_table,
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
        ({"queue_size": -1}, "queue_size=-1: expected an integer of at least 1"),
        ({"queue_size": "100"}, "queue_size='100': expected an integer of at least 1"),
        ({"batch_size": 0}, "batch_size=0: expected an integer of at least 1"),
        ({"batch_size": True}, "batch_size=True: expected an integer of at least 1"),
        ({"flush_interval": 0}, "flush_interval=0: expected a number of seconds greater than 0"),
        ({"flush_interval": float("nan")}, "flush_interval=nan: expected a number of seconds"),
        ({"busy_timeout": -5}, "busy_timeout=-5: expected an integer of at least 0"),
        ({"max_path_length": 0}, "max_path_length=0: expected an integer of at least 1"),
        ({"max_db_mb": -1}, "max_db_mb=-1: expected a size in MiB greater than 0, or None"),
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
    }
