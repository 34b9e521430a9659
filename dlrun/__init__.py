"""dlrun: deep-learning experiments on tables, from a YAML config to a run directory.

The library twins of the CLI commands load lazily, so `import dlrun` (and `dlrun --help`) stays free of torch.
"""

__version__ = "0.1.0"

_LAZY = {
    "load_config": "dlrun.config",
    "train": "dlrun.runner",
    "evaluate": "dlrun.inference",
    "predict": "dlrun.inference",
    "resume": "dlrun.runner",
    "check": "dlrun.sanity",
    "DlrunError": "dlrun.errors",
    "build_report": "dlrun.report",
    "list_runs": "dlrun.listing",
    "compare_runs": "dlrun.listing",
    "explain_activations": "dlrun.explain",
    "explain_dropout": "dlrun.explain",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dlrun' has no attribute {name!r}")
