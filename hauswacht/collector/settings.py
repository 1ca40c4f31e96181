"""Collector settings: middleware keyword arguments with `HAUSWACHT_*` environment defaults.

Each setting is taken from, in this order: the keyword argument, the
environment variable, the built-in default. An environment variable that is
empty or only blanks counts as unset. `Settings.from_options()` checks every
value against its type and range and raises `SettingsError` naming the
setting, the value and what is accepted. It also warns once per process about
each `HAUSWACHT_*` variable that no part of Hauswacht reads (see
KNOWN_ENVIRONMENT_VARIABLES), since a misspelled name would otherwise be
ignored without a word.

SETTINGS below is the one list of names, environment variables, defaults and
units; the README table is written from it.
"""

from __future__ import annotations

import difflib
import ipaddress
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_DATABASE = "./hauswacht-data/events.db"

# Header, parameter and tag names whose values are replaced by FILTERED in
# captured request context. A name is lower-cased and "-" becomes "_" before
# matching. DEFAULT_SCRUB_FIELDS match as substrings, so "X-Api-Key" matches
# "api_key" and "sessionid" matches "session".
DEFAULT_SCRUB_FIELDS = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "auth",
    "credential",
    "cookie",
    "session",
    "csrf",
    "xsrf",
    "signature",
    "jwt",
    "bearer",
    "private",
)
# These short names match only as a whole word of the name, where words are
# split at "_", "-", ".", other punctuation and camelCase humps: "sid",
# "X-Sig", "signing_key" and "apiKey" match, while "inside", "design" and
# "monkey" do not.
DEFAULT_SCRUB_WORDS = ("sid", "sig", "key")
FILTERED = "[Filtered]"

# HAUSWACHT_* variables read outside the collector settings (vault, CLI
# language, demo, screenshots). Together with SETTINGS this is the one list of
# known names; an unknown HAUSWACHT_* variable gets a warning at startup.
OTHER_ENVIRONMENT_VARIABLES = (
    "HAUSWACHT_VAULT",
    "HAUSWACHT_MASTER_KEY",
    "HAUSWACHT_MASTER_KEY_FILE",
    "HAUSWACHT_LANG",
    "HAUSWACHT_DEMO_PASSWORD",
    "HAUSWACHT_SCREENSHOTS",
)

# Ranges of the numeric settings, inclusive.
QUEUE_SIZE_RANGE = (1, 10_000_000)
BATCH_SIZE_RANGE = (1, 100_000)
FLUSH_INTERVAL_RANGE = (0.01, 3600.0)
BUSY_TIMEOUT_RANGE = (0, 600_000)
MAX_PATH_LENGTH_RANGE = (16, 65_536)
MAX_DB_MB_RANGE = (0.01, 16_777_216.0)  # up to 16 TiB
MAX_LABEL = 200  # characters of release and environment

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


