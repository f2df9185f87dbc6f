"""torchvision classification models as backbones (weights through torchvision's API)."""

import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torchvision
from torch import nn
from torchvision.transforms import InterpolationMode

from tl_lightning.backbones.base import Backbone, InputSpec, group_by_patterns
from tl_lightning.backbones.channels import adapt_input_channels, spec_for_channels
from tl_lightning.backbones.weights import load_into, load_state_dict_file, require_download, torch_hub_cache_path, unreadable
from tl_lightning.errors import WeightsError, unknown_name


@dataclass(frozen=True)
class Family:
    classifier_prefix: str  # state-dict prefix of the ImageNet classifier that we drop
    strip_head: Callable[[nn.Module], int]  # replaces the classifier by Identity, returns feature_dim
    groups: Tuple[Tuple[str, str], ...]  # (group name, parameter-name regex), input to output
    build_kwargs: Callable[[bool], dict] = lambda pretrained: {}
    after_load: Optional[Callable[[nn.Module], None]] = None


def _strip_attr(attr: str) -> Callable[[nn.Module], int]:
    def strip(model: nn.Module) -> int:
        layer = getattr(model, attr)
        dim = layer.in_features
        setattr(model, attr, nn.Identity())
        return dim
    return strip


def _strip_last_of(attr: str) -> Callable[[nn.Module], int]:
    def strip(model: nn.Module) -> int:
        seq = getattr(model, attr)
        dim = seq[-1].in_features
        seq[-1] = nn.Identity()
        return dim
    return strip


def _strip_vit_heads(model: nn.Module) -> int:
    dim = model.heads.head.in_features
    model.heads = nn.Identity()
    return dim


def _drop_inception_aux(model: nn.Module) -> None:
    model.aux_logits = False
    model.AuxLogits = None


_RESNET = Family("fc.", _strip_attr("fc"), (
    ("stem", r"(conv1|bn1)\."),
    ("layer1", r"layer1\."), ("layer2", r"layer2\."), ("layer3", r"layer3\."), ("layer4", r"layer4\."),
))
_VGG16 = Family("classifier.6.", _strip_last_of("classifier"), (
    ("block1", r"features\.[0-3]\."), ("block2", r"features\.[5-8]\."),
    ("block3", r"features\.(1[0-5])\."), ("block4", r"features\.(1[7-9]|2[0-2])\."),
    ("block5", r"features\.(2[4-9])\."), ("classifier", r"classifier\."),
))
_INCEPTION = Family(
    "fc.", _strip_attr("fc"),
    (
        ("stem", r"Conv2d_"), ("mixed5", r"Mixed_5"), ("mixed6", r"Mixed_6"), ("mixed7", r"Mixed_7"),
        ("aux", r"AuxLogits\."),
    ),
    # torchvision's published weights need the aux head present to load, and expect its input transform
    build_kwargs=lambda pretrained: {"aux_logits": True, "init_weights": not pretrained, "transform_input": pretrained},
    after_load=_drop_inception_aux,
)
_EFFICIENTNET = Family("classifier.1.", _strip_last_of("classifier"), (
    ("stem", r"features\.0\."),
    *((f"stage{i}", rf"features\.{i}\.") for i in range(1, 8)),
    ("head", r"features\.8\."),
))
_VIT = Family("heads.", _strip_vit_heads, (
    ("embed", r"(conv_proj\.|class_token|encoder\.pos_embedding)"),
    *((f"block{i}", rf"encoder\.layers\.encoder_layer_{i}\.") for i in range(12)),
    ("norm", r"encoder\.ln\."),
))

FAMILIES: Dict[str, Family] = {
    "resnet18": _RESNET, "resnet34": _RESNET, "resnet50": _RESNET, "resnet101": _RESNET,
    "vgg16": _VGG16,
    "inception_v3": _INCEPTION,
    "efficientnet_b0": _EFFICIENTNET,
    "vit_b_16": _VIT,
}


def input_spec_for(weights_enum, image_size: Optional[int]) -> InputSpec:
    preset = weights_enum.DEFAULT.transforms()
    interp = preset.interpolation
    interp_name = interp.value if isinstance(interp, InterpolationMode) else str(interp)
    return InputSpec(
        size=image_size or preset.crop_size[0],
        mean=tuple(preset.mean), std=tuple(preset.std),
        channels=3, interpolation=interp_name,
    )


def build_torchvision(cfg, choice: str, pretrained: bool, image_size: Optional[int] = None) -> Backbone:
    name = cfg.name
    if name not in FAMILIES:
        raise unknown_name("torchvision backbone", name, FAMILIES, "backbone.name")
    family = FAMILIES[name]
    weights_enum = torchvision.models.get_model_weights(name)
    load_weights = pretrained or cfg.weights is not None
    if name == "vit_b_16" and load_weights and image_size not in (None, 224):
        raise WeightsError("data.image_size: pretrained torchvision vit_b_16 takes 224 px only; "
                           "set data.image_size=224 (or null), or use backbone=timm backbone.name=vit_base_patch16_224")
    kwargs = family.build_kwargs(load_weights)
    if name == "vit_b_16" and image_size and not load_weights:
        kwargs["image_size"] = image_size  # only a randomly initialised ViT can change its patch grid
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    if cfg.weights is not None:
        load_into(model, load_state_dict_file(cfg.weights), f"backbone.weights={cfg.weights}", name,
                  ignore_prefix=family.classifier_prefix)
    elif pretrained:
        weights = weights_enum.DEFAULT
        cached = torch_hub_cache_path(weights.url)
        if not os.path.isfile(cached):
            require_download(weights.url, cached, f"torchvision {name}", choice)
        try:
            # weights_only: torch.hub's loader unpickles anything by default, and the cache is a file anyone may replace
            state = weights.get_state_dict(progress=False, weights_only=True)
        except Exception as exc:
            raise WeightsError(f"cannot load torchvision weights for {name} from {cached}: {unreadable(exc)}; delete "
                               "it and fetch it again (tl-prefetch)") from None
        load_into(model, state, cached, name)
    if family.after_load:
        family.after_load(model)
    in_chans = cfg.get("in_chans") or 3
    if in_chans != 3:
        if getattr(model, "transform_input", False):  # re-normalises channels 0-2 inside forward()
            raise WeightsError(f"backbone.in_chans={in_chans}: pretrained torchvision inception_v3 takes 3 channels "
                               "only (its forward re-normalises each RGB channel); use backbone.in_chans=null")
        adapt_input_channels(model, in_chans, name)
    feature_dim = family.strip_head(model)
    spec = spec_for_channels(input_spec_for(weights_enum, image_size), in_chans)
    return Backbone(model, feature_dim, spec, group_by_patterns(model, family.groups), name)


def published_weights(name: str):
    """The weights entry users prefetch (scripts/prefetch_weights.py)."""
    return torchvision.models.get_model_weights(name).DEFAULT


TORCHVISION_NAMES: List[str] = sorted(FAMILIES)
