"""Stage 0: the config tree loads YAML, applies --set overrides, and rejects bad values naming the key."""

from __future__ import annotations

import pydantic
import pytest
import yaml

from dlrun.config.schema import Config, describe_schema
from dlrun.config.load import load_config, validate_config
from dlrun.core.errors import ConfigError, DlrunError

from conftest import CONFIGS


def write_yaml(tmp_path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def config_error(raw: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        validate_config(raw)
    return str(caught.value)


ANIMALS = {"dataset": "animals"}


def test_minimal_config_fills_every_default(tmp_path):
    cfg = load_config(write_yaml(tmp_path, "data: {dataset: animals}\n"))
    assert cfg.seed == 0 and cfg.device == "auto" and cfg.name
    assert cfg.data.path is None and cfg.data.target is None and cfg.data.task is None
    assert cfg.data.split.train + cfg.data.split.val + cfg.data.split.test == pytest.approx(1.0)
    assert cfg.data.batch_size >= 1 and cfg.data.shuffle is True
    assert cfg.model.hidden and all(width >= 1 for width in cfg.model.hidden)
    assert cfg.optimizer.lr > 0 and cfg.train.epochs >= 1


def test_config_without_a_name_is_named_after_its_file(tmp_path):
    path = tmp_path / "my exp.yaml"
    path.write_text("data: {dataset: animals}\n")
    assert load_config(path).name == "my-exp"
    path.write_text("name: chosen\ndata: {dataset: animals}\n")
    assert load_config(path).name == "chosen"


def test_config_is_read_only_after_validation():
    cfg = validate_config({"data": ANIMALS})
    with pytest.raises(pydantic.ValidationError):
        cfg.seed = 3
    with pytest.raises(pydantic.ValidationError):
        cfg.optimizer.lr = 0.5


@pytest.mark.parametrize("name", ["animals", "salary", "synthetic"])
def test_shipped_config_loads(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.name == name and cfg.data.dataset == name


def test_resolved_config_round_trips_through_yaml():
    cfg = load_config(CONFIGS / "synthetic.yaml", ["model.hidden=[8]"])
    assert validate_config(yaml.safe_load(cfg.to_yaml())) == cfg


# ---- unknown keys, wrong types, ranges -----------------------------------------------------------
def test_unknown_key_suggests_nearest():
    message = config_error({"data": ANIMALS, "optimizer": {"lrr": 0.1}})
    assert "optimizer.lrr" in message and "unknown key" in message
    assert "did you mean 'lr'" in message


def test_unknown_nested_key_suggests_nearest_in_its_own_section():
    message = config_error({"data": {**ANIMALS, "split": {"trian": 0.7, "val": 0.15, "test": 0.15}}})
    assert "data.split.trian" in message and "did you mean 'train'" in message


def test_unknown_key_under_optional_section_suggests_nearest():
    message = config_error({"data": ANIMALS, "train": {"early_stopping": {"patiense": 3}}})
    assert "train.early_stopping.patiense" in message and "'patience'" in message


def test_unknown_top_level_key_lists_allowed_keys():
    message = config_error({"data": ANIMALS, "foo": 1})
    assert "foo" in message and "allowed keys" in message and "optimizer" in message


def test_wrong_type_names_key_and_value():
    message = config_error({"data": ANIMALS, "seed": "abc"})
    assert "seed" in message and "'abc'" in message


def test_wrong_type_inside_a_list_names_the_key():
    message = config_error({"data": ANIMALS, "model": {"hidden": "wide"}})
    assert "model.hidden" in message and "'wide'" in message


@pytest.mark.parametrize("lr", [0, -0.1])
def test_non_positive_learning_rate_is_rejected(lr):
    message = config_error({"data": ANIMALS, "optimizer": {"lr": lr}})
    assert "optimizer.lr" in message and "greater than 0" in message


def test_seed_too_large_for_torch_is_rejected():
    # torch.manual_seed takes at most 64 bits; a larger seed must fail validation, not crash training later.
    assert "seed" in config_error({"data": ANIMALS, "seed": 2**70})


def test_zero_hidden_width_is_rejected():
    assert "model.hidden" in config_error({"data": ANIMALS, "model": {"hidden": [16, 0]}})


def test_unknown_choice_names_key_and_value():
    message = config_error({"data": ANIMALS, "optimizer": {"name": "adamm"}})
    assert "optimizer.name" in message and "'adamm'" in message


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "CPU"])
def test_bad_device_spelling_is_rejected(device):
    message = config_error({"data": ANIMALS, "device": device})
    assert "device" in message and repr(device) in message


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1"])
def test_device_spellings_are_accepted(device):
    assert validate_config({"data": ANIMALS, "device": device}).device == device


def test_every_problem_is_reported_at_once():
    message = config_error({"data": ANIMALS, "seed": -1, "optimizer": {"lr": 0}, "model": {"dropout": 1.5}})
    assert "seed" in message and "optimizer.lr" in message and "model.dropout" in message


def test_a_value_neither_choice_of_a_union_takes_names_both():
    message = config_error({"data": {**ANIMALS, "in_memory": "maybe"}})
    assert "data.in_memory: Input should be 'auto' or a valid boolean (got 'maybe')" in message


def test_split_fractions_not_summing_to_one_are_rejected():
    message = config_error({"data": {**ANIMALS, "split": {"train": 0.5, "val": 0.1, "test": 0.1}}})
    assert "data.split" in message and "sum to 1" in message and "0.7" in message


def test_split_column_replaces_fractions():
    cfg = validate_config({"data": {**ANIMALS, "split": {"column": "fold"}}})
    assert cfg.data.split.column == "fold"


def test_loss_weight_for_a_non_target_is_rejected():
    message = config_error({"data": {**ANIMALS, "target": "type"}, "train": {"loss_weight": {"legs": 2.0}}})
    assert "train.loss_weight" in message or "loss_weight" in message
    assert "legs" in message


def test_task_for_a_non_target_is_rejected():
    message = config_error({"data": {**ANIMALS, "target": "type", "task": {"legs": "regression"}}})
    assert "data.task" in message and "legs" in message


def test_duplicate_targets_are_rejected():
    assert "data.target" in config_error({"data": {**ANIMALS, "target": ["type", "type"]}})


# ---- data source -------------------------------------------------------------------------------
def test_dataset_and_path_both_given_is_rejected():
    message = config_error({"data": {"dataset": "animals", "path": "x.csv", "target": "y"}})
    assert "data.dataset" in message and "data.path" in message


def test_neither_dataset_nor_path_is_rejected():
    message = config_error({"data": {"target": "y"}})
    assert "data.dataset" in message and "data.path" in message


def test_path_without_target_is_rejected():
    assert "data.target" in config_error({"data": {"path": "x.csv"}})


def test_missing_data_section_is_reported():
    assert "data" in config_error({"seed": 1})


def test_unknown_builtin_dataset_names_the_choices():
    message = config_error({"data": {"dataset": "iris"}})
    assert "data.dataset" in message and "'iris'" in message and "animals" in message


# ---- the file ----------------------------------------------------------------------------------
def test_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_yaml_syntax_error_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write_yaml(tmp_path, "data: {dataset: animals\nseed: [1\n"))


