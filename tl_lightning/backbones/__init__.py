from tl_lightning.backbones.base import Backbone, InputSpec, LayerGroup
from tl_lightning.backbones.registry import build_backbone

__all__ = ["Backbone", "InputSpec", "LayerGroup", "build_backbone"]
