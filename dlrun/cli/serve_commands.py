"""`dlrun export` and `dlrun serve`: a finished run as one ONNX file, or as an HTTP service."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from dlrun.cli.app import app
from dlrun.cli.exits import guarded
from dlrun.cli.render import stderr, warn_if_unfinished
from dlrun.core.text import safe_terminal_text as escape


@app.command()
def export(
    run: Path = typer.Argument(..., help="A run directory."),
    format: str = typer.Option("onnx", "--format", help="Export format: onnx."),
    output: Optional[Path] = typer.Option(None, "--output", help="The model file (default: RUN/model.onnx); the "
                                          "sidecar JSON is written beside it with the suffix .json."),
) -> None:
    """Write the best checkpoint with its preprocessing as one ONNX file: one input per feature column (numbers as
    float64, NaN for missing; text as strings), one output per `dlrun predict` column. Prints the model's path."""
    from dlrun.export.run_export import export_run

    result = guarded(lambda: export_run(run, output, format))
    warn_if_unfinished(run, result.run_status, result.checkpoint_epoch)
    stderr.print(escape(f"{result.n_inputs} inputs, {len(result.outputs)} outputs; sidecar {result.sidecar}"),
                 highlight=False, soft_wrap=True)
    typer.echo(str(result.model))


@app.command()
def serve(
    run: Path = typer.Argument(..., help="A run directory."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 opens it to the network)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on; 0 picks a free one."),
    max_rows: int = typer.Option(1000, "--max-rows", help="Most rows one /predict request may hold."),
) -> None:
    """Serve the run over HTTP: POST /predict, GET /schema, GET /health, a form at / and API docs at /docs. Prints
    `listening on URL` on stdout once requests are answered; Ctrl-C stops it."""
    from dlrun.serve.server import serve as serve_run

    guarded(lambda: serve_run(run, host, port, max_rows, on_ready=_announce))


def _announce(url: str) -> None:
    typer.echo(f"listening on {url}")
    sys.stdout.flush()  # a pipe buffers: whoever waits for the line must get it now
