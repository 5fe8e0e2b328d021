"""Detection losses against numpy written here from the papers' definitions and against keras' own losses."""

import keras
import numpy as np
import pytest
from keras import ops

from catalog.blocks import boxes as B
from catalog.training.losses import FocalLoss, GIoULoss, SmoothL1

# two images, four anchors, three classes: positives of class 0 and 2, a background and an ignored anchor
LABELS = np.array([[0, B.BACKGROUND, B.IGNORE, 2], [B.BACKGROUND, 1, B.BACKGROUND, B.BACKGROUND]], np.float32)
LOGITS = np.random.default_rng(0).normal(0, 2, (2, 4, 3)).astype(np.float32)


def _numpy_focal(labels, logits, alpha=0.25, gamma=2.0):
    """Per-image sigmoid focal loss (Lin et al. 2017, eq. 5) / positives, in float64."""
    x = logits.astype(np.float64)
    t = (labels[..., None] == np.arange(x.shape[-1])).astype(np.float64)
    p = 1 / (1 + np.exp(-x))
    p_t = np.where(t == 1, p, 1 - p)
    alpha_t = 1.0 if alpha is None else np.where(t == 1, alpha, 1 - alpha)
    per_anchor = (-alpha_t * (1 - p_t) ** gamma * np.log(p_t)).sum(-1)
    per_anchor = np.where(labels == -1, 0.0, per_anchor)
    return per_anchor.sum(-1) / np.maximum((labels >= 0).sum(-1), 1)


@pytest.mark.jax
def test_focal_loss_equals_numpy_definition():
    loss = FocalLoss()
    expected = _numpy_focal(LABELS, LOGITS)
    np.testing.assert_allclose(float(loss(LABELS, LOGITS)), expected.mean(), rtol=1e-5)
    per_image = FocalLoss(reduction=None)(LABELS, LOGITS)
    np.testing.assert_allclose(ops.convert_to_numpy(per_image), expected, rtol=1e-5)
    # labels as (B, A, 1), probabilities instead of logits, no alpha, another gamma
    np.testing.assert_allclose(float(loss(LABELS[..., None], LOGITS)), expected.mean(), rtol=1e-5)
    probs = 1 / (1 + np.exp(-LOGITS))
    np.testing.assert_allclose(float(FocalLoss(from_logits=False)(LABELS, probs)), expected.mean(), rtol=1e-4)
    np.testing.assert_allclose(float(FocalLoss(alpha=None, gamma=0.5)(LABELS, LOGITS)),
                               _numpy_focal(LABELS, LOGITS, None, 0.5).mean(), rtol=1e-5)


def test_focal_loss_hand_value_and_keras_binary_focal_crossentropy():
    # one positive anchor of class 0, logits 0: p = 0.5 for both classes
    value = float(FocalLoss(reduction=None)(np.array([[0.0]]), np.zeros((1, 1, 2), np.float32))[0])
    hand = 0.25 * 0.5 ** 2 * np.log(2) + 0.75 * 0.5 ** 2 * np.log(2)
    np.testing.assert_allclose(value, hand, rtol=1e-6)
    # keras' BinaryFocalCrossentropy with class balancing is the same per element (it averages over classes)
    labels = np.where(LABELS == B.IGNORE, B.BACKGROUND, LABELS)
    onehot = (labels[..., None] == np.arange(3)).astype(np.float32)
    keras_focal = keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.25, gamma=2.0,
                                                       from_logits=True, reduction=None)
    per_anchor = ops.convert_to_numpy(keras_focal(onehot, LOGITS)) * 3
    expected = per_anchor.sum(-1) / np.maximum((labels >= 0).sum(-1), 1)
    got = ops.convert_to_numpy(FocalLoss(reduction=None)(labels, LOGITS))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_focal_loss_no_positives_and_ignored_anchors_add_nothing():
    background = np.full((1, 4), B.BACKGROUND, np.float32)
    ignored = np.full((1, 4), B.IGNORE, np.float32)
    assert float(FocalLoss()(ignored, LOGITS[:1])) == 0.0
    np.testing.assert_allclose(float(FocalLoss()(background, LOGITS[:1])),
                               _numpy_focal(background, LOGITS[:1])[0], rtol=1e-5)  # divided by max(0, 1)
    with pytest.raises(ValueError, match="alpha"):
        FocalLoss(alpha=1.5)


def _box_truth(targets, labels):
    return np.concatenate([targets, labels[..., None]], axis=-1).astype(np.float32)


