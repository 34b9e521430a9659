"""Reading a column's cells as its role says: numbers with missing tokens, dates in several formats, booleans, and
categories trimmed and merged across case. Work is done once per *distinct* value (a column of 100,000 rows and three
spellings costs three reads), then mapped onto the rows; text functions take and return plain lists.

Shared by inference (columns.py: does a column read this way?) and cleaning (clean.py: read it this way).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

# Cells a person writes for "no value": always read as missing in a numeric, date or boolean column.
MISSING_TOKENS = frozenset({"?", "-", "--", "n/a", "na", "nan", "none", "null", "unknown", "missing", "#n/a", "n.a.",
                            "not available", "<na>", "nil", "."})
# pandas' own empty markers: a text (category) column reads these as missing too, as dlrun always has.
TEXT_MISSING = frozenset({"", "#n/a", "#n/a n/a", "#na", "-1.#ind", "-1.#qnan", "-nan", "1.#ind", "1.#qnan", "<na>",
                          "n/a", "na", "null", "nan", "none", "?"})
# A number as spreadsheets export it: optional sign and currency, thousands grouped by commas, optional % sign.
NUMBER_AS_TEXT = r"^[-+]?[$€£]?\s?\d{1,3}(,\d{3})*(\.\d+)?\s?%?$|^[-+]?[$€£]?\s?\d*\.?\d+([eE][-+]?\d+)?\s?%?$"
TRUE_WORDS = frozenset({"yes", "y", "true", "t", "1", "1.0"})
FALSE_WORDS = frozenset({"no", "n", "false", "f", "0", "0.0"})
# Dates: ISO (2024-03-15, 2024/03/15, with a time), day and month as numbers (15/03/2024, 3-15-24), or a month name.
ISO_DATE = r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$"
NUMERIC_DATE = r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4}|\d{2})$"
NAMED_MONTH = (r"^(\d{1,2}[ -])?(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?([ -]\d{1,2},?)?[ -,]*"
               r"\d{4}$")


def spell(value) -> str:
    """A cell as text, stripped; a whole float as its integer (a CSV holding 1 and 2 reads them as 1.0, 2.0)."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def distinct_counts(values: pd.Series) -> dict[str, int]:
    """Cells per distinct present value, as stripped text, most frequent first."""
    raw = values.value_counts()
    counts: dict[str, int] = {}
    for value, n in zip(raw.index.tolist(), raw.to_numpy().tolist()):
        key = spell(value)
        counts[key] = counts.get(key, 0) + int(n)
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


_NUMBER = re.compile(NUMBER_AS_TEXT)
_FORMATTING = re.compile(r"[\s,$€£%]")
_DIGIT = re.compile(r"\d")


def number_of(text: str) -> float | None:
    """A formatted number ("1,250", "$40.5", "12%") as a float, else None."""
    if not _NUMBER.match(text):
        return None
    try:
        return float(_FORMATTING.sub("", text))
    except ValueError:
        return None


def is_token(text: str) -> bool:
    """A cell that says "no value" in words: no digit in it (unknown, ?, n/a, -)."""
    return _DIGIT.search(text) is None


def boolean_of(text: str) -> float | None:
    """yes/no, y/n, true/false, 1/0 in any case as 1.0/0.0, else None."""
    lower = text.lower()
    return 1.0 if lower in TRUE_WORDS else 0.0 if lower in FALSE_WORDS else None


def date_kinds(text: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Masks of the cells written as ISO dates, as day/month numbers, and with a month name."""
    lower = text.str.lower()
    return (text.str.match(ISO_DATE, na=False), text.str.match(NUMERIC_DATE, na=False),
            lower.str.match(NAMED_MONTH, na=False))


def day_first_from(text: pd.Series) -> tuple[bool | None, str]:
    """Whether dd/mm or mm/dd, from the values: a first part above 12 is a day, a second part above 12 is a day.
    Returns (day_first, note): None when the values contradict each other (not one date format)."""
    parts = text[text.str.match(NUMERIC_DATE, na=False)].str.extract(NUMERIC_DATE)
    if parts.empty:
        return True, ""
    first, second = parts[0].astype(int), parts[1].astype(int)
    if (first > 12).any() and (second > 12).any():
        return None, "both day-first and month-first values"
    if (second > 12).any():
        return False, "month-first (a second part above 12)"
    if (first > 12).any():
        return True, "day-first (a first part above 12)"
    return True, "day-first or month-first cannot be told (no part above 12): read as day-first"


def dates_of(text: pd.Series, day_first: bool) -> pd.Series:
    """Dates in any of the three kinds as fractional years (2024-07-02 -> 2024.5); other cells NaN."""
    iso, numeric, named = date_kinds(text)
    stamps = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
    if iso.any():
        cleaned = text[iso].str.replace(r"^(\d{4})[/.](\d{1,2})[/.]", r"\1-\2-", regex=True)
        stamps[iso] = pd.to_datetime(cleaned, errors="coerce", utc=True, format="ISO8601")
    if numeric.any():
        parts = text[numeric].str.extract(NUMERIC_DATE)
        day, month = (parts[0], parts[1]) if day_first else (parts[1], parts[0])
        year = parts[2].astype(int)
        year = year.where(year >= 100, np.where(year < 69, 2000 + year, 1900 + year))
        stamps[numeric] = pd.to_datetime(pd.DataFrame({"year": year, "month": month.astype(int), "day": day.astype(int)}),
                                         errors="coerce", utc=True)
    if named.any():
        stamps[named] = pd.to_datetime(text[named], errors="coerce", utc=True, format="mixed", dayfirst=True)
    return fractional_years(stamps)


def fractional_years(stamps: pd.Series) -> pd.Series:
    """A date as a number that keeps its order and spacing: the year plus the elapsed part of it."""
    years = pd.Series(np.nan, index=stamps.index)
    present = stamps.notna()
    if not present.any():
        return years
    dates = stamps[present]
    year_start = pd.to_datetime(dates.dt.year.astype(str) + "-01-01", utc=True)
    days_in_year = np.where(dates.dt.is_leap_year, 366.0, 365.0)
    years[present] = dates.dt.year + (dates - year_start).dt.total_seconds().to_numpy() / 86_400 / days_in_year
    return years


def spellings_of(counts: dict[str, int]) -> dict[str, str]:
    """Case-insensitive key -> the most frequent spelling of it (ties: the first in sorted order)."""
    best: dict[str, tuple[int, str]] = {}
    for spelling, n in counts.items():
        key = spelling.lower()
        if key not in best or (-n, spelling) < (-best[key][0], best[key][1]):
            best[key] = (n, spelling)
    return {key: spelling for key, (_, spelling) in best.items()}




def shown(value: object) -> str:
    """A cell as an error message quotes it: the repr of the plain Python value (True, not np.True_)."""
    return repr(value.item() if isinstance(value, np.generic) else value)
