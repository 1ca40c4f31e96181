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


def test_leading_byte_order_mark_ignored(tmp_path: Path) -> None:
    path = tmp_path / "config.env"
    path.write_bytes("\ufeffAPI_KEY=abc\nDB=x\n".encode())
    text, entries = read_env_file(path)
    assert [(entry.key, entry.value, entry.first_line) for entry in entries] == [
        ("API_KEY", "abc", 1),
        ("DB", "x", 2),
    ]

    rewrite_without(path, text, entries, {"API_KEY"})
    assert (
        path.read_bytes()
        == (
            "\ufeff# API_KEY is stored in the Hauswacht vault: hauswacht vault get API_KEY\nDB=x\n"
        ).encode()
    )


def test_lines_split_only_at_newlines() -> None:
    # Form feed, U+2028, U+0085 and a lone \r are inside a line, as editors show them.
    text = 'A="x\x0cy"\nB=one\u2028two\nC=a\x85b\nD=r\rs\nnot valid\n'
    with pytest.raises(EnvFileSyntaxError) as raised:
        parse_env_text(text, "config.env")
    assert raised.value.fields == {"path": "config.env", "line": 5}

    entries = parse_env_text(text.replace("not valid\n", ""), "config.env")
    assert [(entry.key, entry.value, entry.first_line) for entry in entries] == [
        ("A", "x\x0cy", 1),
        ("B", "one\u2028two", 2),
        ("C", "a\x85b", 3),
        ("D", "r\rs", 4),
    ]


def test_rewrite_keeps_crlf_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "config.env"
    original = b'# settings\r\nSECRET="multi\r\nline"\r\nKEEP=1\r\nLAST=z'
    path.write_bytes(original)
    text, entries = read_env_file(path)
    assert {entry.key: entry.value for entry in entries}["SECRET"] == "multi\nline"

    backup = rewrite_without(path, text, entries, {"SECRET", "LAST"})
    assert backup.read_bytes() == original
    assert path.read_bytes() == (
        b"# settings\r\n"
        b"# SECRET is stored in the Hauswacht vault: hauswacht vault get SECRET\r\n"
        b"KEEP=1\r\n"
        b"# LAST is stored in the Hauswacht vault: hauswacht vault get LAST"
    )


def test_env_file_read_errors_use_known_reasons(tmp_path: Path) -> None:
    with pytest.raises(FileReadError) as directory:
        read_env_file(tmp_path)
    assert directory.value.fields == {"path": str(tmp_path), "reason": "is a directory"}
    latin = tmp_path / "latin1.env"
    latin.write_bytes(b"A=\xe4\n")
    with pytest.raises(FileReadError) as not_utf8:
        read_env_file(latin)
    assert not_utf8.value.fields["reason"] == "not UTF-8 text"
