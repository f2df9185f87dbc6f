"""Error types for user mistakes.

Each carries one readable line; the command-line entry point prints it without a
traceback and exits with status 2. Anything else is a bug and keeps its traceback.
"""

USER_ERROR_EXIT_CODE = 2


class TLError(Exception):
    """A user mistake: bad config, missing file, bad data. One line, exit status 2."""


class ConfigError(TLError):
    """The composed configuration is invalid (unknown key, wrong type, unknown name)."""


class DataError(TLError):
    """The dataset cannot be used as configured (missing root, bad file, bad labels)."""


class WeightsError(TLError):
    """Pretrained weights are missing, unreachable, or do not fit the architecture."""


def unknown_name(kind: str, name: str, valid, where: str) -> ConfigError:
    """The standard 'unknown X' error: what is wrong, what is valid, where."""
    return ConfigError(f"unknown {kind} '{name}' ({where}); valid: {', '.join(sorted(valid))}")


def one_line(exc: BaseException) -> str:
    """Hydra/OmegaConf errors span several lines; keep what is wrong, what is valid and where."""
    from hydra.errors import MissingConfigException

    if isinstance(exc, MissingConfigException) and exc.options:
        first = str(exc).strip().splitlines()[0]
        return f"{first}; valid options: {', '.join(sorted(exc.options))}"
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    cause = exc.__cause__
    if cause is not None:
        cause_lines = [ln.strip() for ln in str(cause).strip().splitlines() if ln.strip()]
        lines = lines[:1] + cause_lines[:1] + lines[1:]
    return "; ".join(ln.rstrip(".") for ln in lines[:3]) if lines else type(exc).__name__
