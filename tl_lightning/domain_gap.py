"""Statistics of how far two samples of feature vectors are apart (numpy and scikit-learn, no torch): what
``tl-diagnose gap`` reports (tl_lightning/diagnose/gap.py, where each one is described) and what adaptation runs
record before and after training (tl_lightning/data/unlabeled.py).
"""

from typing import Dict

import numpy as np


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
