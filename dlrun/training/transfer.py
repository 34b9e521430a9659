"""Transfer learning: start from an earlier run's weights, freeze trunk layers, fine-tune the rest."""

from __future__ import annotations

from pathlib import Path


from dlrun.training.checkpoint import load_checkpoint
from dlrun.config.schema import TrainConfig
from dlrun.core.errors import ConfigError
from dlrun.model.mlp import MLP


def checkpoint_path(source: str, best_in_run: str) -> Path:
    """A run directory means its best checkpoint (`best_in_run` inside it); anything else must be a checkpoint file."""
    path = Path(source)
    if path.is_dir():
        path = path / best_in_run
    if not path.is_file():
        raise ConfigError(f"train.init_from: {source!r} is neither a run directory with {best_in_run} nor a checkpoint file")
    return path


def load_matching_weights(model: MLP, source: str, best_in_run: str) -> list[str]:
    """Copy every tensor whose name and shape match; returns plain-words notes on what was not copied."""
    saved = load_checkpoint(checkpoint_path(source, best_in_run))["model"]
    own = model.state_dict()
    matched = {name: tensor for name, tensor in saved.items() if name in own and own[name].shape == tensor.shape}
    model.load_state_dict(matched, strict=False)
    notes = [f"init_from {source}: loaded {len(matched)} of {len(own)} tensors"]
    for name, tensor in own.items():
        if name in matched:
            continue
        if name in saved:
            why = f"checkpoint has shape {tuple(saved[name].shape)}, this model needs {tuple(tensor.shape)}"
        else:
            why = "not in the checkpoint"
        notes.append(f"{_describe(model, name)} re-initialised ({why})")
    return notes


def freeze(model: MLP, specs: list[int | str]) -> list[str]:
    """Turn off requires_grad for trunk Linear layers given by index (0 = first) or parameter-name prefix."""
    linear_names = [name for name, label in model.weight_layers().items() if model.head_target(name) is None]
    names = [name for name, _ in model.named_parameters()]
    frozen: list[str] = []
    for spec in specs:
        if isinstance(spec, int):
            if not 0 <= spec < len(linear_names):
                raise ConfigError(f"train.freeze: layer index {spec} does not exist; the trunk has Linear layers 0..{len(linear_names) - 1}")
            prefix = linear_names[spec] + "."
        else:
            prefix = spec if spec.endswith(".") else spec + "."
            if not any(name.startswith(prefix) for name in names):
                raise ConfigError(f"train.freeze: {spec!r} names no parameters; layers are {', '.join(sorted({n.rsplit('.', 1)[0] for n in names}))}")
        for name, param in model.named_parameters():
            if name.startswith(prefix):
                param.requires_grad_(False)
                frozen.append(name)
    return [f"frozen: {', '.join(frozen)}"] if frozen else []


def prepare_for_finetuning(model: MLP, cfg: TrainConfig, best_in_run: str) -> list[str]:
    """Apply train.init_from and train.freeze to a freshly built model; notes for the summary and run.json."""
    notes = load_matching_weights(model, cfg.init_from, best_in_run) if cfg.init_from else []
    return notes + freeze(model, cfg.freeze)


def _describe(model: MLP, name: str) -> str:
    # heads.<i>.weight -> the head of target i, which a user knows by the target's name
    target = model.head_target(name)
    return f"head {target!r} ({name.rsplit('.', 1)[-1]})" if target is not None else name
