"""Import Apache/Nginx access logs as request events, to backfill history.

Accepted line formats (one request per line):
- common:   client ident user [time] "request" status bytes
- combined: common + ` "referer" "user-agent"`
- common + one request-time field, or combined + any number of trailing
  fields, each a quoted string, a number or `-` (nginx's stock `main` format
  adds `"$http_x_forwarded_for"`). Of the trailing fields only the first
  unquoted one is read, as the request time; quoted ones are ignored.

The request-time unit follows from how it is written: a number with a decimal
point is seconds (nginx `$request_time`, millisecond resolution), an integer
is microseconds (Apache `%D`). Apache's `%T` (whole seconds) is therefore
not supported; it would be read as microseconds.

Each line becomes one RequestEvent. Its timestamp is the log's own time,
with the offset honoured, as UTC epoch ms. Quoted fields are decoded: the
`\\xHH` escapes both servers write and Apache's `\\"`, `\\\\`, `\\n` and the
like become the bytes they stand for, read as UTF-8. The path loses its query
string, and the route is the path with id-like segments replaced by `{id}`.
Status, response bytes, client and user agent are kept, with `-` stored as
None. The referer is not stored. A UTF-8 byte order mark before the first
line is ignored, and invalid UTF-8 becomes U+FFFD.

A line that does not fit is skipped, counted and reported with its line
number; it never stops the import. Values that parse but cannot be real are
rejected the same way: a time zone offset beyond ±14:00, a time outside the
years 1970 to 9999 (UTC), a request time above 24 hours and a response size
above 1 TiB. One kind of damage is salvaged instead: a
line whose common-format part is complete but whose referer or user agent is
cut off (no closing quote, as happens when a logger truncates long lines).
Such a line is imported with its complete fields and the cut user agent text
unchanged, and is reported as salvaged.

Bookkeeping (table replay_files), as log shippers do it:
- A log's identity is the SHA-256 of the first 64 KiB of its content (the
  decompressed content for gzip, so `access.log.1` and `access.log.1.gz` are
  the same log), or of the whole content when it is shorter. Per log the row
  keeps how many bytes and lines were read, the SHA-256 of those bytes, the
  stored request and skipped line counts, the first and last request time
  and the time of the latest import.
- Importing a log again reads only what lies past the recorded byte offset,
  after checking that the content up to it hashes as recorded. So a log that
  was fully imported yields nothing, and a log that grew yields its new
  lines. A log whose first 64 KiB match but whose content before the offset
  differs is rejected (ContentMismatch). `force=True` imports the whole
  content again and restarts the record from its first line.
- Before it writes anything, an import claims the row under BEGIN IMMEDIATE.
  A second replay of the same content finds the claim and stops
  (ReplayInProgress), unless the claiming process is gone (same host and the
  process id is not running, or no progress for STALE_CLAIM_MS). Each batch
  of events is written in one transaction together with the new offset, and
  only while the claim is still held. So a crash loses at most the batch in
  progress, and the next replay resumes after the last committed batch.
- An unterminated last line is read only when it parses as a complete line.
  Otherwise it is left for the next replay, because a logger may still be
  writing it.
- The database is created only when the first importable line is found, so
  an empty or unreadable log leaves no database behind.

Events are stored with the writer's own aggregation (`aggregate_batch`), so
raw rows and rollups come out exactly as for live traffic. The import writes
its transactions itself instead of going through `Writer`, because the
progress row must commit in the same transaction as the batch it counts.
After the import it compacts the finished hours it stored events in
(hauswacht/writer/compaction.py), as a running writer would within a minute.
"""

from __future__ import annotations

import asyncio
import calendar
import datetime as dt
import gzip
import hashlib
import logging
import math
import os
import re
import socket
import sqlite3
import stat
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

from hauswacht.writer import compaction, schema
from hauswacht.writer.aggregate import HOUR_MS, aggregate_batch, register_functions
from hauswacht.writer.events import RequestEvent
from hauswacht.writer.queue import DROP_WRITE_FAILED

logger = logging.getLogger(__name__)

ID_PLACEHOLDER = "{id}"
MAX_PATH_LENGTH = 512  # characters of the raw path stored, as the middleware default
MAX_REPORTED_LINES = 10  # malformed lines kept with their number and reason
MAX_REPORTED_VALUE = 80  # characters of an offending value kept for the message
REPLAY_BATCH_SIZE = 2000  # events, and also lines, per transaction

HEAD_BYTES = 64 * 1024  # bytes of content whose SHA-256 identifies a log
STALE_CLAIM_MS = 10 * 60 * 1000  # a claim without progress for this long is abandoned
LOCK_WAIT_SECONDS = 60.0  # total wait for a locked database before giving up
GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = "\ufeff"

MAX_DURATION_MS = 24 * 3_600_000.0
MAX_OFFSET_MINUTES = 14 * 60  # UTC+14:00 (Kiribati) and UTC-12:00 are the extremes in use
MIN_TS = 0  # 1970-01-01T00:00:00Z
MAX_TS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
# 1 TiB: a larger response size is taken as damage in the log. The bound also keeps
# the byte sums of the rollups far from the 64-bit integer range that SQLite stores.
MAX_RESPONSE_BYTES = 2**40

