"""The one place that knows which library builds which backbone.

Builders are the registry's lazy entries (``module:function``, imported on first use), so the config check
lists the kinds without importing torch; a builder of another kind may also register itself with
``@BACKBONES.register(kind)``.
"""

from typing import Optional

from tl_lightning.registry import BACKBONES

for _kind, _target in {
    "torchvision": "tl_lightning.backbones.torchvision_backbones:build_torchvision",
    "timm": "tl_lightning.backbones.timm_backbones:build_timm",
    "efficientnet_lite0": "tl_lightning.backbones.timm_backbones:build_efficientnet_lite0",
    "checkpoint": "tl_lightning.backbones.checkpoint:build_from_checkpoint",
    "hf": "tl_lightning.backbones.text_backbones:build_hf",
    "minilm": "tl_lightning.backbones.text_backbones:build_minilm",
}.items():
    BACKBONES.add_lazy(_kind, _target)
TEXT_KINDS = ("hf", "minilm")  # the others take images (checkpoint: whatever its recorded architecture takes)


def build_backbone(cfg, pretrained: bool, choice: str = "", image_size: Optional[int] = None):
    """Build the backbone described by ``cfg`` (the ``backbone`` config group).

    ``pretrained`` is decided by the caller (a strategy such as scratch overrides it);
    ``choice`` is how the user named it on the command line, for error hints;
    ``image_size`` overrides the native input size (the data config chooses it).
    """
    builder = BACKBONES.get(cfg.kind)
    if not choice:
        choice = f"backbone={cfg.kind} backbone.name={cfg.name}" if cfg.kind in ("timm", "hf") else f"backbone={cfg.name}"
    backbone = builder(cfg, choice, pretrained, image_size)
    if not backbone.arch:  # checkpoint: its recorded one
        backbone.arch = {"kind": cfg.kind, "name": cfg.name}
        if cfg.get("in_chans") not in (None, 3):
            backbone.arch["in_chans"] = cfg.in_chans
    return backbone
