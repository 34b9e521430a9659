"""User text made safe for the medium it lands in: a file name, a terminal line.

A column name, class label, unit or path is data. It becomes part of a file name only through `safe_file_name`
and reaches the terminal only through `safe_terminal_text`; HTML has its own escaping (html.escape in report.py).
"""

from __future__ import annotations

import hashlib
import re

MAX_FILE_NAME_PART = 100  # UTF-8 bytes: with a prefix and suffix (`confusion_`, `.csv`) far below the usual 255
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]+")  # path separators and control characters (NUL, newline, escape, ...)
# CSI sequences (colours, cursor moves), OSC sequences (titles, hyperlinks) and any other escape; C0/C1 controls.
_ESCAPE_SEQUENCE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)?|\x1b[@-_]?")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def safe_file_name(text: str) -> str:
    """`text` as one part of a file name inside a directory: never a path, never hidden, never too long.

    Path separators and control characters become `_`, `..` becomes `_`, a leading dot is dropped, and the result is cut to
    100 UTF-8 bytes. Text that had to change gets a short hash of the original appended, so two names that differ only
    in what was replaced (`a/b` and `a_b`) still give two files. Text that is already safe comes back unchanged.
    """
    text = str(text)
    safe = _UNSAFE.sub("_", text).replace("..", "_").lstrip(".").strip()
    if safe == text and 0 < len(_utf8(safe)) <= MAX_FILE_NAME_PART:
        return safe
    digest = hashlib.sha256(_utf8(text)).hexdigest()[:8]
    kept = _utf8(safe)[: MAX_FILE_NAME_PART - 9].decode("utf-8", "ignore")  # a character cut in half is dropped
    return f"{kept}-{digest}" if kept else digest


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate (from a mis-decoded file name) still hashes


def safe_terminal_text(text: object) -> str:
    """User text for a terminal line printed by rich: escape sequences and control characters shown as `\\x1b`-style
    text (never interpreted), and rich markup escaped so `[/b]` or `y[/]` prints as written."""
    from rich.markup import escape

    def visible(match: re.Match) -> str:
        return match.group(0).encode("unicode_escape").decode("ascii")

    shown = _ESCAPE_SEQUENCE.sub(visible, str(text))
    shown = _CONTROL.sub(visible, shown)
    return escape(shown)
