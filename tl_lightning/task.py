"""The task description: what a datamodule's task is, in one frozen object.

Every datamodule builds one when it is set up (``datamodule.task``); every wrapper (cached features, episodes,
and whatever wraps a datamodule next) passes it through under the same name. The module, evaluation, source
evaluation, inference and export read it: none of them asks a datamodule for optional parts.

- classes: names, and counts per split (what the long-tail criteria weigh by);
- groups (slices of the data: a shortcut's (class, aligned|conflicting), a metadata column, the sources of
  multi-source data): names, counts per split, and the sensitive attribute of each group that the fairness
  metrics and loss terms compare (None where the groups are no slices of a population, e.g. sources);
- ``target_metrics``: what an unlabelled target with labelled validation logs (tl_lightning/data/unlabeled.py);
- ``class_masks`` (groups x classes, multi-source data): each sample is scored over its own source's classes
  only, which ``restrict`` applies to the logits.
"""

from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

import torch


def sensitive_attribute(group_names: Sequence[str], shortcut: bool) -> Tuple[int, ...]:
    """The sensitive attribute's value of each group id: a shortcut's groups alternate (class, aligned) and
    (class, conflicting), so the attribute is aligned/conflicting; otherwise each group is its own value."""
    return tuple(i % 2 if shortcut else i for i in range(len(group_names)))


@dataclass(frozen=True, eq=False)
class TaskDescription:
    class_names: Tuple[str, ...]
    class_counts: Dict[str, List[int]] = field(default_factory=dict)  # split -> samples per class
    group_names: Tuple[str, ...] = ()
    group_counts: Dict[str, List[int]] = field(default_factory=dict)  # split -> samples per group
    group_attribute: Optional[Tuple[int, ...]] = None  # the sensitive attribute of each group
    class_masks: Optional[torch.Tensor] = None  # bool, groups x classes: the classes a group's samples may take
    # metrics the data's own callbacks log (data.unlabeled's labelled val split: target_val/acc), for the monitors
    target_metrics: Tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def restrict(self, logits: torch.Tensor, group: Optional[torch.Tensor]) -> torch.Tensor:
        """Logits outside the sample's own classes pushed to -1e4 (softmax 0); unchanged without class masks."""
        if self.class_masks is None:
            return logits
        return logits.masked_fill(~self.class_masks.to(logits.device)[group], -1e4)

    def without_masks(self) -> "TaskDescription":
        return replace(self, class_masks=None)

    @classmethod
    def from_split_info(cls, class_names: Sequence[str], group_names: Sequence[str], split_info: Dict,
                        class_masks: Optional[torch.Tensor] = None) -> "TaskDescription":
        """The description of a set-up datamodule from what its split recorded."""
        groups = split_info.get("groups") or {}
        attribute = None
        if group_names and class_masks is None:
            attribute = sensitive_attribute(group_names, "shortcut" in split_info)
        return cls(class_names=tuple(class_names), class_counts=dict(split_info.get("class_counts", {})),
                   group_names=tuple(group_names), group_counts=dict(groups.get("counts", {})),
                   group_attribute=attribute, class_masks=class_masks)
