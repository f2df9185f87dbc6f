"""The strategy-free model a harness checkpoint rebuilds: backbone + head + preprocessing + class names +
the run's config. ``backbone=checkpoint``, source evaluation (and later eval, predict, export) start here.

    model = tl_lightning.inference.load("logs/.../checkpoints/best.ckpt")
    logits = model(batch["inputs"])   # eval mode; model.preprocessing.transform(train=False) makes inputs

A checkpoint records under ``tl_lightning``: the architecture (registry kind and name), the input spec,
the class names, the head's dropout, the run's config, the strategy's name and state.
"""

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch
from omegaconf import OmegaConf
from torch import nn

from tl_lightning.backbones.adapters import AdapterSpec, add_adapters, is_adapter, merge
from tl_lightning.backbones.base import Backbone
from tl_lightning.backbones.registry import build_backbone
from tl_lightning.backbones.weights import unreadable, weights_digest
from tl_lightning.errors import ConfigError, WeightsError, check_file


def build_head(feature_dim: int, num_classes: int, dropout: float = 0.0) -> nn.Sequential:
    """The new classification head every run puts on its backbone."""
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))


@dataclass
class SourceTask:
    """What a harness checkpoint tells about the task its backbone was trained on."""

    path: str
    head: nn.Module  # the source head: source-task accuracy before and after target training
    class_names: List[str]
    data_config: Optional[Dict[str, Any]]  # None when the checkpoint does not record it
    strategy: str = ""
    strategy_state: Dict[str, Any] = field(default_factory=dict)


class InferenceModel(nn.Module):
    def __init__(self, backbone: Backbone, head: nn.Module, class_names: List[str], record: Dict[str, Any], path: str):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.class_names = list(class_names)
        self.record = record  # the checkpoint's tl_lightning section
        self.path = path
        self.eval()

    @property
    def preprocessing(self):
        return self.backbone.preprocessing

    @property
    def input_spec(self):
        return self.backbone.input_spec

    @property
    def config(self) -> Dict[str, Any]:
        return self.record.get("config") or {}

    def forward(self, inputs) -> torch.Tensor:
        return self.head(self.backbone(inputs))

    def source_task(self) -> SourceTask:
        return SourceTask(path=self.path, head=self.head, class_names=self.class_names,
                          data_config=self.config.get("data"), strategy=self.record.get("strategy", ""),
                          strategy_state=self.record.get("strategy_state", {}))


def read_checkpoint(path: Optional[str], key: str = "ckpt_path") -> Dict[str, Any]:
    """A harness checkpoint as a dict (``weights_only`` load); ``key`` names the option in errors."""
    if not path:
        raise ConfigError(f"{key}: needs a checkpoint path (<run dir>/checkpoints/best.ckpt)")
    if os.path.isdir(path):  # a model folder of tl-export format=hf
        from tl_lightning.backbones.model_folder import read_model_folder

        return read_model_folder(path, key)
    check_file(path, key, checkpoint=True)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain containers: runs no code
    except Exception as exc:  # truncated, corrupt, foreign, or holding objects a weights-only load refuses
        raise WeightsError(f"{key}: {path} is not a readable checkpoint ({unreadable(exc)})") from None
    if not isinstance(ckpt, dict) or "tl_lightning" not in ckpt or "state_dict" not in ckpt:
        raise WeightsError(f"{key}: {path} is not a checkpoint written by tl-lightning "
                           "(for a plain state dict use backbone.weights=<file> with its architecture)")
    return ckpt


