"""The form at GET /: one field per feature (a dropdown for a category), generated from the run's schema; it posts one
row to /predict and shows the prediction, the class probabilities and predict's warnings.

User text (column names, categories, classes, units) reaches the HTML through html.escape only, and the page's
script writes results with textContent, never as markup.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

STYLE = """body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}
label{display:block;margin:.6rem 0 .2rem;font-weight:600}input,select{width:100%;padding:.35rem;font-size:1rem}
.hint{color:#666;font-weight:400;font-size:.85rem}button{margin-top:1rem;padding:.5rem 1.5rem;font-size:1rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}
#error{color:#a00}.warning{color:#8a5a00}"""

SCRIPT = """
const schema = JSON.parse(document.getElementById('schema').textContent);
const form = document.getElementById('row');
form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const row = {};
  for (const field of form.querySelectorAll('[data-column]')) {
    const text = field.value.trim();
    row[field.dataset.column] = text === '' ? null : (field.dataset.kind === 'number' ? Number(text) : text);
  }
  const result = document.getElementById('result'), error = document.getElementById('error');
  result.replaceChildren(); error.textContent = '';
  const response = await fetch('predict', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                           body: JSON.stringify({rows: [row]})});
  const body = await response.json();
  if (!response.ok) { error.textContent = body.detail; return; }
  const prediction = body.predictions[0];
  for (const target of schema.targets) {
    const heading = document.createElement('h3');
    const value = prediction[target.name + '_pred'];
    heading.className = 'prediction';
    heading.dataset.target = target.name;
    heading.textContent = target.name + ': ' + value + (target.unit ? ' ' + target.unit : '');
    result.append(heading);
    if (target.task !== 'classification') continue;
    const table = document.createElement('table');
    for (const label of target.classes) {
      const tr = table.insertRow(), name = tr.insertCell(), p = tr.insertCell();
      tr.className = 'probability';
      name.textContent = label;
      p.textContent = prediction[target.name + '_proba_' + label].toFixed(4);
    }
    result.append(table);
  }
  for (const warning of body.warnings) {
    const p = document.createElement('p');
    p.className = 'warning';
    p.textContent = warning;
    result.append(p);
  }
});
"""


def form_page(schema: dict[str, Any]) -> str:
    """The whole page for a run's schema (inference.schema.describe_run plus "run")."""
    fields = [_field(feature) for feature in schema["features"]]
    targets = ", ".join(escape(t["name"]) for t in schema["targets"])
    # </script> inside the JSON would end the script element: '<' travels as \\u003c
    data = json.dumps(schema).replace("<", "\\u003c")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<title>dlrun: {escape(schema["run"])}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n'
            f'<h1>Predict {targets}</h1>\n<p>Run <code>{escape(schema["run"])}</code>. Leave a field empty for a '
            f'missing value (it is imputed as in training). The JSON API is at <a href="docs">/docs</a>.</p>\n'
            f'<form id="row">\n{"".join(fields)}<button type="submit">Predict</button>\n</form>\n'
            f'<p id="error" role="alert"></p>\n<div id="result" aria-live="polite"></div>\n'
            f'<script type="application/json" id="schema">{data}</script>\n<script>{SCRIPT}</script>\n'
            f'</body>\n</html>\n')


def _field(feature: dict[str, Any]) -> str:
    """A dropdown for a category, an ordinal or a yes/no column; a number field for numbers; text for a date."""
    name, role = escape(feature["name"]), feature["role"]
    kind = "number" if feature["kind"] == "number" and role == "numeric" else "text"
    attributes = f'data-column="{name}" data-kind="{kind}" name="{name}"'
    choices = {"category": feature.get("categories"), "ordinal": feature.get("order"), "boolean": ["yes", "no"]}.get(role)
    if choices is not None:
        options = '<option value="">(missing)</option>' + "".join(
            f'<option value="{escape(str(c))}">{escape(str(c))}</option>' for c in choices)
        control, hint = f'<select {attributes}>{options}</select>', role
    elif role == "date":
        control, hint = f'<input type="text" placeholder="2024-07-02" {attributes}>', "date"
    else:
        control = f'<input type="number" step="any" {attributes}>'
        low, high = feature.get("min"), feature.get("max")
        hint = role + (f", training range {low:g} to {high:g}" if low is not None and high is not None else "")
    return f'<label>{name} <span class="hint">({escape(hint)})</span></label>{control}\n'
