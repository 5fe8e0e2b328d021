"""RetinaNet: output layout against the anchors, head initialization and sharing, parameter count against
torchvision, .keras round trips, a few fit steps, errors, and the inference model on JAX."""

import math
import os

import keras
import numpy as np
import pytest

import catalog
from catalog.blocks import boxes
from catalog.models.retinanet import retinanet_inference
from catalog.registry import count_params
from catalog.saving import load_model, read_record, save_model
from catalog.training.losses import FocalLoss, SmoothL1

SIZE = 128
K = 3


def small(**kwargs):
    return catalog.create_model("retinanet", backbone="mobilenet_v2", backbone_options=dict(alpha=0.35),
                                num_classes=K, input_shape=(SIZE, SIZE, 3), **kwargs)


def images(batch=2, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (batch, SIZE, SIZE, 3)).astype("float32")


def test_outputs_line_up_with_the_anchors():
    model = small()
    n = boxes.anchors((SIZE, SIZE)).shape[0]
    assert n == 9 * sum(math.ceil(SIZE / 2 ** level) ** 2 for level in range(3, 8))
    out = model(images(), training=False)
    assert set(out) == {"classes", "boxes"}
    assert tuple(out["classes"].shape) == (2, n, K) and tuple(out["boxes"].shape) == (2, n, 4)
    # the first P3 position's first anchor class logits are the first row: the reshape order is (y, x, anchor)
    assert model.get_layer("class_reshape_p3").output.shape[1] == 9 * (SIZE // 8) ** 2


def test_class_prior_and_heads_shared_across_levels():
    model = small()
    bias = np.asarray(model.get_layer("class_logits").bias)
    np.testing.assert_allclose(bias, -math.log(0.99 / 0.01), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(model.get_layer("box_deltas").bias), 0.0)
    # untrained, every anchor scores the 0.01 prior up to the small N(0, 0.01) head weights
    scores = keras.ops.sigmoid(model(images(), training=False)["classes"])
    assert abs(float(np.mean(scores)) - 0.01) < 0.005
    for prefix, outputs in (("class", 9 * K), ("box", 9 * 4)):
        head = [layer for layer in model.layers if layer.name.startswith(f"{prefix}_") and layer.weights]
        assert sum(count_params(layer) for layer in head) == 4 * (9 * 256 * 256 + 256) + 9 * 256 * outputs + outputs
        assert all(len(layer._inbound_nodes) == 5 for layer in head)  # one call per level P3..P7


def test_parameter_count_equals_torchvision():
    # torchvision retinanet_resnet50_fpn: 91 classes, FrozenBatchNorm2d in the backbone, P6 from P5
    model = catalog.create_model("retinanet_resnet50_fpn", num_classes=91, freeze_backbone_norm=True,
                                 input_shape=(None, None, 3))
    assert count_params(model) == 34_014_999
    card = catalog.model_info("retinanet_resnet50_fpn")
    assert card.task == "detection" and card.reference_params == 34_014_999
    # the card: 80 classes (11 fewer class-logit channels per anchor) and trainable backbone BatchNorm
    assert card.params == 34_014_999 - (9 * 256 * 9 + 9) * (91 - 80) + 53_120


def _save_and_reload(model, x, folder):
    """Through catalog.saving (safe_mode=True, with the detection record); returns the reloaded outputs."""
    path = save_model(model, os.path.join(folder, f"{model.name}.keras"), preprocessing="tf",
                      model_name="retinanet", task="detection")
    assert read_record(path)["task"] == "detection"
    expected, got = model(x, training=False), load_model(path)(x, training=False)
    assert set(expected) == set(got)
    for key, value in expected.items():
        np.testing.assert_allclose(np.asarray(value), np.asarray(got[key]), rtol=1e-5, atol=1e-5)
    return got


def test_keras_round_trip_training_and_inference_models(tmp_path):
    model = small()
    x = images()
    _save_and_reload(model, x, str(tmp_path))
    out = _save_and_reload(retinanet_inference(model, score_threshold=0.0, max_detections=20), x, str(tmp_path))
    assert tuple(out["boxes"].shape) == (2, 20, 4) and tuple(out["num_detections"].shape) == (2,)
    assert np.all(np.asarray(out["boxes"]) >= 0) and np.all(np.asarray(out["boxes"]) <= SIZE)
    assert np.all(np.asarray(out["num_detections"]) == 20)


def _targets(batch, seed=0):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, SIZE * 0.6, (batch, 3, 2))
    wh = rng.uniform(16, SIZE * 0.4, (batch, 3, 2))
    gt = np.concatenate([xy, np.minimum(xy + wh, SIZE)], axis=-1).astype("float32")
    labels = rng.integers(0, K, (batch, 3)).astype("int32")
    labels[:, 2] = -1  # a padding row
    cls, box = boxes.detection_targets(boxes.anchors((SIZE, SIZE)), gt, labels)
    return np.asarray(cls), np.asarray(box)


