"""`open_predictor(run_dir)`: a run directory as one predictor, whether it holds one model or an ensemble of fold
models (train.ensemble, `dlrun cv --ensemble`). eval, predict and report score through it; so can export and serve.

An ensemble's members each fitted their own preprocessing on their own fold, so their outputs live in different
scaled spaces. They are brought into the ensemble's space (preprocess.json at the top of the directory, fitted on
every non-test row: the schema rows are checked against and the target scaling predictions are given in) and
averaged there: class probabilities (a class a member never saw gets probability 0 from it), and regression outputs
in the ensemble's scaled units, turned back into real units by the ensemble's own target scaling like any run's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dlrun.config.schema import Config
from dlrun.core.errors import RunError
from dlrun.data.preprocess import Preprocessor
from dlrun.model.forward import forward_split
from dlrun.run.directory import FittedRun, open_run, open_run_files
from dlrun.run.record import read_record

# A probability of 0 stands as this in the log-probabilities an ensemble returns: exp() of its log is 0 in float32.
MIN_PROBABILITY = 1e-300


@dataclass(frozen=True)
class Predictor:
    """A run's model(s) behind one call: `outputs(frame)` gives logits (B, C) or scaled values (B, 1) per target in
    `prep`'s space, exactly what one model's forward pass gives, so scoring and prediction code need not know."""

    run_dir: Path
    cfg: Config
    prep: Preprocessor  # the schema rows are checked against; the target encoding `outputs` are in
    device: torch.device
    run_status: str | None  # run.json's status text; anything but completed means an unfinished run
    checkpoint_epoch: int | None  # one model: the epoch best.pt was saved at; an ensemble: None
    members: tuple[FittedRun, ...]  # one for a single run

    @property
    def is_ensemble(self) -> bool:
        return len(self.members) > 1

    def outputs(self, frame: pd.DataFrame) -> dict[str, torch.Tensor]:
        """The predictor's outputs for these rows (raw feature columns), on its device."""
        if not self.is_ensemble:
            member = self.members[0]
            return forward_split(member.model, _features(member, frame))
        per_member = [member_outputs(self.prep, member, frame) for member in self.members]
        combined = {}
        for target in self.prep.targets:
            mean = torch.stack([outputs[target] for outputs in per_member]).mean(dim=0)
            # log of the mean probability: a softmax of it is the mean again, so scoring code reads it as logits
            combined[target] = mean.clamp(min=MIN_PROBABILITY).log() if self.prep.is_classification(target) else mean
        return {target: values.float().to(self.device) for target, values in combined.items()}


def open_predictor(run_dir: Path | str, device: str | None = None) -> Predictor:
    """A run directory as a Predictor: one model (best.pt), or an ensemble directory's fold models together.
    Raises RunError naming what is missing; a cross-validation directory without --ensemble is not one model."""
    run_dir = Path(run_dir)
    record = read_record(run_dir)
    if record.cv is None:
        run = open_run(run_dir, device)
        return Predictor(run_dir, run.cfg, run.prep, run.device, run.run_status, run.checkpoint_epoch, (run,))
    if not record.cv.ensemble:
        raise RunError(f"{run_dir} is a cross-validation directory, not one model: score one fold's run in its "
                       f"folds/ folder, or train the folds as one predictor with dlrun cv --ensemble")
    if not record.cv.members:
        raise RunError(f"{run_dir} is an ensemble whose fold models have not all finished (status: "
                       f"{record.status_text}); continue it with dlrun train --resume {run_dir}")
    saved = open_run_files(run_dir)
    members = tuple(open_run(run_dir / member, device) for member in record.cv.members)
    return Predictor(run_dir, saved.cfg, saved.prep, members[0].device, record.status_text, None, members)


def member_outputs(prep: Preprocessor, member: FittedRun, frame: pd.DataFrame) -> dict[str, torch.Tensor]:
    """One member's outputs in `prep`'s space, float64 on the CPU: class probabilities (B, C) in prep's class
    order, regression values (B, 1) in prep's scaled units."""
    raw = forward_split(member.model, _features(member, frame))
    result = {}
    for target, out in raw.items():
        out = out.double().cpu()
        if prep.is_classification(target):
            proba = out.softmax(dim=1)  # (B, C_member)
            columns = {str(c): k for k, c in enumerate(prep.classes(target))}
            mapped = torch.zeros(len(proba), len(columns), dtype=torch.float64)
            mapped[:, [columns[str(c)] for c in member.prep.classes(target)]] = proba
            result[target] = mapped
        else:
            real = member.prep.to_original_units(target, out.squeeze(1).numpy())
            result[target] = torch.from_numpy(np.asarray(prep.to_scaled_units(target, real), dtype=float)).unsqueeze(1)
    return result


def _features(member: FittedRun, frame: pd.DataFrame) -> torch.Tensor:
    return torch.from_numpy(member.prep.transform_features(frame)).to(member.device)  # (B, n_features_out)
