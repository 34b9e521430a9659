"""dlrun: deep-learning experiments on tables, from a YAML config to a run directory.

The library twins of the CLI commands load lazily, so `import dlrun` (and `dlrun --help`) stays free of torch.
"""

__version__ = "0.1.0"

_LAZY = {
    "load_config": "dlrun.config.load",
    "train": "dlrun.run.runner",
    "evaluate": "dlrun.inference.batch",
    "predict": "dlrun.inference.batch",
    "resume": "dlrun.run.runner",
    "check": "dlrun.probe.check",
    "sweep": "dlrun.sweeps.driver",
    "cross_validate": "dlrun.folds.cv",
    "open_predictor": "dlrun.folds.predictor",
    "DlrunError": "dlrun.core.errors",
    "build_report": "dlrun.run.report",
    "list_runs": "dlrun.run.listing",
    "compare_runs": "dlrun.run.listing",
    "explain_activations": "dlrun.probe.explain",
    "explain_dropout": "dlrun.probe.explain",
    "export_run": "dlrun.export.run_export",  # dlrun export
    "create_app": "dlrun.serve.app",  # dlrun serve's ASGI app, for uvicorn or any ASGI server
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dlrun' has no attribute {name!r}")
