"""Paired differences between two methods run on the same splits (the same seed and split fingerprint): the mean
difference, a 95 % percentile bootstrap interval over the pairs, and the exact two-sided sign-flip (permutation)
p-value. With few pairs the interval is wide on purpose: with three seeds it spans the smallest to the largest
difference, so a difference counts as beyond noise only when every seed agrees on its sign.
"""

import itertools
from typing import Dict, Hashable, Optional

import numpy as np

BOOTSTRAP_SAMPLES = 10_000
EXACT_UP_TO = 16  # pairs; beyond, the sign flips are sampled


def paired(a: Dict[Hashable, float], b: Dict[Hashable, float], seed: int = 0) -> Optional[Dict[str, float]]:
    """a - b over the keys both have (at least 2), or None."""
    keys = sorted(set(a) & set(b), key=str)
    if len(keys) < 2:
        return None
    # rounded: the same accuracy stored once as float32 and once as float64 is not a difference
    d = np.round(np.array([a[k] - b[k] for k in keys], dtype=float), 6)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(BOOTSTRAP_SAMPLES, len(d)))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    observed = abs(d.mean())
    if len(d) <= EXACT_UP_TO:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))
    else:
        signs = rng.choice((1.0, -1.0), size=(BOOTSTRAP_SAMPLES, len(d)))
    flipped = np.abs((signs * d).mean(axis=1))
    p = float((flipped >= observed - 1e-12).mean())
    return {"diff": float(d.mean()), "low": float(low), "high": float(high), "p": p, "pairs": len(d)}


def beyond_noise(result: Optional[Dict[str, float]]) -> bool:
    """The interval excludes 0."""
    return result is not None and (result["low"] > 0 or result["high"] < 0)
