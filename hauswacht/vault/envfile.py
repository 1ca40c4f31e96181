"""Reading `config.env`-style files and writing them back without their secrets.

Accepted lines, as shells and python-dotenv read them:
- blank lines and comments (`# ...`);
- `KEY=VALUE` and `export KEY=VALUE`, with optional spaces around `=`;
- unquoted values end at the line end or at ` #` (a comment); outer spaces
  are stripped;
- 'single quoted' values are literal and may span lines;
- "double quoted" values may span lines and know the escapes \\n \\r \\t
  \\" \\\\ \\$ and \\` (any other backslash is kept as written).

`${VAR}` references are not expanded: the value is stored as written. Any
other line is a syntax error naming the file and line, and nothing is stored.
A key that appears twice keeps its last value, as in a shell.

Lines end at \\n or \\r\\n only, so line numbers match what editors show (a
form feed or U+2028 inside a line does not start a new one). A leading UTF-8
byte order mark is ignored. `rewrite_without` keeps the byte order mark and
each line's own line ending.
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from hauswacht.vault.errors import (
    REASON_FILE_NOT_FOUND,
    REASON_IS_DIRECTORY,
    REASON_NOT_UTF8,
    EnvFileQuoteError,
    EnvFileSyntaxError,
    FileReadError,
    FileWriteError,
)
from hauswacht.vault.keys import create_private_file

_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$", re.DOTALL)
_DOUBLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "$": "$", "`": "`"}
_BOM = "\ufeff"


@dataclass(frozen=True)
class EnvEntry:
    key: str
    value: str
    first_line: int  # 1-based
    last_line: int  # the same as first_line unless a quoted value spans lines


def split_lines(text: str) -> list[tuple[str, str]]:
    """Split `text` at \\n and \\r\\n only; return (line, line ending) pairs.

    The last line has the ending "" when the text does not end with a newline.
    """
    pieces = text.split("\n")
    lines = []
    for piece in pieces[:-1]:
        if piece.endswith("\r"):
            lines.append((piece[:-1], "\r\n"))
        else:
            lines.append((piece, "\n"))
    if pieces[-1]:
        lines.append((pieces[-1], ""))
    return lines


def parse_env_text(text: str, path: str) -> list[EnvEntry]:
    """Parse the file contents into entries in file order; raise on any invalid line."""
    text = text.removeprefix(_BOM)
    lines = [line for line, _ in split_lines(text)]
    entries: list[EnvEntry] = []
    index = 0

    while index < len(lines):
        line = lines[index]
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            index += 1
            continue

        match = _ASSIGNMENT.match(line)
        if match is None:
            raise EnvFileSyntaxError(path=path, line=index + 1)
        key, rest = match.group(1), match.group(2)

        if rest.startswith(("'", '"')):
            value, last = _parse_quoted(lines, index, rest, path)
        else:
            value, last = _strip_comment(rest).strip(), index
        entries.append(EnvEntry(key, value, index + 1, last + 1))
        index = last + 1
    return entries


def _strip_comment(text: str) -> str:
    match = re.search(r"\s#", text)
    return text[: match.start()] if match else text


def _parse_quoted(lines: list[str], start: int, rest: str, path: str) -> tuple[str, int]:
    """Read a quoted value starting in `rest`; return it and the index of its last line."""
    quote = rest[0]
    text = rest[1:]
    line_index = start
    chars: list[str] = []

    while True:
        position = 0
        while position < len(text):
            char = text[position]
            if quote == '"' and char == "\\" and position + 1 < len(text):
                following = text[position + 1]
                chars.append(_DOUBLE_ESCAPES.get(following, "\\" + following))
                position += 2
                continue
            if char == quote:
                tail = text[position + 1 :].strip()
                if tail and not tail.startswith("#"):
                    raise EnvFileSyntaxError(path=path, line=line_index + 1)
                return "".join(chars), line_index
            chars.append(char)
            position += 1

        line_index += 1
        if line_index >= len(lines):
            kind = "single" if quote == "'" else "double"
            raise EnvFileQuoteError(path=path, line=start + 1, quote=kind)
        chars.append("\n")
        text = lines[line_index]


def read_env_file(path: Path) -> tuple[str, list[EnvEntry]]:
    """Return the text of an env file and its entries."""
    # Bytes, not read_text(): text mode would turn \r\n into \n before a rewrite.
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise FileReadError(path=str(path), reason=REASON_FILE_NOT_FOUND) from None
    except IsADirectoryError:
        raise FileReadError(path=str(path), reason=REASON_IS_DIRECTORY) from None
    except UnicodeDecodeError:
        raise FileReadError(path=str(path), reason=REASON_NOT_UTF8) from None
    except OSError as exc:
        raise FileReadError(path=str(path), reason=exc.strerror or str(exc)) from None
    return text, parse_env_text(text, str(path))


def rewrite_without(path: Path, text: str, entries: list[EnvEntry], keys: Collection[str]) -> Path:
    """Write `path` back with the lines of `keys` replaced by a comment; return the backup path.

    The original text is first saved as a new mode 0600 file next to it
    (`NAME.TIMESTAMP.bak`), then the file is replaced atomically and keeps its mode.
    The backup contains the values in plain text: the caller tells the user where it is.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    backup = path.with_name(f"{path.name}.{stamp}.bak")
    counter = 1
    while backup.exists():
        backup = path.with_name(f"{path.name}.{stamp}-{counter}.bak")
        counter += 1
    create_private_file(backup, text.encode("utf-8"))

    bom = _BOM if text.startswith(_BOM) else ""
    lines = split_lines(text.removeprefix(bom))
    removed: dict[int, EnvEntry] = {}
    skipped: set[int] = set()
    for entry in entries:
        if entry.key in keys:
            removed[entry.first_line] = entry
            skipped.update(range(entry.first_line + 1, entry.last_line + 1))

    output = [bom]
    for number, (line, ending) in enumerate(lines, start=1):
        if number in removed:
            entry = removed[number]
            # The comment replaces every line of the entry, so it takes the last line's ending.
            last_ending = lines[entry.last_line - 1][1]
            output.append(
                f"# {entry.key} is stored in the Hauswacht vault: "
                f"hauswacht vault get {entry.key}{last_ending}"
            )
        elif number not in skipped:
            output.append(line + ending)
    new_text = "".join(output)

    mode = stat.S_IMODE(path.stat().st_mode)
    temporary = path.with_name(f".{path.name}.rewrite.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(new_text.encode("utf-8"))
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise FileWriteError(path=str(path), reason=exc.strerror or str(exc)) from None
    return backup
