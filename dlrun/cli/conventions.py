"""Command-line conventions every dlrun command shares: `-h` is `--help`, help placeholders are words (`RUN`, `PATH`,
`KEY=VALUE`, nothing after a flag), and an unknown option that names a config key answers with its `--set` spelling.

`DlrunTyper` hands these to every command it makes, so a command in commands.py needs nothing of its own for them.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption
from typer._click.exceptions import NoSuchOption

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}
# typer's type labels (`<str>`, `<list[int]>`) as the words Click prints for them
TYPE_WORDS = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "path": "PATH", "file": "FILE", "directory": "DIR"}


def word_metavars(params: list[Any], ctx: Any) -> None:
    """Give every parameter without a metavar a word: an argument its name (RUN), a flag nothing, an option its type."""
    for param in params:
        if param.metavar is not None:
            continue
        if isinstance(param, TyperArgument):
            param.metavar = param.name.upper()
            # typer prints an argument's type beside its name, as `<path>`; the argument's own help says what it is
            param.display_type_rich = lambda ctx: None
        elif isinstance(param, TyperOption):
            param.metavar = "" if param.is_flag else type_word(param, ctx)


def type_word(option: TyperOption, ctx: Any) -> str:
    label = option.display_type(ctx).strip("<>").removeprefix("list[").removesuffix("]")
    return TYPE_WORDS.get(label.lower(), label.upper())


def usage_pieces(command: Any, ctx: Any) -> list[str]:
    """`[OPTIONS] RUN INPUT_CSV`, `[OPTIONS] [CONFIG]`, `[OPTIONS] RUN_DIRS...`: Click's spelling, without typer's braces."""
    pieces = [command.options_metavar] if command.options_metavar else []
    for param in command.get_params(ctx):
        if isinstance(param, TyperArgument):
            name = param.metavar if param.required else f"[{param.metavar}]"
            pieces.append(name + ("..." if param.nargs != 1 else ""))
    return pieces


def set_hint(option: str, args: list[str]) -> str | None:
    """`--set train.epochs=10` for `--epochs 10` (or `--epochs=10`), when the option's name is the last part of config
    keys; None when it names none. The schema is imported only here, on the error path, so `--help` stays instant."""
    from dlrun.config import walk
    from dlrun.config.schema import Config

    paths = walk.paths_ending_in(Config, option.lstrip("-").replace("-", "_"))
    if not paths:
        return None
    value = "VALUE"
    for at, arg in enumerate(args):
        if arg.startswith(option + "="):
            value = arg.split("=", 1)[1]
        elif arg == option and at + 1 < len(args) and not args[at + 1].startswith("-"):
            value = args[at + 1]
    spellings = " or ".join(f"--set {path}={value}" for path in paths)
    return f"No such option: {option} (did you mean {spellings}?)"


class DlrunCommand(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        word_metavars(params, ctx)
        return params

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return usage_pieces(self, ctx)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        given = list(args)  # the parser consumes the list it is given
        try:
            return super().parse_args(ctx, args)
        except NoSuchOption as exc:
            takes_set = any("--set" in param.opts for param in self.params)
            hint = set_hint(exc.option_name, given) if takes_set else None
            if hint is None:
                raise
            raise NoSuchOption(exc.option_name, message=hint, ctx=ctx) from None


class DlrunGroup(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        word_metavars(params, ctx)
        return params


class DlrunTyper(typer.Typer):
    """typer.Typer whose commands and groups follow the conventions above."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", DlrunGroup)
        kwargs.setdefault("context_settings", CONTEXT_SETTINGS)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", DlrunCommand)
        return super().command(*args, **kwargs)
