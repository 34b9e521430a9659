"""The house rules the package layout promises: stages import down the pipeline only, no import cycles, small modules,
and library code that leaves printing and exit codes to the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "dlrun"
# The pipeline, lowest first: a folder may import its own modules and those of folders before it, never after.
STAGES = ["core", "config", "data", "model", "metrics", "training", "run", "folds", "inference", "export", "serve", "probe",
          "sweeps", "cli"]
MAX_LINES = 400


def modules() -> dict[str, Path]:
    return {".".join(path.relative_to(REPO).with_suffix("").parts): path for path in PACKAGE.rglob("*.py")}


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every dlrun module imported anywhere in the file, lazy imports inside functions included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dlrun"):
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names if alias.name.startswith("dlrun"))
    return found


def test_every_module_lives_in_a_stage_folder():
    top_level = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top_level == ["__init__.py", "__main__.py"]
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert folders == sorted(STAGES)


def test_imports_point_down_the_pipeline_only():
    upward = []
    for name, path in modules().items():
        parts = name.split(".")
        if len(parts) < 3:
            continue
        stage = parts[1]
        for line, target in imports_of(path):
            target_stage = target.split(".")[1] if target.count(".") else None
            if target_stage in STAGES and STAGES.index(target_stage) > STAGES.index(stage):
                upward.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert upward == []


def test_scoring_and_predicting_never_import_the_training_loop():
    for module in ("dlrun.inference.batch", "dlrun.run.directory", "dlrun.run.outputs", "dlrun.export.onnx_model",
                   "dlrun.serve.app"):
        assert not any(t.startswith("dlrun.training.loop") for _, t in imports_of(modules()[module])), module


def test_no_import_cycles():
    known = modules()
    graph = {name: {t for _, t in imports_of(path) if t in known and t != name} for name, path in known.items()}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        for nxt in graph[node]:
            if nxt in trail:
                cycles.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in done:
                visit(nxt, trail + [nxt])
        done.add(node)

    done: set[str] = set()
    for name in graph:
        if name not in done:
            visit(name, [name])
    # a package's __init__ re-exporting its own module is not a cycle a reader trips over
    assert [c for c in cycles if not any(m.endswith("__init__") for m in c)] == []


def test_no_module_is_past_the_size_limit():
    long = {str(p.relative_to(REPO)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_library_code_never_prints_or_exits():
    """Only the CLI turns results into output and errors into exit codes."""
    offenders = []
    for name, path in modules().items():
        if name.startswith("dlrun.cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("print", "exit", "SystemExit"):
                offenders.append(f"{name}:{node.lineno} {node.func.id}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "exit" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "sys":
                offenders.append(f"{name}:{node.lineno} sys.exit")
    assert offenders == []
