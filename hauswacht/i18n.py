"""English and German text for everything a person reads on screen.

Each user-facing part keeps its own catalog, a dict from message key to
`{"en": ..., "de": ...}` with `str.format` fields, and looks messages up with
`translate(catalog, key, lang, **fields)`. The language comes from
HAUSWACHT_LANG, else from the POSIX locale variables (LC_ALL, LC_MESSAGES,
LANG), else English.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

LANGUAGES = ("en", "de")
DEFAULT_LANGUAGE = "en"

Catalog = Mapping[str, Mapping[str, str]]


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


def format_number(value: float | int | None, lang: str, decimals: int = 0) -> str:
    """Format a number with the language's separators: 1,234.5 in English, 1.234,5 in German."""
    if value is None:
        return "–"
    text = f"{value:,.{decimals}f}"
    if lang == "de":
        text = text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")
    return text
