"""`dlrun serve`'s ASGI application: one fitted run, loaded once, behind POST /predict, GET /schema, GET /health,
the form page at GET / and FastAPI's OpenAPI docs at /docs.

Every mistake in a request is a 4xx whose `detail` names the row and column: malformed JSON and wrong value types
(422, from the body's model), missing columns and values a column cannot read (422, predict's own checks), more rows
than --max-rows (413).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

from dlrun.core.errors import DlrunError
from dlrun.inference.batch import predict_rows
from dlrun.inference.schema import describe_run
from dlrun.folds.predictor import Predictor, open_predictor
from dlrun.serve.page import form_page
from dlrun.serve.requests import PredictRequest, TooManyRows, describe_validation_error, request_frame

DEFAULT_MAX_ROWS = 1000


def create_app(run_dir: Path, max_rows: int = DEFAULT_MAX_ROWS) -> FastAPI:
    """The application for one run; opening the run (on the CPU, weights_only) raises RunError before any serving."""
    run: Predictor = open_predictor(run_dir, "cpu")  # map_location: a GPU-trained run serves on a machine without one
    schema = {"run": Path(run_dir).name, "max_rows": max_rows, **describe_run(run.prep, dict(run.cfg.data.units))}
    page = form_page(schema)
    app = FastAPI(title=f"dlrun: {Path(run_dir).name}", version="1",
                  description="Predictions of one dlrun run. Rows are objects {feature column: value}; see /schema.")

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": describe_validation_error(list(exc.errors()))}, status_code=422)

    @app.exception_handler(DlrunError)
    async def bad_rows(request: Request, exc: DlrunError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=413 if isinstance(exc, TooManyRows) else 422)

    @app.post("/predict", summary="Predict rows",
              responses={413: {"description": "more rows than --max-rows"}, 422: {"description": "a bad row, named"}})
    def predict(request: PredictRequest) -> dict[str, Any]:
        """`{"predictions": [{<target>_pred, <target>_proba_<class>...} per row], "warnings": [...]}`: the columns
        and warnings of `dlrun predict` (unseen categories, missing values, numbers outside the training range)."""
        frame = request_frame(request.rows, run.prep.features, max_rows)
        predictions, check = predict_rows(run, frame)
        columns = {name: predictions[name].tolist() for name in predictions.columns}  # numpy -> JSON-native
        records = [dict(zip(columns, values)) for values in zip(*columns.values())]
        return {"predictions": records, "warnings": check.lines()}

    @app.get("/schema", summary="Features, targets, classes and units")
    def get_schema() -> dict[str, Any]:
        return schema

    @app.get("/health", summary="Liveness")
    def health() -> dict[str, Any]:
        return {"status": "ok", "run": schema["run"], "checkpoint_epoch": run.checkpoint_epoch,
                "run_status": run.run_status}

    @app.get("/", response_class=HTMLResponse, summary="A form to try the model")
    def index() -> HTMLResponse:
        return HTMLResponse(page)

    return app
