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

CLOSE_P, CLOSE_ACC, FAR_ACC = 0.05, 0.6, 0.95


def _sq_dists(x: np.ndarray) -> np.ndarray:
    norms = (x ** 2).sum(axis=1)
    return np.maximum(norms[:, None] + norms[None, :] - 2 * x @ x.T, 0.0)


def mmd2_permutation(a: np.ndarray, b: np.ndarray, permutations: int = 500, seed: int = 0) -> Dict[str, float]:
    """Unbiased MMD^2 of samples ``a`` (n x d) and ``b`` (m x d), its RBF bandwidth and permutation p-value."""
    pooled = np.concatenate([a, b]).astype(np.float64)
    n, total = len(a), len(pooled)
    d2 = _sq_dists(pooled)
    bandwidth = float(np.median(np.sqrt(d2[np.triu_indices(total, k=1)])))
    kernel = np.exp(-d2 / (2 * max(bandwidth, 1e-12) ** 2))
    observed = _mmd2(kernel, np.arange(n), np.arange(n, total))
    rng = np.random.default_rng(seed)
    reached = 0
    for _ in range(permutations):
        order = rng.permutation(total)
        reached += _mmd2(kernel, order[:n], order[n:]) >= observed
    return {"mmd2": float(observed), "bandwidth": bandwidth, "p_value": float((reached + 1) / (permutations + 1)),
            "permutations": permutations}


def _mmd2(kernel: np.ndarray, i: np.ndarray, j: np.ndarray) -> float:
    kxx, kyy, kxy = kernel[np.ix_(i, i)], kernel[np.ix_(j, j)], kernel[np.ix_(i, j)]
    n, m = len(i), len(j)
    return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean())


def frechet_distance(a: np.ndarray, b: np.ndarray, components: int = 64) -> Dict[str, float]:
    from scipy import linalg

    pooled = np.concatenate([a, b]).astype(np.float64)
    k = int(min(components, min(len(a), len(b)) - 1, pooled.shape[1]))
    mean = pooled.mean(axis=0)
    _, _, vt = np.linalg.svd(pooled - mean, full_matrices=False)
    pa, pb = (a - mean) @ vt[:k].T, (b - mean) @ vt[:k].T
    mu1, mu2 = pa.mean(axis=0), pb.mean(axis=0)
    s1, s2 = np.atleast_2d(np.cov(pa, rowvar=False)), np.atleast_2d(np.cov(pb, rowvar=False))
    root = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(root).all():  # a singular product: FID's usual offset
        offset = np.eye(k) * 1e-6
        root = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    distance = float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(root)))
    return {"frechet": max(distance, 0.0), "components": k}


def proxy_a_distance(a: np.ndarray, b: np.ndarray, seed: int = 0) -> Dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([a, b])
    y = np.concatenate([np.zeros(len(a)), np.ones(len(b))])
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    accuracy = float(cross_val_score(classifier, x, y, cv=folds).mean())
    return {"domain_accuracy": accuracy, "proxy_a_distance": max(0.0, 2 * (1 - 2 * (1 - accuracy)))}


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