class SettingsError(ValueError):
    """A setting with a wrong type or value, or an unknown setting name."""


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """Name, environment variable, default, unit and meaning of one setting."""

    name: str
    env: str
    default: str
    unit: str
    meaning: str


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "database",
        "HAUSWACHT_DB",
        DEFAULT_DATABASE,
        "path",
        "Events database file; its folder is created (mode 0700) if missing.",
    ),
    SettingSpec(
        "queue_size",
        "HAUSWACHT_QUEUE_SIZE",
        "10000",
        "events, 1 to 10,000,000",
        "Capacity of the in-memory queue, and of the list of events kept for retry after a "
        "failed write; an event that finds either full is dropped and counted.",
    ),
    SettingSpec(
        "batch_size",
        "HAUSWACHT_BATCH_SIZE",
        "500",
        "events, 1 to 100,000",
        "Events per write transaction; a full batch is written before the interval ends.",
    ),
    SettingSpec(
        "flush_interval",
        "HAUSWACHT_FLUSH_INTERVAL",
        "1.0",
        "seconds, 0.01 to 3600",
        "Longest time an event waits in the queue before it is written.",
    ),
    SettingSpec(
        "busy_timeout",
        "HAUSWACHT_BUSY_TIMEOUT",
        "5000",
        "milliseconds, 0 to 600,000",
        "SQLite busy_timeout: how long a write waits for another process's lock.",
    ),
    SettingSpec(
        "trusted_proxies",
        "HAUSWACHT_TRUSTED_PROXIES",
        "(none)",
        "IPs or CIDRs, comma-separated; `*` trusts every peer",
        "Peers whose X-Forwarded-For / Forwarded headers are believed for the client address.",
    ),
    SettingSpec(
        "scrub_fields",
        "HAUSWACHT_SCRUB_FIELDS",
        "(none)",
        "names, comma-separated",
        "Header, query-parameter and tag names to filter, in addition to the built-in ones. "
        "Names are compared lower-case with `-` read as `_`. Your names and these built-in "
        "ones match anywhere in a name (`X-Session-Id` matches `session`): "
        + ", ".join(DEFAULT_SCRUB_FIELDS)
        + ". These built-in ones match only a whole word of a name, split at punctuation and "
        "camelCase (`sig`, `x-sid`, `signing_key`, `apiKey` match; `design`, `inside`, "
        "`monkey` do not): " + ", ".join(DEFAULT_SCRUB_WORDS) + ".",
    ),
    SettingSpec(
        "skip_paths",
        "HAUSWACHT_SKIP_PATHS",
        "(none)",
        "paths, comma-separated",
        "Request paths not recorded: exact, or a prefix when the entry ends in `*`.",
    ),
    SettingSpec(
        "record_query",
        "HAUSWACHT_RECORD_QUERY",
        "false",
        "boolean (1/0, true/false, yes/no, on/off)",
        "Store the query string (scrubbed) with the request path.",
    ),
    SettingSpec(
        "max_path_length",
        "HAUSWACHT_MAX_PATH_LENGTH",
        "512",
        "characters, 16 to 65,536",
        "Stored request paths are cut to this length.",
    ),
    SettingSpec(
        "max_db_mb",
        "HAUSWACHT_MAX_DB_MB",
        "(unlimited)",
        "MiB, 0.01 to 16,777,216",
        "Cap on the database size; events that do not fit are dropped and counted. "
        "For no cap, leave the variable unset or empty, or pass `None`.",
    ),
    SettingSpec(
        "release",
        "HAUSWACHT_RELEASE",
        "(none)",
        f"text, at most {MAX_LABEL} characters",
        "Release (version) of the application, stored with every error event.",
    ),
    SettingSpec(
        "environment",
        "HAUSWACHT_ENVIRONMENT",
        "(none)",
        f"text, at most {MAX_LABEL} characters",
        "Deployment environment, such as `production` or `staging`, stored with every error event.",
    ),
)

_SPECS = {spec.name: spec for spec in SETTINGS}
KNOWN_ENVIRONMENT_VARIABLES = frozenset(
    [spec.env for spec in SETTINGS] + list(OTHER_ENVIRONMENT_VARIABLES)
)


