"""README.md stays true: its set-up commands and its config reference match the code."""

from pathlib import Path

from typer.testing import CliRunner

from dlrun.cli.commands import app

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_opens_with_install_and_test_commands():
    first_block = README.split("```")[1]
    assert "pip install -c constraints.txt" in first_block and "dlrun train configs/salary.yaml" in first_block
    assert "python -m pytest" in first_block


def test_readme_config_reference_matches_dlrun_config():
    result = CliRunner().invoke(app, ["config", "--markdown"])
    assert result.exit_code == 0
    assert result.output.strip() in README, "regenerate README's config reference with `dlrun config --markdown`"
