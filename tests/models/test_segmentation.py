"""Segmentation models and dilated backbones: torchvision counts, output_stride, output shapes at small and odd
sizes, the recipe's loss (ignore label by hand, a few fit steps), .keras round trips.

Reference counts at the registered defaults (and the shipped cards) are checked in tests/test_models.py.
"""

import os
import tempfile

import keras
import numpy as np
import pytest

import catalog
from catalog.registry import TrainingRecipe, count_params, recipe_of
from catalog.training.segmentation_losses import SegmentationCrossEntropy
from helpers import keras_round_trip, random_input

SEGMENTERS = catalog.list_models(task="segmentation")
TINY_RESNET = dict(width=8, depths=(1, 1, 1, 1))

# Width-reduced keywords per registered name, so every model builds and runs in well under a second.
SMALL = {
    "deeplabv3_resnet50": dict(backbone_options=TINY_RESNET, channels=16),
    "deeplabv3_mobilenet_v3_large": dict(backbone_options=dict(alpha=0.35), channels=16),
    "deeplabv3plus_resnet50": dict(backbone_options=TINY_RESNET, channels=16, low_level_channels=8),
    "deeplabv3plus_mobilenet_v2": dict(backbone_options=dict(alpha=0.35), channels=16, low_level_channels=8),
    "fcn32s_vgg16": dict(fc_width=16), "fcn16s_vgg16": dict(fc_width=16), "fcn8s_vgg16": dict(fc_width=16),
    "fcn_resnet50": dict(backbone_options=TINY_RESNET),
    "unet": dict(width=4),
    "unet_resnet34": dict(backbone_options=TINY_RESNET, decoder_channels=(16, 8, 8, 8)),
    "unet_mobilenet_v2": dict(backbone_options=dict(alpha=0.35), decoder_channels=(16, 8, 8, 8)),
    "pspnet_resnet50": dict(backbone_options=TINY_RESNET, channels=16),
    "semantic_fpn_resnet50": dict(backbone_options=TINY_RESNET, fpn_channels=16, channels=16, groups=4),
}


def tiny(name, **kwargs):
    return catalog.create_model(name, **{**SMALL[name], **kwargs})


def test_every_segmentation_model_has_small_settings():
    assert sorted(SMALL) == SEGMENTERS


@pytest.mark.parametrize("name,aux,expected", [
    ("deeplabv3_resnet50", True, 42_004_074),  # torchvision 0.29, num_classes=21, aux_loss=True
    ("deeplabv3_mobilenet_v3_large", True, 11_029_328),
    ("fcn_resnet50", True, 35_322_218),
])
def test_torchvision_counts_with_aux(name, aux, expected):
    model = catalog.create_model(name, aux=aux)
    assert count_params(model) == expected
    assert sorted(model.output) == ["aux", "logits"]


@pytest.mark.parametrize("name", SEGMENTERS)
@pytest.mark.parametrize("size", [(64, 64), (67, 45)])
def test_logits_at_input_size(name, size):
    model = tiny(name, num_classes=5, input_shape=(*size, 3))
    out = model.predict_on_batch(random_input((*size, 3)))  # in a graph, as predict and fit run it
    assert out.shape == (2, *size, 5)
    assert np.all(np.isfinite(out))
    assert recipe_of(model, name).task == "segmentation"


BACKBONES = {  # name: (width-reduced keywords, last-stage size at 224 for output strides 32, 16, 8)
    "resnet50": (dict(width=8, depths=(1, 2, 2, 2)), (7, 14, 28)),
    "resnet18": (dict(width=8, depths=(1, 1, 1, 1)), (7, 14, 28)),
    "resnet50_v2": (dict(width=8, depths=(1, 2, 2, 2)), (7, 14, 28)),
    "mobilenet_v2": (dict(alpha=0.35), (7, 14, 28)),
    "mobilenet_v3_large": (dict(alpha=0.35), (7, 14, 28)),
    "xception": (dict(middle_blocks=1), (7, 14, 28)),
}


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_output_stride_keeps_parameters_and_sets_the_last_stage_size(name):
    options, sizes = BACKBONES[name]
    options = {**options, "input_shape": (224, 224, 3)}
    base = catalog.create_model(name, features_only=True, **options)
    counts = []
    for output_stride, size in zip((32, 16, 8), sizes):
        model = catalog.create_model(name, features_only=True, output_stride=output_stride, **options)
        assert tuple(model.outputs[-1].shape[1:3]) == (size, size), output_stride
        counts.append(count_params(model))
    assert counts == [count_params(base)] * 3
    full = catalog.create_model(name, output_stride=16, **options)
    assert count_params(full) == count_params(catalog.create_model(name, **options))