@dataclass(frozen=True, slots=True)
class Settings:
    """Checked collector settings (see SETTINGS for meanings and units)."""

    database: Path = Path(DEFAULT_DATABASE)
    queue_size: int = 10_000
    batch_size: int = 500
    flush_interval: float = 1.0
    busy_timeout: int = 5000
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    trust_all_proxies: bool = False
    scrub_fields: tuple[str, ...] = DEFAULT_SCRUB_FIELDS
    skip_exact: frozenset[str] = field(default_factory=frozenset)
    skip_prefixes: tuple[str, ...] = ()
    record_query: bool = False
    max_path_length: int = 512
    max_db_mb: float | None = None
    release: str | None = None
    environment: str | None = None

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Build settings from keyword options, then `HAUSWACHT_*` variables, then defaults.

        Raises SettingsError naming the setting (or the environment variable),
        the value and what is accepted.
        """
        options = dict(options or {})
        environ = os.environ if environ is None else environ
        warn_unknown_environment(environ)
        unknown = sorted(set(options) - set(_SPECS))
        if unknown:
            raise SettingsError(_unknown_message(unknown[0]))

        values: dict[str, Any] = {}
        for spec in SETTINGS:
            if spec.name in options:
                raw, source, from_env = options[spec.name], spec.name, False
            elif environ.get(spec.env, "").strip():
                raw, source, from_env = environ[spec.env], spec.env, True
            else:
                continue
            values[spec.name] = _PARSERS[spec.name](raw, source, from_env)

        proxies = values.pop("trusted_proxies", ((), False))
        values["trusted_proxies"], values["trust_all_proxies"] = proxies
        skip = values.pop("skip_paths", (frozenset(), ()))
        values["skip_exact"], values["skip_prefixes"] = skip
        if "scrub_fields" in values:
            values["scrub_fields"] = DEFAULT_SCRUB_FIELDS + tuple(
                name for name in values["scrub_fields"] if name not in DEFAULT_SCRUB_FIELDS
            )
        return cls(**values)


_PREFIX = "HAUSWACHT_"
_warned_variables: set[str] = set()


def unknown_environment_variables(environ: Mapping[str, str]) -> list[str]:
    """Return the names of `HAUSWACHT_*` variables in `environ` that no part of Hauswacht reads."""
    return sorted(
        name
        for name in environ
        if name.startswith(_PREFIX) and name not in KNOWN_ENVIRONMENT_VARIABLES
    )


def warn_unknown_environment(environ: Mapping[str, str]) -> None:
    """Log a warning, once per process and name, for each unknown `HAUSWACHT_*` variable."""
    for name in unknown_environment_variables(environ):
        if name in _warned_variables:
            continue
        _warned_variables.add(name)
        # Compared without the shared prefix, which would make every name look close.
        suffixes = sorted(known.removeprefix(_PREFIX) for known in KNOWN_ENVIRONMENT_VARIABLES)
        close = difflib.get_close_matches(name.removeprefix(_PREFIX), suffixes, n=1)
        hint = f"; did you mean {_PREFIX}{close[0]}?" if close else ""
        logger.warning(
            "environment variable %s is not a Hauswacht setting and is ignored%s", name, hint
        )


def _unknown_message(name: str) -> str:
    known = ", ".join(sorted(_SPECS))
    close = difflib.get_close_matches(name, list(_SPECS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown Hauswacht setting {name!r}{hint}; known settings: {known}"


def _invalid(source: str, raw: Any, expected: str) -> SettingsError:
    return SettingsError(
        f"invalid Hauswacht setting {_describe(source)}={raw!r}: expected {expected}"
    )


def _parse_int(raw: Any, source: str, from_env: bool, bounds: tuple[int, int]) -> int:
    minimum, maximum = bounds
    expected = f"an integer from {minimum:,} to {maximum:,}"
    if from_env:
        try:
            value = int(raw.strip())
        except ValueError:
            raise _invalid(source, raw, expected) from None
    elif isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    else:
        raise _invalid(source, raw, expected)
    if not minimum <= value <= maximum:
        raise _invalid(source, raw, expected)
    return value


def _parse_float(
    raw: Any, source: str, from_env: bool, bounds: tuple[float, float], expected: str
) -> float:
    if from_env:
        try:
            value = float(raw.strip())
        except ValueError:
            raise _invalid(source, raw, expected) from None
    elif isinstance(raw, int | float) and not isinstance(raw, bool):
        value = float(raw)
    else:
        raise _invalid(source, raw, expected)
    minimum, maximum = bounds
    # NaN fails both comparisons, so it is rejected too.
    if not minimum <= value <= maximum:
        raise _invalid(source, raw, expected)
    return value


def _parse_names(raw: Any, source: str, from_env: bool, expected: str) -> tuple[str, ...]:
    """Split a comma-separated string, or check a list of strings; drop empty entries."""
    if isinstance(raw, str):
        items: Iterable[Any] = raw.split(",")
    elif isinstance(raw, Iterable) and not isinstance(raw, bytes | Mapping):
        items = list(raw)
    else:
        raise _invalid(source, raw, expected)
    names = []
    for item in items:
        if not isinstance(item, str):
            raise _invalid(source, raw, expected)
        item = item.strip()
        if item:
            names.append(item)
    return tuple(names)


def _parse_database(raw: Any, source: str, from_env: bool) -> Path:
    if isinstance(raw, str | os.PathLike) and str(os.fspath(raw)).strip():
        return Path(os.fspath(raw)).expanduser()
    raise _invalid(source, raw, "a file path such as ./hauswacht-data/events.db")


def _parse_queue_size(raw: Any, source: str, from_env: bool) -> int:
    return _parse_int(raw, source, from_env, QUEUE_SIZE_RANGE)


def _parse_batch_size(raw: Any, source: str, from_env: bool) -> int:
    return _parse_int(raw, source, from_env, BATCH_SIZE_RANGE)


def _parse_busy_timeout(raw: Any, source: str, from_env: bool) -> int:
    return _parse_int(raw, source, from_env, BUSY_TIMEOUT_RANGE)


def _parse_max_path_length(raw: Any, source: str, from_env: bool) -> int:
    return _parse_int(raw, source, from_env, MAX_PATH_LENGTH_RANGE)


def _parse_flush_interval(raw: Any, source: str, from_env: bool) -> float:
    minimum, maximum = FLUSH_INTERVAL_RANGE
    expected = f"a number of seconds from {minimum:g} to {maximum:g}"
    return _parse_float(raw, source, from_env, FLUSH_INTERVAL_RANGE, expected)


def _parse_max_db_mb(raw: Any, source: str, from_env: bool) -> float | None:
    if raw is None or (from_env and raw.strip().lower() in ("none", "unlimited")):
        return None
    minimum, maximum = MAX_DB_MB_RANGE
    if from_env:
        no_cap = f"unset {source} (or set it to an empty value) for no cap"
    else:
        no_cap = "pass None for no cap"
    expected = f"a size in MiB from {minimum:g} to {maximum:,.0f}; {no_cap}"
    return _parse_float(raw, source, from_env, MAX_DB_MB_RANGE, expected)


def _parse_label(raw: Any, source: str, from_env: bool) -> str | None:
    expected = f"text of 1 to {MAX_LABEL} characters without control characters"
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise _invalid(source, raw, expected)
    text = raw.strip()
    if not text or len(text) > MAX_LABEL or not text.isprintable():
        raise _invalid(source, raw, expected)
    return text


def _parse_record_query(raw: Any, source: str, from_env: bool) -> bool:
    expected = "a boolean (true/false, 1/0, yes/no, on/off)"
    if isinstance(raw, bool):
        return raw
    if from_env:
        text = raw.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise _invalid(source, raw, expected)


def _parse_trusted_proxies(
    raw: Any, source: str, from_env: bool
) -> tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...], bool]:
    expected = "IP addresses or CIDR networks (such as 10.0.0.0/8), comma-separated, or '*'"
    networks = []
    trust_all = False
    for entry in _parse_names(raw, source, from_env, expected):
        if entry == "*":
            trust_all = True
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise SettingsError(
                f"invalid Hauswacht setting {_describe(source)}={raw!r}: {entry!r} is not "
                f"an IP address or CIDR network; expected {expected}"
            ) from None
    return tuple(networks), trust_all


def _parse_scrub_fields(raw: Any, source: str, from_env: bool) -> tuple[str, ...]:
    names = _parse_names(raw, source, from_env, "field names, comma-separated or a list")
    return tuple(name.lower().replace("-", "_") for name in names)


def _parse_skip_paths(raw: Any, source: str, from_env: bool) -> tuple[frozenset[str], tuple]:
    expected = "paths starting with '/', comma-separated or a list; end one with '*' for a prefix"
    exact = set()
    prefixes = []
    for entry in _parse_names(raw, source, from_env, expected):
        if not entry.startswith("/"):
            raise SettingsError(
                f"invalid Hauswacht setting {_describe(source)}={raw!r}: {entry!r} does not "
                f"start with '/'; expected {expected}"
            )
        if entry.endswith("*"):
            prefixes.append(entry[:-1])
        else:
            exact.add(entry)
    return frozenset(exact), tuple(prefixes)


def _describe(source: str) -> str:
    return f"environment variable {source}" if source.startswith("HAUSWACHT_") else source


_PARSERS = {
    "database": _parse_database,
    "queue_size": _parse_queue_size,
    "batch_size": _parse_batch_size,
    "flush_interval": _parse_flush_interval,
    "busy_timeout": _parse_busy_timeout,
    "trusted_proxies": _parse_trusted_proxies,
    "scrub_fields": _parse_scrub_fields,
    "skip_paths": _parse_skip_paths,
    "record_query": _parse_record_query,
    "max_path_length": _parse_max_path_length,
    "max_db_mb": _parse_max_db_mb,
    "release": _parse_label,
    "environment": _parse_label,
}


def settings_table() -> str:
    """Return the settings as a Markdown table (name, variable, default, unit, meaning)."""
    lines = [
        "| setting | environment variable | default | unit | meaning |",
        "|---|---|---|---|---|",
    ]
    for spec in SETTINGS:
        lines.append(
            f"| `{spec.name}` | `{spec.env}` | `{spec.default}` | {spec.unit} | {spec.meaning} |"
        )
    return "\n".join(lines)
