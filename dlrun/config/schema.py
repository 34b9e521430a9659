"""The config tree: one pydantic model per concern, validated once when it loads, read-only after.

Field descriptions are the reference documentation: `dlrun config` prints them with their defaults.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Optional, Union

import yaml
from pydantic import BaseModel, Field, field_validator, model_validator

from dlrun.config import walk
from dlrun.config.search import SearchConfig
from dlrun.config.section import Section as _Section
from dlrun.config.splitting import SplitConfig, StreamConfig
from dlrun.config.tracking import TrackingConfig

BUILTIN_DATASETS = ("animals", "salary", "synthetic")
Task = Literal["classification", "regression"]
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
MAX_HIDDEN_WIDTH = 65_536
MAX_HIDDEN_LAYERS = 64
MAX_NAME_CHARS = 100  # a run directory's name is a timestamp plus this; file systems allow 255 bytes per name


def device_spelling_problem(name: str) -> str | None:
    """What is wrong with a device string, or None; shared by the config check and `--device` (device.py)."""
    return None if DEVICE_PATTERN.fullmatch(name) else f"must be auto, cpu, cuda or cuda:N, got {name!r}"


class SyntheticConfig(_Section):
    n_samples: int = Field(1000, ge=20, le=10_000_000, description="Rows generated for `dataset: synthetic`.")
    n_features: int = Field(8, ge=2, le=1000, description="Numeric features generated (x0, x1, ...).")
    noise: float = Field(0.1, ge=0, le=10, description="Noise level of the label rule and the salary target.")


ColumnRole = Literal["numeric", "category", "ordinal", "boolean", "date", "ignore"]


class OrdinalRole(_Section):
    ordinal: list[str] = Field(min_length=2, description="The column's values, lowest first (compared ignoring case).")

    @field_validator("ordinal")
    @classmethod
    def _values_unique(cls, value: list[str]) -> list[str]:
        lowered = [str(v).strip().lower() for v in value]
        if len(set(lowered)) != len(lowered):
            raise ValueError(f"ordinal values must differ (ignoring case), got {value}")
        return [str(v).strip() for v in value]


class DataConfig(_Section):
    dataset: Optional[Literal["animals", "salary", "synthetic"]] = Field(
        None, description="A built-in data set; give this or `path`."
    )
    path: Optional[str] = Field(
        None, description="A CSV file with a header row, a Parquet file, a directory of Parquet or CSV files, or a glob "
                          "(data/part-*.parquet); relative to the working directory.")
    target: Union[str, list[str], None] = Field(
        None, description="Target column, or a list of columns for multi-task (default: the data set's own)."
    )
    task: Union[Task, dict[str, Task], None] = Field(
        None,
        description="classification | regression, or a mapping per target; inferred from the target when omitted.",
    )
    units: dict[str, str] = Field(
        default_factory=dict, description="Unit of each regression target, shown beside its errors (e.g. {wages: dollars/hour})."
    )
    features: Optional[list[str]] = Field(None, description="Columns to use as features (default: all but targets and `drop`).")
    drop: list[str] = Field(default_factory=list, description="Columns never used as features (ids, names, leaks).")
    columns: dict[str, Union[ColumnRole, OrdinalRole]] = Field(
        default_factory=dict,
        description="Declared role per column, instead of the inferred one: numeric | category | boolean | date | ignore, "
                    "or {ordinal: [low, ..., high]}; targets too (churn: category). Undeclared columns are inferred.",
    )
    merge_case: bool = Field(
        True, description="Merge category values (features and targets) that differ only in case; the most frequent spelling is kept."
    )
    split: SplitConfig = Field(default_factory=SplitConfig, description="How rows are divided (stratified for classification).")
    batch_size: int = Field(64, ge=1, le=1_000_000, description="Rows per optimisation step.")
    shuffle: bool = Field(True, description="Reshuffle training rows every epoch.")
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig, description="Generator settings for `dataset: synthetic`.")
    in_memory: Union[Literal["auto"], bool] = Field(
        "auto", description="true: load the table whole (as tensors); false: stream it in chunks, for tables larger than "
                            "memory; auto: stream only when its estimated size exceeds data.memory_budget.")
    memory_budget: Optional[float] = Field(
        None, gt=0, le=1_000_000, description="GiB the table may take as float32 tensors before auto streams it "
                                               "(default: a sixteenth of the machine's RAM, for the copies loading makes).")
    stream: StreamConfig = Field(default_factory=StreamConfig, description="How a streamed table is read (data.in_memory).")

    @model_validator(mode="after")
    def _one_source(self) -> "DataConfig":
        if (self.dataset is None) == (self.path is None):
            raise ValueError("give exactly one of data.dataset (animals | salary | synthetic) or data.path (a CSV or Parquet file)")
        if self.dataset is None and self.target is None:
            raise ValueError("data.target is required with data.path: name the column to predict")
        if self.in_memory is False and self.dataset is not None:
            raise ValueError("data.in_memory: false streams the file data.path names; built-in data sets load in memory")
        plain_ordinal = sorted(column for column, role in self.columns.items() if role == "ordinal")
        if plain_ordinal:
            raise ValueError(f"data.columns.{plain_ordinal[0]}: ordinal needs its values in order, e.g. "
                             "{ordinal: [low, medium, high]}")
        return self

    @field_validator("path")
    @classmethod
    def _path_not_empty(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError(f"must be the path of a CSV file, got {value!r}")
        return value

    @field_validator("target")
    @classmethod
    def _targets_unique(cls, value):
        if isinstance(value, list) and (not value or len(set(value)) != len(value)):
            raise ValueError("target list must be non-empty and name each column once")
        return value


class PreprocessConfig(_Section):
    numeric_impute: Literal["median", "mean"] = Field("median", description="Fill for missing numeric values, fitted on train.")
    categorical_impute: Literal["missing", "most_frequent"] = Field(
        "missing", description="Missing categories become their own `missing` category, or the most frequent one."
    )
    scale: Literal["standard", "robust", "quantile", "minmax", "none"] = Field(
        "standard",
        description="Numeric feature scaling, fitted on train: standard (mean/std) | robust (median/IQR, then smooth clipping "
        "x/sqrt(1+(x/3)^2)) | quantile (to a normal; regression targets too, inverted for predictions) | minmax | none.",
    )
    max_categories: int = Field(
        50, ge=1, le=10_000, description="One-hot columns kept per categorical feature (most frequent); rarer values encode as unseen."
    )
    embed_categories_above: Optional[int] = Field(
        None, ge=1, le=10_000,
        description="Categorical features with more kept categories than this get a learned embedding (size 8) instead of one-hot (null: always one-hot).",
    )
    missing_indicators: bool = Field(
        True, description="Add a 0/1 `<column> (missing)` feature per numeric column with missing training values: that a value was missing often carries signal."
    )


Activation = Literal["relu", "leaky_relu", "sigmoid", "tanh", "gelu", "elu"]
Init = Literal["default", "uniform", "normal", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"]
Probability = Annotated[float, Field(ge=0, lt=1)]


class ModelConfig(_Section):
    type: Literal["mlp", "tabm"] = Field(
        "mlp", description="mlp: one MLP | tabm: a batch ensemble of k weight-sharing MLPs (TabM), mean of the k losses, predictions averaged."
    )
    k: int = Field(32, ge=1, le=256, description="tabm: ensemble members trained in parallel.")
    num_embeddings: Literal["none", "periodic", "piecewise_linear"] = Field(
        "none",
        description="Embedding of each numeric feature before the trunk: none | periodic (PLR) | piecewise_linear (quantile bins fitted on train).",
    )
    embedding_dim: int = Field(16, ge=1, le=1024, description="Size of each numeric feature's embedding (num_embeddings other than none).")
    n_bins: int = Field(48, ge=2, le=1024, description="piecewise_linear: quantile bins per numeric feature.")
    hidden: list[int] = Field(
        [128, 64], description=f"Width of each hidden layer of the shared trunk (1 to {MAX_HIDDEN_WIDTH:,} each, at most {MAX_HIDDEN_LAYERS} layers)."
    )
    activation: Activation = Field("relu", description="relu | leaky_relu | sigmoid | tanh | gelu | elu.")
    leaky_relu_slope: float = Field(0.01, gt=0, lt=1, description="Slope of leaky_relu for negative inputs.")
    dropout: Union[Probability, list[Probability]] = Field(
        0.1, description="Dropout after each hidden layer: one value, or a list with one value per layer."
    )
    norm: Literal["none", "batch", "layer"] = Field("none", description="Normalisation after each hidden Linear: none | batch | layer.")
    init: Init = Field(
        "default",
        description="Weights: default (PyTorch), uniform (±init_range), normal (init_std), xavier_*, kaiming_* (gain from the activation).",
    )
    init_range: float = Field(0.05, gt=0, description="Half-width of `init: uniform`.")
    init_std: float = Field(0.02, gt=0, description="Standard deviation of `init: normal`.")
    bias_init: Literal["default", "zero"] = Field("default", description="Biases: PyTorch's default or zero.")

    @field_validator("hidden")
    @classmethod
    def _sane_widths(cls, value: list[int]) -> list[int]:
        # Bounds catch a typo (an extra zero or three) before it asks for gigabytes; they do not promise it fits.
        if any(width < 1 or width > MAX_HIDDEN_WIDTH for width in value):
            raise ValueError(f"every hidden width must be between 1 and {MAX_HIDDEN_WIDTH}, got {value}")
        if len(value) > MAX_HIDDEN_LAYERS:
            raise ValueError(f"at most {MAX_HIDDEN_LAYERS} hidden layers, got {len(value)}")
        return value

    @model_validator(mode="after")
    def _dropout_per_layer(self) -> "ModelConfig":
        if isinstance(self.dropout, list) and len(self.dropout) != len(self.hidden):
            raise ValueError(
                f"model.dropout lists {len(self.dropout)} values but model.hidden has {len(self.hidden)} layers; "
                "give one value per layer or a single number"
            )
        return self

    @model_validator(mode="after")
    def _tabm_without_norm(self) -> "ModelConfig":
        if self.type == "tabm" and self.norm != "none":
            raise ValueError(f"model.norm: {self.norm} is not available with model.type: tabm; use none")
        return self

    def layer_dropout(self) -> list[float]:
        return list(self.dropout) if isinstance(self.dropout, list) else [self.dropout] * len(self.hidden)


class OptimizerConfig(_Section):
    name: Literal["adam", "adamw", "sgd", "rmsprop"] = Field("adamw", description="adam | adamw | sgd | rmsprop.")
    lr: float = Field(0.001, gt=0, le=10, description="Learning rate.")
    momentum: float = Field(0.9, ge=0, lt=1, description="Momentum for sgd and rmsprop (ignored by adam/adamw).")
    nesterov: bool = Field(False, description="Nesterov momentum (sgd with momentum > 0).")
    alpha: float = Field(0.99, gt=0, lt=1, description="rmsprop: smoothing of the squared-gradient average.")
    weight_decay: float = Field(1e-4, ge=0, le=1, description="L2 penalty (decoupled for adamw).")
    decay_bias_and_norm: bool = Field(
        True, description="Apply weight_decay to biases and norm-layer weights too; false decays only Linear weights."
    )

    @model_validator(mode="after")
    def _nesterov_needs_sgd_momentum(self) -> "OptimizerConfig":
        if self.nesterov and (self.name != "sgd" or self.momentum == 0):
            raise ValueError(
                f"optimizer.nesterov needs name: sgd and momentum > 0 (got name: {self.name}, momentum: {self.momentum})"
            )
        return self


class EarlyStoppingConfig(_Section):
    patience: int = Field(20, ge=1, description="Epochs without improvement of `metric` before training stops.")
    metric: str = Field("val_loss", description="Column of metrics.csv to watch; the best epoch's weights are kept.")
    mode: Literal["auto", "min", "max"] = Field("auto", description="auto: max for accuracy/f1/precision/recall/auroc/r2, else min.")
    min_delta: float = Field(0.0, ge=0, description="Smallest change that counts as an improvement.")


class EnsembleConfig(_Section):
    folds: int = Field(5, ge=2, le=50, description="Fold models trained (each validates on one fold of the non-test rows) and averaged as one predictor.")


class TrainConfig(_Section):
    epochs: int = Field(200, ge=1, le=100_000, description="Maximum number of passes over the training rows.")
    early_stopping: Optional[EarlyStoppingConfig] = Field(
        default_factory=EarlyStoppingConfig, description="Set to null to train all epochs (the last epoch is kept)."
    )
    threads: Optional[int] = Field(
        None, ge=1, le=1024,
        description="CPU threads for torch; null: 1 for small models (threads cost more than they save there), else all cores.",
    )
    loss_weight: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict, description="Weight of each target's loss in the total (default 1.0 per target)."
    )
    grad_clip: Optional[float] = Field(None, gt=0, description="Clip the gradient norm to this value each step (null: no clipping).")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing of the cross-entropy of classification targets.")
    class_weights: Literal["none", "balanced"] = Field(
        "none", description="balanced: weight each class by n_rows / (n_classes * its rows) in the cross-entropy."
    )
    init_from: Optional[str] = Field(
        None, description="Start from the weights of an earlier run directory or checkpoint file (layers whose shapes match)."
    )
    freeze: list[Union[int, str]] = Field(
        default_factory=list,
        description="Trunk layers whose weights stay fixed: Linear layer indices (0 = first) or parameter-name prefixes such as trunk.0.",
    )
    trunk_lr: Optional[float] = Field(
        None, gt=0, le=10, description="Learning rate of the (unfrozen) trunk when fine-tuning; heads keep optimizer.lr (null: the same lr)."
    )
    ensemble: Optional[EnsembleConfig] = Field(
        None, description="Train k fold models and serve them as one predictor averaging probabilities / scaled outputs (null: one model).",
    )
    fast_path: bool = Field(
        True, description="Train with the hand-written fast step when it covers the model (autograd's step up to float rounding, several times faster; run.json says which ran); false: always autograd.",
    )


class AugmentConfig(_Section):
    noise_std: float = Field(0.0, ge=0, le=10, description="Gaussian noise (std, in scaled units) added to numeric features of training batches.")
    mask_prob: float = Field(0.0, ge=0, lt=1, description="Probability that each feature of a training row is zeroed (random feature masking).")
    smote: bool = Field(False, description="Oversample minority classes of the (single) classification target with SMOTE, training split only.")
    smote_k: int = Field(5, ge=1, le=100, description="SMOTE: nearest neighbours used to synthesise a row.")


class SchedulerConfig(_Section):
    name: Literal["none", "step", "cosine", "one_cycle", "plateau"] = Field(
        "none", description="Learning-rate schedule per epoch: none | step | cosine | one_cycle | plateau."
    )
    warmup_epochs: int = Field(0, ge=0, description="Epochs of linear warm-up from lr / (warmup_epochs + 1) before the schedule.")
    step_size: int = Field(30, ge=1, description="step: epochs between reductions.")
    gamma: float = Field(0.1, gt=0, le=1, description="step: factor applied every step_size epochs.")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine and plateau: the lowest lr as a fraction of the initial lr.")
    factor: float = Field(0.5, gt=0, lt=1, description="plateau: factor applied when the monitored metric stalls.")
    patience: int = Field(5, ge=1, description="plateau: epochs without improvement before reducing the lr.")


class Config(_Section):
    name: str = Field("run", pattern=r"^[A-Za-z0-9_.-]+$", max_length=MAX_NAME_CHARS, description="Used in the run directory's name (default: the config file's name).")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="Seeds the split, the weights, shuffling and dropout.")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N.")
    report: bool = Field(
        True, description="Draw plots/ and write report.html when the run completes (1-2 s; sweep trials skip them)."
    )
    data: DataConfig = Field(description="Where the rows come from and how they are split and batched.")
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig, description="Imputation, encoding and scaling.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The network: an MLP or TabM trunk shared by one head per target.")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig, description="How weights are updated.")
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="Training-split-only data augmentation.")
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig, description="How the learning rate changes per epoch.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Epochs, early stopping, loss and regularisation.")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="Live tracking in TensorBoard or MLflow (off by default).")
    search: Optional[SearchConfig] = Field(
        None, description="What `dlrun sweep` searches; training ignores it, and trial configs leave it out."
    )

    @field_validator("device")
    @classmethod
    def _device_spelling(cls, value: str) -> str:
        problem = device_spelling_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _loss_weights_name_targets(self) -> "Config":
        targets = self.data.target if isinstance(self.data.target, list) else [self.data.target]
        unknown = sorted(set(self.train.loss_weight) - set(targets)) if self.data.target else []
        if unknown:
            raise ValueError(f"train.loss_weight names {unknown}, which are not targets; targets are {targets}")
        if isinstance(self.data.task, dict) and self.data.target is not None:
            stray = sorted(set(self.data.task) - set(targets))
            if stray:
                raise ValueError(f"data.task names {stray}, which are not targets; targets are {targets}")
        return self

    @model_validator(mode="after")
    def _smote_needs_onehot(self) -> "Config":
        if self.augment.smote and self.preprocess.embed_categories_above is not None:
            raise ValueError("augment.smote interpolates encoded columns and cannot mix category codes: "
                             "set preprocess.embed_categories_above to null, or turn augment.smote off")
        return self

    @model_validator(mode="after")
    def _streaming_without_whole_table_steps(self) -> "Config":
        if self.data.in_memory is False and self.augment.smote:
            raise ValueError("augment.smote needs every training row in memory: set data.in_memory to true or auto, or "
                             "turn augment.smote off")
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def describe_schema(section: type[BaseModel] = Config) -> list[tuple[str, str, str]]:
    """(key path, default, description) for every value key, nested sections flattened (config/walk.py's leaves)."""
    return [(path, "required" if found.field.is_required() else repr(found.field.get_default(call_default_factory=True)),
             found.field.description or "") for path, found in walk.leaves(section)]
