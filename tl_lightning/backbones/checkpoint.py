"""backbone=checkpoint: reuse the backbone of a run of this harness (source -> target chaining).

The checkpoint records the architecture, the source run's config and class names; its ``head.*``
weights become the source head, so the run can measure forgetting of the source task.
"""

import os
from typing import Optional

import torch
from omegaconf import OmegaConf
from torch import nn

from tl_lightning.backbones.base import Backbone
from tl_lightning.errors import ConfigError, WeightsError
from tl_lightning.strategies.base import SourceTask


def read_checkpoint(path: str) -> dict:
    if not path:
        raise ConfigError("backbone=checkpoint needs backbone.path=<run dir>/checkpoints/best.ckpt")
    if not os.path.isfile(path):
        raise ConfigError(f"backbone.path: no such file: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise WeightsError(f"backbone.path: cannot read {path} as a checkpoint ({type(exc).__name__}: "
                           f"{str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ''})") from None
    if not isinstance(ckpt, dict) or "tl_lightning" not in ckpt or "state_dict" not in ckpt:
        raise WeightsError(f"backbone.path: {path} is not a checkpoint written by tl-lightning "
                           "(for a plain state dict use backbone.weights=<file> with its architecture)")
    return ckpt


def build_from_checkpoint(cfg, choice: str, pretrained: bool, image_size: Optional[int] = None) -> Backbone:
    from tl_lightning.backbones.registry import build_backbone

    ckpt = read_checkpoint(cfg.path)
    extra = ckpt["tl_lightning"]
    arch = extra.get("architecture") or {k: extra["config"]["backbone"][k] for k in ("kind", "name")}
    arch_cfg = OmegaConf.create({**arch, "pretrained": False, "weights": None, "path": None, "head_dropout": 0.0})
    backbone = build_backbone(arch_cfg, pretrained=False, choice=choice, image_size=image_size)
    state = ckpt["state_dict"]
    weights = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    missing, unexpected = backbone.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise WeightsError(f"backbone.path: {cfg.path} does not fit {arch['kind']}/{arch['name']} "
                           f"(missing {len(missing)} keys, e.g. {missing[:1]}; unexpected {len(unexpected)}, e.g. {unexpected[:1]})")
    head_w, head_b = state.get("head.1.weight"), state.get("head.1.bias")
    head = nn.Linear(head_w.shape[1], head_w.shape[0])
    with torch.no_grad():
        head.weight.copy_(head_w)
        head.bias.copy_(head_b)
    config = extra.get("config") or {}
    backbone.source_task = SourceTask(path=cfg.path, head=head, class_names=list(extra.get("class_names", [])),
                                      data_config=config.get("data"), strategy=extra.get("strategy", ""),
                                      strategy_state=extra.get("strategy_state", {}))
    backbone.arch = dict(arch)
    return backbone
