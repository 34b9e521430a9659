"""Issue 17 item 3: the conventions a person expects of a command line, through the real CLI.

`-h` is `--help` on every command, help placeholders read as words, an unknown option that names a config key answers
with its `--set` spelling (exit 2, no traceback), and `dlrun config` lists the allowed values of enumerated keys.
"""

import re

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from conftest import CONFIGS, run_cli
from dlrun.cli.commands import app
from dlrun.config import walk
from dlrun.config.schema import Config

# typer's own type labels: <bool>, <str>, <path>, <list[str]>, <list[Path]>...
TYPE_LABEL = re.compile(r"<(bool|str|int|float|path|file|directory|list\[[^\]]*\])>", re.IGNORECASE)


def command_paths(command=None, prefix=()):
    """Every command and group of the app as its argv prefix: (), ('train',), ('explain', 'dropout'), ..."""
    command = command or get_command(app)
    yield prefix
    for name, sub in getattr(command, "commands", {}).items():
        yield from command_paths(sub, (*prefix, name))


ALL_COMMANDS = list(command_paths())


def test_every_command_is_listed():
    assert {("train",), ("config",), ("explain", "dropout"), ("sweep-report",)} <= set(ALL_COMMANDS)


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda path: " ".join(path) or "dlrun")
def test_short_h_is_help_and_placeholders_are_words(path):
    short = CliRunner().invoke(app, [*path, "-h"], terminal_width=100)
    long = CliRunner().invoke(app, [*path, "--help"], terminal_width=100)
    assert short.exit_code == 0, short.output
    assert short.output == long.output
    assert "Usage:" in short.output and "-h" in short.output
    assert not TYPE_LABEL.search(short.output), short.output
    usage = next(line for line in short.output.splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage, usage


def test_help_names_arguments_and_option_values_in_words():
    train = CliRunner().invoke(app, ["train", "-h"], terminal_width=100).output
    assert "train [OPTIONS] [CONFIG]" in train
    assert re.search(r"--set\s+KEY=VALUE", train) and re.search(r"--runs-dir\s+PATH", train)
    predict = CliRunner().invoke(app, ["predict", "-h"], terminal_width=100).output
    assert "predict [OPTIONS] RUN INPUT_CSV" in predict
    compare = CliRunner().invoke(app, ["compare", "-h"], terminal_width=100).output
    assert "compare [OPTIONS] RUN_DIRS..." in compare


def test_short_h_in_a_subprocess():
    result = run_cli("train", "-h")
    assert result.returncode == 0 and "Usage: dlrun train" in result.stdout


@pytest.mark.parametrize("argv, suggestion", [
    (["train", str(CONFIGS / "salary.yaml"), "--epochs", "10"], "--set train.epochs=10"),
    (["check", str(CONFIGS / "salary.yaml"), "--lr=0.01"], "--set optimizer.lr=0.01"),
    (["sweep", str(CONFIGS / "salary.yaml"), "--batch-size", "64"], "--set data.batch_size=64"),
    (["train", str(CONFIGS / "salary.yaml"), "--momentum"], "--set optimizer.momentum=VALUE"),
])
def test_unknown_option_naming_a_config_key_suggests_set(argv, suggestion):
    result = run_cli(*argv)
    assert result.returncode == 2, result.stderr
    assert f"No such option: {argv[2].split('=')[0]}" in result.stderr
    assert f"did you mean {suggestion}?" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_unknown_option_naming_several_keys_lists_every_spelling():
    result = run_cli("train", str(CONFIGS / "salary.yaml"), "--seed", "3")
    assert result.returncode == 2
    assert "--set seed=3 or --set search.seed=3" in result.stderr, result.stderr


def test_unknown_option_that_is_no_key_gets_no_set_hint():
    result = run_cli("train", str(CONFIGS / "salary.yaml"), "--bogus", "1")
    assert result.returncode == 2 and "No such option: --bogus" in result.stderr
    assert "--set" not in result.stderr and "Traceback" not in result.stderr


def test_config_markdown_lists_allowed_values_of_every_enumerated_key():
    result = CliRunner().invoke(app, ["config", "--markdown"])
    assert result.exit_code == 0
    rows = {line.split("`")[1]: line for line in result.output.splitlines() if line.startswith("| `")}
    enumerated = walk.enumerated(Config)
    assert {"optimizer.name", "scheduler.name", "model.activation", "search.sampler", "data.task"} <= set(enumerated)
    for key, values in enumerated.items():
        assert f"Allowed: {', '.join(values)}." in rows[key], rows[key]
    assert "Allowed: adam, adamw, sgd, rmsprop." in rows["optimizer.name"]
    assert "Allowed" not in rows["optimizer.lr"]


def test_config_table_lists_allowed_values():
    result = run_cli("config")  # COLUMNS=200: the meaning column does not wrap
    assert result.returncode == 0
    assert "Allowed: auto, none, median, successive_halving." in result.stdout


def test_walk_finds_keys_by_last_part_and_literal_values():
    assert walk.paths_ending_in(Config, "epochs") == ["train.epochs"]
    assert walk.paths_ending_in(Config, "no_such_key") == []
    assert not any("<key>" in path for path in walk.paths_ending_in(Config, "low"))
    assert walk.allowed_values(Config.model_fields["optimizer"].annotation.model_fields["name"].annotation) == [
        "adam", "adamw", "sgd", "rmsprop"]
    assert walk.allowed_values(int) == []
