"""Classification, segmentation, image-quality and generative metrics against their references:
keras.metrics, scikit-learn, scikit-image, tf.image, SciPy and closed forms."""

import keras
import numpy as np
import pytest

from catalog import evaluation as E

sklearn_metrics = pytest.importorskip("sklearn.metrics")
skimage_metrics = pytest.importorskip("skimage.metrics")


# ---------------------------------------------------------------- classification
def test_topk_equals_keras_sparse_top_k():
    rng = np.random.default_rng(0)
    scores = rng.random((300, 12)).astype("float32")
    labels = rng.integers(0, 12, 300)
    for k in (1, 3, 5):
        metric = keras.metrics.SparseTopKCategoricalAccuracy(k=k)
        metric.update_state(labels, scores)
        assert E.topk_accuracy(labels, scores, k) == pytest.approx(float(metric.result()), abs=1e-7)
    one_hot = np.eye(12)[labels]
    assert E.topk_accuracy(one_hot, scores, 5) == E.topk_accuracy(labels, scores, 5)
    assert E.topk_accuracy([2], [[0.1, 0.5, 0.5, 0.0]], 1) == 1.0  # ties at the boundary count as in


def test_classification_report_equals_sklearn():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(400, 5))
    labels = np.where(rng.random(400) < 0.6, np.argmax(logits, 1), rng.integers(0, 5, 400))
    labels[labels == 4] = 3  # class 4 never occurs: zero support
    rep = E.classification_report(labels, logits, class_names=list("abcde"), from_logits=True, top_k=(1, 2))
    probs = E.classification.softmax(logits)
    pred = probs.argmax(1)
    np.testing.assert_array_equal(rep["confusion_matrix"], sklearn_metrics.confusion_matrix(labels, pred, labels=range(5)))
    p, r, f, s = sklearn_metrics.precision_recall_fscore_support(labels, pred, labels=range(5), zero_division=0)
    for ours, ref in zip(rep["per_class"].values(), (p, r, f, s)):
        np.testing.assert_allclose(ours, ref, atol=1e-12)
    for avg in ("macro", "weighted"):
        ref = sklearn_metrics.precision_recall_fscore_support(labels, pred, labels=range(5), average=avg,
                                                              zero_division=0)
        np.testing.assert_allclose([rep[avg][k] for k in ("precision", "recall", "f1")], ref[:3], atol=1e-12)
    assert rep["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(labels, pred))
    assert rep["top_k"]["top2"] == pytest.approx(sklearn_metrics.top_k_accuracy_score(labels, probs, k=2, labels=range(5)))
    for c in range(4):
        assert rep["roc"]["auc"][c] == pytest.approx(sklearn_metrics.roc_auc_score(labels == c, probs[:, c]), abs=1e-12)
        assert rep["pr"]["ap"][c] == pytest.approx(
            sklearn_metrics.average_precision_score(labels == c, probs[:, c]), abs=1e-12)
    assert np.isnan(rep["roc"]["auc"][4]) and np.isnan(rep["pr"]["ap"][4])

    stream = E.ClassificationMetrics(5, class_names=list("abcde"), from_logits=True, top_k=(1, 2))
    for i in range(0, 400, 64):
        stream.update(labels[i:i + 64], logits[i:i + 64])
    res = stream.result()
    np.testing.assert_array_equal(res["confusion_matrix"], rep["confusion_matrix"])
    assert res["top_k"] == pytest.approx(rep["top_k"])
    np.testing.assert_allclose(res["roc"]["auc"][:4], rep["roc"]["auc"][:4], atol=1e-6)


# ---------------------------------------------------------------- segmentation
def test_segmentation_equals_sklearn_confusion_with_ignore_index():
    rng = np.random.default_rng(2)
    n = 6
    y_true = rng.integers(0, n, (4, 33, 37))
    y_true[rng.random(y_true.shape) < 0.1] = 255
    y_pred = np.where(rng.random(y_true.shape) < 0.5, y_true % n, rng.integers(0, n, y_true.shape))
    y_pred[0, 0, 0] = 5
    metrics = E.SegmentationMetrics(n, ignore_index=255)
    metrics.update(y_true[:2], y_pred[:2])
    metrics.update(y_true[2:], np.eye(n)[y_pred[2:]])  # scores with a class axis are argmaxed
    res = metrics.result()
    keep = y_true != 255
    cm = sklearn_metrics.confusion_matrix(y_true[keep], y_pred[keep], labels=range(n))
    np.testing.assert_array_equal(res["confusion_matrix"], cm)
    tp = np.diag(cm)
    iou = tp / (cm.sum(0) + cm.sum(1) - tp)
    np.testing.assert_allclose(res["iou"], iou, atol=1e-12)
    np.testing.assert_allclose(res["iou"], sklearn_metrics.jaccard_score(y_true[keep], y_pred[keep], average=None),
                               atol=1e-12)
    assert res["miou"] == pytest.approx(iou.mean())
    assert res["fwiou"] == pytest.approx(np.sum(cm.sum(1) / cm.sum() * iou))
    assert res["pixel_accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(y_true[keep], y_pred[keep]))
    np.testing.assert_allclose(res["dice"], sklearn_metrics.f1_score(y_true[keep], y_pred[keep], average=None))


def test_segmentation_absent_class_is_nan_and_left_out():
    res = E.segmentation_metrics(np.array([[0, 0, 1]]), np.array([[0, 1, 1]]), num_classes=3)
    np.testing.assert_allclose(res["iou"][:2], [0.5, 0.5])
    assert np.isnan(res["iou"][2]) and res["miou"] == 0.5
    with pytest.raises(ValueError, match="y_pred"):
        E.segmentation_metrics(np.zeros((2, 2), int), np.full((2, 2), 3), num_classes=3)


# ---------------------------------------------------------------- image quality
def _images():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:64, 0:80]
    structured = (127 + 100 * np.sin(xx / 5.0) * np.cos(yy / 7.0))[..., None] * np.ones(3)
    structured[20:40, 30:60] = [250, 10, 90]
    return [
        (rng.random((48, 50)), np.clip(rng.random((48, 50)) * 0.3 + 0.5, 0, 1), 1.0),
        (structured, np.clip(structured + rng.normal(0, 12, structured.shape), 0, 255), 255.0),
        (rng.integers(0, 256, (40, 41, 3)).astype(float), rng.integers(0, 256, (40, 41, 3)).astype(float), 255.0),
    ]


def test_ssim_and_psnr_equal_scikit_image():
    for a, b, data_range in _images():
        channel_axis = -1 if a.ndim == 3 else None
        ref = skimage_metrics.structural_similarity(a, b, data_range=data_range, gaussian_weights=True, sigma=1.5,
                                                    use_sample_covariance=False, channel_axis=channel_axis)
        assert E.ssim(a, b, data_range) == pytest.approx(ref, abs=1e-5)
        ref_psnr = skimage_metrics.peak_signal_noise_ratio(a, b, data_range=data_range)
        assert E.psnr(a, b, data_range) == pytest.approx(ref_psnr, abs=1e-5)
    assert E.psnr(np.zeros((4, 4)), np.full((4, 4), 255.0), 255) == pytest.approx(0.0)
    assert E.ssim(a, a, 255) == pytest.approx(1.0)


def test_ssim_ms_ssim_and_psnr_equal_tf_image_on_batches():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(4)
    a = rng.random((2, 180, 184, 3))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    np.testing.assert_allclose(E.ssim(a, b, 1.0, reduction="none"), tf.image.ssim(a, b, max_val=1.0).numpy(), atol=1e-4)
    np.testing.assert_allclose(E.psnr(a, b, 1.0, reduction="none"), tf.image.psnr(a, b, max_val=1.0).numpy(), atol=1e-4)
    np.testing.assert_allclose(E.ms_ssim(a, b, 1.0, reduction="none"),
                               tf.image.ssim_multiscale(a, b, max_val=1.0).numpy(), atol=1e-4)
    assert E.ssim(a, b, 1.0) == pytest.approx(E.ssim(a, b, 1.0, reduction="none").mean())
    with pytest.raises(ValueError, match="data_range"):
        E.ssim(a, b, None)


# ---------------------------------------------------------------- generative
def test_inception_score_closed_forms_and_formula():
    same = np.tile([0.1, 0.7, 0.2], (100, 1))
    assert E.inception_score(same, splits=10) == pytest.approx((1.0, 0.0))
    for n in (2, 5, 10):
        one_hot = np.eye(n)[np.arange(100 * n) % n]
        mean, std = E.inception_score(one_hot, splits=10)
        assert mean == pytest.approx(n) and std == pytest.approx(0.0, abs=1e-9)
    probs = np.random.default_rng(5).dirichlet(np.full(20, 0.3), size=1000)
    scores = []
    for part in np.array_split(probs, 5):
        py = part.mean(0)
        scores.append(np.exp(np.mean(np.sum(part * (np.log(part) - np.log(py)), 1))))
    assert E.inception_score(probs, splits=5) == pytest.approx((np.mean(scores), np.std(scores)), rel=1e-12)


def test_fid_zero_for_identical_and_equal_to_scipy_formula():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(6)
    a = rng.normal(size=(300, 16))
    b = rng.normal(0.3, 1.2, size=(250, 16)) @ rng.normal(size=(16, 16)) * 0.5
    assert E.fid(a, a) == pytest.approx(0.0, abs=1e-8)
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert E.fid(a, b) == pytest.approx(ref, rel=1e-9)
