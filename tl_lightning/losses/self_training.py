"""Self-training on the unlabelled part of the batch (tl_lightning/data/unlabeled.py) as loss terms; options and
checks in tl_lightning/config/terms.py.

- ``pseudo_label``: the model's own confident predictions on the unlabelled batch (probability >= threshold) as
  labels of the same forward pass: weight x mean over the batch of mask x CE (Lee 2013, with a threshold).
- ``fixmatch`` (Sohn et al. 2020): the prediction on the weak view (the training transform), computed without
  gradient, labels the strong view of the same image (``inputs_strong``, data.unlabeled_strong=true) where it is
  confident: weight x mean of mask x CE(strong logits, weak label). Images only: text has no strong augmentation.

Both take two guards against confirmation bias (a model that is confidently wrong on the unlabelled data from the
first step labels ever more of it as one class):

- ``warmup``: the weight rises linearly from 0 over this share of training (0: full weight from the start);
- ``align``: distribution alignment (Berthelot et al. 2020, ReMixMatch): each unlabelled prediction is multiplied
  by the labelled class frequencies over the running mean of the unlabelled predictions and renormalised before
  the threshold, so no class takes more pseudo-labels than the labelled data has of it. Both running means are
  buffers of the term (checkpointed, restored on resume; DDP broadcasts them from rank 0).

Each logs the share of the unlabelled batch above the threshold as ``train/<name>_mask``.
"""

import torch
import torch.nn.functional as F
from torch import nn

from tl_lightning.losses.adaptation import log_value, training_progress, unlabeled_outputs
from tl_lightning.losses.terms import LossTerm
from tl_lightning.registry import LOSS_TERMS


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (F.cross_entropy(logits.float(), labels, reduction="none") * mask).mean()


ALIGN_MOMENTUM = 0.99  # the running means follow about the last 100 batches


class PseudoLabelTerm(nn.Module, LossTerm):
    def __init__(self, name: str, node):
        nn.Module.__init__(self)
        self.name, self.weight, self.threshold = name, float(node.weight), float(node.threshold)
        self.warmup, self.align = float(node.warmup), bool(node.align)

    def attach(self, feature_dim: int, num_classes: int) -> None:
        if self.align:
            uniform = torch.full((num_classes,), 1.0 / num_classes)
            self.register_buffer("labelled_mean", uniform.clone())
            self.register_buffer("unlabelled_mean", uniform.clone())

    def scale(self, module) -> float:
        """The weight's share at this point of training (the warm-up ramp)."""
        return 1.0 if self.warmup <= 0 else min(1.0, training_progress(module) / self.warmup)

    def confident_labels(self, batch, logits: torch.Tensor):
        """(labels, mask) of the predictions whose (aligned) probability reaches the threshold; no gradient."""
        probs = torch.softmax(logits.detach().float(), dim=-1)
        if self.align:
            if self.training:
                target = batch["target"]
                labelled = target[target >= 0] if target.dim() == 1 else target.new_empty(0, dtype=torch.long)
                if len(labelled):
                    counts = torch.bincount(labelled, minlength=len(self.labelled_mean)).float()
                    self.labelled_mean.lerp_(counts / counts.sum(), 1 - ALIGN_MOMENTUM)
                self.unlabelled_mean.lerp_(probs.mean(0), 1 - ALIGN_MOMENTUM)
            probs = probs * (self.labelled_mean / self.unlabelled_mean.clamp_min(1e-6))
            probs = probs / probs.sum(-1, keepdim=True)
        confidence, labels = probs.max(-1)
        return labels, (confidence >= self.threshold).float()

    def __call__(self, module, batch, logits):
        out = unlabeled_outputs(module, batch)
        if out is None:
            return None
        labels, mask = self.confident_labels(batch, out[1])
        log_value(module, f"train/{self.name}_mask", mask.mean(), len(mask))
        return self.scale(module) * self.weight * masked_cross_entropy(out[1], labels, mask)


class FixMatchTerm(PseudoLabelTerm):
    def weak_logits(self, module, batch) -> torch.Tensor:
        part = batch["unlabeled"]
        if "_outputs_inputs" in part:  # another term's forward pass of the weak view
            return part["_outputs_inputs"][1]
        with torch.no_grad():
            return module.head(module.features(part["inputs"]))

    def __call__(self, module, batch, logits):
        if batch.get("unlabeled") is None:
            return None
        labels, mask = self.confident_labels(batch, self.weak_logits(module, batch))
        strong = unlabeled_outputs(module, batch, "inputs_strong")[1]
        log_value(module, f"train/{self.name}_mask", mask.mean(), len(mask))
        return self.scale(module) * self.weight * masked_cross_entropy(strong, labels, mask)


LOSS_TERMS.register("pseudo_label")(PseudoLabelTerm)
LOSS_TERMS.register("fixmatch")(FixMatchTerm)
