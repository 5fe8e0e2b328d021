"""Verification and retrieval metrics: scikit-learn's ROC and AUC, and hand-computed small cases."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from catalog.evaluation import (
    best_threshold_accuracy,
    equal_error_rate,
    frr_at_threshold,
    rates_at_threshold,
    recall_at_k,
    roc_auc,
    tar_at_far,
    verification_metrics,
    verification_roc,
)
from catalog.evaluation.verification import pair_distances, pairwise_distances, thin_curve

# Four pairs: genuine at distances 0.1 and 0.4, impostor at 0.35 and 0.8.
D = np.array([0.1, 0.4, 0.35, 0.8])
SAME = np.array([1, 1, 0, 0])


@pytest.mark.parametrize("seed", [0, 1])
def test_roc_and_auc_equal_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    same = rng.random(300) < 0.3
    distances = np.round(rng.random(300) + 0.4 * ~same, 2)  # rounded: many tied distances
    far, tar, thresholds = verification_roc(same, distances=distances)
    s_fpr, s_tpr, s_thr = roc_curve(same, -distances, drop_intermediate=False)
    np.testing.assert_allclose(far, s_fpr)
    np.testing.assert_allclose(tar, s_tpr)
    np.testing.assert_allclose(thresholds, -s_thr)
    assert roc_auc(far, tar) == pytest.approx(roc_auc_score(same, -distances), abs=1e-12)
    scores = rng.random(300)  # similarity scores: higher is more alike
    far, tar, thresholds = verification_roc(same, scores=scores)
    s_fpr, s_tpr, s_thr = roc_curve(same, scores, drop_intermediate=False)
    np.testing.assert_allclose(np.c_[far, tar, thresholds], np.c_[s_fpr, s_tpr, s_thr])
    assert roc_auc(far, tar) == pytest.approx(roc_auc_score(same, scores), abs=1e-12)


def test_hand_computed_rates():
    far, tar, thresholds = verification_roc(SAME, distances=D)
    # accept distance <= t: t=-inf, 0.1 (G), 0.35 (I), 0.4 (G), 0.8 (I)
    np.testing.assert_allclose(far, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tar, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(thresholds, [-np.inf, 0.1, 0.35, 0.4, 0.8])
    assert roc_auc(far, tar) == pytest.approx(0.75)
    at = tar_at_far(SAME, (0.0, 0.5, 1.0), distances=D)
    assert at[0.0] == {"tar": 0.5, "far": 0.0, "threshold": 0.1}
    assert at[0.5] == {"tar": 1.0, "far": 0.5, "threshold": 0.4}
    assert at[1.0]["tar"] == 1.0
    assert frr_at_threshold(SAME, 0.1, distances=D) == 0.5
    assert frr_at_threshold(SAME, 0.4, distances=D) == 0.0
    assert rates_at_threshold(SAME, 0.39, distances=D) == {"tar": 0.5, "far": 0.5, "frr": 0.5, "accuracy": 0.5}
    # 0.75 at t = 0.1 (1 genuine accepted, 2 impostors rejected) and at 0.4; the first is kept
    assert best_threshold_accuracy(SAME, distances=D) == (0.75, 0.1)
    assert best_threshold_accuracy(SAME, scores=-D) == (0.75, -0.1)
    assert equal_error_rate(SAME, distances=D) == pytest.approx(0.5)
    # a perfect separation: AUC 1, accuracy 1 at the largest genuine distance, EER 0
    assert roc_auc(*verification_roc([1, 1, 0], distances=[0.2, 0.3, 0.9])[:2]) == 1.0
    assert best_threshold_accuracy([1, 1, 0], distances=[0.2, 0.3, 0.9]) == (1.0, 0.3)
    assert equal_error_rate([1, 1, 0], distances=[0.2, 0.3, 0.9]) == 0.0


def test_recall_at_k_hand_computed():
    # 1-D embeddings; item 4 is the only one of label 2 (left out as a query)
    x = np.array([[0.0], [3.0], [1.0], [1.2], [2.5]])
    labels = np.array([0, 0, 1, 1, 2])
    # nearest others: 0 -> 2, 3, 4, 1 (first match at rank 4); 1 -> 4, 3, 2, 0 (rank 4); 2 -> 3 (rank 1);
    # 3 -> 2 (rank 1)
    got = recall_at_k(x, labels, ks=(1, 3, 4))
    assert got == {1: 0.5, 3: 0.5, 4: 1.0, "queries_without_match": 1}
    # a gallery of the same items seen by another network: query i searches gallery rows j != i
    gallery = np.array([[0.0], [3.0], [1.0], [5.0], [2.5]])  # item 3 seen at 5.0
    # gallery rows by distance: 0 -> 2, 4, 1 (first match at rank 3); 1 -> 4, 2, 3, 0 (rank 4);
    # 2 -> 0, 4, 1, 3 (rank 4); 3 -> 2 (rank 1)
    assert recall_at_k(x, labels, ks=(1, 3), gallery=gallery) == {1: 0.25, 3: 0.5, "queries_without_match": 1}


def test_verification_metrics_of_all_pairs():
    x = np.array([[0.0, 0.0], [0.0, 0.3], [1.0, 0.0], [1.0, 0.2], [0.1, 0.2]])
    labels = np.array([0, 0, 1, 1, 0])
    d, same = pair_distances(x, labels)
    assert len(d) == 10 and same.sum() == 4  # pairs (0,1) (0,4) (1,4) (2,3)
    m = verification_metrics(x, labels, fars=(0.0,), ks=(1,))
    assert m["auc"] == 1.0 and m["best_accuracy"] == 1.0 and m["eer"] == 0.0
    assert m["tar_at_far"][0.0]["tar"] == 1.0 and m["recall_at_k"] == {1: 1.0}
    assert m["genuine_pairs"] == 4 and m["impostor_pairs"] == 6
    np.testing.assert_allclose(m["mean_genuine_distance"], np.mean([0.3, np.hypot(0.1, 0.2), np.hypot(0.1, 0.1),
                                                                    0.2]))
    np.testing.assert_allclose(pairwise_distances(x)[0, 2], 1.0)
    with pytest.raises(ValueError, match="genuine pairs"):
        verification_metrics(x, [0, 1, 2, 3, 4])


def test_thin_curve_keeps_corners_and_ends():
    far = np.r_[0.0, np.linspace(0, 1, 5001)]
    tar = np.r_[0.0, np.ones(5001)]
    keep = thin_curve(far, tar)
    assert keep.tolist() == [0, 1, 5001]  # the vertical and the horizontal segment
    rng = np.random.default_rng(0)
    far, tar = np.sort(rng.random(5000)), np.sort(rng.random(5000))
    keep = thin_curve(far, tar, max_points=100)
    assert keep[0] == 0 and keep[-1] == 4999 and len(keep) <= 101


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="exactly one of scores"):
        verification_roc(SAME)
    with pytest.raises(ValueError, match="fars"):
        tar_at_far(SAME, (2.0,), distances=D)
    with pytest.raises(ValueError, match="ks"):
        recall_at_k(np.zeros((3, 2)), [0, 0, 1], ks=(0,))
    with pytest.raises(ValueError, match="labels"):
        recall_at_k(np.zeros((3, 2)), [0, 0])