def test_fit_reduces_the_focal_and_box_losses():
    model = small()
    x = images(4)
    labels, box_targets = _targets(4)
    assert (labels >= 0).sum() >= 4
    # Adam at 1e-4 with clipping: larger steps make the prior-initialized logits swing (RetinaNet trains with
    # warmup for the same reason)
    model.compile(optimizer=keras.optimizers.Adam(1e-4, clipnorm=1.0),
                  loss={"classes": FocalLoss(), "boxes": SmoothL1()})
    history = model.fit(x, {"classes": labels, "boxes": box_targets}, epochs=10, batch_size=4, verbose=0).history
    for key in ("classes_loss", "boxes_loss"):  # min: a late focal-loss overshoot is the optimizer's, not ours
        assert min(history[key][1:]) < 0.8 * history[key][0], history
    assert history["boxes_loss"][-1] < 0.8 * history["boxes_loss"][0], history
    assert np.all(np.isfinite(history["loss"]))


def test_decoded_targets_give_back_the_ground_truth():
    anchors = boxes.anchors((SIZE, SIZE))
    _, box_targets = _targets(1)
    layer = catalog.models.retinanet.AnchorDecoder((SIZE, SIZE), clip=False)
    decoded = np.asarray(layer(keras.ops.convert_to_tensor(box_targets[..., :4])))
    positive = box_targets[0, :, 4] >= 0
    encoded_back = np.asarray(boxes.encode(decoded[0][positive], np.asarray(anchors)[positive]))
    np.testing.assert_allclose(encoded_back, box_targets[0, positive, :4], atol=1e-4)


@pytest.mark.parametrize("kwargs, match", [
    (dict(input_shape=(100, 100, 3)), "input_shape height and width must be positive multiples of 32"),
    (dict(backbone="lenet5", input_shape=(64, 64, 3)), "no stage at reduction"),
    (dict(num_classes=0), "num_classes must be a positive integer"),
    (dict(backbone_options=dict(features_only=False)), "backbone_options must not set features_only"),
])
def test_bad_values_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        catalog.create_model("retinanet", **{"backbone": "mobilenet_v2", **kwargs})


def test_inference_needs_a_fixed_size():
    model = catalog.create_model("retinanet", backbone="mobilenet_v2", backbone_options=dict(alpha=0.35),
                                 num_classes=K, input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="needs a fixed input size"):
        retinanet_inference(model)
    assert retinanet_inference(model, image_size=(SIZE, SIZE)).output["boxes"].shape[1:] == (100, 4)


@pytest.mark.jax
def test_inference_model_runs():
    model = small(inference=True, score_threshold=0.0, max_detections=10)
    out = model.predict(images(), verbose=0)
    assert out["boxes"].shape == (2, 10, 4) and out["labels"].shape == (2, 10)
    assert np.all((out["labels"] >= 0) & (out["labels"] < K))
    assert np.all(np.diff(out["scores"], axis=1) <= 1e-6)  # descending
    np.testing.assert_allclose(out["scores"], 0.01, atol=0.01)
