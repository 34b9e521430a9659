"""User text made safe for one medium. A column name, class label or unit is data: it becomes part of a file name
only through `safe_file_name`."""

from __future__ import annotations

import hashlib
import re

MAX_FILE_NAME_PART = 100  # UTF-8 bytes: with a prefix and suffix (`confusion_`, `.csv`) far below the usual 255
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]+")  # path separators and control characters (NUL, newline, escape, ...)


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
