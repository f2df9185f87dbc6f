"""Test-time augmentation for ``tl-eval`` and ``tl-predict`` (``tta=flip|crops``): the model scores several views
of each preprocessed image batch and the class probabilities are averaged.

- ``flip``: the image and its horizontal mirror (2 views);
- ``crops``: the centre and the four corners at 87.5 % of the side, each resized back to the input size, and the
  mirror of each (10 views).

The wrapped model returns ``log(mean softmax)``, so a softmax of its output is the averaged probability and an
argmax or a cross-entropy over it scores the ensemble of views. Image models only.
"""

from typing import Callable, List

import torch
import torch.nn.functional as F
from torch import nn

from tl_lightning.config.schema import TTA_MODES
from tl_lightning.errors import ConfigError

__all__ = ["TTA_MODES", "ViewAveraged", "views", "with_tta"]
CROP_SCALE = 0.875


def _resized(x: torch.Tensor, top: int, left: int, h: int, w: int) -> torch.Tensor:
    crop = x[..., top:top + h, left:left + w]
    return F.interpolate(crop, size=x.shape[-2:], mode="bilinear", align_corners=False)


def views(mode: str) -> List[Callable[[torch.Tensor], torch.Tensor]]:
    """The view functions of a mode, each from a (N, C, H, W) batch to one of the same shape."""
    flips = [lambda x: x, lambda x: torch.flip(x, dims=(-1,))]
    if mode == "flip":
        return flips
    if mode != "crops":
        raise ValueError(f"tta mode {mode}")

    def crop(where: str) -> Callable[[torch.Tensor], torch.Tensor]:
        def view(x: torch.Tensor) -> torch.Tensor:
            height, width = x.shape[-2:]
            h, w = max(1, round(height * CROP_SCALE)), max(1, round(width * CROP_SCALE))
            top = {"c": (height - h) // 2, "tl": 0, "tr": 0, "bl": height - h, "br": height - h}[where]
            left = {"c": (width - w) // 2, "tl": 0, "tr": width - w, "bl": 0, "br": width - w}[where]
            return _resized(x, top, left, h, w)
        return view

    crops = [crop(where) for where in ("c", "tl", "tr", "bl", "br")]
    return [lambda x, c=c, f=f: f(c(x)) for c in crops for f in flips]


class ViewAveraged(nn.Module):
    """``model`` scored on every view of its input; returns the log of the views' mean probabilities."""

    def __init__(self, model: nn.Module, mode: str):
        super().__init__()
        self.model, self.mode = model, mode
        self.views = views(mode)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        log_probs = [F.log_softmax(self.model(view(inputs)).float(), dim=-1) for view in self.views]
        return torch.logsumexp(torch.stack(log_probs), dim=0) - torch.log(torch.tensor(float(len(log_probs))))


def with_tta(model: nn.Module, mode: str, modality: str, key: str = "tta") -> nn.Module:
    """``model`` itself for mode none, else wrapped; text models are refused in one line."""
    if mode == "none":
        return model
    if modality != "image":
        raise ConfigError(f"{key}={mode} averages flipped and cropped views of images; this checkpoint's model "
                          f"takes {modality}: use {key}=none")
    return ViewAveraged(model, mode)