def _dilations(model, suffix):
    return {layer.name: layer.dilation_rate[0] for layer in model.layers if layer.name.endswith(suffix)}


def test_resnet_dilation_follows_torchvision():
    # torchvision replace_stride_with_dilation=[False, True, True]: the block that loses its stride keeps the
    # previous dilation, later blocks double it.
    model = catalog.create_model("resnet50", features_only=True, output_stride=8, width=8, depths=(1, 2, 2, 2))
    rates = _dilations(model, "conv2_conv")
    assert [rates[f"stage{s}_block{b}_conv2_conv"] for s, b in ((2, 1), (3, 1), (3, 2), (4, 1), (4, 2))] == \
        [1, 1, 2, 2, 4]
    strides = {layer.name: layer.strides[0] for layer in model.layers if layer.name.endswith("shortcut_conv")}
    assert strides["stage2_block1_shortcut_conv"] == 2
    assert strides["stage3_block1_shortcut_conv"] == strides["stage4_block1_shortcut_conv"] == 1


def test_mobilenet_v3_dilation_follows_torchvision():
    # torchvision mobilenet_v3_large(dilated=True): the last three blocks dilation 2, stride 1.
    model = catalog.create_model("mobilenet_v3_large", features_only=True, output_stride=16, alpha=0.35)
    rates = _dilations(model, "_dw_conv")
    assert [rates[f"block{i}_dw_conv"] for i in (12, 13, 14, 15)] == [1, 2, 2, 2]


def test_output_stride_errors():
    with pytest.raises(ValueError, match="output_stride must be one of 8, 16 or 32"):
        catalog.create_model("resnet18", features_only=True, output_stride=4)
    with pytest.raises(ValueError, match="output_stride"):
        catalog.create_model("vgg16", features_only=True, output_stride=16)
    with pytest.raises(ValueError, match="output_stride 16 needs a backbone with dilation"):
        catalog.create_model("deeplabv3_resnet50", backbone="vgg16", output_stride=16)
    with pytest.raises(ValueError, match="backbone must be a registered classification model"):
        catalog.create_model("fcn_resnet50", backbone="unet")
    with pytest.raises(ValueError, match="backbone_options must not set output_stride"):
        catalog.create_model("pspnet_resnet50", backbone_options=dict(output_stride=16))
    with pytest.raises(ValueError, match="num_classes must be"):
        catalog.create_model("unet", num_classes=0)


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_loss_ignores_the_ignore_label_by_hand():
    logits = np.random.default_rng(0).standard_normal((1, 2, 2, 3)).astype("float32")
    labels = np.array([[[0, 255], [2, 1]]], "int32")
    p = _softmax(logits.astype("float64"))
    scored = [(0, 0, 0), (1, 0, 2), (1, 1, 1)]
    expected = np.mean([-np.log(p[0, i, j, c]) for i, j, c in scored])
    np.testing.assert_allclose(float(SegmentationCrossEntropy()(labels, logits)), expected, rtol=1e-5)
    # The ignored pixel's logits change nothing, and a batch of only ignored pixels gives 0.
    changed = logits.copy()
    changed[0, 0, 1] = [50.0, -50.0, 3.0]
    np.testing.assert_allclose(float(SegmentationCrossEntropy()(labels, changed)), expected, rtol=1e-5)
    assert float(SegmentationCrossEntropy()(np.full_like(labels, 255), logits)) == 0.0
    # Focal: each term times (1 - p_t)^gamma; aux weight scales the whole loss.
    focal = np.sum([-(1 - p[0, i, j, c]) ** 2 * np.log(p[0, i, j, c]) for i, j, c in scored]) / 3
    np.testing.assert_allclose(float(SegmentationCrossEntropy(focal_gamma=2.0)(labels, logits)), focal, rtol=1e-5)
    np.testing.assert_allclose(float(SegmentationCrossEntropy(weight=0.5)(labels[..., None], logits)),
                               0.5 * expected, rtol=1e-5)