_QUOTED = r'"((?:[^"\\]|\\.)*)"'  # a quoted field; backslash escapes a quote
_NUMBER_FIELD = r"\d+(?:\.\d+)?"
_COMMON = (
    r"(?P<client>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]*)\] "
    + _QUOTED.replace("((", "(?P<request>(", 1)
    + r" (?P<status>\d{3}) (?P<bytes>\d+|-)"
)
# Fields after the user agent: quoted strings, numbers or "-".
_TRAILING = r'(?: (?:"(?:[^"\\]|\\.)*"|' + _NUMBER_FIELD + r"|-))*"
LINE_PATTERN = re.compile(
    "^"
    + _COMMON
    + "(?: "
    + _QUOTED.replace("((", "(?P<referer>(", 1)
    + " "
    + _QUOTED.replace("((", "(?P<user_agent>(", 1)
    + "(?P<trailing>"
    + _TRAILING
    + ")"
    + "| (?P<request_time>"
    + _NUMBER_FIELD
    + "))?$"
)
TRAILING_FIELD_PATTERN = re.compile(r' ("(?:[^"\\]|\\.)*"|[^ ]+)')
# The common part followed by a referer and/or user agent with no closing quote.
TRUNCATED_PATTERN = re.compile(
    "^"
    + _COMMON
    + r"(?: "
    + _QUOTED.replace("((", "(?P<referer>(", 1)
    + r' "(?P<cut_user_agent>(?:[^"\\]|\\.)*)'
    + r'| "(?P<cut_referer>(?:[^"\\]|\\.)*))$'
)
TIME_PATTERN = re.compile(
    r"^(\d{2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$"
)
REQUEST_PATTERN = re.compile(r"^([A-Za-z][A-Za-z-]*) (\S+)(?: HTTP/\d(?:\.\d)?)?$")
MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        start=1,
    )
}

# Escapes in quoted fields: `\xHH` (Apache and nginx) and Apache's backslash
# before a quote, a backslash and the control characters \b \n \r \t \v.
_ESCAPE = re.compile(rb'\\(x[0-9A-Fa-f]{2}|["\\bnrtv])')
_ESCAPED_CHARACTERS = {
    b'"': b'"',
    b"\\": b"\\",
    b"b": b"\b",
    b"n": b"\n",
    b"r": b"\r",
    b"t": b"\t",
    b"v": b"\v",
}