def test_config_that_is_not_a_mapping_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write_yaml(tmp_path, "- just\n- a list\n"))


def test_config_errors_are_dlrun_errors():
    assert issubclass(ConfigError, DlrunError)


# ---- --set overrides ---------------------------------------------------------------------------
def test_set_parses_values_as_yaml(tmp_path):
    path = write_yaml(tmp_path, "data: {dataset: animals}\n")
    cfg = load_config(path, ["model.hidden=[128,64]", "optimizer.lr=0.05", "data.shuffle=false",
                             "train.early_stopping=null", "name=exp-1"])
    assert cfg.model.hidden == [128, 64]
    assert cfg.optimizer.lr == 0.05
    assert cfg.data.shuffle is False
    assert cfg.train.early_stopping is None
    assert cfg.name == "exp-1"


def test_set_overrides_a_value_from_the_file():
    cfg = load_config(CONFIGS / "animals.yaml", ["data.batch_size=8", "data.split.val=0.2", "data.split.train=0.65"])
    assert cfg.data.batch_size == 8
    assert (cfg.data.split.train, cfg.data.split.val) == (0.65, 0.2)
    assert cfg.data.drop == ["name"]  # the rest of the file is untouched


def test_later_set_wins():
    cfg = load_config(CONFIGS / "animals.yaml", ["train.epochs=3", "train.epochs=4"])
    assert cfg.train.epochs == 4


def test_set_value_may_contain_equals_sign():
    # The value is everything after the first '='.
    cfg = load_config(CONFIGS / "salary.yaml", ["data.units={wages: x=y}"])
    assert cfg.data.units == {"wages": "x=y"}


@pytest.mark.parametrize("override", ["model.hidden", "=3", "  =3"])
def test_set_without_key_equals_value_is_a_config_error(override):
    with pytest.raises(ConfigError) as caught:
        load_config(CONFIGS / "animals.yaml", [override])
    assert "--set" in str(caught.value) and "key.path=value" in str(caught.value)


def test_set_with_invalid_yaml_value_is_a_config_error():
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(CONFIGS / "animals.yaml", ["model.hidden=[1,"])


def test_set_into_a_plain_value_is_a_config_error():
    with pytest.raises(ConfigError, match="name is a value"):
        load_config(CONFIGS / "animals.yaml", ["name.first=3"])


def test_set_is_validated_like_the_file():
    with pytest.raises(ConfigError, match="optimizer.lr"):
        load_config(CONFIGS / "animals.yaml", ["optimizer.lr=0"])


def test_set_unknown_key_suggests_nearest():
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        load_config(CONFIGS / "animals.yaml", ["train.epoch=3"])


def test_device_option_overrides_the_file():
    assert load_config(CONFIGS / "animals.yaml", device="cpu").device == "cpu"


# ---- the schema as documentation ---------------------------------------------------------------
def leaf_keys(tree: dict, prefix: str = "") -> set[str]:
    """Key paths of a dumped config; a non-empty dict is a section, anything else (an empty dict too) a value."""
    keys = set()
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            keys |= leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


def test_describe_schema_covers_every_key():
    rows = describe_schema()
    described = [key for key, _, _ in rows]
    assert len(described) == len(set(described))
    # the optional sections are filled in (search, tracking.mlflow), one searched key standing for any (`<key>`)
    search = {"space": {"lr": {"uniform": [0.1, 0.2]}}}
    tracking = {"mlflow": {"uri": "sqlite:///mlflow.db"}}
    # so are the optional data.split.fold and train.ensemble sections
    filled = {"data": {**ANIMALS, "split": {"fold": {"k": 2, "index": 1}}}, "train": {"ensemble": {"folds": 2}}}
    dumped = leaf_keys(validate_config({**filled, "search": search, "tracking": tracking}).model_dump())
    assert set(described) == {key.replace("search.space.lr.", "search.space.<key>.") for key in dumped}


def test_describe_schema_gives_every_key_a_description_and_default():
    for key, default, description in describe_schema():
        assert description.strip(), f"{key} has no description"
        assert default, f"{key} has no default shown"
    rows = {key: default for key, default, _ in describe_schema()}
    assert rows["optimizer.lr"] == repr(Config.model_fields["optimizer"].default_factory().lr)
    assert rows["seed"] == "0"