def test_dice_term_by_hand():
    logits = np.random.default_rng(1).standard_normal((1, 2, 2, 2)).astype("float32")
    labels = np.array([[[0, 1], [255, 1]]], "int32")
    p = _softmax(logits.astype("float64"))[0].reshape(4, 2)
    truth = np.eye(2)[[0, 1, 0, 1]]
    mask = np.array([1, 1, 0, 1], float)[:, None]
    dice = 1 - np.mean((2 * (p * truth * mask).sum(0) + 1) / ((p * mask).sum(0) + (truth * mask).sum(0) + 1))
    ce = float(SegmentationCrossEntropy()(labels, logits))
    np.testing.assert_allclose(float(SegmentationCrossEntropy(dice_weight=0.7)(labels, logits)), ce + 0.7 * dice,
                               rtol=1e-5)
    with pytest.raises(ValueError, match="dice_weight must be"):
        SegmentationCrossEntropy(dice_weight=-1)


def _stripes(n=8, size=32, seed=0):
    """Images whose class (0, 1, 2) per pixel is which channel is brightest; a border of ignored pixels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, (n, size // 8, size // 8)).repeat(8, 1).repeat(8, 2)
    images = np.eye(3, dtype="float32")[labels] + 0.1 * rng.standard_normal((n, size, size, 3)).astype("float32")
    labels[:, 0] = 255
    return images, labels.astype("int32")


@pytest.mark.parametrize("name,kwargs", [("unet", dict(width=4)),
                                         ("deeplabv3_resnet50", dict(aux=True, **SMALL["deeplabv3_resnet50"])),
                                         ("pspnet_resnet50", SMALL["pspnet_resnet50"])])  # pooling in a graph
def test_recipe_trains_a_few_steps(name, kwargs):
    model = catalog.create_model(name, num_classes=3, input_shape=(32, 32, 3), **kwargs)
    recipe = recipe_of(model, name)
    assert isinstance(recipe, TrainingRecipe) and recipe.task == "segmentation" and recipe.num_classes == 3
    images, labels = _stripes()
    targets = labels if recipe.targets is None else recipe.targets(labels)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=recipe.loss, metrics=list(recipe.metrics))
    history = model.fit(images, targets, batch_size=4, epochs=6, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    if kwargs.get("aux"):
        assert set(recipe.loss) == {"logits", "aux"} and recipe.loss["aux"].weight == 0.5


def test_round_trip_with_aux_dict_output():
    model = tiny("deeplabv3_resnet50", aux=True, num_classes=4, input_shape=(48, 40, 3))
    data = random_input((48, 40, 3))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
    a, b = model(data, training=False), loaded(data, training=False)
    for key in ("logits", "aux"):
        np.testing.assert_allclose(np.asarray(a[key]), np.asarray(b[key]), rtol=1e-5, atol=1e-5)
    loss = SegmentationCrossEntropy(ignore_index=0, dice_weight=0.5, focal_gamma=1.0, weight=0.4)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert (again.ignore_index, again.dice_weight, again.focal_gamma, again.weight) == (0, 0.5, 1.0, 0.4)


@pytest.mark.parametrize("name", ["fcn8s_vgg16", "pspnet_resnet50", "semantic_fpn_resnet50", "unet_resnet34"])
def test_round_trip(name):
    model = tiny(name, num_classes=3, input_shape=(64, 64, 3))
    keras_round_trip(model, random_input((64, 64, 3)))


@pytest.mark.jax
def test_segmentation_models_run_and_train_on_the_backend():
    # run by CI on TensorFlow and again on JAX (KERAS_BACKEND=jax -m jax): a decoder and a pooling head (the
    # others share their blocks), and a fit of DeepLabV3 (ASPP) with its aux head (a dict output)
    labels = np.random.default_rng(0).integers(0, 3, (2, 64, 64))
    for name in ("unet_mobilenet_v2", "pspnet_resnet50"):
        model = tiny(name, num_classes=3, input_shape=(64, 64, 3))
        logits = model(random_input((64, 64, 3)), training=False)
        assert tuple(logits.shape) == (2, 64, 64, 3), name
        assert np.isfinite(float(recipe_of(model, name).loss(labels, logits))), name
    model = tiny("deeplabv3_resnet50", aux=True, num_classes=3, input_shape=(32, 32, 3))
    recipe = recipe_of(model, "deeplabv3_resnet50")
    images, labels = _stripes()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=recipe.loss, metrics=list(recipe.metrics))
    history = model.fit(images, recipe.targets(labels), batch_size=4, epochs=4, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
