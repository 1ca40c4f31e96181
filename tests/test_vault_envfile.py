"""Parsing config.env files and writing them back without their values."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hauswacht.vault.envfile import parse_env_text, read_env_file, rewrite_without
from hauswacht.vault.errors import EnvFileQuoteError, EnvFileSyntaxError, FileReadError

SAMPLE = """\
# Dispatch app settings
export ROUTING_URL=http://127.0.0.1:5000

DB_PASSWORD = spaced value   # trailing comment
HASH_IN_VALUE=abc#def
SINGLE='literal $HOME \\n kept'
DOUBLE="say \\"hi\\"\\tthen\\nnew line \\\\ done \\q"
PEM="-----BEGIN KEY-----
line two
-----END KEY-----"
QUOTED_WITH_COMMENT='value' # comment
EMPTY=
  export   INDENTED=yes
DB_PASSWORD=second wins
"""


def _values(text: str) -> dict[str, str]:
    return {entry.key: entry.value for entry in parse_env_text(text, "config.env")}


def test_parse_sample() -> None:
    assert _values(SAMPLE) == {
        "ROUTING_URL": "http://127.0.0.1:5000",
        "DB_PASSWORD": "second wins",
        "HASH_IN_VALUE": "abc#def",
        "SINGLE": "literal $HOME \\n kept",
        "DOUBLE": 'say "hi"\tthen\nnew line \\ done \\q',
        "PEM": "-----BEGIN KEY-----\nline two\n-----END KEY-----",
        "QUOTED_WITH_COMMENT": "value",
        "EMPTY": "",
        "INDENTED": "yes",
    }


def test_parse_records_line_spans() -> None:
    spans = {
        entry.key: (entry.first_line, entry.last_line)
        for entry in parse_env_text(SAMPLE, "config.env")
    }
    assert spans["ROUTING_URL"] == (2, 2)
    assert spans["PEM"] == (8, 10)
    assert spans["DB_PASSWORD"] == (14, 14)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("A=1\nthis is not an assignment\n", 2),
        ("A=1\n1BAD=x\n", 2),
        ("export\n", 1),
        ("A='closed' trailing\n", 1),
        ('A="x" y\n', 1),
    ],
)
def test_syntax_errors_name_the_line(text: str, line: int) -> None:
    with pytest.raises(EnvFileSyntaxError) as raised:
        parse_env_text(text, "config.env")
    assert raised.value.fields == {"path": "config.env", "line": line}


def test_unclosed_quote_names_its_first_line() -> None:
    with pytest.raises(EnvFileQuoteError) as raised:
        parse_env_text('A=1\nB="never closed\nC=3\n', "config.env")
    assert raised.value.fields == {"path": "config.env", "line": 2, "quote": "double"}


def test_missing_file_reported(tmp_path: Path) -> None:
    with pytest.raises(FileReadError) as raised:
        read_env_file(tmp_path / "absent.env")
    assert raised.value.fields["reason"] == "file not found"


def test_rewrite_removes_values_and_keeps_backup(tmp_path: Path) -> None:
    path = tmp_path / "config.env"
    path.write_text(SAMPLE)
    os.chmod(path, 0o640)
    text, entries = read_env_file(path)

    backup = rewrite_without(path, text, entries, {"DB_PASSWORD", "PEM", "SINGLE"})

    assert backup.parent == tmp_path
    assert backup.name.startswith("config.env.") and backup.name.endswith(".bak")
    assert backup.read_text() == SAMPLE
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    rewritten = path.read_text()
    for fragment in ("spaced value", "second wins", "BEGIN KEY", "line two", "literal $HOME"):
        assert fragment not in rewritten
    assert rewritten.splitlines() == [
        "# Dispatch app settings",
        "export ROUTING_URL=http://127.0.0.1:5000",
        "",
        "# DB_PASSWORD is stored in the Hauswacht vault: hauswacht vault get DB_PASSWORD",
        "HASH_IN_VALUE=abc#def",
        "# SINGLE is stored in the Hauswacht vault: hauswacht vault get SINGLE",
        'DOUBLE="say \\"hi\\"\\tthen\\nnew line \\\\ done \\q"',
        "# PEM is stored in the Hauswacht vault: hauswacht vault get PEM",
        "QUOTED_WITH_COMMENT='value' # comment",
        "EMPTY=",
        "  export   INDENTED=yes",
        "# DB_PASSWORD is stored in the Hauswacht vault: hauswacht vault get DB_PASSWORD",
    ]
    assert _values(rewritten)["DOUBLE"] == _values(SAMPLE)["DOUBLE"]


def test_second_rewrite_keeps_first_backup(tmp_path: Path) -> None:
    path = tmp_path / "config.env"
    path.write_text("A=1\nB=2\n")
    text, entries = read_env_file(path)
    first = rewrite_without(path, text, entries, {"A"})
    text, entries = read_env_file(path)
    second = rewrite_without(path, text, entries, {"B"})

    assert first != second
    assert first.read_text() == "A=1\nB=2\n"
    assert second.read_text().startswith("# A is stored")
    assert "=2" not in path.read_text()
