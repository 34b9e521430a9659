"""What a fitted run takes and gives, as plain JSON: the features (kind, role, categories, training range), the
targets (task, classes, unit) and the prediction columns. The ONNX sidecar and `dlrun serve`'s /schema both say it."""

from __future__ import annotations

from typing import Any

from dlrun.data.preprocess import Preprocessor
from dlrun.run.outputs import prediction_columns

# How a column dlrun reads as a number turns a cell into that number, by the role training gave the column.
NUMBER_READING = {
    "numeric": "the number (text such as '$52,000' or '12%' is read as 52000 or 12)",
    "boolean": "1 for yes/true/y/1, 0 for no/false/n/0",
    "date": "the date as a fractional year (2024-07-02 is about 2024.5)",
    "ordinal": "the value's rank in `order`, from 0",
}


def describe_run(prep: Preprocessor, units: dict[str, str]) -> dict[str, Any]:
    """{"features": [...], "targets": [...], "outputs": [...]} of a fitted preprocessor, in feature order."""
    features = []
    for column in prep.features:
        decision = prep.columns.get(column)
        role = decision.role if decision else ("numeric" if column in prep.numeric_features else "category")
        if column in prep.numeric_features:
            low, high = prep.numeric_range(column)
            entry: dict[str, Any] = {"name": column, "kind": "number", "role": role, "min": low, "max": high,
                                     "reading": NUMBER_READING.get(role, NUMBER_READING["numeric"])}
            if role == "ordinal" and decision:
                entry["order"] = list(decision.order)
        else:
            categories, fill, _ = prep.category_encoding(column)
            entry = {"name": column, "kind": "category", "role": role, "categories": categories,
                     "missing_as": fill}
        features.append(entry)
    targets = []
    for target in prep.targets:
        if prep.is_classification(target):
            targets.append({"name": target, "task": "classification", "classes": list(prep.classes(target))})
        else:
            targets.append({"name": target, "task": "regression", "unit": units.get(target)})
    return {"features": features, "targets": targets, "outputs": prediction_columns(prep)}