@pytest.mark.jax
def test_smooth_l1_on_positive_anchors():
    targets = np.zeros((2, 4, 4), np.float32)
    pred = np.zeros((2, 4, 4), np.float32)
    pred[0, 0] = [0.05, -1.0, 0.0, 0.0]       # positive: 0.5 * 0.05² * 9 and 1 - 1/18
    pred[0, 1] = [5.0, 5.0, 5.0, 5.0]         # background: no box loss
    pred[0, 3] = [0.0, 0.0, 2.0, 0.0]         # positive: 2 - 1/18
    pred[1, 1] = [-0.1, 0.0, 0.0, 0.0]        # the only positive of image 2
    y_true = _box_truth(targets, LABELS)
    image1 = (0.5 * 0.05 ** 2 * 9 + 1 - 1 / 18 + 2 - 1 / 18) / 2
    image2 = 0.5 * 0.1 ** 2 * 9
    per_image = ops.convert_to_numpy(SmoothL1(reduction=None)(y_true, pred))
    np.testing.assert_allclose(per_image, [image1, image2], rtol=1e-5)
    np.testing.assert_allclose(float(SmoothL1()(y_true, pred)), (image1 + image2) / 2, rtol=1e-5)
    # beta 0 is L1; beta d is keras' Huber(delta=d) / d
    np.testing.assert_allclose(ops.convert_to_numpy(SmoothL1(beta=0.0, reduction=None)(y_true, pred)),
                               [(0.05 + 1 + 2) / 2, 0.1], rtol=1e-5)
    rng = np.random.default_rng(1)
    t, p = rng.normal(size=(1, 1, 4)).astype(np.float32), rng.normal(size=(1, 1, 4)).astype(np.float32)
    huber = keras.losses.Huber(delta=0.7, reduction=None)(t[0], p[0])
    np.testing.assert_allclose(float(SmoothL1(beta=0.7)(_box_truth(t, np.zeros((1, 1))), p)),
                               float(huber[0]) * 4 / 0.7, rtol=1e-5)


def test_giou_loss_on_positive_anchors():
    gt = np.array([[[0, 0, 10, 10], [0, 0, 1, 1]]], np.float32)
    pred = np.array([[[5, 5, 15, 15], [2, 2, 3, 3]]], np.float32)
    both = float(GIoULoss()(_box_truth(gt, np.array([[1, 4]])), pred))
    np.testing.assert_allclose(both, ((1 - (25 / 175 - 50 / 225)) + (1 + 7 / 9)) / 2, rtol=1e-6)
    first = float(GIoULoss()(_box_truth(gt, np.array([[1, B.BACKGROUND]])), pred))
    np.testing.assert_allclose(first, 1 - (25 / 175 - 50 / 225), rtol=1e-6)
    assert float(GIoULoss()(_box_truth(gt, gt[..., 0] * 0), gt)) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.jax
def test_losses_serialize_and_train_a_tiny_detector_head():
    for loss in (FocalLoss(alpha=0.5, gamma=1.0), SmoothL1(beta=0.2), GIoULoss()):
        again = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(again) is type(loss) and again.get_config() == loss.get_config()
    anchors = B.anchors((32, 32), levels=(3, 4))                                    # 16 * 9 + 4 * 9 = 180
    labels, box_targets = B.detection_targets(anchors, np.array([[[4, 4, 20, 28], [0, 0, 0, 0]]] * 2),
                                              np.array([[1, -1]] * 2))
    features = keras.Input((180, 8))
    model = keras.Model(features, {"cls": keras.layers.Dense(3, name="cls")(features),
                                   "box": keras.layers.Dense(4, name="box")(features)})
    model.compile(optimizer="adam", loss={"cls": FocalLoss(), "box": SmoothL1()})
    x = np.random.default_rng(2).normal(size=(2, 180, 8)).astype(np.float32)
    y = {"cls": ops.convert_to_numpy(labels), "box": ops.convert_to_numpy(box_targets)}
    history = model.fit(x, y, epochs=3, batch_size=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert history.history["loss"][-1] < history.history["loss"][0]


@pytest.mark.jax
def test_giou_on_deltas_equals_giou_on_the_boxes_they_decode_to():
    anchors = np.array([[0, 0, 10, 10], [10, 10, 30, 30], [40, 40, 50, 60]], np.float32)
    gt = np.array([[[1, 1, 11, 12], [12, 8, 28, 33], [0, 0, 0, 0]]], np.float32)
    gt_labels = np.array([[2, 0, -1]])
    labels, targets = B.detection_targets(anchors, gt, gt_labels, box_target="giou", positive_iou=0.5,
                                              negative_iou=0.4)
    targets = np.asarray(targets)
    assert targets.shape == (1, 3, 9)
    np.testing.assert_array_equal(targets[0, :, 5:], anchors)  # each row carries its anchor
    deltas = np.array([[[0.1, -0.2, 0.05, 0.3], [0.0, 0.1, -0.1, 0.2], [1.0, 1.0, 1.0, 1.0]]], np.float32)
    on_deltas = float(GIoULoss()(targets, deltas))
    decoded = B.decode(deltas, anchors)
    on_boxes = float(GIoULoss()(targets[..., :5], decoded))
    assert on_deltas == pytest.approx(on_boxes, rel=1e-6)
    positives = np.asarray(labels)[0] >= 0
    expected = np.sum(1 - np.diagonal(np.asarray(B.giou(np.asarray(decoded)[0], targets[0, :, :4]))) * 1.0,
                      where=positives) / positives.sum()
    assert on_deltas == pytest.approx(expected, rel=1e-5)
