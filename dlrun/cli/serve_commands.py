"""`dlrun export` and `dlrun serve`: a finished run as one ONNX file, or as an HTTP service."""

from __future__ import annotations

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