def _part(state: Dict[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _load_part(target: nn.Module, weights: Dict[str, torch.Tensor], what: str, path: str, key: str) -> None:
    own = target.state_dict()
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in weights.items() if k in own and v.shape != own[k].shape]
    if wrong:
        raise WeightsError(f"{key}: {path} does not fit its recorded {what} ({len(wrong)} tensors of another shape, "
                           f"e.g. {wrong[0]})")
    missing, unexpected = target.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise WeightsError(f"{key}: {path} does not fit its recorded {what} (missing {len(missing)} keys, e.g. "
                           f"{missing[:1]}; unexpected {len(unexpected)}, e.g. {unexpected[:1]})")


def from_checkpoint(ckpt: Dict[str, Any], path: str, image_size: Optional[int] = None,
                    key: str = "ckpt_path") -> InferenceModel:
    """Rebuild the inference model of a checkpoint read by ``read_checkpoint``. ``image_size`` overrides the
    recorded input size (a backbone reused on data of another resolution)."""
    record = ckpt["tl_lightning"]
    config = record.get("config") or {}
    arch = record.get("architecture") or {k: config["backbone"][k] for k in ("kind", "name")}
    if image_size is None:
        image_size = (record.get("input_spec") or {}).get("size") or (config.get("data") or {}).get("image_size")
    state = ckpt["state_dict"]
    if record.get("adapter"):
        backbone = _adapted_backbone(record, config, _part(state, "backbone."), image_size, path, key)
    else:
        arch_cfg = OmegaConf.create({**arch, "pretrained": False, "weights": None, "path": None})
        backbone = build_backbone(arch_cfg, pretrained=False, image_size=image_size)
        _load_part(backbone, _part(state, "backbone."), f"architecture {arch['kind']}/{arch['name']}", path, key)
    class_names = list(record.get("class_names") or [])
    head_weights = _part(state, "head.")
    num_classes = len(class_names) or next(v.shape[0] for k, v in head_weights.items() if k.endswith("weight"))
    dropout = record.get("head_dropout", (config.get("backbone") or {}).get("head_dropout", 0.0))
    head = build_head(backbone.feature_dim, num_classes, dropout)
    _load_part(head, head_weights, "head", path, key)
    return InferenceModel(backbone, head, class_names or [str(i) for i in range(num_classes)], record, path)


def _adapted_backbone(record: Dict[str, Any], config: Dict[str, Any], weights: Dict[str, torch.Tensor],
                      image_size: Optional[int], path: str, key: str) -> Backbone:
    """An adapter-only checkpoint: the base backbone from the run's backbone config (its pretrained weights), checked
    against the recorded digest, plus the saved adapters, merged into plain layers."""

    spec = AdapterSpec.from_record(record["adapter"])
    base_cfg = OmegaConf.create(config["backbone"])
    backbone = build_backbone(base_cfg, pretrained=bool(base_cfg.get("pretrained", True)), image_size=image_size)
    digest = weights_digest(backbone)
    if spec.base_digest and digest != spec.base_digest:
        raise WeightsError(f"{key}: {path} holds {spec.method} adapters for base weights with digest "
                           f"{spec.base_digest[:12]}, but backbone={base_cfg.kind}/{base_cfg.name} here gives {digest[:12]} "
                           "(other weights or version); the adapters need the exact base they were trained on")
    tuner = add_adapters(backbone.model, spec)
    own = backbone.state_dict()
    wrong = [k for k, v in weights.items() if k not in own or own[k].shape != v.shape]
    absent = [k for k in own if is_adapter(k) and k not in weights]
    if wrong or absent:
        raise WeightsError(f"{key}: {path} does not fit its recorded adapters ({len(wrong)} tensors unknown or of another "
                           f"shape, {len(absent)} adapter tensors missing, e.g. {(wrong + absent)[0]})")
    backbone.load_state_dict(weights, strict=False)
    backbone.model = merge(tuner)
    params = dict(backbone.model.named_parameters())  # layer groups point at the merged parameters
    for group in backbone.layer_groups:
        group.params = [params[n] for n in group.param_names]
    return backbone


def build_from_checkpoint(cfg, choice: str, pretrained: bool, image_size: Optional[int] = None) -> Backbone:
    """backbone=checkpoint (a registry entry, tl_lightning.registry.BACKBONES): the backbone of a run of this
    harness, with its recorded architecture and weights, and the source task (its head, class names and data
    config) so that the run can measure forgetting of the source."""
    model = from_checkpoint(read_checkpoint(cfg.path, key="backbone.path"), cfg.path, image_size, key="backbone.path")
    backbone = model.backbone
    backbone.source_task = model.source_task()
    return backbone


def load(path: str, image_size: Optional[int] = None) -> InferenceModel:
    """The inference model of a harness checkpoint, in eval mode on the CPU."""
    return from_checkpoint(read_checkpoint(path), path, image_size)