_NUMBER = re.compile(r"^\d+$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Hex of 8 or more characters with at least one digit, so that words spelt
# only with the letters a-f ("acceded", "deadbeef") stay as they are.
_HEX = re.compile(r"^(?=[a-fA-F]*\d)[0-9a-fA-F]{8,}$")
# Long letter-and-digit tokens (base62 ids, session keys, hashes in other encodings).
_TOKEN = re.compile(r"^(?=[A-Za-z0-9]*\d)(?=[A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]{20,}$")
# A JSON Web Token: three base64url parts joined by dots. The header is a JSON
# object, so its encoding starts with "eyJ" (`{"` and a letter). That keeps
# file names such as "app.min.js" out.
_JWT = re.compile(r"^eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
# An e-mail address, with "@" also percent-encoded. "icon@2x.png" (an image
# density suffix, not a domain) stays as it is.
_EMAIL = re.compile(r"^[^@/\s]+(?:@|%40)(?!\d+(?:\.\d+)?x\.)[^@/\s]+\.[A-Za-z]{2,}$")


# Why a line was skipped: a code for translated output, with its English text.
LINE_ERRORS = {
    "empty": "empty line",
    "no_time": "no [time] field",
    "no_request_field": "no quoted request field",
    "format": "does not match the common or combined log format",
    "bad_time": "invalid time [{value}]",
    "bad_offset": "time zone offset {value} is outside -14:00 to +14:00",
    "time_range": "time [{value}] is outside the years 1970 to 9999 (UTC)",
    "no_request": "no request line (logged as “-”)",
    "bad_request": 'invalid request line "{value}"',
    "bad_status": "status {value} is outside 100-599",
    "bad_bytes": "response size {value} is above 1 TiB",
    "bad_duration": "request time {value} is not between 0 and 24 hours",
}


class LineError(ValueError):
    """A log line that cannot be imported, with a LINE_ERRORS `code` and the offending `value`."""

    def __init__(self, code: str, value: str = "") -> None:
        value = _shorten(value)
        super().__init__(LINE_ERRORS[code].format(value=value))
        self.code = code
        self.value = value


@dataclass
class ParsedLine:
    event: RequestEvent
    salvaged: bool


@dataclass
class SkippedLine:
    number: int  # 1-based line number in the log
    code: str  # a key of LINE_ERRORS
    value: str  # the offending text for the message, possibly with control characters


@dataclass
class ReplayReport:
    """The outcome of one import.

    The counts cover the lines this run read: `lines_read` = `imported` +
    `skipped` + events not stored (`dropped`, or lost to the error that ended
    the run). Lines that earlier imports already read are not counted here;
    `resumed_after_line` is their count.
    """

    path: str
    lines_read: int = 0
    imported: int = 0  # events committed to the database
    skipped: int = 0
    salvaged: int = 0
    dropped: int = 0  # events the writer's aggregation rejected (a bug if ever non-zero)
    skipped_lines: list[SkippedLine] = field(default_factory=list)  # the first few
    salvaged_lines: list[int] = field(default_factory=list)  # the first few
    first_ts: int | None = None  # of the events read, epoch ms
    last_ts: int | None = None
    empty: bool = False  # the log has no content at all
    resumed_after_line: int = 0  # lines of the log imported by earlier runs
    previous_import_at: int | None = None  # epoch ms of the latest earlier import
    previous_requests: int = 0  # requests stored by earlier imports of this log
    nothing_new: bool = False  # everything in the log was imported before
    pending_line: int | None = None  # an unterminated last line left for the next run
    forced: bool = False


ProgressCallback = Callable[[int | None, int | None, int], None]
"""Called as progress(bytes_read, total_bytes, lines_read) now and then during an import.

Both byte counts are None when the log is no regular file (a pipe)."""


class ReplayError(Exception):
    """An import that stopped early. Its `report` contains what was read and stored until then."""

    def __init__(self, message: str, report: ReplayReport | None = None) -> None:
        super().__init__(message)
        self.report = report


class LogReadError(ReplayError):
    """Reading the log failed partway (an I/O error or a damaged gzip stream)."""

    def __init__(self, reason: str, report: ReplayReport | None = None) -> None:
        super().__init__(reason, report)
        self.reason = reason


class ReplayInProgress(ReplayError):
    """Another replay has claimed this log's content and is still running."""

    def __init__(self, host: str, pid: int, claimed_at: int) -> None:
        super().__init__(f"being imported by process {pid} on {host} since {claimed_at} (epoch ms)")
        self.host = host
        self.pid = pid
        self.claimed_at = claimed_at


class ContentMismatch(ReplayError):
    """The log starts like an imported one but differs before the recorded offset."""

    def __init__(self, offset: int, imported_at: int) -> None:
        super().__init__(
            f"the first 64 KiB match a log imported at {imported_at} (epoch ms) "
            f"but the content up to byte {offset} differs"
        )
        self.offset = offset
        self.imported_at = imported_at


class ClaimLost(ReplayError):
    """Another replay took the claim over, so this one stopped before writing more."""


class ReplayWriteError(ReplayError, schema.DatabaseError):
    """The database failed during the import; the batches before the failure are stored."""


# --- parsing -------------------------------------------------------------------------


def route_for_path(path: str) -> str:
    """Return `path` with each id-like segment set to `{id}`.

    Id-like: a number, UUID, hex, long letter-and-digit token, JWT or e-mail address.
    """
    segments = path.split("/")
    for index, segment in enumerate(segments):
        if segment and _is_id(segment):
            segments[index] = ID_PLACEHOLDER
    return "/".join(segments)


def _is_id(segment: str) -> bool:
    return bool(
        _NUMBER.match(segment)
        or _UUID.match(segment)
        or _HEX.match(segment)
        or _TOKEN.match(segment)
        or _JWT.match(segment)
        or _EMAIL.match(segment)
    )


def parse_time(text: str) -> int:
    """Parse an access-log time like `17/May/2015:10:05:03 +0200` into UTC epoch ms.

    Raises LineError for an invalid time, an offset beyond ±14:00 and a time
    outside the years 1970 to 9999 (UTC).
    """
    match = TIME_PATTERN.match(text)
    if match is None:
        raise LineError("bad_time", text)
    day, month_name, year, hour, minute, second, sign, offset_hours, offset_minutes = match.groups()
    month = MONTHS.get(month_name.capitalize())
    if month is None:
        raise LineError("bad_time", text)

    offset = int(offset_hours) * 60 + int(offset_minutes)
    if int(offset_minutes) >= 60 or offset > MAX_OFFSET_MINUTES:
        raise LineError("bad_offset", f"{sign}{offset_hours}{offset_minutes}")
    if sign == "-":
        offset = -offset

    try:
        local = dt.datetime(int(year), month, int(day), int(hour), int(minute), int(second))
    except ValueError:
        raise LineError("bad_time", text) from None
    ts = (calendar.timegm(local.timetuple()) - offset * 60) * 1000
    if not MIN_TS <= ts <= MAX_TS:
        raise LineError("time_range", text)
    return ts


def parse_request_time(text: str) -> float:
    """Return the request time in ms: `0.123` is seconds, `123000` is microseconds.

    Raises LineError when the time is above 24 hours.
    """
    try:
        duration_ms = float(text) * 1000.0 if "." in text else int(text) / 1000.0
    except (ValueError, OverflowError):  # more digits than int() or a float can take
        raise LineError("bad_duration", text) from None
    if not (math.isfinite(duration_ms) and 0.0 <= duration_ms <= MAX_DURATION_MS):
        raise LineError("bad_duration", text)
    return duration_ms


def parse_bytes(text: str) -> int | None:
    """Return the response size of a bytes field (digits or `-`). Raises LineError above 1 TiB."""
    if text == "-":
        return None
    # The length check first, because int() of thousands of digits is slow or fails.
    if len(text) > len(str(MAX_RESPONSE_BYTES)) or int(text) > MAX_RESPONSE_BYTES:
        raise LineError("bad_bytes", text)
    return int(text)


def split_target(target: str) -> str:
    """Return the path of a request target, without scheme, host, query string or fragment."""
    if not target.startswith("/") and "://" in target:
        # An absolute-form target as proxies log it: http://host/path?query
        after_scheme = target.split("://", 1)[1]
        slash = after_scheme.find("/")
        target = after_scheme[slash:] if slash >= 0 else "/"
    for separator in ("?", "#"):
        target = target.split(separator, 1)[0]
    return target or "/"


def decode_escapes(value: str) -> str:
    """Decode the backslash escapes of a quoted log field (`\\x22`, `\\"`, `\\\\`, `\\n`, ...).

    Escaped bytes are read as UTF-8 together with the text around them, so
    nginx's `\\xC3\\xA4` becomes "ä". Invalid UTF-8 becomes U+FFFD.
    """
    if "\\" not in value:
        return value
    raw = value.encode("utf-8", errors="surrogatepass")
    decoded = _ESCAPE.sub(_unescape_match, raw)
    return decoded.decode("utf-8", errors="replace")


def _unescape_match(match: re.Match[bytes]) -> bytes:
    escape = match.group(1)
    if escape[:1] == b"x":
        return bytes([int(escape[1:], 16)])
    return _ESCAPED_CHARACTERS[escape]


def _request_time_field(trailing: str | None) -> str | None:
    """Return the first unquoted field after the user agent, if it is a number."""
    if not trailing:
        return None
    for match in TRAILING_FIELD_PATTERN.finditer(trailing):
        value = match.group(1)
        if not value.startswith('"'):
            return None if value == "-" else value
    return None


def parse_line(line: str) -> ParsedLine:
    """Parse one access-log line into a RequestEvent; raise LineError with the reason if invalid."""
    salvaged = False
    match = LINE_PATTERN.match(line)
    if match is None:
        match = TRUNCATED_PATTERN.match(line)
        if match is None:
            raise LineError(_mismatch_code(line))
        salvaged = True

    fields = match.groupdict()
    request = decode_escapes(fields["request"])
    if request == "-" or not request:
        raise LineError("no_request")
    request_match = REQUEST_PATTERN.match(request)
    if request_match is None:
        raise LineError("bad_request", request)
    method, target = request_match.groups()

    status = int(fields["status"])
    if not 100 <= status <= 599:
        raise LineError("bad_status", str(status))

    ts = parse_time(fields["time"])
    response_bytes = parse_bytes(fields["bytes"])
    request_time = fields.get("request_time") or _request_time_field(fields.get("trailing"))
    duration_ms = None if request_time is None else parse_request_time(request_time)

    path = split_target(target)[:MAX_PATH_LENGTH]
    user_agent = fields.get("cut_user_agent") if salvaged else fields.get("user_agent")
    if user_agent is not None:
        user_agent = None if user_agent in ("-", "") else decode_escapes(user_agent)

    event = RequestEvent(
        ts=ts,
        method=method.upper(),
        route=route_for_path(path),
        path=path,
        status=status,
        duration_ms=duration_ms,
        ttfb_ms=None,
        response_bytes=response_bytes,
        client=None if fields["client"] == "-" else fields["client"],
        user_agent=user_agent,
        trace_id=None,
    )
    return ParsedLine(event, salvaged)


def _mismatch_code(line: str) -> str:
    if not line.strip():
        return "empty"
    if "[" not in line or "]" not in line:
        return "no_time"
    if line.count('"') < 2:
        return "no_request_field"
    return "format"


def _shorten(value: str) -> str:
    if len(value) <= MAX_REPORTED_VALUE:
        return value
    return value[: MAX_REPORTED_VALUE - 1] + "…"


# --- reading -------------------------------------------------------------------------


class LogContent:
    """The content of an access log, plain or gzip-compressed, read line by line.

    `consumed` counts the bytes of the lines taken with `consume()` or passed
    with `skip_to()`, `lines` counts those lines, and `digest()` is the
    SHA-256 of exactly those bytes. Offsets and hashes are of the decompressed
    content. Read errors raise LogReadError with the reason.
    """

    def __init__(self, raw: IO[bytes], name: str, total_bytes: int | None) -> None:
        self.name = name
        self.total_bytes = total_bytes  # size on disk (compressed for gzip), or None for a pipe
        self.head = b""  # the first HEAD_BYTES bytes of the content
        self.consumed = 0
        self.lines = 0
        self._raw = raw
        self._stream: IO[bytes] = raw
        self._position = 0  # of the next unread byte in `head`
        self._sha256 = hashlib.sha256()

    def open(self) -> None:
        """Detect gzip and read the head. Raises LogReadError when that fails."""
        try:
            if _peek(self._raw, len(GZIP_MAGIC)) == GZIP_MAGIC:  # rotated logs are often gzipped
                self._stream = gzip.GzipFile(fileobj=self._raw, mode="rb")
            self.head = _read_up_to(self._stream, HEAD_BYTES)
        except (OSError, EOFError, zlib.error) as exc:
            raise LogReadError(_read_error_reason(exc)) from exc

    def read_line(self) -> bytes:
        """Return the next line with its line end, or b"" at the end (counted by `consume()`)."""
        try:
            if self._position >= len(self.head):
                return self._stream.readline()
            end = self.head.find(b"\n", self._position)
            if end >= 0:
                line = self.head[self._position : end + 1]
                self._position = end + 1
                return line
            line = self.head[self._position :]
            self._position = len(self.head)
            return line + self._stream.readline()
        except (OSError, EOFError, zlib.error) as exc:
            raise LogReadError(_read_error_reason(exc)) from exc

    def consume(self, line: bytes) -> None:
        """Count `line`, the last one read, as read."""
        self.consumed += len(line)
        self.lines += 1
        self._sha256.update(line)

    def skip_to(self, offset: int) -> bool:
        """Read and hash the content up to byte `offset`. Returns False if it ends before."""
        while self.consumed < offset:
            want = min(offset - self.consumed, 1024 * 1024)
            try:
                if self._position < len(self.head):
                    chunk = self.head[self._position : self._position + want]
                    self._position += len(chunk)
                else:
                    chunk = self._stream.read(want)
            except (OSError, EOFError, zlib.error) as exc:
                raise LogReadError(_read_error_reason(exc)) from exc
            if not chunk:
                return False
            self.consumed += len(chunk)
            self._sha256.update(chunk)
        return True

    def digest(self) -> str:
        return self._sha256.hexdigest()

    def raw_position(self) -> int | None:
        """Return the position in the file on disk, or None for a pipe."""
        if self.total_bytes is None:
            return None
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return None


def _peek(stream: IO[bytes], size: int) -> bytes:
    peek = getattr(stream, "peek", None)
    if peek is not None:
        return peek(size)[:size]
    start = stream.tell()  # raises for an unbuffered pipe: pass a buffered stream
    data = stream.read(size)
    stream.seek(start)
    return data


def _read_up_to(stream: IO[bytes], size: int) -> bytes:
    chunks = []
    remaining = size
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _read_error_reason(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "the gzip data ends early"
    if isinstance(exc, zlib.error):
        return f"damaged gzip data ({exc})"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def decode_line(line: bytes, first: bool) -> str:
    """Return a raw log line as text without its line end (and without a BOM when `first`)."""
    text = line.decode("utf-8", errors="replace").rstrip("\r\n")
    if first and text.startswith(UTF8_BOM):
        text = text[len(UTF8_BOM) :]
    return text


# --- bookkeeping ---------------------------------------------------------------------

SELECT_HEAD_LENGTHS_SQL = "SELECT DISTINCT head_bytes FROM replay_files WHERE head_bytes <= ?"
SELECT_FILE_SQL = """
SELECT id, head_bytes, imported_bytes, imported_lines, content_sha256, requests, skipped,
       first_ts, last_ts, imported_at, claim_id, claim_host, claim_pid, claimed_at
FROM replay_files
WHERE head_sha256 = ? AND head_bytes = ?
"""
INSERT_FILE_SQL = """
INSERT INTO replay_files (
    head_sha256, head_bytes, source, imported_bytes, imported_lines, content_sha256,
    requests, skipped, first_ts, last_ts, started_at, imported_at,
    claim_id, claim_host, claim_pid, claimed_at
) VALUES (
    :head_sha256, :head_bytes, :source, 0, 0, :empty_sha256,
    0, 0, NULL, NULL, :now, :now,
    :claim_id, :claim_host, :claim_pid, :now
)
"""
CLAIM_FILE_SQL = """
UPDATE replay_files
SET head_sha256 = :head_sha256, head_bytes = :head_bytes, source = :source,
    claim_id = :claim_id, claim_host = :claim_host, claim_pid = :claim_pid, claimed_at = :now
WHERE id = :id
"""
RESTART_FILE_SQL = """
UPDATE replay_files
SET imported_bytes = 0, imported_lines = 0, content_sha256 = :empty_sha256,
    requests = 0, skipped = 0, first_ts = NULL, last_ts = NULL, started_at = :now
WHERE id = :id
"""
RECORD_PROGRESS_SQL = """
UPDATE replay_files
SET imported_bytes = :imported_bytes, imported_lines = :imported_lines,
    content_sha256 = :content_sha256, requests = :requests, skipped = :skipped,
    first_ts = :first_ts, last_ts = :last_ts, imported_at = :now
WHERE id = :id AND claim_id = :claim_id
"""
RELEASE_FILE_SQL = """
UPDATE replay_files
SET claim_id = NULL, claim_host = NULL, claim_pid = NULL, claimed_at = NULL
WHERE id = :id AND claim_id = :claim_id
"""
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass
class FileRecord:
    """The replay_files row of the log being imported, as claimed by this replay."""

    id: int
    claim_id: str
    imported_bytes: int
    imported_lines: int
    content_sha256: str
    requests: int
    skipped: int
    first_ts: int | None
    last_ts: int | None
    imported_at: int | None  # of the latest earlier import, or None for a new row


def _find_file(conn: sqlite3.Connection, head: bytes) -> tuple[Any, ...] | None:
    """Return the row whose recorded head is a prefix of `head`, the longest one first."""
    lengths = [row[0] for row in conn.execute(SELECT_HEAD_LENGTHS_SQL, (len(head),))]
    for length in sorted(lengths, reverse=True):
        head_sha256 = hashlib.sha256(head[:length]).hexdigest()
        row = conn.execute(SELECT_FILE_SQL, (head_sha256, length)).fetchone()
        if row is not None:
            return tuple(row)
    return None


def _claim_is_stale(host: str | None, pid: int | None, last_activity: int, now: int) -> bool:
    if now - last_activity > STALE_CLAIM_MS:
        return True
    if host != socket.gethostname() or pid is None:
        return False
    if pid == os.getpid():
        return False  # another import in this process (a thread), or a reused process id
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # it runs, under another user
    return False


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


# --- import --------------------------------------------------------------------------


class _Import:
    """One run of `import_log`: reads the content, claims its row and writes the batches."""

    def __init__(
        self,
        content: LogContent,
        database: Path,
        force: bool,
        progress: ProgressCallback | None,
        progress_every: int,
    ) -> None:
        self.content = content
        self.database = database
        self.force = force
        self.progress = progress
        self.progress_every = progress_every
        self.report = ReplayReport(path=content.name, forced=force)

        self.conn: sqlite3.Connection | None = None
        self.record: FileRecord | None = None
        self.claim_id = uuid.uuid4().hex
        # What was read since the last commit.
        self.batch: list[RequestEvent] = []
        self.batch_lines = 0
        self.batch_skipped = 0

    def run(self) -> ReplayReport:
        try:
            if self.database.exists():
                self._connect()  # fail early on a file that is not an events database
            self.content.open()
            if not self.content.head:
                self.report.empty = True
                return self.report
            self._read_lines()
            if self.record is not None:
                self._commit()
                self._compact()
            self.report.nothing_new = bool(
                self.report.resumed_after_line
                and not self.report.lines_read
                and self.report.pending_line is None
            )
        except LogReadError as exc:
            if self.record is not None:
                self._commit()  # store what was read before the error, with its offset
            exc.report = self.report
            raise
        except ReplayError as exc:
            exc.report = self.report
            raise
        finally:
            self._release()
        self._report_progress(finished=True)
        return self.report

    def _read_lines(self) -> None:
        content = self.content
        report = self.report
        while True:
            line = content.read_line()
            if not line:
                return
            number = content.lines + 1
            text = decode_line(line, first=content.consumed == 0)
            try:
                parsed: ParsedLine | None = parse_line(text)
                error = None
            except LineError as exc:
                parsed, error = None, exc

            if not line.endswith(b"\n") and (parsed is None or parsed.salvaged):
                # A logger may still be writing this line; the next replay reads it whole.
                report.pending_line = number
                return

            content.consume(line)
            report.lines_read += 1
            self.batch_lines += 1
            if error is not None:
                self._skip(number, error)
            elif parsed is not None:
                if self.record is None:
                    if not self._start(number):
                        return
                    if report.resumed_after_line:
                        continue  # this line belongs to the part imported before
                self._add(number, parsed)

            batch_full = max(len(self.batch), self.batch_lines) >= REPLAY_BATCH_SIZE
            if batch_full and self.record is not None:
                self._commit()
            if report.lines_read % self.progress_every == 0:
                self._report_progress()

    def _skip(self, number: int, error: LineError) -> None:
        self.report.skipped += 1
        self.batch_skipped += 1
        if len(self.report.skipped_lines) < MAX_REPORTED_LINES:
            self.report.skipped_lines.append(SkippedLine(number, error.code, error.value))

    def _add(self, number: int, parsed: ParsedLine) -> None:
        report = self.report
        self.batch.append(parsed.event)
        if parsed.salvaged:
            report.salvaged += 1
            if len(report.salvaged_lines) < MAX_REPORTED_LINES:
                report.salvaged_lines.append(number)
        ts = parsed.event.ts
        report.first_ts = ts if report.first_ts is None else min(report.first_ts, ts)
        report.last_ts = ts if report.last_ts is None else max(report.last_ts, ts)

    def _start(self, number: int) -> bool:
        """Claim the log at its first importable line `number` and return False if nothing is new.

        When earlier imports got past this line, the counts so far are
        dropped and the content is skipped up to their offset.
        """
        record = self._claim()
        report = self.report
        report.previous_import_at = record.imported_at
        if record.imported_bytes == 0:
            return True

        if record.imported_bytes < self.content.consumed:
            raise ContentMismatch(record.imported_bytes, record.imported_at or 0)
        report.lines_read = report.skipped = report.salvaged = 0
        report.skipped_lines.clear()
        report.salvaged_lines.clear()
        report.first_ts = report.last_ts = None
        self.batch.clear()
        self.batch_lines = self.batch_skipped = 0

        report.previous_requests = record.requests
        report.resumed_after_line = record.imported_lines
        if not self.content.skip_to(record.imported_bytes):
            # The content is shorter than what was imported: nothing past it to read.
            # NOTE: the bytes it has are not compared with the recorded hash, which
            # covers the longer content.
            return False
        if self.content.digest() != record.content_sha256:
            raise ContentMismatch(record.imported_bytes, record.imported_at or 0)
        self.content.lines = record.imported_lines
        return True

    # -- database ----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self.conn is not None:
            return self.conn
        schema.prepare_database(self.database)
        try:
            conn = sqlite3.connect(
                self.database, isolation_level=None, timeout=schema.BUSY_TIMEOUT_MS / 1000
            )
            for pragma in schema.PRAGMAS:
                conn.execute(pragma)
            register_functions(conn)
        except sqlite3.Error as exc:
            raise schema.DatabaseError.from_sqlite(self.database, exc, "open") from exc
        self.conn = conn
        return conn

    def _write(self, transaction: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `transaction` under BEGIN IMMEDIATE, retrying while the database is locked."""
        conn = self._connect()
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        delay = 0.05
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = transaction(conn)
                    conn.execute("COMMIT")
                    return result
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                if _is_busy(exc) and time.monotonic() < deadline:
                    logger.info("replay into %s: database locked, retrying", self.database)
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                raise ReplayWriteError.from_sqlite(self.database, exc, "write") from exc
            except OverflowError as exc:  # a sum beyond the 64-bit integer range
                error = ReplayWriteError.of("cannot_write", path=self.database, detail=str(exc))
                raise error from exc

    def _claim(self) -> FileRecord:
        head = self.content.head
        now = _now_ms()
        params = {
            "head_sha256": hashlib.sha256(head).hexdigest(),
            "head_bytes": len(head),
            "source": self.content.name,
            "empty_sha256": EMPTY_SHA256,
            "claim_id": self.claim_id,
            "claim_host": socket.gethostname(),
            "claim_pid": os.getpid(),
            "now": now,
        }

        def claim(conn: sqlite3.Connection) -> FileRecord:
            row = _find_file(conn, head)
            if row is None:
                cursor = conn.execute(INSERT_FILE_SQL, params)
                assert cursor.lastrowid is not None
                return _new_record(cursor.lastrowid, self.claim_id, imported_at=None)

            # recorded: imported_bytes to last_ts, in the order of FileRecord's fields.
            file_id, _, *recorded, imported_at, claim_id, claim_host, claim_pid, claimed_at = row
            if claim_id is not None:
                last_activity = max(claimed_at or 0, imported_at or 0)
                if not _claim_is_stale(claim_host, claim_pid, last_activity, now):
                    raise ReplayInProgress(claim_host or "?", claim_pid or 0, claimed_at or 0)
                logger.warning(
                    "replay of %s: taking over the claim of process %s on %s, which is gone",
                    self.content.name,
                    claim_pid,
                    claim_host,
                )
            conn.execute(CLAIM_FILE_SQL, {**params, "id": file_id})
            if self.force:
                conn.execute(RESTART_FILE_SQL, {**params, "id": file_id})
                return _new_record(file_id, self.claim_id, imported_at=imported_at)
            return FileRecord(file_id, self.claim_id, *recorded, imported_at=imported_at)

        self.record = self._write(claim)
        return self.record

    def _commit(self) -> None:
        """Write the events read since the last commit with the new offset, in one transaction."""
        record = self.record
        assert record is not None
        events = self.batch
        if not events and not self.batch_lines:
            return
        rows = aggregate_batch(events)
        if rows.rejected:
            # parse_line builds only valid events, so this is a bug. Count them as the writer does.
            hour = _now_ms() // HOUR_MS
            rows.dropped_rollups = [(hour, DROP_WRITE_FAILED, len(rows.rejected))]
            logger.error(
                "replay of %s: %d events rejected by the aggregation, e.g. %s",
                self.content.name,
                len(rows.rejected),
                rows.rejected[0][1],
            )
        stored = rows.event_count
        first_ts = _min_optional(record.first_ts, min((e.ts for e in rows.requests), default=None))
        last_ts = _max_optional(record.last_ts, max((e.ts for e in rows.requests), default=None))
        progress = {
            "id": record.id,
            "claim_id": record.claim_id,
            "imported_bytes": self.content.consumed,
            "imported_lines": self.content.lines,
            "content_sha256": self.content.digest(),
            "requests": record.requests + stored,
            "skipped": record.skipped + self.batch_skipped,
            "first_ts": first_ts,
            "last_ts": last_ts,
            "now": _now_ms(),
        }

        def write(conn: sqlite3.Connection) -> None:
            if conn.execute(RECORD_PROGRESS_SQL, progress).rowcount != 1:
                raise ClaimLost(
                    f"another replay took over the import of {self.content.name} "
                    f"after line {record.imported_lines}"
                )
            for sql, params in rows.statements():
                conn.executemany(sql, params)

        self._write(write)

        record.imported_bytes = progress["imported_bytes"]
        record.imported_lines = progress["imported_lines"]
        record.content_sha256 = progress["content_sha256"]
        record.requests = progress["requests"]
        record.skipped = progress["skipped"]
        record.first_ts, record.last_ts = first_ts, last_ts
        self.report.imported += stored
        self.report.dropped += len(rows.rejected)
        self.batch = []
        self.batch_lines = self.batch_skipped = 0

    def _compact(self) -> None:
        """Compact the finished hours this import stored events in, one transaction each.

        A failure is logged and leaves the hours to the next writer that
        compacts: readers then read them from request_rollups, which is slower
        but gives the same figures. See compaction.py.
        """
        report = self.report
        if report.first_ts is None or report.last_ts is None:
            return
        first_hour = report.first_ts // HOUR_MS
        before_hour = min(report.last_ts // HOUR_MS + 1, _now_ms() // HOUR_MS)
        while before_hour > first_hour:
            compact = partial(_compact_newest, before_hour=before_hour, first_hour=first_hour)
            try:
                hour = self._write(compact)
            except ReplayWriteError as exc:
                logger.warning("replay of %s: hours not compacted: %s", self.content.name, exc)
                return
            if hour is None:
                return
            # Strictly older hours next, so events arriving meanwhile cannot keep this going.
            before_hour = hour

    def _release(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if self.record is not None:
                params = {"id": self.record.id, "claim_id": self.claim_id}
                conn.execute(RELEASE_FILE_SQL, params)
        except sqlite3.Error:
            # The claim stays; the next replay takes it over once this process is gone.
            logger.warning("replay of %s: could not release its claim", self.content.name)
        finally:
            conn.close()

    def _report_progress(self, finished: bool = False) -> None:
        if self.progress is not None:
            total = self.content.total_bytes
            done = total if finished else self.content.raw_position()
            self.progress(done, total, self.report.lines_read)


def _compact_newest(conn: sqlite3.Connection, before_hour: int, first_hour: int) -> int | None:
    return compaction.compact_newest(conn, before_hour, _now_ms(), first_hour)


def _new_record(file_id: int, claim_id: str, imported_at: int | None) -> FileRecord:
    return FileRecord(file_id, claim_id, 0, 0, EMPTY_SHA256, 0, 0, None, None, imported_at)


def _min_optional(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _max_optional(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def import_log(
    source: str | os.PathLike[str] | IO[bytes],
    database: str | os.PathLike[str],
    *,
    name: str | None = None,
    force: bool = False,
    progress: ProgressCallback | None = None,
    progress_every: int = 2000,
) -> ReplayReport:
    """Import the access log `source` (a path or a buffered binary stream) into `database`.

    `name` labels a stream in the report and the bookkeeping. Raises OSError
    when the log cannot be opened and schema.DatabaseError when the database
    cannot be used. An import that stops early raises a ReplayError subclass,
    whose `report` contains what was stored. A malformed line is counted in
    the report and never raises.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        with path.open("rb") as raw:
            content = LogContent(raw, name or str(path), _regular_file_size(raw))
            report = _Import(content, Path(database), force, progress, progress_every).run()
    else:
        content = LogContent(
            source, name or str(getattr(source, "name", "-")), _regular_file_size(source)
        )
        report = _Import(content, Path(database), force, progress, progress_every).run()

    logger.info(
        "replayed %s: %d lines, %d imported, %d skipped, %d salvaged, resumed after line %d",
        report.path,
        report.lines_read,
        report.imported,
        report.skipped,
        report.salvaged,
        report.resumed_after_line,
    )
    return report


def _regular_file_size(stream: IO[bytes]) -> int | None:
    """Return the size of the file behind `stream`, or None for a pipe or a stream in memory."""
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # io.BytesIO has no file descriptor
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


async def replay(
    path: str | os.PathLike[str],
    database: str | os.PathLike[str],
    *,
    force: bool = False,
    progress: ProgressCallback | None = None,
    progress_every: int = 2000,
) -> ReplayReport:
    """Run `import_log` in a worker thread, so the event loop stays free."""
    return await asyncio.to_thread(
        import_log,
        path,
        database,
        force=force,
        progress=progress,
        progress_every=progress_every,
    )
