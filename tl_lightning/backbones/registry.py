"""The one place that knows which library builds which backbone."""

from typing import Callable, Dict, Optional

from tl_lightning.backbones.base import Backbone
from tl_lightning.errors import unknown_name

BUILDERS: Dict[str, Callable] = {}


def _builders() -> Dict[str, Callable]:
    if not BUILDERS:
        from tl_lightning.backbones.checkpoint import build_from_checkpoint
        from tl_lightning.backbones.timm_backbones import build_efficientnet_lite0, build_timm
        from tl_lightning.backbones.torchvision_backbones import build_torchvision

        BUILDERS.update(torchvision=build_torchvision, timm=build_timm, efficientnet_lite0=build_efficientnet_lite0,
                        checkpoint=build_from_checkpoint)
    return BUILDERS


def build_backbone(cfg, pretrained: bool, choice: str = "", image_size: Optional[int] = None) -> Backbone:
    """Build the backbone described by ``cfg`` (the ``backbone`` config group).

    ``pretrained`` is decided by the caller (a strategy such as scratch overrides it);
    ``choice`` is how the user named it on the command line, for error hints;
    ``image_size`` overrides the native input size (the data config chooses it).
    """
    builders = _builders()
    if cfg.kind not in builders:
        raise unknown_name("backbone kind", cfg.kind, builders, "backbone.kind")
    if not choice:
        choice = f"backbone=timm backbone.name={cfg.name}" if cfg.kind == "timm" else f"backbone={cfg.name}"
    backbone = builders[cfg.kind](cfg, choice, pretrained, image_size)
    if not hasattr(backbone, "arch"):
        backbone.arch = {"kind": cfg.kind, "name": cfg.name}
    if not hasattr(backbone, "source_task"):
        backbone.source_task = None
    return backbone
