"""Verification and retrieval metrics of embeddings (face-verification style), NumPy only.

A pair is *genuine* (``same`` True) when both items have the same label, an *impostor* pair otherwise. A
verifier accepts a pair when its distance is at most a threshold t (or its similarity score at least t):

- ROC: the true accept rate TAR = accepted genuine / genuine pairs against the false accept rate
  FAR = accepted impostor / impostor pairs, one point per distinct threshold (scikit-learn's ``roc_curve``
  with ``drop_intermediate=False``); AUC is the trapezoidal area (``roc_auc_score``).
- TAR at a FAR: the highest TAR among the ROC points whose FAR is at most the given one (no interpolation).
- FRR (false reject rate) at a threshold: rejected genuine / genuine pairs, 1 - TAR.
- Best-threshold accuracy: the highest (accepted genuine + rejected impostor) / all pairs over thresholds.
- Recall@K (Song et al. 2016, retrieval): the fraction of queries with at least one item of their label
  among their K nearest other items (queries whose label has no other item are left out and counted).

Distances are Euclidean. :func:`verification_metrics` scores all pairs of an embedded split: N (N - 1) / 2
pairs, so memory grows with N squared.
"""

from __future__ import annotations

import numpy as np

from catalog.evaluation.classification import roc_curve as _binary_roc

DEFAULT_FARS = (1e-3, 1e-2, 1e-1)
DEFAULT_KS = (1, 5)
MAX_CURVE_POINTS = 1000  # points of the ROC kept in a report


def _scores(same, scores, distances):
    """(same as bool, score where higher means more alike, whether the input was a distance)."""
    if (scores is None) == (distances is None):
        raise ValueError("pass exactly one of scores (higher: more alike) or distances (lower: more alike).")
    values = np.asarray(scores if scores is not None else distances, np.float64).reshape(-1)
    same = np.asarray(same).reshape(-1)
    if same.shape != values.shape:
        raise ValueError(f"same and the scores/distances must have one value per pair; got {same.size} and "
                         f"{values.size}.")
    if same.size and not np.isin(same, (0, 1)).all():
        raise ValueError("same must hold booleans or 0/1 (1: a genuine pair of the same label).")
    if not np.isfinite(values).all():
        raise ValueError("scores/distances must be finite.")
    return same.astype(bool), (values if scores is not None else -values), distances is not None


def verification_roc(same, *, scores=None, distances=None):
    """ROC of pair decisions: (far, tar, thresholds), from (0, 0) at an infinite threshold, one point per
    distinct value. ``thresholds`` are in the input's unit: accept when score >= t, or distance <= t (then
    the first threshold is -inf). Equal to ``sklearn.metrics.roc_curve(same, scores, drop_intermediate=False)``
    (for distances: of ``-distances``, thresholds negated)."""
    same, values, is_distance = _scores(same, scores, distances)
    far, tar, thresholds = _binary_roc(same, values)
    return far, tar, (-thresholds if is_distance else thresholds)


def roc_auc(far, tar) -> float:
    """Trapezoidal area under an ROC curve (NaN with fewer than two points or without both kinds of pair)."""
    far, tar = np.asarray(far, np.float64), np.asarray(tar, np.float64)
    if len(far) < 2 or not (np.isfinite(far).all() and np.isfinite(tar).all()):
        return float("nan")
    return float(np.sum(np.diff(far) * (tar[1:] + tar[:-1]) / 2))


def tar_at_far(same, fars=DEFAULT_FARS, *, scores=None, distances=None) -> dict:
    """``{far: {"tar", "far" (the FAR reached), "threshold"}}``: the best ROC point whose FAR is at most each
    requested one (the strictest threshold, +inf or -inf for distances, when no other point qualifies)."""
    far, tar, thresholds = verification_roc(same, scores=scores, distances=distances)
    out = {}
    for target in fars:
        if isinstance(target, bool) or not 0.0 <= float(target) <= 1.0:
            raise ValueError(f"fars must be rates in [0, 1]; got {target!r}.")
        ok = np.flatnonzero(far <= float(target) + 1e-12)
        best = ok[np.argmax(tar[ok])] if ok.size and np.isfinite(tar).all() else 0
        out[float(target)] = {"tar": float(tar[best]), "far": float(far[best]), "threshold": float(thresholds[best])}
    return out


