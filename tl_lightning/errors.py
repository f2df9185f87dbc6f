"""Error types for user mistakes.

Each carries one readable line; the command-line entry point prints it without a
traceback and exits with status 2. Anything else is a bug and keeps its traceback.
"""

USER_ERROR_EXIT_CODE = 2


class TLError(Exception):
    """A user mistake: bad config, missing file, bad data. One line, exit status 2."""

    exit_code = USER_ERROR_EXIT_CODE
    label = "error"  # the word train.py prints before the message


class ConfigError(TLError):
    """The composed configuration is invalid (unknown key, wrong type, unknown name)."""


class DataError(TLError):
    """The dataset cannot be used as configured (missing root, bad file, bad labels)."""


class RunDirInUse(ConfigError):
    """Another process holds the run dir's lock: nothing may be written there, not even this failure's record."""


class WeightsError(TLError):
    """Pretrained weights are missing, unreachable, or do not fit the architecture."""


class WriteError(TLError):
    """A file could not be written (full disk, no permission): one line, exit status 1 (not a config mistake)."""

    exit_code = 1


def unknown_name(kind: str, name: str, valid, where: str) -> ConfigError:
    """The standard 'unknown X' error: what is wrong, what is valid, where."""
    return ConfigError(f"unknown {kind} '{name}' ({where}); valid: {', '.join(sorted(valid))}")


MODEL_FOLDER_FILES = ("model.safetensors", "config.json")  # what tl-export format=hf writes and every tool reads


def is_model_folder(path: str) -> bool:
    """A folder holding a model folder's weights and config (tl_lightning/backbones/model_folder.py reads it)."""
    import os

    return os.path.isdir(path) and all(os.path.isfile(os.path.join(path, f)) for f in MODEL_FOLDER_FILES)


def check_file(path: str, key: str, checkpoint: bool = False) -> None:
    """A file the run must read: missing, or a directory where a file is expected, is one ConfigError line.
    checkpoint=True: it must also be a complete torch zip archive (a truncated file fails here, before torch
    is imported; torch.save has written zip archives since torch 1.6)."""
    import os
    import zipfile

    if os.path.isdir(path):
        if checkpoint and key != "resume" and is_model_folder(path):
            return  # a model folder of tl-export format=hf
        hint = " (or a model folder of tl-export format=hf, which holds model.safetensors and config.json)" \
            if checkpoint and key != "resume" else ""
        raise ConfigError(f"{key}: {path} is a directory; give a file in it (e.g. {os.path.join(path, '...')}){hint}")
    if not os.path.isfile(path):
        raise ConfigError(f"{key}: no such file: {path}")
    if checkpoint and not zipfile.is_zipfile(path):
        raise WeightsError(f"{key}: {path} is not a readable checkpoint (truncated, corrupt, or not written by "
                           f"torch.save; {os.path.getsize(path)} bytes)")


class Interrupted(TLError):
    """The run stopped on Ctrl-C (exit 130) or SIGTERM (exit 143) after saving what it could."""

    label = "stopped"

    def __init__(self, message: str, signal_name: str, saved: str = ""):
        super().__init__(message)
        self.signal_name, self.saved = signal_name, saved
        self.exit_code = 130 if signal_name == "SIGINT" else 143


class VerificationError(TLError):
    """An exported model does not reproduce the checkpoint's outputs: exit status 1 (the input was valid)."""

    exit_code = 1
