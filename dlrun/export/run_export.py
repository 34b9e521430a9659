"""`dlrun export`: a finished run -> model.onnx and its sidecar JSON (what goes in, what comes out, classes, units)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dlrun.core.errors import ConfigError
from dlrun.core.io import NO_SPACE, path_to_replace, write_atomic, write_json
from dlrun.inference.schema import describe_run
from dlrun.run import layout
from dlrun.folds.predictor import open_predictor

FORMATS = ("onnx",)
TEXT_MATCHING = ("text cells are matched exactly to the spellings training saw (categories and the spellings merged "
                 "into them); another spelling, or surrounding spaces, counts as an unseen category. An empty string "
                 "or a word such as 'NA' is a missing value. dlrun serve and dlrun predict also trim and merge case.")


def require_packages(*packages: str, command: str) -> None:
    """The serve extra's packages, or an error saying how to install them."""
    import importlib.util

    missing = [name for name in packages if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"{command} needs {', '.join(missing)}: pip install 'dlrun[serve]'")


@dataclass(frozen=True)
class Exported:
    run_dir: Path
    model: Path
    sidecar: Path
    n_inputs: int
    outputs: list[str]
    run_status: str | None
    checkpoint_epoch: int | None


def export_run(run_dir: Path, output: Path | None = None, format: str = "onnx") -> Exported:
    """Write the run's best checkpoint with its preprocessing as one ONNX file (default RUN/model.onnx), and beside
    it a JSON sidecar (same name, .json) describing inputs, outputs, classes and units. Loads on the CPU."""
    if format not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    require_packages("onnx", command="dlrun export")
    from dlrun.export.onnx_model import IR_VERSION, OPSET, build_onnx, require_exportable

    predictor = open_predictor(run_dir, "cpu")  # map_location: a run trained on a GPU exports on a machine without one
    if predictor.is_ensemble:  # each member has its own preprocessing: one graph per member would be needed
        raise ConfigError(f"{run_dir} is an ensemble of {len(predictor.members)} fold models, which dlrun export does not "
                          f"write as one ONNX file yet; export one member's run (its folds/ folder), or serve the "
                          f"ensemble with dlrun serve")
    run = predictor.members[0]
    require_exportable(run.prep)
    model_bytes = build_onnx(run.prep, run.model)
    output = Path(output) if output else Path(run_dir) / layout.ONNX_MODEL
    sidecar = output.with_suffix(".json")
    described = describe_run(run.prep, dict(run.cfg.data.units))
    inputs = [{"name": f["name"], "type": "float64" if f["kind"] == "number" else "string", "shape": ["N"]}
              for f in described["features"]]
    document = {"format": "onnx", "model": output.name, "opset": OPSET, "ir_version": IR_VERSION,
                "run": str(run_dir), "checkpoint_epoch": run.checkpoint_epoch, "inputs": inputs,
                "missing_numbers": "NaN", "text_matching": TEXT_MATCHING, **described}
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path_to_replace(output), lambda fh: fh.write(model_bytes), mode="wb")
        write_json(path_to_replace(sidecar), document)
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise
        raise ConfigError(f"cannot write {output} ({exc.strerror or exc}); choose another place with --output") from None
    return Exported(Path(run_dir), output, sidecar, len(inputs), described["outputs"], run.run_status,
                    run.checkpoint_epoch)
