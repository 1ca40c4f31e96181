"""Parse Python traceback text into the exception layout of error events.

Services that cannot send structured frames (a log shipper, a cron job's
stderr) can send the printed traceback as `exception.stacktrace`. This
module turns it into the `data["exceptions"]` layout that errors.py
produces, so such events group like captured ones.

What it reads: the `Traceback (most recent call last):` header, which is
optional, so a trace with the header cut off parses the same. Then
`File "...", line N, in f` lines (also with the leading `>` marker that
loguru prints), the source line under each frame, Python 3.11 caret lines
(skipped), the exception line `module.Type: message` or `Type`, and the
two chaining sentences. Lines
that fit none of these are ignored. When the text holds several unrelated
tracebacks (a REPL session), the last one is used.

Not read: the `| ` boxed layout of exception groups and PEP 678 notes
below the exception line; such text still yields the outer frames and type.

Frames are in-app unless the path contains site-packages, dist-packages or
/lib/pythonX.Y/, or starts with `<` (`<frozen ...>`, `<stdin>`), as in
errors.py. Module names are unknown in text, so they are None and grouping
uses the file base name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

MAX_TEXT = 256 * 1024  # characters of traceback text read
MAX_BLOCKS = 10
MAX_FRAMES = 50
FRAMES_HEAD = 10
MAX_LINE = 1024

_HEADER = "Traceback (most recent call last):"
_CAUSE = "The above exception was the direct cause of the following exception:"
_CONTEXT = "During handling of the above exception, another exception occurred:"
_FRAME = re.compile(r'^[\s>]*File "(?P<file>[^"]*)", line (?P<line>\d+)(?:, in (?P<func>.+))?$')
_EXCEPTION = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<message>.*))?$")
_CARETS = re.compile(r"^[\s^~]+$")
_LIBRARY = re.compile(r"site-packages|dist-packages|[/\\]lib[/\\]python\d|^<")


@dataclass
class _Block:
    relation: str | None  # how the block before this one relates to it
    frames: list[dict[str, Any]] = field(default_factory=list)
    type: str | None = None
    message: str = ""


@dataclass(frozen=True)
class ParsedTraceback:
    """The raised exception's type and message and the chain in the errors.py layout."""

    type: str
    message: str
    exceptions: list[dict[str, Any]]


def parse_traceback(text: str) -> ParsedTraceback | None:
    """Parse the last Python traceback in `text`; return None when there is none."""
    chains: list[list[_Block]] = []
    current: _Block | None = None
    pending: str | None = None

    for raw_line in text[:MAX_TEXT].splitlines():
        line = raw_line.rstrip()
        stripped = line.strip()
        if stripped == _HEADER:
            current = _start(chains, pending)
            pending = None
            continue
        if stripped == _CAUSE:
            pending = "cause"
            continue
        if stripped == _CONTEXT:
            pending = "context"
            continue

        match = _FRAME.match(line)
        if match:
            if current is None:
                current = _start(chains, pending)
                pending = None
            current.frames.append(_frame(match))
            continue
        if current is None or not stripped:
            continue

        if line[0].isspace():
            # The source line of the frame above, unless it is a caret marker line.
            if current.frames and current.frames[-1]["line"] is None and not _CARETS.match(line):
                current.frames[-1]["line"] = stripped[:MAX_LINE]
            continue

        match = _EXCEPTION.match(stripped)
        if match:
            current.type = match["type"]
            current.message = (match["message"] or "").strip()
            current = None

    for chain in reversed(chains):
        complete = [block for block in chain if block.type is not None]
        if complete:
            return _to_parsed(complete)
    return None


def _start(chains: list[list[_Block]], relation: str | None) -> _Block:
    block = _Block(relation)
    if relation is None or not chains:
        chains.append([block])
    else:
        chains[-1].append(block)
    return block


def _frame(match: re.Match[str]) -> dict[str, Any]:
    filename = match["file"]
    return {
        "filename": filename,
        "module": None,
        "function": (match["func"] or "?").strip(),
        "lineno": int(match["line"]),
        "line": None,
        "in_app": not _LIBRARY.search(filename),
    }


def _to_parsed(blocks: list[_Block]) -> ParsedTraceback:
    blocks = blocks[-MAX_BLOCKS:]
    exceptions = []
    # Printed oldest first, stored with the raised exception first. A block's
    # relation is how the block before it relates to it.
    for index, block in enumerate(reversed(blocks)):
        newer = blocks[len(blocks) - index] if index else None
        frames = block.frames
        omitted = 0
        if len(frames) > MAX_FRAMES:
            omitted = len(frames) - MAX_FRAMES
            frames = frames[:FRAMES_HEAD] + frames[-(MAX_FRAMES - FRAMES_HEAD) :]
        exceptions.append(
            {
                "type": block.type,
                "message": block.message,
                "relation": newer.relation if newer is not None else None,
                "parent": index - 1 if index else None,
                "frames": frames,
                "frames_omitted": omitted,
            }
        )
    first = exceptions[0]
    return ParsedTraceback(first["type"], first["message"], exceptions)
