"""Schemas of the loss-term kinds the package registers (``loss.terms.<name>: {kind: <kind>, ...}``), each with its
checks, torch-free so that they run at start-up. The terms themselves live in tl_lightning/losses/ (fairness.py,
adaptation.py, self_training.py); a kind registered from outside the package has no schema here and is built
from its node as given.

``needs_unlabeled``: the term reads ``data.unlabeled`` (its batches, or for ``importance`` its training split).
"""

from dataclasses import dataclass
from typing import ClassVar, Dict

from omegaconf import MISSING

from tl_lightning.config import schema
from tl_lightning.config.checks import check_in
from tl_lightning.errors import ConfigError

UNLABELED_HINT = "data.unlabeled={name: <data option>, <its overrides>} (e.g. experiment=fashion_mnist_m)"


def at_least(ok: bool, key: str, valid: str, value) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}': {valid}, got {value}")


@dataclass
class TermConf:
    kind: str = MISSING
    weight: float = 1.0  # the term's factor in the loss

    needs_unlabeled: ClassVar[str] = ""  # "batches": reads the unlabelled batches; "data": its training split

    @classmethod
    def check_term(cls, node, root, key: str) -> None:
        at_least(node.weight >= 0, f"{key}.weight", "must be >= 0", node.weight)
        if cls.needs_unlabeled and root is not None:
            data = root.data
            if not data.get("unlabeled"):
                raise ConfigError(f"{key} (kind {node.kind}) needs unlabelled data: {UNLABELED_HINT}")
            if cls.needs_unlabeled == "batches" and data.unlabeled_ratio == 0:
                raise ConfigError(f"{key} (kind {node.kind}) trains on unlabelled batches but data.unlabeled_ratio=0 "
                                  "(the unlabelled data is only evaluated); set data.unlabeled_ratio >= 1")
            if root.strategy.name == "protonet":
                raise ConfigError(f"{key} (kind {node.kind}): strategy=protonet computes its own episode loss, "
                                  "which adds no loss terms; use another strategy (e.g. finetune)")


@dataclass
class FairnessTermConf(TermConf):
    pass


@dataclass
class MMDConf(TermConf):
    """Multi-kernel MMD (DAN, Long et al. 2015) between the labelled and the unlabelled batch's features."""

    kernels: int = 5  # Gaussian kernels, bandwidths base * kernel_mul ** k around the batch's mean distance
    kernel_mul: float = 2.0
    needs_unlabeled: ClassVar[str] = "batches"

    @classmethod
    def check_term(cls, node, root, key: str) -> None:
        super().check_term(node, root, key)
        at_least(node.kernels >= 1, f"{key}.kernels", "at least 1", node.kernels)
        at_least(node.kernel_mul > 1, f"{key}.kernel_mul", "the ratio of neighbouring bandwidths, > 1", node.kernel_mul)


@dataclass
class CoralConf(TermConf):
    """Deep CORAL (Sun and Saenko 2016): the distance between the two batches' feature covariances."""

    needs_unlabeled: ClassVar[str] = "batches"


@dataclass
class AdversarialConf(TermConf):
    """A domain classifier behind a gradient reversal layer (DANN, Ganin and Lempitsky 2015)."""

    hidden: int = 256  # the domain classifier's two hidden layers
    ramp: float = 10.0  # the reversal's coefficient 2 / (1 + exp(-ramp * progress)) - 1 rises from 0 to ~1
    needs_unlabeled: ClassVar[str] = "batches"

    @classmethod
    def check_term(cls, node, root, key: str) -> None:
        super().check_term(node, root, key)
        at_least(node.hidden >= 1, f"{key}.hidden", "at least 1", node.hidden)
        at_least(node.ramp >= 0, f"{key}.ramp", ">= 0 (0: the full reversal from the first step)", node.ramp)


@dataclass
class CDANConf(AdversarialConf):
    """CDAN (Long et al. 2018): the domain classifier sees features x predictions; entropy=true is CDAN+E."""

    entropy: bool = False  # weight each sample by 1 + exp(-entropy of its prediction) (CDAN+E)
    random_dim: int = 1024  # features x classes above this: the randomized multilinear map of this size


@dataclass
class ImportanceConf(TermConf):
    """Labelled samples weighted by p(target | x) / p(source | x) from a domain classifier on the backbone's
    features at the start of training (instance-based transfer)."""

    max_weight: float = 10.0  # no weight exceeds this; their mean is 1
    samples: int = 2000  # at most this many samples a side fit the domain classifier
    needs_unlabeled: ClassVar[str] = "data"

    @classmethod
    def check_term(cls, node, root, key: str) -> None:
        super().check_term(node, root, key)
        at_least(node.max_weight > 1, f"{key}.max_weight", "> 1", node.max_weight)
        at_least(node.samples >= 10, f"{key}.samples", "at least 10 a side", node.samples)
        if root is not None and root.loss.name != "ce":
            raise ConfigError(f"{key} (kind importance) reweights cross-entropy; it needs loss=ce, got "
                              f"loss={root.loss.name}")


@dataclass
class PseudoLabelConf(TermConf):
    """Cross-entropy on the unlabelled batch's own confident predictions (pseudo-labels)."""

    threshold: float = 0.95  # a prediction is used when its probability reaches this
    warmup: float = 0.0  # the weight rises linearly from 0 over this share of training
    align: bool = False  # distribution alignment: predictions rescaled to the labelled class frequencies
    needs_unlabeled: ClassVar[str] = "batches"

    @classmethod
    def check_term(cls, node, root, key: str) -> None:
        super().check_term(node, root, key)
        check_in(node.threshold, 0.0, 1.0, f"{key}.threshold", low_open=True, high_open=True)
        check_in(node.warmup, 0.0, 1.0, f"{key}.warmup", high_open=False)


@dataclass
class FixMatchConf(PseudoLabelConf):
    """FixMatch (Sohn et al. 2020): pseudo-labels of the weak view train the strong view of the same image."""

    @classmethod
    def check_term(cls, node, root, key: str) -> None:
        super().check_term(node, root, key)
        if root is None:
            return
        if schema.modality_of(root.data) == "text":
            raise ConfigError(f"{key} (kind fixmatch) needs a strong augmentation of each unlabelled sample, and "
                              "text has none: use adapt=pseudo_label (kind pseudo_label) for text")
        if not root.data.unlabeled_strong:
            raise ConfigError(f"{key} (kind fixmatch) needs the strong view of the unlabelled images: "
                              "data.unlabeled_strong=true (adapt=fixmatch sets it)")


TERM_SCHEMAS: Dict[str, type] = {
    "demographic_parity": FairnessTermConf, "equalized_odds": FairnessTermConf,
    "mmd": MMDConf, "coral": CoralConf, "dann": AdversarialConf, "cdan": CDANConf, "importance": ImportanceConf,
    "pseudo_label": PseudoLabelConf, "fixmatch": FixMatchConf,
}