def rates_at_threshold(same, threshold: float, *, scores=None, distances=None) -> dict:
    """TAR, FAR, FRR (= 1 - TAR) and accuracy when accepting pairs with score >= ``threshold`` (distance <=
    ``threshold``); a rate without pairs of its kind is NaN."""
    same, values, is_distance = _scores(same, scores, distances)
    accept = values >= (-threshold if is_distance else threshold)
    genuine, impostor = same.sum(), (~same).sum()
    tar = float((accept & same).sum() / genuine) if genuine else float("nan")
    far = float((accept & ~same).sum() / impostor) if impostor else float("nan")
    accuracy = float(((accept & same).sum() + (~accept & ~same).sum()) / same.size) if same.size else float("nan")
    return {"tar": tar, "far": far, "frr": 1.0 - tar, "accuracy": accuracy}


def frr_at_threshold(same, threshold: float, *, scores=None, distances=None) -> float:
    """False reject rate: the fraction of genuine pairs rejected at ``threshold`` (see :func:`rates_at_threshold`)."""
    return rates_at_threshold(same, threshold, scores=scores, distances=distances)["frr"]


def best_threshold_accuracy(same, *, scores=None, distances=None) -> tuple[float, float]:
    """(accuracy, threshold): the highest pair accuracy over all thresholds of the ROC and the (first) threshold
    reaching it (accept score >= t, or distance <= t)."""
    same_b, _, _ = _scores(same, scores, distances)
    far, tar, thresholds = verification_roc(same, scores=scores, distances=distances)
    genuine, impostor = same_b.sum(), (~same_b).sum()
    correct = np.nan_to_num(tar) * genuine + (1.0 - np.nan_to_num(far)) * impostor
    best = int(np.argmax(correct))
    return float(correct[best] / max(same_b.size, 1)), float(thresholds[best])


def equal_error_rate(same, *, scores=None, distances=None) -> float:
    """The equal error rate: FAR where it meets FRR = 1 - TAR, linearly interpolated along the ROC."""
    far, tar, _ = verification_roc(same, scores=scores, distances=distances)
    if not (np.isfinite(far).all() and np.isfinite(tar).all()):
        return float("nan")
    gap = far - (1.0 - tar)  # rises from -1 at (0, 0) to +1 at (1, 1)
    i = int(np.argmax(gap >= 0))
    if i == 0 or gap[i] == 0:
        return float(far[i])
    w = -gap[i - 1] / (gap[i] - gap[i - 1])
    return float(far[i - 1] + w * (far[i] - far[i - 1]))


def pairwise_distances(embeddings, gallery=None) -> np.ndarray:
    """(N, M) Euclidean distances between the rows of ``embeddings`` and of ``gallery`` (default: themselves)."""
    a = np.asarray(embeddings, np.float64)
    b = a if gallery is None else np.asarray(gallery, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"embeddings (and gallery) must be (N, D) arrays of one D; got {a.shape} and {b.shape}.")
    d2 = np.sum(a * a, 1)[:, None] + np.sum(b * b, 1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(d2, 0.0))


def _labels(labels, n):
    labels = np.asarray(labels).reshape(-1)
    if labels.size != n:
        raise ValueError(f"labels must have one entry per embedding; got {labels.size} for {n} embeddings.")
    return labels


def recall_at_k(embeddings, labels, ks=DEFAULT_KS, *, gallery=None) -> dict:
    """``{k: recall}``: the fraction of queries with an item of their label among their k nearest other items
    (Euclidean; ties broken by index). ``gallery``: the same items embedded by a second network (a
    pseudo-siamese pair), searched instead of ``embeddings``. Queries whose label has no other item are left
    out (``recall_at_k`` counts them in ``"queries_without_match"``)."""
    emb = np.asarray(embeddings, np.float64)
    labels = _labels(labels, len(emb))
    ks = tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers; got {ks!r}.")
    d = pairwise_distances(emb, gallery)
    np.fill_diagonal(d, np.inf)  # an item does not retrieve itself
    order = np.argsort(d, axis=1, kind="stable")[:, :max(1, len(emb) - 1)]
    hits = labels[order] == labels[:, None]
    has_match = hits.any(axis=1)
    out = {}
    for k in ks:
        found = hits[has_match, :k].any(axis=1)
        out[int(k)] = float(found.mean()) if found.size else float("nan")
    out["queries_without_match"] = int((~has_match).sum())
    return out


