"""Generative-model scores: Inception Score (Salimans et al. 2016) and FID (Heusel et al. 2017).

Both take arrays from ANY network: class probabilities p(y|x) for the Inception Score (the catalog's
``inception_v3`` with weights from a local file is the usual choice), features for FID (the pool layer of
an Inception network is the usual choice). All arithmetic is float64.
"""

from __future__ import annotations

import numpy as np


def inception_score(probs, splits: int = 10) -> tuple[float, float]:
    """Inception Score exp(E_x KL(p(y|x) || p(y))) over ``splits`` equal parts: (mean, std) over parts.

    ``probs`` (N, C) rows are probability vectors; 0 log 0 counts as 0, so one-hot rows are allowed.
    Part i holds rows [i N / splits, (i + 1) N / splits) as in the original implementation.
    """
    p = np.asarray(probs, np.float64)
    if p.ndim != 2 or p.shape[0] < 1:
        raise ValueError(f"probs must be an (N, classes) array of probabilities; got shape {p.shape}.")
    if np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("probs rows must be probabilities (non-negative, summing to 1); apply a softmax to logits.")
    if not isinstance(splits, (int, np.integer)) or not 1 <= splits <= len(p):
        raise ValueError(f"splits must be an integer between 1 and the number of rows ({len(p)}); got {splits!r}.")
    n, scores = len(p), []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        marginal = part.mean(axis=0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(part > 0, part * (np.log(part) - np.log(marginal)), 0.0)
        scores.append(np.exp(np.mean(np.sum(kl, axis=1))))
    return float(np.mean(scores)), float(np.std(scores))


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of (N, D) features, in float64."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be an (N, D) array with N >= 2; got shape {f.shape}.")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), float64.

    Negative round-off is clipped to 0. Tr((S1 S2)^(1/2)) is the sum of square roots of the eigenvalues of S1^(1/2) S2 S1^(1/2) (the same
    spectrum as S1 S2, but symmetric positive semi-definite, so no complex round-off).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = float(np.sum(np.sqrt(np.clip(eig, 0, None))))
    diff = mu1 - mu2
    return max(float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt), 0.0)


def fid(features_a, features_b) -> float:
    """Fréchet Inception Distance between two (N, D) feature sets (from any feature extractor)."""
    mu1, s1 = feature_statistics(features_a)
    mu2, s2 = feature_statistics(features_b)
    if mu1.shape != mu2.shape:
        raise ValueError(f"features_a and features_b must have the same width; got {mu1.size} and {mu2.size}.")
    return frechet_distance(mu1, s1, mu2, s2)


__all__ = ["inception_score", "fid", "frechet_distance", "feature_statistics"]
