"""The one error family: every message here is meant for the person at the terminal."""


class DlrunError(Exception):
    """Base of every error a user can cause; the CLI prints it as `Error: ...` and exits 2."""


class ConfigError(DlrunError):
    """The config file, a `--set` override or a command option is wrong."""


class DataError(DlrunError):
    """A CSV, its columns or its values do not fit what the run needs."""


class RunError(DlrunError):
    """A run directory is missing, incomplete or corrupted."""
