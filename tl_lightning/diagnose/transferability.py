"""Transferability scores of a backbone's features for a labelled target set, computed before any training.

LogME (You et al., ICML 2021, "LogME: Practical Assessment of Pre-trained Models for Transfer Learning"): for
each class c, the one-vs-rest target y_c is modelled as a Bayesian linear regression on the features f,
y = w^T f + noise, with prior w ~ N(0, alpha^-1 I) and noise N(0, beta^-1). The evidence (marginal likelihood)
p(y | F, alpha, beta) is maximised over alpha and beta by MacKay's fixed-point updates, computed once from the
SVD of the feature matrix; LogME is the maximised log evidence per sample, averaged over the classes. Higher is
better; it compares backbones on the same data (the value has no absolute meaning across datasets).

LEEP (Nguyen et al., ICML 2020) and NCE (Tran et al., ICCV 2019) need the backbone's own source classifier: its
predicted source-class distribution theta(x) (LEEP) or its hard source label (NCE) for each target sample.
"""

from typing import Dict

import numpy as np


def logme(features: np.ndarray, labels: np.ndarray, max_iter: int = 100, tol: float = 1e-5) -> float:
    """LogME of ``features`` (n x d) for integer ``labels`` (n): the mean over classes of the maximum log evidence
    per sample."""
    f = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)  # f = u diag(s) v^T; k = min(n, d) singular values
    sigma = s ** 2  # eigenvalues of f^T f (the other d - k are 0)
    scores = []
    for c in np.unique(labels):
        y = (labels == c).astype(np.float64)
        scores.append(_max_log_evidence(u, sigma, y, n, d, max_iter, tol) / n)
    return float(np.mean(scores))


def _max_log_evidence(u, sigma, y, n, d, max_iter, tol) -> float:
    z = u.T @ y  # y in the basis of the left singular vectors
    z2 = z ** 2
    outside = max(float(y @ y - z2.sum()), 0.0)  # the part of y outside the features' column space
    alpha, beta = 1.0, 1.0
    for _ in range(max_iter):
        t = alpha + beta * sigma
        gamma = float((beta * sigma / t).sum())  # effective number of parameters
        m2 = float((beta ** 2 * sigma * z2 / t ** 2).sum())  # |m|^2, m the posterior mean of w
        residual = float(((alpha / t) ** 2 * z2).sum()) + outside  # |F m - y|^2
        # features that explain nothing (all zero) drive alpha to 0: keep it positive, the evidence is then
        # the noise model's alone
        new_alpha = max(gamma / max(m2, 1e-300), 1e-300)
        new_beta = max((n - gamma) / max(residual, 1e-300), 1e-300)
        done = abs(new_alpha - alpha) / alpha < tol and abs(new_beta - beta) / beta < tol
        alpha, beta = new_alpha, new_beta
        if done:
            break
    return log_evidence(alpha, beta, sigma, z2, outside, n, d)


def log_evidence(alpha, beta, sigma, z2, outside, n, d) -> float:
    """log p(y | F, alpha, beta) of the Bayesian linear regression, from the SVD terms."""
    t = alpha + beta * sigma
    m2 = float((beta ** 2 * sigma * z2 / t ** 2).sum())
    residual = float(((alpha / t) ** 2 * z2).sum()) + outside
    log_det = float(np.log(t).sum()) + (d - len(sigma)) * np.log(alpha)  # log |alpha I + beta F^T F|
    return (n / 2 * np.log(beta) + d / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi)
            - beta / 2 * residual - alpha / 2 * m2 - log_det / 2)


def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP: the mean log-likelihood of the target labels under the 'expected empirical predictor' built from
    the source classifier's probabilities ``source_probs`` (n x Z)."""
    theta = np.asarray(source_probs, dtype=np.float64)
    labels = np.asarray(labels)
    classes = np.unique(labels)
    onehot = (labels[:, None] == classes[None, :]).astype(np.float64)  # n x Y
    joint = onehot.T @ theta / len(labels)  # P(y, z)
    conditional = joint / np.maximum(joint.sum(axis=0, keepdims=True), 1e-300)  # P(y | z)
    index = np.searchsorted(classes, labels)
    likelihood = (theta * conditional[index]).sum(axis=1)
    return float(np.mean(np.log(np.maximum(likelihood, 1e-300))))


def nce(source_labels: np.ndarray, labels: np.ndarray) -> float:
    """NCE: minus the conditional entropy H(Y | Z) of the target labels given the source classifier's hard
    labels, from their empirical joint distribution."""
    z, y = np.asarray(source_labels), np.asarray(labels)
    _, zi = np.unique(z, return_inverse=True)
    _, yi = np.unique(y, return_inverse=True)
    joint = np.zeros((zi.max() + 1, yi.max() + 1))
    np.add.at(joint, (zi, yi), 1.0)
    joint /= joint.sum()
    pz = joint.sum(axis=1, keepdims=True)
    nonzero = joint > 0
    return float((joint[nonzero] * np.log((joint / pz)[nonzero])).sum())


def all_scores(features, labels, source_probs=None) -> Dict[str, float]:
    scores = {"logme": logme(features, labels)}
    if source_probs is not None:
        scores["leep"] = leep(source_probs, labels)
        scores["nce"] = nce(np.asarray(source_probs).argmax(axis=1), labels)
    return scores
