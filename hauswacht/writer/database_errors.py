"""Errors about events database files, with their messages in English and German.

`DatabaseError` is raised by `schema` and the modules that open events
databases. The CLI and the dashboard show `error.text(lang)`; `str(error)`
is the English text, for logs.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Self

from hauswacht.i18n import translate


class DatabaseError(Exception):
    """An events database that is missing, unreadable or not a Hauswacht file.

    Errors built with `of(code, **fields)` or `from_sqlite` carry `code`, a
    key of MESSAGES, and the `fields` of its text, so the CLI and the
    dashboard can show them in the user's language with `text(lang)`.
    `str(error)` is the English text, for logs. Errors raised with a plain
    message have no code and only English text.
    """

    code: str | None = None
    fields: Mapping[str, object] = MappingProxyType({})

    @classmethod
    def of(cls, code: str, /, **fields: object) -> Self:
        """Return the error with message `code` of MESSAGES and its `fields`."""
        error = cls(translate(MESSAGES, code, "en", **fields))
        error.code = code
        error.fields = fields
        return error

    @classmethod
    def from_sqlite(cls, path: str | os.PathLike[str], exc: sqlite3.Error, action: str) -> Self:
        """Return the error for `exc`, raised by SQLite on `path` during `action`.

        `action` is "open", "read", "write" or "use". It selects the generic
        message when `classify_sqlite_error` finds no specific cause.
        """
        code, fields = classify_sqlite_error(Path(path), exc, action)
        return cls.of(code, **fields)

    def text(self, lang: str) -> str:
        """Return the message in `lang`; an error without a code returns its English text."""
        if self.code is None:
            return str(self)
        return translate(MESSAGES, self.code, lang, **self.fields)


# The messages of DatabaseError, in the form of hauswacht.i18n catalogs. Each
# names the path first and ends with what to do.
MESSAGES = {
    "missing": {
        "en": "{path}: no such file; record events first or pass --db",
        "de": "{path}: Datei nicht gefunden; erst Ereignisse aufzeichnen oder --db angeben",
    },
    "not_file": {
        "en": "{path}: is not a file; pass the path of an events database with --db",
        "de": "{path}: ist keine Datei; mit --db den Pfad einer Ereignisdatenbank angeben",
    },
    "unreadable": {
        "en": "{path}: not readable by this user; check its permissions",
        "de": "{path}: für diesen Benutzer nicht lesbar; Zugriffsrechte prüfen",
    },
    "folder_unsearchable": {
        "en": "{path}: this user may not enter a folder on its path; give this user search "
        "(x) permission on the folders up to {folder}",
        "de": "{path}: dieser Benutzer darf einen Ordner auf dem Pfad nicht betreten; ihm das "
        "Recht x auf die Ordner bis {folder} geben",
    },
    "not_sqlite": {
        "en": "{path}: not an SQLite database; pass the path of an events database",
        "de": "{path}: keine SQLite-Datenbank; den Pfad einer Ereignisdatenbank angeben",
    },
    "foreign": {
        "en": "{path}: not a Hauswacht events database (application_id {application_id:#x})",
        "de": "{path}: keine Hauswacht-Ereignisdatenbank (application_id {application_id:#x})",
    },
    "schema_newer": {
        "en": "{path}: schema version {version} is newer than this Hauswacht (knows "
        "{known}); upgrade Hauswacht",
        "de": "{path}: Schemaversion {version} ist neuer als dieses Hauswacht (kennt "
        "{known}); Hauswacht aktualisieren",
    },
    "schema_older": {
        "en": "{path}: schema version {version}, expected {expected}; to migrate it, run "
        "`hauswacht serve --db {quoted}` once and stop it with Ctrl-C when it listens, or "
        "start an app with the Hauswacht middleware on it",
        "de": "{path}: Schemaversion {version}, erwartet {expected}; zum Migrieren einmal "
        "`hauswacht serve --db {quoted}` starten und mit Strg-C beenden, sobald er lauscht, "
        "oder eine App mit der Hauswacht-Middleware darauf starten",
    },
    "folder_readonly": {
        "en": "{path}: cannot open, because this user cannot write to the folder {folder} "
        "and SQLite must create {name}-shm and {name}-wal there to open a WAL-mode "
        "database, even for reading; make the folder writable for this user or run as "
        "the owner of the database",
        "de": "{path}: kann nicht geöffnet werden, weil dieser Benutzer im Ordner {folder} "
        "nicht schreiben darf und SQLite dort {name}-shm und {name}-wal anlegen muss, um "
        "eine Datenbank im WAL-Modus zu öffnen, auch nur zum Lesen; dem Benutzer "
        "Schreibrecht auf den Ordner geben oder als Eigentümer der Datenbank ausführen",
    },
    "folder_no_create": {
        "en": "{path}: cannot create the file, because this user cannot write to the folder "
        "{folder}; make the folder writable for this user or pass another path with --db",
        "de": "{path}: Datei kann nicht angelegt werden, weil dieser Benutzer im Ordner "
        "{folder} nicht schreiben darf; dem Benutzer Schreibrecht auf den Ordner geben oder "
        "mit --db einen anderen Pfad angeben",
    },
    "file_readonly": {
        "en": "{path}: read-only for this user; give this user write permission on the file "
        "(chmod or chown) or run as a user who has it",
        "de": "{path}: für diesen Benutzer schreibgeschützt; ihm Schreibrecht auf die Datei "
        "geben (chmod oder chown) oder als ein Benutzer mit Schreibrecht ausführen",
    },
    "sibling_readonly": {
        "en": "{path}: {sibling} beside it is read-only for this user; give this user write "
        "permission on it (chmod or chown) or run as its owner",
        "de": "{path}: {sibling} daneben ist für diesen Benutzer schreibgeschützt; ihm "
        "Schreibrecht darauf geben (chmod oder chown) oder als dessen Eigentümer ausführen",
    },
    "folder_denied": {
        "en": "{folder}: cannot create the folder: permission denied; create it yourself or "
        "pass another path with --db",
        "de": "{folder}: Ordner kann nicht angelegt werden: keine Berechtigung; ihn selbst "
        "anlegen oder mit --db einen anderen Pfad angeben",
    },
    "folder_failed": {
        "en": "{folder}: cannot create the folder ({detail})",
        "de": "{folder}: Ordner kann nicht angelegt werden ({detail})",
    },
    "locked": {
        "en": "{path}: locked by another process; try again when it has finished",
        "de": "{path}: von einem anderen Prozess gesperrt; erneut versuchen, wenn er fertig ist",
    },
    "disk_full": {
        "en": "{path}: the disk is full; free some space and try again",
        "de": "{path}: der Datenträger ist voll; Platz freigeben und erneut versuchen",
    },
    "corrupt": {
        "en": "{path}: the database file is damaged; restore it from a backup",
        "de": "{path}: die Datenbankdatei ist beschädigt; aus einer Sicherung wiederherstellen",
    },
    # SQLite's own error text is English; the German messages mark it as quoted.
    "cannot_open": {
        "en": "{path}: cannot open ({detail})",
        "de": "{path}: kann nicht geöffnet werden (SQLite: {detail})",
    },
    "cannot_read": {
        "en": "{path}: cannot read ({detail})",
        "de": "{path}: kann nicht gelesen werden (SQLite: {detail})",
    },
    "cannot_write": {
        "en": "{path}: cannot write ({detail})",
        "de": "{path}: kann nicht geschrieben werden (SQLite: {detail})",
    },
    "cannot_use": {
        "en": "{path}: cannot use as events database ({detail})",
        "de": "{path}: nicht als Ereignisdatenbank nutzbar (SQLite: {detail})",
    },
}

_GENERIC_CODES = {"open": "cannot_open", "read": "cannot_read", "write": "cannot_write"}


def classify_sqlite_error(
    path: Path, exc: sqlite3.Error, action: str
) -> tuple[str, dict[str, object]]:
    """Return the MESSAGES code and fields for the cause of `exc`, raised by SQLite on `path`.

    The cause comes from SQLite's (extended) result code and, for read-only
    errors, from which of the file, its -wal and -shm files and its folder
    this user may write. Other causes get the generic message of `action`
    ("open", "read", "write", else "use") with SQLite's text.
    """
    name = getattr(exc, "sqlite_errorname", "")
    primary = getattr(exc, "sqlite_errorcode", -1) & 0xFF
    folder = path.parent
    if name == "SQLITE_READONLY_DIRECTORY":
        return "folder_readonly", {"path": path, "folder": folder, "name": path.name}
    if primary == sqlite3.SQLITE_READONLY:
        if file_state(path) == "file" and not writable(path):
            return "file_readonly", {"path": path}
        for suffix in ("-wal", "-shm"):
            sibling = path.with_name(path.name + suffix)
            if file_state(sibling) == "file" and not writable(sibling):
                return "sibling_readonly", {"path": path, "sibling": sibling.name}
        if not writable(folder):
            return "folder_readonly", {"path": path, "folder": folder, "name": path.name}
    if (
        primary == sqlite3.SQLITE_CANTOPEN
        and file_state(path) == "missing"
        and not writable(folder)
    ):
        return "folder_no_create", {"path": path, "folder": folder}
    if primary == sqlite3.SQLITE_NOTADB:
        return "not_sqlite", {"path": path}
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return "locked", {"path": path}
    if primary == sqlite3.SQLITE_FULL:
        return "disk_full", {"path": path}
    if primary == sqlite3.SQLITE_CORRUPT:
        return "corrupt", {"path": path}
    return _GENERIC_CODES.get(action, "cannot_use"), {"path": path, "detail": str(exc)}


def describe_error(error: DatabaseError, path: str | os.PathLike[str], lang: str) -> str:
    """Return the message of `error` about the events database `path` in `lang`.

    An error raised with a plain message (no code) is described by its
    SQLite cause where `describe_cause` finds a specific message, else by
    its English text.
    """
    if error.code is not None:
        return error.text(lang)
    return describe_cause(error, path, lang) or str(error)


def describe_cause(error: DatabaseError, path: str | os.PathLike[str], lang: str) -> str | None:
    """Return the message in `lang` for the SQLite error that caused `error`, or None.

    None when the cause is no SQLite error or one that only the generic
    messages with SQLite's English text describe.
    """
    cause = error.__cause__
    if not isinstance(cause, sqlite3.Error):
        return None
    code, fields = classify_sqlite_error(Path(path), cause, "use")
    if "detail" in fields:
        return None
    return translate(MESSAGES, code, lang, **fields)


def file_state(path: Path) -> str:
    """Return "file", "not_file", "missing" or "denied" for `path`, without raising.

    "denied" means this user may not look into a folder on the way to it.
    (Path.exists() raises PermissionError then.)
    """
    try:
        info = os.stat(path)
    except PermissionError:
        return "denied"
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    return "file" if stat.S_ISREG(info.st_mode) else "not_file"


def writable(path: Path) -> bool:
    """Return whether this process may write `path`."""
    # The effective ids decide what SQLite may open, as for every other open().
    return os.access(path, os.W_OK, effective_ids=os.access in os.supports_effective_ids)
