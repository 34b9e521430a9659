"""`dlrun serve` end to end: the real server in a subprocess on a free port, real HTTP requests, then stopped.
The form page is filled and submitted in headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pandas as pd
import pytest

from conftest import REPO, make_classification_frame, run_cli_many

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MAX_ROWS = 1000


@pytest.fixture(scope="module")
def server(finished_runs):
    """`dlrun serve` on port 0; the URL is read from the line it prints once it answers requests."""
    process = subprocess.Popen(
        [sys.executable, "-m", "dlrun", "serve", str(finished_runs["classification"]), "--port", "0",
         "--max-rows", str(MAX_ROWS)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"})
    line = process.stdout.readline()  # blocks until the server says it listens (or exits)
    if not line.startswith("listening on "):
        process.kill()
        pytest.fail(f"dlrun serve did not start: {line!r} {process.stderr.read()}")
    yield line.split()[-1]
    process.send_signal(signal.SIGINT)  # Ctrl-C: uvicorn shuts down, then exits 130 as every dlrun command does
    assert process.wait(timeout=60) == 130
    assert "Traceback" not in process.stderr.read()


def call(url: str, path: str, body: bytes | None = None) -> tuple[int, dict | str]:
    request = urllib.request.Request(url + path, data=body, headers={"Content-Type": "application/json"},
                                     method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def post_rows(url: str, rows) -> tuple[int, dict]:
    return call(url, "/predict", json.dumps({"rows": rows}).encode())


def test_predict_equals_dlrun_predict_and_warns_as_it_does(server, finished_runs, tmp_path):
    from dlrun.inference.batch import predict

    rows = make_classification_frame(6, seed=3).drop(columns="species")
    rows.loc[1, "colour"] = "purple"  # never seen
    rows.loc[2, "x1"] = None
    rows.loc[3, "x2"] = None
    records = [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in rows.to_dict(orient="records")]
    records[3]["x2"] = ""  # an empty string is an empty cell, as in a CSV
    status, body = post_rows(server, records)
    assert status == 200, body
    rows.to_csv(tmp_path / "rows.csv", index=False)
    result = predict(finished_runs["classification"], tmp_path / "rows.csv", tmp_path / "out.csv")
    expected = pd.read_csv(tmp_path / "out.csv")
    served = pd.DataFrame(body["predictions"])
    assert list(served.columns) == ["species_pred", "species_proba_bird", "species_proba_cat", "species_proba_dog"]
    assert served["species_pred"].tolist() == expected["species_pred"].tolist()
    pd.testing.assert_frame_equal(served.iloc[:, 1:], expected[served.columns[1:]], rtol=1e-6)
    assert body["warnings"] == result.rows_check.lines()
    assert any("'colour': 1 unseen categories ('purple')" in w for w in body["warnings"])
    assert any("'x1': 1 missing values" in w for w in body["warnings"])
    assert any("'x2': 1 missing values" in w for w in body["warnings"])


BAD_REQUESTS = {
    "malformed JSON": (b'{"rows": [{"x1": 0.5,', 422, "the body is not valid JSON"),
    "not an object": (b'[1, 2]', 422, "the body must be a JSON object"),
    "a word for a number": (b'{"rows": [{"x1": "abc", "x2": 1, "colour": "red"}]}', 422,
                            "column 'x1' must be a number (numbers), but row 1 holds 'abc'"),
    "a list for a value": (b'{"rows": [{"x1": 1, "x2": 1, "colour": "red"}, {"x1": [1], "x2": 1, "colour": "red"}]}', 422,
                           "row 2, column 'x1': must be a number, text, true/false or null"),
    "missing columns": (b'{"rows": [{"x1": 1, "x2": 1, "colour": "red"}, {"x1": 1}]}', 422,
                        "row 2 lacks column(s) 'x2', 'colour'"),
    "a row that is not an object": (b'{"rows": ["x"]}', 422, "row 1: must be an object"),
    "no rows": (b'{"rows": []}', 422, "rows is empty"),
    "true in a number column": (b'{"rows": [{"x1": true, "x2": 2, "colour": "red"}]}', 422, "row 1 holds True ("),
    "10,000 rows": (None, 413, f"the request holds 10000 rows; this server takes at most {MAX_ROWS} per request"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_requests_are_4xx_naming_row_and_column(server, case):
    body, status, message = BAD_REQUESTS[case]
    if body is None:
        body = json.dumps({"rows": [{"x1": 1, "x2": 2, "colour": "red"}] * 10_000}).encode()
    got, answer = call(server, "/predict", body)
    assert (got, message in answer["detail"]) == (status, True), answer


def test_schema_health_docs_and_the_server_outlives_bad_requests(server):
    call(server, "/predict", b"{not json")
    status, health = call(server, "/health")
    assert status == 200 and health["status"] == "ok"
    assert server.startswith("http://127.0.0.1:")  # localhost unless told otherwise
    status, schema = call(server, "/schema")
    assert status == 200 and schema["max_rows"] == MAX_ROWS
    assert [(f["name"], f["kind"]) for f in schema["features"]] == [("x1", "number"), ("x2", "number"), ("colour", "category")]
    assert sorted(schema["features"][2]["categories"]) == ["green", "red"]
    assert schema["targets"] == [{"name": "species", "task": "classification", "classes": ["bird", "cat", "dog"]}]
    status, docs = call(server, "/docs")
    assert status == 200 and "swagger" in docs.lower()
    status, openapi = call(server, "/openapi.json")
    assert "/predict" in openapi["paths"] and "/schema" in openapi["paths"]


def test_serve_refuses_a_missing_run_and_a_bad_max_rows(tmp_path, finished_runs):
    results = run_cli_many({"missing": (["serve", tmp_path / "nope", "--port", "0"], None),
                            "bad": (["serve", finished_runs["classification"], "--port", "0", "--max-rows", "0"], None)})
    missing, bad = results["missing"], results["bad"]
    assert missing.returncode == 2 and "Error: run directory not found" in missing.stderr
    assert bad.returncode == 2 and "Error: --max-rows must be at least 1, got 0" in bad.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs Debian's chromium package)")
def test_the_form_page_predicts_in_chromium(server):
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto(server + "/")
            assert page.locator("select[data-column=colour] option").all_inner_texts() == ["(missing)", "red", "green"] \
                or sorted(page.locator("select[data-column=colour] option").all_inner_texts()) == ["(missing)", "green", "red"]
            page.fill("input[data-column=x1]", "1.5")  # x1 > 0.3: the training rule says cat
            page.fill("input[data-column=x2]", "-0.2")
            page.select_option("select[data-column=colour]", "red")
            page.click("button[type=submit]")
            page.wait_for_selector(".prediction")
            heading = page.inner_text(".prediction")
            probabilities = page.locator("tr.probability").all_inner_texts()
        finally:
            browser.close()
    status, body = post_rows(server, [{"x1": 1.5, "x2": -0.2, "colour": "red"}])
    predicted = body["predictions"][0]
    assert heading == f"species: {predicted['species_pred']}"
    assert [p.split("\t") for p in probabilities] == [
        [label, f"{predicted[f'species_proba_{label}']:.4f}"] for label in ("bird", "cat", "dog")]


def test_the_form_page_escapes_column_names_and_categories():
    from dlrun.serve.page import form_page

    hostile = '</script><img src=x onerror=alert(1)>'
    schema = {"run": "r<b>", "max_rows": 5, "outputs": [],
              "features": [{"name": hostile, "kind": "category", "role": "category", "categories": ['"><b>x', "ok"]},
                           {"name": "n", "kind": "number", "role": "numeric", "min": 0.0, "max": 1.0}],
              "targets": [{"name": "t<i>", "task": "classification", "classes": ["a</script>"]}]}
    page = form_page(schema)
    assert hostile not in page and '"><b>x' not in page and "r<b>" not in page and "t<i>" not in page
    assert page.count("</script>") == 2  # the schema's and the code's: the JSON inside cannot end its element
    assert 'data-column="&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"' in page
