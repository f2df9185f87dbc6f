"""How far a target dataset is from a reference in a backbone's feature space.

- **MMD^2** (Gretton et al. 2012): the unbiased estimate with a Gaussian (RBF) kernel whose bandwidth is the
  median pairwise distance of the pooled features (the median heuristic), and a permutation test: the p-value
  is the share of random relabellings of the pooled sample whose MMD^2 reaches the observed one.
- **Frechet distance** between Gaussians fitted to the two feature sets (the FID formula,
  |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2)), on the pooled features' leading principal components (at most
  ``components``, and fewer than the smaller sample) so that the covariances are estimable from a few hundred
  samples.
- **Proxy A-distance** (Ben-David et al. 2007): a logistic-regression domain classifier's cross-validated
  accuracy a, PAD = 2 (1 - 2 (1 - a)), clipped at 0 (0: indistinguishable, 2: perfectly separable).

Verdict (docs/diagnostics.md): **close** when the permutation test does not separate the two (p > 0.05) or the
domain classifier is near chance (accuracy < 0.6); **far** when the domain classifier separates them almost
perfectly (accuracy >= 0.95); **moderate** otherwise.
"""

from typing import Dict

import numpy as np

from tl_lightning.domain_gap import frechet_distance, mmd2_permutation, proxy_a_distance

__all__ = ["domain_gap", "frechet_distance", "mmd2_permutation", "proxy_a_distance", "verdict"]

CLOSE_P, CLOSE_ACC, FAR_ACC = 0.05, 0.6, 0.95


def verdict(p_value: float, domain_accuracy: float) -> str:
    if p_value > CLOSE_P or domain_accuracy < CLOSE_ACC:
        return "close"
    return "far" if domain_accuracy >= FAR_ACC else "moderate"


def domain_gap(a: np.ndarray, b: np.ndarray, permutations: int = 500, seed: int = 0) -> Dict[str, object]:
    out: Dict[str, object] = {"samples": [len(a), len(b)]}
    out.update(mmd2_permutation(a, b, permutations, seed))
    out.update(frechet_distance(a, b))
    out.update(proxy_a_distance(a, b, seed))
    out["verdict"] = verdict(out["p_value"], out["domain_accuracy"])
    return out
