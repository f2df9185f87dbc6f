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
    if cfg.get("grad_checkpointing"):
        enable_grad_checkpointing(backbone, cfg.kind)
    return backbone


def enable_grad_checkpointing(backbone, kind: str) -> None:
    """Activation checkpointing: the backbone's blocks keep only their inputs for backward and recompute the rest
    (timm's ``set_grad_checkpointing``; transformers' ``activation_checkpointing_enable``, non-reentrant, so frozen
    embeddings and LoRA work). Less activation memory for about one more forward pass per step; in eval mode
    nothing changes. A model that has neither is one line (the config check names the kinds that have it)."""
    from tl_lightning.errors import ConfigError

    model = backbone.model
    encoder = getattr(model, "encoder", None)
    if hasattr(model, "set_grad_checkpointing"):
        model.set_grad_checkpointing(True)
    elif encoder is not None and getattr(encoder, "supports_gradient_checkpointing", False):
        if hasattr(encoder, "activation_checkpointing_enable"):  # transformers >= 5.x's name
            encoder.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        raise ConfigError(f"backbone.grad_checkpointing=true: {backbone.name} ({kind}) has no activation "
                          "checkpointing (timm and Hugging Face models have it); set it to false")
