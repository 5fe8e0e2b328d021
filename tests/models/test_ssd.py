"""SSDLite: map sizes and default boxes, parameter count against the MobileNetV2 paper, the hard-negative loss
against numpy, recipe targets, .keras round trip of the inference model, a few fit steps, errors, and the
inference model and loss on JAX."""

import math
import os

import keras
import numpy as np
import pytest

import catalog
from catalog.blocks import boxes
from catalog.models.ssd import DefaultBoxDecoder, default_boxes, ssd_feature_sizes, ssd_inference, ssd_recipe
from catalog.registry import count_params, get_entry
from catalog.saving import load_model, read_record, save_model
from catalog.training.losses import HardNegativeCrossEntropy, SmoothL1

SIZE = 128
K = 3
# at 128 px the maps are 8, 4, 2, 1, 1, 1 with 3, 6, 6, 6, 6, 6 boxes per position
SMALL_BOXES = 8 * 8 * 3 + 4 * 4 * 6 + 2 * 2 * 6 + 3 * 6


def small(size=SIZE, **kwargs):
    return catalog.create_model("ssdlite_mobilenet_v2", backbone_options=dict(alpha=0.35), width=0.25,
                                num_classes=K, input_shape=(size, size, 3), **kwargs)


def images(batch=2, seed=0, size=SIZE):
    return np.random.default_rng(seed).uniform(-1, 1, (batch, size, size, 3)).astype("float32")


