"""Reading a model folder written by ``tl-export format=hf`` (tl_lightning/deploy/hub.py writes it): the
tensors from ``model.safetensors`` (no code runs), the record from ``config.json``'s ``tl_lightning`` section."""

import json
import os
from typing import Any, Dict

from tl_lightning.errors import MODEL_FOLDER_FILES, WeightsError, is_model_folder

WEIGHTS_FILE, CONFIG_FILE = MODEL_FOLDER_FILES
FORMAT_VERSION = 1


def read_model_folder(path: str, key: str = "ckpt_path") -> Dict[str, Any]:
    """A folder written by ``tl-export format=hf`` as the checkpoint dict ``inference.from_checkpoint`` takes."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not is_model_folder(path):
        raise WeightsError(f"{key}: {path} is a folder without {WEIGHTS_FILE} and {CONFIG_FILE}; give a checkpoint "
                           "(<run dir>/checkpoints/best.ckpt) or a folder written by tl-export format=hf")
    try:
        with open(os.path.join(path, CONFIG_FILE), encoding="utf-8") as fh:
            config = json.load(fh)
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{key}: {path}/{CONFIG_FILE} is not readable JSON ({type(exc).__name__})") from None
    record = config.get("tl_lightning") if isinstance(config, dict) else None
    if not isinstance(record, dict) or "architecture" not in record:
        raise WeightsError(f"{key}: {path} is not a model folder written by tl-lightning (its {CONFIG_FILE} has no "
                           "'tl_lightning' section); for other Hub models use backbone=hf backbone.name=<folder>")
    try:
        state = load_file(os.path.join(path, WEIGHTS_FILE))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{key}: {path}/{WEIGHTS_FILE} is not a readable safetensors file ({exc})") from None
    return {"tl_lightning": {**record, "adapter": None, "strategy_state": {}}, "state_dict": state}


