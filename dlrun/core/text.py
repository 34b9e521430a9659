"""User text made safe for the medium it lands in: a file name, a terminal line.

A column name, class label, unit or path is data. It becomes part of a file name only through `safe_file_name`
and reaches the terminal only through `safe_terminal_text`; HTML has its own escaping (html.escape in report.py).
"""

from __future__ import annotations

import hashlib
import re

# Longest file-name part we build from user text: leaves room for a prefix and suffix (`confusion_`, `.csv`) and a
# run directory's timestamp inside the 255 bytes most file systems allow per name.
MAX_NAME_CHARS = 100
_HASH_CHARS = 8
_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
# CSI sequences (colours, cursor moves), OSC sequences (titles, hyperlinks) and any other escape; C0/C1 controls.
_ESCAPE_SEQUENCE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)?|\x1b[@-_]?")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def safe_file_name(text: str) -> str:
    """A file-name part from user text: no separators, no `..`, no control characters, at most MAX_NAME_CHARS.

    `type` stays `type`; `a/../../victim` becomes `a_.._.._victim`-like text without a path in it. A name that had to
    be changed or shortened gets a short hash of the original, so two different names never share a file.
    """
    text = str(text)
    cleaned = _UNSAFE_IN_NAME.sub("_", text).strip("._") or "x"
    cleaned = re.sub(r"\.{2,}", ".", cleaned)  # no `..` anywhere, even though `/` is already gone
    if cleaned == text and len(cleaned) <= MAX_NAME_CHARS:
        return cleaned
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    return f"{cleaned[: MAX_NAME_CHARS - _HASH_CHARS - 1]}-{digest}"


def safe_terminal_text(text: object) -> str:
    """User text for a terminal line printed by rich: escape sequences and control characters shown as `\\x1b`-style
    text (never interpreted), and rich markup escaped so `[/b]` or `y[/]` prints as written."""
    from rich.markup import escape

    def visible(match: re.Match) -> str:
        return match.group(0).encode("unicode_escape").decode("ascii")

    shown = _ESCAPE_SEQUENCE.sub(visible, str(text))
    shown = _CONTROL.sub(visible, shown)
    return escape(shown)
