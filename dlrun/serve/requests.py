"""A /predict request's rows -> a frame of the feature columns, with every problem named by row and column.

The body is checked by pydantic first (FastAPI): `rows` must be a list of objects whose values are numbers, text,
true/false or null. Here: the batch limit and the columns each row must hold. Whether a cell suits its column (a
word in a numeric column) is predict's own check (inference.batch.predict_rows), so both read a cell alike.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import pandas as pd
from pydantic import BaseModel, Field

from dlrun.core.errors import DataError

Cell = Optional[Union[bool, int, float, str]]  # null: a missing value, imputed as in training


class PredictRequest(BaseModel):
    rows: list[dict[str, Cell]] = Field(
        ..., description="The rows to predict: one object per row, {feature column: value}; null for a missing value.",
        examples=[[{"age": 40, "sex": "Female"}]])


class TooManyRows(DataError):
    """A request over the server's --max-rows."""


def request_frame(rows: list[dict[str, Cell]], features: list[str], max_rows: int) -> pd.DataFrame:
    """The rows as a frame of the feature columns (extra keys are ignored, as predict keeps them aside)."""
    if len(rows) > max_rows:
        raise TooManyRows(f"the request holds {len(rows)} rows; this server takes at most {max_rows} per request "
                          f"(dlrun serve --max-rows); send them in batches")
    if not rows:
        raise DataError("rows is empty: send at least one row")
    wanted = set(features)
    for number, row in enumerate(rows, start=1):
        if not wanted <= row.keys():
            missing = [column for column in features if column not in row]
            raise DataError(f"row {number} lacks column(s) {', '.join(map(repr, missing))}; every row needs "
                            f"{', '.join(map(repr, features))} (null for a missing value)")
    # object first: pandas then infers each column from its values alone (numbers, text, or a mix for predict to read)
    # "" is an empty cell, missing as in a CSV (where pandas never hands predict an empty string)
    frame = pd.DataFrame({column: pd.Series([None if row[column] == "" else row[column] for row in rows], dtype=object)
                          for column in features})
    return frame.infer_objects()


def describe_validation_error(errors: list[dict[str, Any]]) -> str:
    """FastAPI's validation errors as one line naming the row (from 1) and column, like predict's messages."""
    parts = []
    for error in errors[:5]:
        location = [part for part in error.get("loc", ()) if part != "body"]
        if error.get("type") == "json_invalid":
            parts.append(f"the body is not valid JSON ({error.get('ctx', {}).get('error', error.get('msg'))})")
        elif len(location) >= 3 and location[0] == "rows" and isinstance(location[1], int):
            parts.append(f"row {location[1] + 1}, column {location[2]!r}: must be a number, text, true/false or null")
        elif len(location) == 2 and location[0] == "rows" and isinstance(location[1], int):
            parts.append(f"row {location[1] + 1}: must be an object {{column: value}}")
        elif location:
            parts.append(f"{'.'.join(map(str, location))}: {error.get('msg')}")
        else:
            parts.append(f"the body must be a JSON object {{\"rows\": [...]}} ({error.get('msg')})")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(dict.fromkeys(parts)) + more
