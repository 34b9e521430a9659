"""Column roles: what each column of a table is (numeric, category, ordinal, boolean, date, ignored) and why.

A declared role (`data.columns`) wins; otherwise one rule per function decides, in the order a careful person would
ask: is it a row counter, a yes/no, numbers with a few words for "missing", dates, an identifier, free text? Each rule
returns (role, reason) or None. The decisions travel with the fitted preprocessing (preprocess.json), so predict
reads new rows exactly as training read its own.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd

from dlrun.config.schema import DataConfig
from dlrun.core.errors import DataError
from dlrun.data import cells

ROLES = ("numeric", "category", "ordinal", "boolean", "date", "ignore")
MAX_TOKEN_SHARE = 0.05  # numbers or dates "except for a few words": under 5% of the non-empty cells
MIN_ROWS_FOR_IDENTIFIER = 20  # in a tiny table every value is unique by chance
FREE_TEXT_WORDS = 3  # text averaging this many words, different in most rows, is prose, not a category


@dataclass
class ColumnDecision:
    """What dlrun decided about one column, and why: one row of the column table."""

    name: str
    role: str  # one of ROLES
    why: str  # "declared" or the rule that decided, in plain words
    declared: bool = False
    target: bool = False
    missing_pct: float = 0.0  # empty cells plus tokens read as missing, % of rows
    n_distinct: int = 0  # after trimming and merging
    merged: dict[str, list[str]] = field(default_factory=dict)  # kept spelling -> spellings merged into it
    missing_tokens: dict[str, int] = field(default_factory=dict)  # words read as missing -> cells
    encoded_width: Optional[int] = None  # model inputs it became (filled in by the preprocessor)
    spellings: dict[str, str] = field(default_factory=dict)  # category: lower-case key -> kept spelling
    day_first: Optional[bool] = None  # date: dd/mm (True) or mm/dd (False)
    order: list[str] = field(default_factory=list)  # ordinal: the values, lowest first

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "ColumnDecision":
        known = {f.name for f in fields(cls)}
        decision = cls(**{k: v for k, v in state.items() if k in known})
        if decision.role not in ROLES:
            raise ValueError(f"column {decision.name!r} has role {decision.role!r}; roles are {', '.join(ROLES)}")
        return decision

    def table_row(self) -> dict[str, Any]:
        """The visible part (run.json, check, report): everything but the lookup tables predict needs."""
        return {k: v for k, v in self.to_dict().items() if k not in ("spellings", "day_first", "order", "declared")}


Rule = Callable[[pd.Series, dict[str, int]], Optional[tuple[str, str]]]


def declared_roles(cfg: DataConfig, frame: pd.DataFrame) -> dict[str, tuple[str, list[str]]]:
    """data.columns as {column: (role, ordinal order)}; a column not in the data names the nearest one."""
    declared = {}
    for column, spec in (cfg.columns or {}).items():
        if column not in frame.columns:
            near = difflib.get_close_matches(column, [str(c) for c in frame.columns], n=1, cutoff=0.5)
            hint = f"; did you mean {near[0]!r}?" if near else f"; columns are: {', '.join(map(str, frame.columns))}"
            raise DataError(f"data.columns: column {column!r} is not in the data{hint}")
        declared[column] = (spec, []) if isinstance(spec, str) else ("ordinal", list(spec.ordinal))
    return declared


# ---- rules: each returns (role, why) or None ----------------------------------------------------
# A rule sees the column (`values`) and its distinct present values, stripped, with their counts (`counts`):
# checking 3 distinct spellings instead of 100,000 cells keeps wide and long tables fast.
def row_counter(values: pd.Series, counts: dict[str, int]) -> tuple[str, str] | None:
    if not pd.api.types.is_integer_dtype(values) or len(values) < MIN_ROWS_FOR_IDENTIFIER:
        return None
    numbers = values.to_numpy()
    steps = np.diff(np.sort(numbers))
    if len(steps) and (steps == 1).all():
        return "ignore", "row counter (unique consecutive integers)"
    if len(steps) and (np.diff(numbers) > 0).all():
        return "ignore", "row counter (unique, rising with the rows)"
    return None


def yes_no(values: pd.Series, counts: dict[str, int]) -> tuple[str, str] | None:
    spelled = {text.lower() for text in counts} - cells.MISSING_TOKENS
    n_words = sum(n for text, n in counts.items() if text.lower() in spelled)
    if not spelled or n_words < sum(counts.values()) * (1 - MAX_TOKEN_SHARE):
        return None
    if spelled & cells.TRUE_WORDS and spelled & cells.FALSE_WORDS and spelled <= cells.TRUE_WORDS | cells.FALSE_WORDS:
        return "boolean", f"yes/no ({'/'.join(sorted(spelled)[:6])})"
    return None


def numbers_with_tokens(values: pd.Series, counts: dict[str, int]) -> tuple[str, str] | None:
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return "numeric", "numbers"
    read = {text for text in counts if cells.number_of(text) is not None}
    if not read or not _few_words(counts, read):
        return None
    formatted = " as text ($ % ,)" if any(mark in text for text in read for mark in "$€£%,") else ""
    return "numeric", f"numbers{formatted}" + ("; words read as missing" if len(read) < len(counts) else "")


def dates(values: pd.Series, counts: dict[str, int]) -> tuple[str, str] | None:
    if not counts or pd.api.types.is_numeric_dtype(values):
        return None
    present = pd.Series(list(counts), dtype=object)
    iso, numeric, named = cells.date_kinds(present)
    matched = iso | numeric | named
    if not matched.any() or not _few_words(counts, set(present[matched])):
        return None
    day_first, note = cells.day_first_from(present)
    if day_first is None or cells.dates_of(present[matched], day_first).isna().any():
        return None  # a month 13 or a February 30: not dates after all
    order = "dd/mm/yyyy" if day_first else "mm/dd/yyyy"
    kinds = [name for name, mask in (("ISO", iso), (order, numeric), ("month names", named)) if mask.any()]
    ambiguous = "; day or month first unclear" if numeric.any() and "cannot be told" in note else ""
    return "date", f"dates ({', '.join(kinds)}){ambiguous}"


def identifier(values: pd.Series, counts: dict[str, int]) -> tuple[str, str] | None:
    if len(values) >= MIN_ROWS_FOR_IDENTIFIER and len(counts) == len(values) and sum(counts.values()) == len(values):
        return "ignore", "identifier (unique text per row)"
    return None


def free_text(values: pd.Series, counts: dict[str, int]) -> tuple[str, str] | None:
    n_present = sum(counts.values())
    if n_present < MIN_ROWS_FOR_IDENTIFIER or len(counts) < 0.5 * n_present:
        return None
    if sum(len(text.split()) * n for text, n in counts.items()) / n_present >= FREE_TEXT_WORDS:
        return "ignore", "free text (not used)"
    return None


FEATURE_RULES: tuple[Rule, ...] = (row_counter, yes_no, numbers_with_tokens, dates, identifier, free_text)
TARGET_RULES: tuple[Rule, ...] = (numbers_with_tokens, dates)  # a target is never ignored; yes/no keeps its labels


def infer_role(values: pd.Series, counts: dict[str, int], is_target: bool) -> tuple[str, str]:
    for rule in TARGET_RULES if is_target else FEATURE_RULES:
        decided = rule(values, counts)
        if decided is not None:
            return decided
    return "category", "text"


def _few_words(counts: dict[str, int], read: set[str]) -> bool:
    """The cells not read are words without a digit (unknown, ?, n/a), under MAX_TOKEN_SHARE of the cells."""
    unread = [text for text in counts if text not in read]
    return (sum(counts[text] for text in unread) <= MAX_TOKEN_SHARE * sum(counts.values())
            and all(cells.is_token(text) for text in unread))


def decide_columns(frame: pd.DataFrame, cfg: DataConfig, targets: list[str], candidates: list[str],
                   explicit_features: bool) -> dict[str, ColumnDecision]:
    """A decision per target and candidate feature. With explicit data.features the identifier rules do not apply."""
    declared = declared_roles(cfg, frame)
    decisions = {}
    numeric_block = [c for c in candidates if c not in declared and pd.api.types.is_numeric_dtype(frame[c])]
    decisions.update(_decide_numeric_block(frame[numeric_block], explicit_features))
    for column in [*targets, *candidates]:
        if column in decisions:
            continue
        values, is_target = frame[column], column in targets
        counts = cells.distinct_counts(values)
        if column in declared:
            role, order = declared[column]
            decision = ColumnDecision(column, role, "declared", declared=True, order=order)
        else:
            role, why = infer_role(values, counts, is_target)
            if explicit_features and role == "ignore":
                role, why = "category", f"in data.features (else {why})"
            decision = ColumnDecision(column, role, why)
        decision.target = is_target
        if role == "date":
            decision.day_first = cells.day_first_from(pd.Series(list(counts), dtype=object))[0] is not False
        decisions[column] = decision
    return {column: decisions[column] for column in frame.columns if column in decisions}  # in the table's order


def _decide_numeric_block(block: pd.DataFrame, explicit_features: bool) -> dict[str, ColumnDecision]:
    """Numeric columns all at once (a 20,000-column table must not cost a Python rule chain per column):
    0/1 columns are booleans, integer row counters are ignored, the rest are numbers."""
    if block.shape[1] == 0:
        return {}
    values = block.to_numpy(dtype=float)  # (n_rows, n_columns)
    present = ~np.isnan(values)
    binary = np.where(present, (values == 0) | (values == 1), True).all(axis=0) & present.any(axis=0)
    both = np.where(present, values == 0, False).any(axis=0) & np.where(present, values == 1, False).any(axis=0)
    integer = np.array([pd.api.types.is_integer_dtype(dtype) for dtype in block.dtypes])
    counter = np.zeros(block.shape[1], dtype=bool)
    if len(block) >= MIN_ROWS_FOR_IDENTIFIER and integer.any() and not explicit_features:
        ints = values[:, integer]
        counter[integer] = (np.diff(np.sort(ints, axis=0), axis=0) == 1).all(axis=0) | (np.diff(ints, axis=0) > 0).all(axis=0)
    decisions = {}
    for j, column in enumerate(block.columns):
        if counter[j]:
            decision = ColumnDecision(column, *row_counter(block[column], block[column]))
        elif binary[j] and both[j]:
            decision = ColumnDecision(column, "boolean", "yes/no (0/1)")
        else:
            decision = ColumnDecision(column, "numeric", "numbers")
        decisions[column] = decision
    return decisions


def warnings_for(decisions: dict[str, ColumnDecision]) -> list[str]:
    """The decisions a user would want to hear about before training, in plain words."""
    lines = []
    for d in decisions.values():
        if d.missing_tokens:
            counts = ", ".join(f"{token!r} ({n})" for token, n in d.missing_tokens.items())
            lines.append(f"column {d.name!r}: read as {d.role}; {counts} read as missing")
        if d.merged:
            merged = "; ".join(f"{', '.join(map(repr, others))} -> {kept!r}" for kept, others in list(d.merged.items())[:5])
            lines.append(f"column {d.name!r}: values differing only in case merged: {merged} "
                         "(data.merge_case: false keeps them apart)")
        if d.role == "ignore" and not d.declared and d.why.startswith(("identifier", "row counter", "free text")):
            lines.append(f"column {d.name!r}: not a feature, {d.why}; declare a role in data.columns to use it")
        if d.role == "date" and "unclear" in d.why:
            lines.append(f"column {d.name!r}: dates whose day and month are both 12 or less: read as day first "
                         "(dd/mm/yyyy); nothing in the values tells which comes first")
    return lines


TABLE_HEADER = ("column", "role", "why", "missing %", "distinct", "merged", "read as missing", "width")


def table_cells(rows: list[dict[str, Any]]) -> list[list[str]]:
    """The column table (run.json's data.columns) as text cells under TABLE_HEADER; shared by check and the report."""
    cells_out = []
    for row in rows:
        merged = "; ".join(f"{', '.join(others)} -> {kept}" for kept, others in row.get("merged", {}).items())
        tokens = ", ".join(f"{token} x{n}" for token, n in row.get("missing_tokens", {}).items())
        width = row.get("encoded_width")
        name = f"{row.get('name')} (target)" if row.get("target") else str(row.get("name"))
        cells_out.append([name, str(row.get("role")), str(row.get("why")), f"{row.get('missing_pct', 0):g}",
                          str(row.get("n_distinct", "")), merged or "-", tokens or "-", "-" if width is None else str(width)])
    return cells_out
