"""Self-training on the unlabelled part of the batch (tl_lightning/data/unlabeled.py) as loss terms; options and
checks in tl_lightning/config/terms.py.

- ``pseudo_label``: the model's own confident predictions on the unlabelled batch (probability >= threshold) as
  labels of the same forward pass: weight x mean over the batch of mask x CE (Lee 2013, with a threshold).
- ``fixmatch`` (Sohn et al. 2020): the prediction on the weak view (the training transform), computed without
  gradient, labels the strong view of the same image (``inputs_strong``, data.unlabeled_strong=true) where it is
  confident: weight x mean of mask x CE(strong logits, weak label). Images only: text has no strong augmentation.

Each logs the share of the unlabelled batch above the threshold as ``train/<name>_mask``.
"""

import torch
import torch.nn.functional as F

from tl_lightning.losses.adaptation import log_value, unlabeled_outputs
from tl_lightning.losses.terms import LossTerm
from tl_lightning.registry import LOSS_TERMS


def confident_labels(logits: torch.Tensor, threshold: float):
    """(labels, mask) of predictions whose probability reaches ``threshold`` (no gradient)."""
    probs = torch.softmax(logits.detach().float(), dim=-1)
    confidence, labels = probs.max(-1)
    return labels, (confidence >= threshold).float()


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (F.cross_entropy(logits.float(), labels, reduction="none") * mask).mean()


class PseudoLabelTerm(LossTerm):
    def __init__(self, name: str, node):
        self.name, self.weight, self.threshold = name, float(node.weight), float(node.threshold)

    def __call__(self, module, batch, logits):
        out = unlabeled_outputs(module, batch)
        if out is None:
            return None
        labels, mask = confident_labels(out[1], self.threshold)
        log_value(module, f"train/{self.name}_mask", mask.mean(), len(mask))
        return self.weight * masked_cross_entropy(out[1], labels, mask)


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
        labels, mask = confident_labels(self.weak_logits(module, batch), self.threshold)
        strong = unlabeled_outputs(module, batch, "inputs_strong")[1]
        log_value(module, f"train/{self.name}_mask", mask.mean(), len(mask))
        return self.weight * masked_cross_entropy(strong, labels, mask)


LOSS_TERMS.register("pseudo_label")(PseudoLabelTerm)
LOSS_TERMS.register("fixmatch")(FixMatchTerm)
