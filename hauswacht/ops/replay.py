"""Import Apache/Nginx access logs as request events, to backfill history.

Accepted line formats (one request per line):
- common:   client ident user [time] "request" status bytes
- combined: common + ` "referer" "user-agent"`
- either of them + one trailing request-time field.

The request-time unit follows from how it is written: a number with a decimal
point is seconds (nginx `$request_time`, millisecond resolution), an integer
is microseconds (Apache `%D`). Apache's `%T` (whole seconds) is therefore
not supported; it would be read as microseconds.

Each line becomes one RequestEvent. Its timestamp is the log's own time,
with the offset honoured, as UTC epoch ms. The path loses its query string,
and the route is the path with id-like segments replaced by `{id}`. Status,
response bytes, client and user agent are kept, with `-` stored as None.
The referer is not stored.

A line that does not fit is skipped, counted and reported with its line
number; it never stops the import. One kind of damage is salvaged instead:
a line whose common-format part is complete but whose referer or user agent
is cut off (no closing quote, as happens when a logger truncates long lines).
Such a line is imported with the complete fields, the cut user agent text as
it stands, and is reported as salvaged.

Events go through the same Writer as live traffic, so the rollups are built
exactly as for the middleware. The import never drops an event: before each
put() it waits for a flush when the queue is full.
"""

from __future__ import annotations

import asyncio
import calendar
import datetime as dt
import gzip
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from hauswacht.writer.events import RequestEvent
from hauswacht.writer.queue import EventQueue
from hauswacht.writer.writer import Writer

logger = logging.getLogger(__name__)

ID_PLACEHOLDER = "{id}"
MAX_PATH_LENGTH = 512  # characters of the raw path stored, as the middleware default
MAX_REPORTED_LINES = 10  # malformed lines kept with their number and reason
REPLAY_BATCH_SIZE = 2000
REPLAY_QUEUE_SIZE = 20_000

_QUOTED = r'"((?:[^"\\]|\\.)*)"'  # a quoted field; backslash escapes a quote
_COMMON = (
    r"(?P<client>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]*)\] "
    + _QUOTED.replace("((", "(?P<request>(", 1)
    + r" (?P<status>\d{3}) (?P<bytes>\d+|-)"
)
_REQUEST_TIME = r"(?: (?P<request_time>\d+(?:\.\d+)?))?"
LINE_PATTERN = re.compile(
    "^"
    + _COMMON
    + "(?: "
    + _QUOTED.replace("((", "(?P<referer>(", 1)
    + " "
    + _QUOTED.replace("((", "(?P<user_agent>(", 1)
    + ")?"
    + _REQUEST_TIME
    + "$"
)
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

_NUMBER = re.compile(r"^\d+$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Hex of 8 or more characters with at least one digit, so that words spelt
# only with the letters a-f ("acceded", "deadbeef") stay as they are.
_HEX = re.compile(r"^(?=[a-fA-F]*\d)[0-9a-fA-F]{8,}$")
# Long letter-and-digit tokens (base62 ids, session keys, hashes in other encodings).
_TOKEN = re.compile(r"^(?=[A-Za-z0-9]*\d)(?=[A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]{20,}$")


# Why a line was skipped: a code for translated output, with its English text.
LINE_ERRORS = {
    "empty": "empty line",
    "no_time": "no [time] field",
    "no_request_field": "no quoted request field",
    "format": "does not match the common or combined log format",
    "bad_time": "invalid time [{value}]",
    "no_request": "no request line (logged as “-”)",
    "bad_request": "invalid request line {value}",
    "bad_status": "status {value} is outside 100-599",
}


class LineError(ValueError):
    """A log line that cannot be imported, with a LINE_ERRORS `code` and the offending `value`."""

    def __init__(self, code: str, value: str = "") -> None:
        super().__init__(LINE_ERRORS[code].format(value=value))
        self.code = code
        self.value = value


@dataclass
class ParsedLine:
    event: RequestEvent
    salvaged: bool


@dataclass
class SkippedLine:
    number: int  # 1-based line number in the file
    code: str  # a key of LINE_ERRORS
    value: str  # the offending text, for the message


@dataclass
class ReplayReport:
    """The outcome of an import: `lines_read` = `imported` + `skipped`.

    `dropped` counts imported events that the writer finally could not store.
    """

    path: str
    lines_read: int = 0
    imported: int = 0
    skipped: int = 0
    salvaged: int = 0
    dropped: int = 0  # imported events the writer could not store (disk full and the like)
    skipped_lines: list[SkippedLine] = field(default_factory=list)  # the first few
    salvaged_lines: list[int] = field(default_factory=list)  # the first few
    first_ts: int | None = None
    last_ts: int | None = None


ProgressCallback = Callable[[int, int, int], None]
"""Called as progress(bytes_read, total_bytes, lines_read) now and then during an import."""


def route_for_path(path: str) -> str:
    """Return `path` with each id-like segment (number, UUID, hex, long token) set to `{id}`."""
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
    )


