"""backbone=checkpoint: reuse the backbone of a run of this harness (source -> target chaining).

The checkpoint's inference model gives the backbone (its recorded architecture and weights) and the
source task (its head, class names and data config), so the run can measure forgetting of the source.
"""

from typing import Optional

from tl_lightning.backbones.base import Backbone


def build_from_checkpoint(cfg, choice: str, pretrained: bool, image_size: Optional[int] = None) -> Backbone:
    from tl_lightning.inference import from_checkpoint, read_checkpoint

    model = from_checkpoint(read_checkpoint(cfg.path, key="backbone.path"), cfg.path, image_size, key="backbone.path")
    backbone = model.backbone
    backbone.source_task = model.source_task()
    return backbone