def pair_distances(embeddings, labels, *, gallery=None):
    """(distances, same) of every pair: i < j of ``embeddings``, or with a ``gallery`` (the second network's
    embeddings of the same items) every ordered pair i != j of embeddings[i] and gallery[j]."""
    emb = np.asarray(embeddings, np.float64)
    labels = _labels(labels, len(emb))
    d = pairwise_distances(emb, gallery)
    same = labels[:, None] == labels[None, :]
    if gallery is None:
        i, j = np.triu_indices(len(emb), k=1)
    else:
        i, j = np.nonzero(~np.eye(len(emb), dtype=bool))
    return d[i, j], same[i, j]


def thin_curve(x, y, max_points: int = MAX_CURVE_POINTS):
    """Indices of at most about ``max_points`` points of a monotone curve for plotting: the corners (points
    where the slope changes, as scikit-learn's ``drop_intermediate``), then evenly spaced ones, ends kept."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) <= 2:
        return np.arange(len(x))
    corner = np.r_[True, (np.abs(np.diff(x, 2)) > 1e-9) | (np.abs(np.diff(y, 2)) > 1e-9), True]
    keep = np.flatnonzero(corner)
    if len(keep) > max_points:
        keep = np.unique(np.r_[keep[np.linspace(0, len(keep) - 1, max_points).round().astype(int)], keep[-1]])
    return keep


def verification_metrics(embeddings, labels, fars=DEFAULT_FARS, ks=DEFAULT_KS, *, gallery=None) -> dict:
    """Verification over all pairs of an embedded split, and retrieval recall@K.

    Returns ``{"auc", "eer", "tar_at_far": {far: {"tar", "far", "threshold"}}, "best_accuracy",
    "best_threshold", "far_at_best", "frr_at_best", "recall_at_k": {k: recall}, "queries_without_match",
    "genuine_pairs", "impostor_pairs", "mean_genuine_distance", "mean_impostor_distance", "roc": {"far", "tar",
    "thresholds"}}`` (the ROC thinned to about ``MAX_CURVE_POINTS`` points, see :func:`thin_curve`; the AUC
    and rates use every point). ``gallery``: see :func:`pair_distances` and :func:`recall_at_k`.
    """
    distances, same = pair_distances(embeddings, labels, gallery=gallery)
    if not same.any() or same.all():
        raise ValueError("labels must give both genuine pairs (two items of one label) and impostor pairs "
                         "(two labels) to score verification.")
    far, tar, thresholds = verification_roc(same, distances=distances)
    accuracy, threshold = best_threshold_accuracy(same, distances=distances)
    at_best = rates_at_threshold(same, threshold, distances=distances)
    recall = recall_at_k(embeddings, labels, ks, gallery=gallery)
    keep = thin_curve(far, tar)
    return {"auc": roc_auc(far, tar), "eer": equal_error_rate(same, distances=distances),
            "tar_at_far": tar_at_far(same, fars, distances=distances),
            "best_accuracy": accuracy, "best_threshold": threshold, "far_at_best": at_best["far"],
            "frr_at_best": at_best["frr"],
            "recall_at_k": {k: v for k, v in recall.items() if k != "queries_without_match"},
            "queries_without_match": recall["queries_without_match"],
            "genuine_pairs": int(same.sum()), "impostor_pairs": int((~same).sum()),
            "mean_genuine_distance": float(distances[same].mean()),
            "mean_impostor_distance": float(distances[~same].mean()),
            "roc": {"far": far[keep], "tar": tar[keep], "thresholds": thresholds[keep]}}


__all__ = ["verification_roc", "roc_auc", "tar_at_far", "rates_at_threshold", "frr_at_threshold",
           "best_threshold_accuracy", "equal_error_rate", "pairwise_distances", "pair_distances", "recall_at_k",
           "verification_metrics", "thin_curve"]