def parse_time(text: str) -> int:
    """Parse an access-log time like `17/May/2015:10:05:03 +0200` into UTC epoch ms."""
    match = TIME_PATTERN.match(text)
    if match is None:
        raise LineError("bad_time", text)
    day, month_name, year, hour, minute, second, sign, offset_hours, offset_minutes = match.groups()
    month = MONTHS.get(month_name.capitalize())
    if month is None:
        raise LineError("bad_time", text)
    try:
        local = dt.datetime(int(year), month, int(day), int(hour), int(minute), int(second))
    except ValueError:
        raise LineError("bad_time", text) from None
    offset_seconds = int(offset_hours) * 3600 + int(offset_minutes) * 60
    if sign == "-":
        offset_seconds = -offset_seconds
    return (calendar.timegm(local.timetuple()) - offset_seconds) * 1000


def parse_request_time(text: str) -> float:
    """Return the request time in ms: `0.123` is seconds, `123000` is microseconds."""
    if "." in text:
        return float(text) * 1000.0
    return int(text) / 1000.0


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


def _unescape(value: str) -> str:
    return value.replace('\\"', '"').replace("\\\\", "\\")


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
    request = _unescape(fields["request"])
    if request == "-" or not request:
        raise LineError("no_request")
    request_match = REQUEST_PATTERN.match(request)
    if request_match is None:
        raise LineError("bad_request", repr(request[:80]))
    method, target = request_match.groups()

    status = int(fields["status"])
    if not 100 <= status <= 599:
        raise LineError("bad_status", str(status))

    ts = parse_time(fields["time"])
    path = split_target(target)[:MAX_PATH_LENGTH]
    response_bytes = None if fields["bytes"] == "-" else int(fields["bytes"])
    user_agent = fields.get("user_agent")
    if salvaged:
        user_agent = fields.get("cut_user_agent")
    if user_agent is not None:
        user_agent = None if user_agent in ("-", "") else _unescape(user_agent)
    request_time = fields.get("request_time")
    duration_ms = None if request_time is None else parse_request_time(request_time)

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


class LogReader:
    """Iterate (line number, text) over an access log, plain or gzip-compressed.

    `bytes_read` is the position in the file on disk (compressed bytes for a
    gzip file), for a progress display. Invalid UTF-8 is replaced by U+FFFD
    instead of failing, so odd bytes in a user agent cost that field's
    fidelity and not the line.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.total_bytes = path.stat().st_size

    def __iter__(self) -> Iterator[tuple[int, str]]:
        with self.path.open("rb") as raw_file:
            self._raw_file = raw_file
            stream: IO[bytes] = raw_file
            if raw_file.read(2) == b"\x1f\x8b":  # rotated logs are often gzipped
                raw_file.seek(0)
                stream = gzip.GzipFile(fileobj=raw_file, mode="rb")
            else:
                raw_file.seek(0)
            for number, raw in enumerate(stream, start=1):
                yield number, raw.decode("utf-8", errors="replace").rstrip("\r\n")

    @property
    def bytes_read(self) -> int:
        return self._raw_file.tell()


async def replay(
    path: str | os.PathLike[str],
    database: str | os.PathLike[str],
    *,
    progress: ProgressCallback | None = None,
    progress_every: int = 2000,
) -> ReplayReport:
    """Import the access log at `path` into the events database at `database`.

    Raises OSError when the log cannot be read and schema.DatabaseError when the
    database cannot be used. A malformed line is counted in the report and never raises.
    """
    path = Path(path)
    total_bytes = path.stat().st_size
    report = ReplayReport(path=str(path))

    queue = EventQueue(maxsize=REPLAY_QUEUE_SIZE, wake_at=REPLAY_BATCH_SIZE)
    writer = Writer(database, queue, batch_size=REPLAY_BATCH_SIZE)
    await writer.start()
    try:
        reader = LogReader(path)
        for number, text in reader:
            report.lines_read = number
            _import_line(report, queue, number, text)

            # The queue is bounded; wait for the writer instead of dropping.
            while len(queue) >= queue.maxsize:
                await writer.flush()
            if number % progress_every == 0:
                if progress is not None:
                    progress(reader.bytes_read, total_bytes, number)
                await asyncio.sleep(0)  # let the writer task run between chunks
    finally:
        await writer.stop()
        report.dropped = queue.dropped

    if progress is not None:
        progress(total_bytes, total_bytes, report.lines_read)
    logger.info(
        "replayed %s: %d lines, %d imported, %d skipped, %d salvaged, %d dropped",
        path,
        report.lines_read,
        report.imported,
        report.skipped,
        report.salvaged,
        report.dropped,
    )
    return report


def _import_line(report: ReplayReport, queue: EventQueue, number: int, text: str) -> None:
    try:
        parsed = parse_line(text)
    except LineError as exc:
        report.skipped += 1
        if len(report.skipped_lines) < MAX_REPORTED_LINES:
            report.skipped_lines.append(SkippedLine(number, exc.code, exc.value))
        return

    if not queue.put(parsed.event):
        # Only this import feeds the queue and it checks for room first.
        raise RuntimeError("replay queue full although the import waited for a flush")
    report.imported += 1
    if parsed.salvaged:
        report.salvaged += 1
        if len(report.salvaged_lines) < MAX_REPORTED_LINES:
            report.salvaged_lines.append(number)
    ts = parsed.event.ts
    report.first_ts = ts if report.first_ts is None else min(report.first_ts, ts)
    report.last_ts = ts if report.last_ts is None else max(report.last_ts, ts)
