"""pydantic validation errors as the lines a user reads: one per key, the key path, the bad value, what is allowed.

Kept apart from the schema in config.py: this is about wording, that is about what a valid config is.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from pydantic import BaseModel, ValidationError

from dlrun.config.walk import keys, section_at


def describe_validation_errors(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """One line per rejected key of a `root` model, e.g. "optimizer.lrr: unknown key; did you mean 'lr'?"."""
    return [_describe_error(err, root) for err in _one_per_union(exc.errors())]


def _describe_error(err: dict[str, Any], root: type[BaseModel]) -> str:
    loc = [str(part) for part in err["loc"] if not _is_union_tag(part)]  # ints are list items: model.dropout.1
    where = ".".join(loc) or "config"
    if err["type"] == "extra_forbidden":
        hint = _nearest_key(loc, root)
        return f"{where}: unknown key{hint}"
    if err["type"] == "missing":
        return f"{where}: required key is missing"
    message = err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    quiet = isinstance(got, (dict, list)) or got is None or f"got {got!r}" in message  # a validator's message may name it
    return f"{where}: {message}{'' if quiet else f' (got {got!r})'}"


def _one_per_union(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One error per value that a union rejected. pydantic reports every branch that failed (`dropout: 1` is both
    "less than 1" and "not a list"), which reads as a contradiction: keep the branch the value got furthest into."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for n, err in enumerate(errors):
        loc = err["loc"]
        tag_at = next((i for i, part in enumerate(loc) if _is_union_tag(part)), None)
        groups.setdefault(("union", *loc[:tag_at]) if tag_at is not None else ("single", n), []).append(err)
    return [_most_specific(group) for group in groups.values()]


def _most_specific(branches: list[dict[str, Any]]) -> dict[str, Any]:
    """A broken constraint beats a wrong type, a deeper error a shallower one; when every branch rejected the
    type, one message names what each would have accepted."""
    if len(branches) == 1:
        return branches[0]
    specific = [err for err in branches if not err["type"].endswith(("_type", "_parsing")) and err["type"] != "literal_error"]
    if specific:
        return max(specific, key=lambda err: len(err["loc"]))  # the first of equally deep ones
    # Every branch rejected the value's type or choice: the deepest rejection says most (`task: {label: clasification}`
    # reached the mapping's value); at equal depth each branch's wish is named (`in_memory: maybe` is neither 'auto'
    # nor a boolean).
    depth = max(len(err["loc"]) for err in branches)
    branches = [err for err in branches if len(err["loc"]) == depth]
    if len(branches) == 1:
        return branches[0]
    accepted = [err["msg"].removeprefix("Input should be ").split(", ")[0] for err in branches]
    return {**branches[0], "msg": "Input should be " + " or ".join(dict.fromkeys(accepted))}


# pydantic names union branches in error locations: 'str', 'constrained-float', 'list[str]', "literal['a','b']",
# 'function-after[...]'. They are not keys; a dict key spelled like one (a target named 'str') is misread, rarely.
_UNION_TAG = re.compile(r"str|int|float|bool|none|constrained-[a-z]+|[a-z][a-z-]*\[.*\]", re.S)


def _is_union_tag(part: str | int) -> bool:
    return isinstance(part, str) and _UNION_TAG.fullmatch(part) is not None


def _nearest_key(loc: list[str], root: type[BaseModel]) -> str:
    section = section_at(root, loc[:-1])
    if section is None:
        return ""
    allowed = [found.name for found in keys(section)]
    close = difflib.get_close_matches(loc[-1], allowed, n=1, cutoff=0.5)
    suggestion = f"; did you mean {close[0]!r}?" if close else ""
    return f"{suggestion}; allowed keys: {', '.join(allowed)}"