def ground_truth(batch=2, seed=0, size=SIZE):
    """Padded gt as ``catalog.datasets`` gives it: boxes (B, 3, 4) xyxy pixels, labels (B, 3), row 3 padding."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, size * 0.5, (batch, 3, 2))
    wh = rng.uniform(size * 0.2, size * 0.5, (batch, 3, 2))
    gt = np.concatenate([xy, np.minimum(xy + wh, size)], axis=-1).astype("float32")
    labels = rng.integers(0, K, (batch, 3)).astype("int32")
    gt[:, 2], labels[:, 2] = -1, -1
    return {"boxes": gt, "labels": labels}


def test_maps_and_default_box_counts():
    assert ssd_feature_sizes((320, 320)) == [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    assert [len(level) for level in boxes.ssd_box_specs(6)] == [3, 6, 6, 6, 6, 6]
    assert default_boxes((320, 320)).shape == (20 * 20 * 3 + (100 + 25 + 9 + 4 + 1) * 6, 4) == (2034, 4)
    model = small()
    assert ssd_feature_sizes((SIZE, SIZE)) == [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1), (1, 1)]
    assert tuple(model.output["classes"].shape) == (None, SMALL_BOXES, K + 1)
    assert tuple(model.output["boxes"].shape) == (None, SMALL_BOXES, 4)
    for index, ((h, w), count) in enumerate(zip(ssd_feature_sizes((SIZE, SIZE)), (3, 6, 6, 6, 6, 6)), start=1):
        for head, outputs in (("class", K + 1), ("box", 4)):
            assert model.get_layer(f"{head}_head{index}_reshape").output.shape[1:] == (h * w * count, outputs)
    # the stride-16 map is the expansion of the first stride-32 block (576 = 6 * 96 channels at alpha 1)
    assert model.get_layer("backbone").outputs[0].shape[1:] == (8, 8, 6 * 32)
    assert model.get_layer("extra4_project_conv").output.shape[-1] == 32  # 128 * width 0.25


@pytest.mark.parametrize("backbone, options, taps", [
    # MobileNetV3: the expansion of its first stride-32 block and its last conv (torchvision's ssdlite320 taps)
    ("mobilenet_v3_large", dict(alpha=0.5), [("block13_expand_act", 336), ("head_conv_act", 480)]),
    # no strided depthwise conv: the last stages at reductions 16 and 32
    ("resnet18", dict(width=16), [("stage3_block2_out", 64), ("stage4_block2_out", 128)]),
])
def test_maps_of_other_backbones(backbone, options, taps):
    model = catalog.create_model("ssdlite_mobilenet_v2", backbone=backbone, backbone_options=options, width=0.25,
                                 num_classes=K, input_shape=(64, 64, 3))
    outputs = model.get_layer("backbone").outputs
    assert [(t._keras_history.operation.name, t.shape[-1]) for t in outputs] == taps
    assert [tuple(t.shape[1:3]) for t in outputs] == [(4, 4), (2, 2)]
    assert model.output["boxes"].shape[1] == 4 * 4 * 3 + (4 + 1 + 1 + 1 + 1) * 6


def test_default_boxes_by_hand():
    anchors = np.asarray(default_boxes((320, 320)))
    # first map, first position (centre 8, 8): (0.1, 1), (0.2, 2), (0.2, 1/2) of 320 px, ratio = width / height
    r = math.sqrt(2)
    np.testing.assert_allclose(anchors[:3], [[-8, -8, 24, 24], [8 - 32 * r, 8 - 32 / r, 8 + 32 * r, 8 + 32 / r],
                                             [8 - 32 / r, 8 - 32 * r, 8 + 32 / r, 8 + 32 * r]], rtol=1e-5)
    # third map (5 x 5, scale 0.2 + 0.75 * 2 / 5 = 0.5, next 0.65), position (y 1, x 2): centre (160, 96)
    start = 1200 + 600 + (1 * 5 + 2) * 6
    cx, cy, side = 160.0, 96.0, 0.5 * 320
    expected = []
    for ratio in (1.0, 2.0, 0.5, 3.0, 1 / 3):
        w, h = side * math.sqrt(ratio), side / math.sqrt(ratio)
        expected.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    extra = math.sqrt(0.5 * 0.65) * 320
    expected.append([cx - extra / 2, cy - extra / 2, cx + extra / 2, cy + extra / 2])
    np.testing.assert_allclose(anchors[start:start + 6], expected, rtol=1e-5)
    # last map: one position at the centre, its extra square sqrt(0.95 * 1) of the image
    np.testing.assert_allclose(anchors[-1], 160 + np.array([-1, -1, 1, 1]) * math.sqrt(0.95) * 160, rtol=1e-5)
    # a wide image: centres spread over each side, boxes square in pixels at the shorter side
    wide = np.asarray(boxes.ssd_anchors((320, 640), [(2, 4)], scales=[0.5], reduce_boxes_in_lowest_layer=False))
    np.testing.assert_allclose(wide[0], [80 - 80, 80 - 80, 80 + 80, 80 + 80], rtol=1e-6)
    np.testing.assert_allclose(wide[6 * 3], [560 - 80, 80 - 80, 560 + 80, 80 + 80], rtol=1e-6)


def test_parameter_count_against_the_paper():
    # Sandler et al. 2018, Table 6: 4.3M (rounded: rtol 0.012 takes what rounds to 4.3M)
    entry = get_entry("ssdlite_mobilenet_v2")
    assert entry.reference_params == 4_300_000 and entry.reference_params_rtol == 0.012
    count = count_params(catalog.create_model("ssdlite_mobilenet_v2"))
    assert count == 4_337_013 == catalog.model_info("ssdlite_mobilenet_v2").params
    assert abs(count - 4_300_000) <= 0.012 * 4_300_000
    # the TF API's COCO config (90 classes + background): 10 more logit columns per box of every head
    per_column = 576 * 3 + 3 + (1280 + 512 + 256 + 256 + 128) * 6 + 5 * 6
    coco90 = count_params(catalog.create_model("ssdlite_mobilenet_v2", num_classes=90, input_shape=(None, None, 3)))
    assert coco90 == count + 10 * per_column == 4_500_543


def _numpy_hard_negative(labels, logits, ratio=3.0, minimum=3):
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    out = []
    for lab, lp in zip(labels, log_probs):
        lab = lab.astype(int)
        target = np.where(lab >= 0, lab + 1, 0)
        ce = -lp[np.arange(len(lab)), target]
        positive, negative = lab >= 0, (lab < 0) & (lab != -1)
        keep = int(max(math.floor(ratio * positive.sum()), minimum))
        hardest = np.sort(ce[negative])[::-1][:keep]
        out.append((ce[positive].sum() + hardest.sum()) / max(positive.sum(), 1))
    return np.array(out)


def _jit(fn):
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(fn)
    import tensorflow as tf

    return tf.function(fn, jit_compile=True)


LABELS = np.array([[1, -2, -2, -2, -1, -2, -2, -2, -2, -2],       # 1 positive: 3 of 8 negatives, ignore out
                   [-2, -2, -2, -2, -2, -1, -2, -2, -2, -2]], np.float32)  # no positive: the 3 hardest
LOGITS = np.random.default_rng(3).normal(0, 2, (2, 10, K + 1)).astype(np.float32)
LOGITS[0, 4] = [9.0, -9.0, -9.0, -9.0]  # an ignored anchor with a huge loss for any class


@pytest.mark.jax
def test_hard_negative_loss_equals_a_hand_computed_case():
    # by hand, image 1: ce of the positive (column 2) + the three largest background ce among anchors 1-3, 5-9
    log_probs = LOGITS - np.log(np.exp(LOGITS).sum(-1, keepdims=True))
    negatives = [1, 2, 3, 5, 6, 7, 8, 9]
    hardest = sorted(negatives, key=lambda a: log_probs[0, a, 0])[:3]
    image1 = -log_probs[0, 0, 2] - sum(log_probs[0, a, 0] for a in hardest)
    image2 = -sum(sorted(log_probs[1, [a for a in range(10) if a != 5], 0])[:3])
    expected = _numpy_hard_negative(LABELS, LOGITS)
    np.testing.assert_allclose(expected, [image1, image2], rtol=1e-6)
    per_image = keras.ops.convert_to_numpy(HardNegativeCrossEntropy(reduction=None)(LABELS, LOGITS))
    np.testing.assert_allclose(per_image, expected, rtol=1e-5)
    np.testing.assert_allclose(float(HardNegativeCrossEntropy()(LABELS[..., None], LOGITS)), expected.mean(),
                               rtol=1e-5)
    # two positives at ratio 2: four negatives; no minimum: an image without positives adds nothing
    labels = LABELS.copy()
    labels[0, 9] = 0
    loss = HardNegativeCrossEntropy(neg_pos_ratio=2.0, min_negatives=0, reduction=None)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loss(labels, LOGITS)),
                               _numpy_hard_negative(labels, LOGITS, 2.0, 0), rtol=1e-5)
    assert float(keras.ops.convert_to_numpy(loss(labels, LOGITS))[1]) == 0.0
    # compiled (tf.function with XLA, or jax.jit): the same numbers
    np.testing.assert_allclose(keras.ops.convert_to_numpy(_jit(loss)(labels, LOGITS)),
                               _numpy_hard_negative(labels, LOGITS, 2.0, 0), rtol=1e-5)
    # a saved loss keeps its settings
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert (restored.neg_pos_ratio, restored.min_negatives) == (2.0, 0)


def test_recipe_targets_and_losses():
    model = small()
    recipe = get_entry("ssdlite_mobilenet_v2").recipe(model)
    assert recipe.task == "detection" and recipe.num_classes == K  # the background column is not a class
    assert isinstance(recipe.loss["classes"], HardNegativeCrossEntropy) and recipe.loss["boxes"].beta == 1.0
    y = ground_truth()
    targets = recipe.targets(y)
    labels, box_targets = np.asarray(targets["classes"]), np.asarray(targets["boxes"])
    assert labels.shape == (2, SMALL_BOXES) and box_targets.shape == (2, SMALL_BOXES, 5)
    assert set(np.unique(labels)) <= {-2, 0, 1, 2}  # no ignore band in SSD
    np.testing.assert_array_equal(box_targets[..., 4], labels)
    for image in range(2):  # every real gt box has at least its best default box
        assert set(y["labels"][image, :2]) <= set(labels[image][labels[image] >= 0])
    # the encoded deltas decode (variances 0.1, 0.2) to the matched gt boxes
    decoder = DefaultBoxDecoder((SIZE, SIZE), ssd_feature_sizes((SIZE, SIZE)), clip=False)
    decoded = np.asarray(decoder(keras.ops.convert_to_tensor(box_targets[..., :4])))
    iou = np.asarray(boxes.iou(decoded[0][labels[0] >= 0], y["boxes"][0, :2]))
    np.testing.assert_allclose(iou.max(-1), 1.0, atol=1e-4)
    assert recipe.inference(model).output["boxes"].shape[1:] == (100, 4)


def test_inference_model_round_trip(tmp_path):
    model = small(inference=True, score_threshold=0.0, max_detections=20)
    x = images()
    path = save_model(model, os.path.join(str(tmp_path), "ssd.keras"), preprocessing="tf",
                      model_name="ssdlite_mobilenet_v2", task="detection")
    assert read_record(path)["task"] == "detection"
    expected = model(x, training=False)
    reloaded = load_model(path)
    assert isinstance(reloaded.get_layer("decode"), DefaultBoxDecoder)
    got = reloaded(x, training=False)
    assert set(got) == {"boxes", "scores", "labels", "num_detections"}
    for key, value in expected.items():
        np.testing.assert_allclose(np.asarray(value), np.asarray(got[key]), rtol=1e-5, atol=1e-5)
    assert np.asarray(got["labels"]).dtype == np.int32 and np.all(np.asarray(got["num_detections"]) == 20)
    assert np.all(np.asarray(got["boxes"]) >= 0) and np.all(np.asarray(got["boxes"]) <= SIZE)
    assert keras.saving.load_model(path, safe_mode=True).get_layer("scores").output.shape[-1] == K


def test_fit_reduces_the_losses():
    model = small(64)
    recipe = ssd_recipe(model)
    targets = {key: np.asarray(value) for key, value in recipe.targets(ground_truth(4, size=64)).items()}
    # eager: tracing the train step costs more than these few steps on a CI machine (the XLA test is below)
    model.compile(optimizer=keras.optimizers.Adam(1e-3, clipnorm=1.0), loss=recipe.loss, run_eagerly=True)
    history = model.fit(images(4, size=64), targets, epochs=6, batch_size=4, verbose=0).history
    for key in ("classes_loss", "boxes_loss"):
        assert min(history[key][1:]) < 0.8 * history[key][0], history
    assert np.all(np.isfinite(history["loss"]))


@pytest.mark.parametrize("kwargs, match", [
    (dict(input_shape=(16, 16, 3)), "input_shape height and width must be positive multiples of 32"),
    (dict(input_shape=(300, 300, 3)), "input_shape height and width must be positive multiples of 32"),
    (dict(num_classes=0), "num_classes must be a positive integer"),
    (dict(width=0), "width must be a positive number"),
    (dict(backbone_options=dict(include_top=True)), "backbone_options must not set include_top"),
    (dict(backbone="retinanet"), "backbone must be a registered classification model"),
])
def test_bad_values_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        catalog.create_model("ssdlite_mobilenet_v2", **kwargs)


def test_inference_and_recipe_need_a_fixed_size():
    model = catalog.create_model("ssdlite_mobilenet_v2", backbone_options=dict(alpha=0.35), width=0.25,
                                 num_classes=K, input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="needs a fixed input size"):
        ssd_inference(model)
    with pytest.raises(ValueError, match="needs a fixed input size"):
        ssd_recipe(model)
    assert ssd_inference(model, image_size=(SIZE, SIZE)).output["boxes"].shape[1:] == (100, 4)


@pytest.mark.jax
def test_inference_model_and_loss_run():
    training = small(64)
    model = ssd_inference(training, score_threshold=0.0, max_detections=10, pre_nms_top_k=100)
    out = model.predict(images(size=64), verbose=0)
    assert out["boxes"].shape == (2, 10, 4) and out["labels"].shape == (2, 10)
    assert np.all((out["labels"] >= 0) & (out["labels"] < K))
    assert np.all(np.diff(out["scores"], axis=1) <= 1e-6)  # descending
    recipe = ssd_recipe(training)
    targets = recipe.targets(ground_truth(size=64))
    predictions = training.predict(images(size=64), verbose=0)
    loss = recipe.loss["classes"](targets["classes"], predictions["classes"])
    box_loss = SmoothL1(beta=1.0)(targets["boxes"], predictions["boxes"])
    assert np.isfinite(float(loss)) and float(loss) > 0 and np.isfinite(float(box_loss))
