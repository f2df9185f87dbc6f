"""Domain adaptation as loss terms on the backbone's features: they read the labelled batch's features
(``batch["features"]``) and those of its unlabelled part (``batch["unlabeled"]``, tl_lightning/data/unlabeled.py),
so they combine with any strategy, backbone and criterion (``loss.terms.<name>={kind: ..., weight: w}``; the
``adapt`` config group sets one up; options and checks: tl_lightning/config/terms.py).

- ``mmd``: multi-kernel MMD^2 (DAN; Long et al. 2015) between the two batches' features, a sum of Gaussian kernels
  exp(-|x - y|^2 / b_k) with b_k = b * kernel_mul ** (k - kernels // 2) around the batch's mean squared distance b
  (the biased estimate: mean K_ss + mean K_tt - 2 mean K_st).
- ``coral``: Deep CORAL (Sun and Saenko 2016), |C_s - C_t|_F^2 / (4 d^2) of the batches' feature covariances.
- ``dann``: a domain classifier (two hidden layers) on the features behind a gradient reversal layer (Ganin and
  Lempitsky 2015); the reversal's coefficient rises as 2 / (1 + exp(-ramp * p)) - 1 with training progress p.
- ``cdan``: the domain classifier sees the features conditioned on the (detached) predictions, their outer
  product, or a randomized multilinear map of ``random_dim`` when that is larger (Long et al. 2018); with
  ``entropy=true`` (CDAN+E) each sample weighs 1 + exp(-H(prediction)), normalised within its domain.
- ``importance``: the labelled samples' cross-entropy reweighted by p(target | x) / p(source | x) of a logistic
  domain classifier on the features of both training sets when training starts (clipped, mean 1): the term adds
  mean((w - 1) * CE), so with loss=ce the loss is the weighted mean.

The domain classifiers and the importance weights are parameters and buffers of the module (checkpointed, so a
resumed run continues exactly); the unlabelled batch's forward pass is shared by the terms of one step.
"""

import logging
import math
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tl_lightning.batch import collect
from tl_lightning.losses.terms import LossTerm
from tl_lightning.registry import LOSS_TERMS

log = logging.getLogger(__name__)


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, coeff: float):
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.coeff * grad, None


