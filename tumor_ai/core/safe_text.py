"""Text a user supplied (file names, zip members, DICOM fields), made inert before the page or a spreadsheet reads it.

The app's messages are Markdown (``gr.Markdown`` renders HTML too), its tables may be opened in
a spreadsheet, and its names may carry bidirectional controls that make ``gpj.exe`` read as
``exe.jpg``. Everything that came from a file passes through here on its way out: ``markdown``
for the page, ``csv_cell`` for the CSV, ``plain`` for names shown anywhere.
"""

from __future__ import annotations

import html
import re
import unicodedata

# Unicode's bidirectional embeddings, overrides, isolates and marks (UAX #9).
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# CommonMark's backslash-escapable ASCII punctuation, less the three that ``html.escape`` turns into entities.
MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:;'\"=/$%^?,@])")
# What a spreadsheet reads as the start of a formula (OWASP CSV injection), tab and carriage return included.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def plain(text: object) -> str:
    """One line with no control characters and no bidirectional overrides: safe to show as a name."""
    cleaned = []
    for char in str(text):
        if char in BIDI_CONTROLS:
            continue
        cleaned.append(" " if unicodedata.category(char) in ("Cc", "Zl", "Zp") else char)
    return "".join(cleaned)


def markdown(text: object) -> str:
    """``text`` as literal characters inside Markdown: no element, link, image, emphasis or heading can form."""
    escaped = MARKDOWN_PUNCTUATION.sub(r"\\\1", plain(text))
    return html.escape(escaped, quote=False)


def html_text(text: object) -> str:
    """``text`` as literal characters inside HTML (an error pop-up, a caption)."""
    return html.escape(plain(text), quote=True)


def csv_cell(value: object) -> object:
    """A value a spreadsheet will not run: text that starts like a formula gets a leading apostrophe.

    Numbers pass unchanged, so a negative confidence (there are none) would stay a number.
    """
    if isinstance(value, str):
        if value.lstrip(" ").startswith(FORMULA_STARTS):
            return "'" + plain(value)
        value = plain(value)
        if value.lstrip(" ").startswith(FORMULA_STARTS):
            return "'" + value
    return value


def csv_row(row: dict) -> dict:
    """Every cell of a results row through ``csv_cell``."""
    return {key: csv_cell(value) for key, value in row.items()}


def from_csv_cell(cell: str) -> str:
    """The text ``csv_cell`` wrote, read back (a resumed run matches names it has already written)."""
    return cell[1:] if cell.startswith("'") and cell[1:].lstrip(" ").startswith(FORMULA_STARTS) else cell
