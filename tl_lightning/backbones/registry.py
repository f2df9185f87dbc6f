"""Build a backbone by kind: the kinds and their builders are ``tl_lightning.registry.BACKBONES`` (lazy entries,
imported on first use, so the config check lists them without importing torch); a builder of another kind may
register itself with ``@BACKBONES.register(kind)``.
"""

from typing import Optional

from tl_lightning.registry import BACKBONES

__all__ = ["BACKBONES", "build_backbone"]


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
