"""English and German text for everything a person reads on screen.

Each user-facing part keeps its own catalog, a dict from message key to
`{"en": ..., "de": ...}` with `str.format` fields, and looks messages up with
`translate(catalog, key, lang, **fields)`. Messages with a count keep their
singular and plural forms in a PluralCatalog for `translate_count`. argparse's
own texts are translated by `argparse_language`. The language comes from
HAUSWACHT_LANG, else from the POSIX locale variables (LC_ALL, LC_MESSAGES,
LANG), else English.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator, Mapping

LANGUAGES = ("en", "de")
DEFAULT_LANGUAGE = "en"

Catalog = Mapping[str, Mapping[str, str]]
PluralCatalog = Mapping[str, Mapping[str, tuple[str, str]]]
"""Message key to `{lang: (singular, plural)}`, for `translate_count`."""


def normalize_language(value: str | None) -> str | None:
    """Map 'de', 'de_DE.UTF-8', 'de-AT' and the like to a supported language, else None."""
    if not value:
        return None
    code = value.strip().lower().replace("-", "_").split(".")[0].split("_")[0]
    return code if code in LANGUAGES else None


def detect_language(environ: Mapping[str, str] | None = None) -> str:
    """Return the language for CLI output from the environment."""
    environ = os.environ if environ is None else environ
    for name in ("HAUSWACHT_LANG", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(name)
        if value:
            # The first variable that is set decides, as in POSIX locale lookup;
            # "C" and "POSIX" mean English.
            return normalize_language(value) or DEFAULT_LANGUAGE
    return DEFAULT_LANGUAGE


def translate(catalog: Catalog, key: str, lang: str, /, **fields: object) -> str:
    """Return message `key` of `catalog` in `lang` (English if missing) with `fields` filled in."""
    texts = catalog[key]
    text = texts.get(lang) or texts[DEFAULT_LANGUAGE]
    return text.format(**fields) if fields else text


def translate_count(
    catalog: PluralCatalog, key: str, lang: str, count: int, /, **fields: object
) -> str:
    """Return the singular or plural form of message `key` for `count`, in `lang`.

    English and German both use the singular for exactly 1 and the plural for
    every other count. `{count}` in the text is the count with the language's
    separators.
    """
    forms = catalog[key].get(lang) or catalog[key][DEFAULT_LANGUAGE]
    text = forms[0] if count == 1 else forms[1]
    return text.format(count=format_number(count, lang), **fields)


def format_number(value: float | int | None, lang: str, decimals: int = 0) -> str:
    """Format a number with the language's separators: 1,234.5 in English, 1.234,5 in German."""
    if value is None:
        return "–"
    text = f"{value:,.{decimals}f}"
    if lang == "de":
        text = text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")
    return text


# argparse's own texts in German, keyed by the English message ids of Python 3.11 to 3.13.
ARGPARSE_GERMAN = {
    "usage: ": "Aufruf: ",
    "positional arguments": "Positionsargumente",
    "options": "Optionen",
    "subcommands": "Unterbefehle",
    "show this help message and exit": "diese Hilfe anzeigen und beenden",
    "%(prog)s: error: %(message)s\n": "%(prog)s: Fehler: %(message)s\n",
    "argument %(argument_name)s: %(message)s": "Argument %(argument_name)s: %(message)s",
    "the following arguments are required: %s": "diese Argumente fehlen: %s",
    "one of the arguments %s is required": "eines der Argumente %s ist erforderlich",
    "unrecognized arguments: %s": "unbekannte Argumente: %s",
    "invalid choice: %(value)r (choose from %(choices)s)": (
        "ungültige Auswahl: %(value)r (möglich sind %(choices)s)"
    ),
    "unknown parser %(parser_name)r (choices: %(choices)s)": (
        "unbekannter Befehl %(parser_name)r (möglich sind %(choices)s)"
    ),
    "invalid %(type)s value: %(value)r": "ungültiger Wert für %(type)s: %(value)r",
    "expected one argument": "erwartet einen Wert",
    "expected at most one argument": "erwartet höchstens einen Wert",
    "expected at least one argument": "erwartet mindestens einen Wert",
    "ambiguous option: %(option)s could match %(matches)s": (
        "mehrdeutige Option: %(option)s kann %(matches)s bedeuten"
    ),
    "not allowed with argument %s": "nicht zusammen mit dem Argument %s erlaubt",
    "ignored explicit argument %r": "ignoriertes Argument %r",
    "unexpected option string: %s": "unerwartete Option: %s",
    "can't open '%(filename)s': %(error)s": "'%(filename)s' kann nicht geöffnet werden: %(error)s",
}
ARGPARSE_GERMAN_PLURALS = {
    ("expected %s argument", "expected %s arguments"): ("erwartet %s Wert", "erwartet %s Werte"),
}


@contextlib.contextmanager
def argparse_language(lang: str) -> Iterator[None]:
    """Translate argparse's own texts (usage, section titles, help option, errors) in the block.

    argparse fetches each text through its module-level `_` and `ngettext`
    (gettext functions) when it builds a parser and when it formats help or
    an error, so the parsers must be built and used inside the block. Python
    ships no German catalog for argparse; the texts come from ARGPARSE_GERMAN,
    and a text missing there stays English.
    """
    if lang != "de":
        yield
        return

    original_gettext = argparse._  # type: ignore[attr-defined]
    original_ngettext = argparse.ngettext  # type: ignore[attr-defined]

    def gettext(message: str) -> str:
        return ARGPARSE_GERMAN.get(message) or original_gettext(message)

    def ngettext(singular: str, plural: str, count: int) -> str:
        forms = ARGPARSE_GERMAN_PLURALS.get((singular, plural))
        if forms is None:
            return original_ngettext(singular, plural, count)
        return forms[0] if count == 1 else forms[1]

    argparse._ = gettext  # type: ignore[attr-defined]
    argparse.ngettext = ngettext  # type: ignore[attr-defined]
    try:
        yield
    finally:
        argparse._ = original_gettext  # type: ignore[attr-defined]
        argparse.ngettext = original_ngettext  # type: ignore[attr-defined]