def reverse_gradient(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """The identity forward; the gradient times -coeff backward."""
    return _ReverseGradient.apply(x, coeff)


def training_progress(module) -> float:
    """Global step over the run's steps (1.0 outside a fit)."""
    trainer = getattr(module, "_trainer", None)
    if trainer is None:
        return 1.0
    total = trainer.estimated_stepping_batches
    return min(1.0, trainer.global_step / total) if total and math.isfinite(total) else 1.0


def log_value(module, key: str, value: torch.Tensor, batch_size: int) -> None:
    """Log a term's own diagnostic (per epoch) when the module is in a fit."""
    if getattr(module, "_trainer", None) is not None:
        module.log(key, value, on_step=False, on_epoch=True, batch_size=batch_size)


def unlabeled_outputs(module, batch, view: str = "inputs") -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """(features, logits) of the batch's unlabelled part (``view``: inputs, or inputs_strong), computed once per
    step whichever terms ask; None when the batch has no unlabelled part."""
    part = batch.get("unlabeled")
    if part is None:
        return None
    key = f"_outputs_{view}"
    if key not in part:
        features = module.features(part[view])
        part[key] = (features, module.head(features))
    return part[key]


def mmd2_multi_kernel(source: torch.Tensor, target: torch.Tensor, kernels: int = 5, kernel_mul: float = 2.0):
    """Biased multi-kernel Gaussian MMD^2 of two batches of features."""
    x = torch.cat([source, target]).float()
    d2 = torch.cdist(x, x).pow(2)
    n = len(x)
    base = d2.detach().sum() / max(1, n * n - n)
    bandwidths = [base * kernel_mul ** (k - kernels // 2) for k in range(kernels)]
    kernel = sum(torch.exp(-d2 / b.clamp_min(1e-12)) for b in bandwidths)
    ns = len(source)
    return kernel[:ns, :ns].mean() + kernel[ns:, ns:].mean() - 2 * kernel[:ns, ns:].mean()


def coral(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """|C_s - C_t|_F^2 / (4 d^2), C the unbiased feature covariance of a batch."""
    d = source.shape[1]

    def covariance(x):
        x = x.float()
        centred = x - x.mean(0, keepdim=True)
        return centred.T @ centred / max(1, len(x) - 1)

    return (covariance(source) - covariance(target)).pow(2).sum() / (4 * d * d)


class MMDTerm(LossTerm):
    def __init__(self, name: str, node):
        self.name, self.weight = name, float(node.weight)
        self.kernels, self.kernel_mul = int(node.kernels), float(node.kernel_mul)

    def __call__(self, module, batch, logits):
        out = unlabeled_outputs(module, batch)
        if out is None:
            return None
        return self.weight * mmd2_multi_kernel(batch["features"], out[0], self.kernels, self.kernel_mul)


class CoralTerm(LossTerm):
    def __init__(self, name: str, node):
        self.name, self.weight = name, float(node.weight)

    def __call__(self, module, batch, logits):
        out = unlabeled_outputs(module, batch)
        if out is None:
            return None
        return self.weight * coral(batch["features"], out[0])


def domain_classifier(inputs: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Dropout(0.5), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Dropout(0.5), nn.Linear(hidden, 1))


def domain_loss(scores: torch.Tensor, n_source: int, weights: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Binary cross-entropy of the domain classifier (source 1, target 0), the mean of the two domains' (weighted)
    means, so that batches of different sizes weigh alike."""
    labels = torch.zeros_like(scores)
    labels[:n_source] = 1.0
    losses = F.binary_cross_entropy_with_logits(scores, labels, reduction="none")
    if weights is None:
        weights = torch.ones_like(losses)
    parts = [(losses[s] * weights[s]).sum() / weights[s].sum() for s in (slice(0, n_source), slice(n_source, None))]
    return (parts[0] + parts[1]) / 2


class DomainAdversarialTerm(nn.Module, LossTerm):
    """DANN: weight x the domain classifier's loss on the reversed features."""

    def __init__(self, name: str, node):
        nn.Module.__init__(self)
        self.name, self.weight = name, float(node.weight)
        self.hidden, self.ramp = int(node.hidden), float(node.ramp)
        self.classifier: Optional[nn.Module] = None

    def attach(self, feature_dim: int, num_classes: int) -> None:
        self.classifier = domain_classifier(self.discriminator_inputs(feature_dim, num_classes), self.hidden)

    def discriminator_inputs(self, feature_dim: int, num_classes: int) -> int:
        return feature_dim

    def coefficient(self, module) -> float:
        return 2.0 / (1.0 + math.exp(-self.ramp * training_progress(module))) - 1.0

    def domain_inputs(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return features

    def sample_weights(self, logits: torch.Tensor) -> Optional[torch.Tensor]:
        return None

    def __call__(self, module, batch, logits):
        out = unlabeled_outputs(module, batch)
        if out is None:
            return None
        features = torch.cat([batch["features"], out[0]]).float()
        all_logits = torch.cat([logits, out[1]]).float()
        inputs = self.domain_inputs(features, all_logits)
        scores = self.classifier(reverse_gradient(inputs, self.coefficient(module))).squeeze(-1)
        n_source = len(batch["features"])
        labels = torch.arange(len(scores), device=scores.device) < n_source
        log_value(module, f"train/{self.name}_domain_acc", ((scores > 0) == labels).float().mean(), len(scores))
        return self.weight * domain_loss(scores, n_source, self.sample_weights(all_logits))


def entropy_weights(logits: torch.Tensor) -> torch.Tensor:
    """CDAN+E's 1 + exp(-H(p)) of each sample's predicted distribution (no gradient)."""
    probs = torch.softmax(logits.detach(), dim=-1)
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1)
    return 1.0 + torch.exp(-entropy)


class ConditionalAdversarialTerm(DomainAdversarialTerm):
    """CDAN(+E): the domain classifier on features x predictions."""

    def __init__(self, name: str, node):
        super().__init__(name, node)
        self.entropy, self.random_dim = bool(node.entropy), int(node.random_dim)
        self.randomized = False

    def discriminator_inputs(self, feature_dim: int, num_classes: int) -> int:
        self.randomized = feature_dim * num_classes > self.random_dim
        if not self.randomized:
            return feature_dim * num_classes
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("random_features", torch.randn(feature_dim, self.random_dim, generator=generator))
        self.register_buffer("random_classes", torch.randn(num_classes, self.random_dim, generator=generator))
        return self.random_dim

    def domain_inputs(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(logits, dim=-1).detach()
        if self.randomized:
            return (features @ self.random_features) * (probs @ self.random_classes) / math.sqrt(self.random_dim)
        return torch.bmm(probs.unsqueeze(2), features.unsqueeze(1)).flatten(1)

    def sample_weights(self, logits: torch.Tensor) -> Optional[torch.Tensor]:
        return entropy_weights(logits) if self.entropy else None


def density_ratio(source: np.ndarray, target: np.ndarray, fit_samples: int, max_weight: float,
                  seed: int = 0) -> np.ndarray:
    """p(target | x) / p(source | x) x n_s / n_t of each source sample, from a logistic domain classifier fitted on
    at most ``fit_samples`` a side, as weights of mean 1 of which none exceeds ``max_weight``: min(c x ratio,
    max_weight) with c found by bisection. (Clipping the raw ratios before scaling them to mean 1 does not bound
    them where the domains are nearly separable: most ratios are tiny and the few large ones end far above the
    clip.)"""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    fit_s = source[rng.permutation(len(source))[:fit_samples]]
    fit_t = target[rng.permutation(len(target))[:fit_samples]]
    x = np.concatenate([fit_s, fit_t])
    y = np.concatenate([np.zeros(len(fit_s)), np.ones(len(fit_t))])
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)).fit(x, y)
    p = np.clip(classifier.predict_proba(source)[:, 1], 1e-6, 1 - 1e-6)
    ratio = p / (1 - p) * len(fit_s) / len(fit_t)
    low, high = 0.0, max_weight / ratio.min()  # mean(min(c x ratio, max_weight)) rises from 0 to max_weight > 1
    for _ in range(200):
        scale = (low + high) / 2
        low, high = (scale, high) if np.minimum(scale * ratio, max_weight).mean() < 1 else (low, scale)
    return np.minimum(high * ratio, max_weight)


class ImportanceTerm(nn.Module, LossTerm):
    """mean((w - 1) * CE) over the labelled batch, w each sample's density ratio (``weights``, by dataset index)."""

    def __init__(self, name: str, node):
        nn.Module.__init__(self)
        self.name, self.weight = name, float(node.weight)
        self.max_weight, self.samples = float(node.max_weight), int(node.samples)
        self.register_buffer("weights", torch.empty(0))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        stored = state_dict.get(prefix + "weights")
        if stored is not None:  # the weights' size is the data's, known once fitted
            self.weights = torch.empty_like(stored)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def fit(self, module) -> None:
        """The weights from the module's features of both training sets (eval transform, no augmentation)."""
        datamodule = module.trainer.datamodule.unwrapped
        target = datamodule.unlabeled.datamodule
        sides = []
        with module.raw_inputs():
            for dm, limit in ((datamodule, None), (target, self.samples)):
                loader = dm.eval_loader("train", limit)
                sides.append(collect(lambda b: module.features(b["inputs"]), loader, [module]))
        ratio = density_ratio(sides[0]["outputs"].double().numpy(), sides[1]["outputs"].double().numpy(),
                              self.samples, self.max_weight, seed=datamodule.cfg.seed)
        index = sides[0]["index"].long()
        weights = torch.ones(int(index.max()) + 1, device=module.device)
        weights[index.to(module.device)] = torch.as_tensor(ratio, dtype=torch.float32, device=module.device)
        self.weights = weights
        ess = ratio.sum() ** 2 / (ratio ** 2).sum()
        log.info("importance weights of %d labelled samples: min %.2f, max %.2f, effective sample size %.0f",
                 len(ratio), ratio.min(), ratio.max(), ess)

    def __call__(self, module, batch, logits):
        if self.weights.numel() == 0:
            self.fit(module)
        w = self.weights[batch["index"]]
        smoothing = float(getattr(module.criterion, "label_smoothing", 0.0))
        ce = F.cross_entropy(logits.float(), batch["target"], reduction="none", label_smoothing=smoothing)
        return self.weight * ((w - 1.0) * ce).mean()


LOSS_TERMS.register("mmd")(MMDTerm)
LOSS_TERMS.register("coral")(CoralTerm)
LOSS_TERMS.register("dann")(DomainAdversarialTerm)
LOSS_TERMS.register("cdan")(ConditionalAdversarialTerm)
LOSS_TERMS.register("importance")(ImportanceTerm)
