"""Initialization as the references do it: He-normal fan-out convolutions (torchvision), BatchNorm 1/0,
``zero_init_residual``, and the classifier-head rule of :mod:`catalog.models.classifier`; the selectable
convolution rules (``create_model(initializer=...)``) with PyTorch's fans, and each family's rule on its card.

Backend-independent; the cheap cases also run under JAX (``jax`` mark), where every new weight shape
compiles its initializer, so the larger builds stay TensorFlow-only.
"""

import math
import re

import keras
import numpy as np
import pytest

import catalog
from catalog.blocks.layers import INITIALIZERS, conv_initializer, depthwise_initializer, init_defaults
from catalog.models.classifier import HEAD_INITS, head_initializers
from catalog.registry import FAMILY_INITIALIZATION, get_entry, shipped_cards

JAX = pytest.mark.jax

SMALL = dict(input_shape=(32, 32, 3), num_classes=10)
REDUCED = dict(width=16, depths=(1, 1, 1, 1), **SMALL)  # a ResNet-50-layout net of four bottlenecks
XCEPTION = dict(input_shape=(71, 71, 3), num_classes=10)
RESIDUAL_FAMILIES = {"resnet", "resnet_v2", "resnet_cifar", "senet", "cbam", "octresnet", "nonlocal", "sknet"}


def _weights(model):
    """{"layer/weight": numpy array} of every weight of ``model``."""
    return {f"{layer.name}/{w.name}": np.asarray(w) for layer in model.layers for w in layer.weights}


def _std_close(values, expected, sigmas=6.0):
    """The sample std of ``values`` equals ``expected`` within ``sigmas`` standard errors (+1%)."""
    tolerance = sigmas * 0.5 / math.sqrt(values.size) + 0.01  # std error of a std: <= 0.5/sqrt(n) relative
    return abs(values.std() / expected - 1) < tolerance


@pytest.mark.parametrize("name, kwargs, layer, attr, torch_fan_out", [
    # regular 3x3 conv, torch weight (64, 64, 3, 3): fan_out = 64 * 9
    pytest.param("resnet20", {}, "stage3_block2_conv1_conv", "kernel", 64 * 9, marks=JAX),
    # grouped 3x3 (32 groups), torch weight (256, 8, 3, 3): fan_out = 256 * 9 (PyTorch's fan ignores groups)
    pytest.param("resnext50_32x4d", REDUCED, "stage4_block1_conv2_conv", "kernel", 256 * 9, marks=JAX),
    # depthwise 3x3 on 960 channels, torch weight (960, 1, 3, 3): fan_out = 960 * 9, not Keras' 1 * 9
    ("mobilenet_v2", SMALL, "stage6_block2_dw_conv", "kernel", 960 * 9),
    # separable: depthwise (1536, 1, 3, 3) and pointwise (2048, 1536, 1, 1)
    ("xception", XCEPTION, "block14_sep2_conv", "depthwise_kernel", 1536 * 9),
    ("xception", XCEPTION, "block14_sep2_conv", "pointwise_kernel", 2048),
])
def test_conv_kernels_are_he_normal_fan_out_as_torch(name, kwargs, layer, attr, torch_fan_out):
    kernel = np.asarray(getattr(catalog.create_model(name, **kwargs).get_layer(layer), attr))
    assert kernel.size >= 8_000  # wide enough for a 6-sigma tolerance of about 4%
    assert abs(kernel.mean()) < 6 * kernel.std() / math.sqrt(kernel.size)
    assert _std_close(kernel, math.sqrt(2.0 / torch_fan_out)), (kernel.std(), math.sqrt(2.0 / torch_fan_out))


def _is_head(layer):
    return isinstance(layer, keras.layers.Dense) or layer.name in ("head_fc", "head_conv")


@pytest.mark.parametrize("name, kwargs", [
    pytest.param("resnet20", {}, marks=JAX), ("cbam_resnet50", REDUCED), ("oct_resnet50", REDUCED), ("dpn68", SMALL),
    ("mobilenet_v3_small", SMALL), ("xception", XCEPTION), ("lenet5", {}), ("nin_cifar", {}),
])
def test_every_convolution_uses_the_one_rule(name, kwargs):
    """Direct Conv2D uses (attention, octave, DPN, LeNet) go through catalog.blocks.layers too."""
    model = catalog.create_model(name, **kwargs)
    checked = 0
    for layer in model.layers:
        convs = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)
        if not isinstance(layer, convs) or _is_head(layer):
            continue
        inits = {"kernel_initializer": ("fan_out", 2.0)}
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            inits = {"depthwise_initializer": ("fan_in", 2.0 / layer.depth_multiplier)}
        elif isinstance(layer, keras.layers.SeparableConv2D):
            inits = {"depthwise_initializer": ("fan_in", 2.0 / layer.depth_multiplier),
                     "pointwise_initializer": ("fan_out", 2.0)}
        for attr, (mode, scale) in inits.items():
            init = getattr(layer, attr)
            assert isinstance(init, keras.initializers.VarianceScaling), (layer.name, attr, init)
            assert (init.mode, init.scale, init.distribution) == (mode, scale, "untruncated_normal"), layer.name
        checked += 1
    assert checked > 0
    if name in ("mobilenet_v3_small", "xception"):
        assert any(isinstance(layer, convs[1:]) for layer in model.layers)


@JAX
def test_layers_of_one_shape_do_not_share_values():
    """Each layer gets its own initializer (a shared Keras initializer keeps its seed and repeats itself)."""
    weights = _weights(catalog.create_model("resnet20"))
    assert not np.array_equal(weights["stage1_block1_conv1_conv/kernel"], weights["stage1_block1_conv2_conv/kernel"])


@pytest.mark.parametrize("name, kwargs", [pytest.param("resnet20", {}, marks=JAX), ("mobilenet_v3_small", SMALL),
                                          ("se_resnet50", REDUCED)])
def test_batch_norm_starts_as_identity_affine(name, kwargs):
    model = catalog.create_model(name, **kwargs)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms
    for layer in norms:
        np.testing.assert_array_equal(np.asarray(layer.gamma), 1.0, err_msg=layer.name)
        np.testing.assert_array_equal(np.asarray(layer.beta), 0.0, err_msg=layer.name)
        np.testing.assert_array_equal(np.asarray(layer.moving_mean), 0.0, err_msg=layer.name)
        np.testing.assert_array_equal(np.asarray(layer.moving_variance), 1.0, err_msg=layer.name)


@pytest.mark.parametrize("name, kwargs, zeroed", [
    pytest.param("resnet20", {}, r"stage[123]_block[123]_conv2_bn/gamma", marks=JAX),   # basic: 9 blocks
    pytest.param("resnet50", REDUCED, r"stage[1-4]_block1_conv3_bn/gamma", marks=JAX),    # bottleneck: 4 blocks
    ("resnext50_32x4d", REDUCED, r"stage[1-4]_block1_conv3_bn/gamma"),               # grouped bottleneck
    ("se_resnet50", REDUCED, r"stage[1-4]_block1_conv3_bn/gamma"),                   # before the SE module
    ("oct_resnet50", REDUCED, r"stage[1-4]_block1_conv3_(high|low)_bn/gamma"),       # both frequencies
    ("preact_resnet18", dict(width=8), r"stage[1-4]_block[12]_conv2_conv/kernel"),   # no BN after the last conv
    ("resnet50_v2", REDUCED, r"stage[1-4]_block1_conv3_conv/kernel"),                # (its bias is 0 anyway)
])
def test_zero_init_residual_zeros_exactly_the_end_of_each_residual_branch(name, kwargs, zeroed):
    default = _weights(catalog.create_model(name, **kwargs))
    zero_init = _weights(catalog.create_model(name, zero_init_residual=True, **kwargs))
    assert default.keys() == zero_init.keys()
    expected = {key for key in zero_init if re.fullmatch(zeroed, key)}
    changed = {key for key, w in zero_init.items() if w.any() != default[key].any()}  # zero in one build only
    assert expected and changed == expected
    assert not any(zero_init[key].any() for key in expected)


@JAX
def test_zero_init_residual_is_a_keyword_of_the_residual_families_only():
    for name in catalog.list_models():
        accepted = "zero_init_residual" in catalog.registry.accepted_kwargs(name)
        assert accepted == (get_entry(name).family in RESIDUAL_FAMILIES), name


@JAX
def test_zero_init_residual_must_be_a_bool():
    with pytest.raises(ValueError, match="zero_init_residual must be True or False"):
        catalog.create_model("resnet20", zero_init_residual="yes")


def _images(n=128, seed=0):
    """Uniform random pixels normalized with the ImageNet mean and std, as "torch" preprocessing does."""
    pixels = np.random.default_rng(seed).uniform(0.0, 1.0, (n, 32, 32, 3))
    return ((pixels - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).astype("float32")


def _cross_entropy(probabilities, labels):
    return float(-np.log(np.asarray(probabilities, dtype="float64")[np.arange(len(labels)), labels]).mean())


@JAX
def test_untrained_resnet20_starts_near_ln10():
    """Train-mode BatchNorm (batch statistics, as the first step of fit sees them); random labels.

    With zero_init_residual every block starts as the identity, the pooled features are small (mean square
    about 0.04 against 2), and the loss is ln(10) within a few hundredths. With the default init the head's
    random draw shifts it: over head draws (this model's features, the rule's U(+-1/8) head) the expected
    excess is about 0.29 (95th percentile 0.6, 99.9th 1.2), so one model is only checked within 1.0;
    glorot_uniform's wider head (+-0.28) would give about 1 on average.
    """
    x, labels = _images(), np.random.default_rng(1).integers(0, 10, 128)
    zero_init = catalog.create_model("resnet20", zero_init_residual=True)
    assert abs(_cross_entropy(zero_init(x, training=True), labels) - math.log(10)) < 0.35

    model = catalog.create_model("resnet20")
    assert abs(_cross_entropy(model(x, training=True), labels) - math.log(10)) < 1.0
    features = np.asarray(keras.Model(model.input, model.get_layer("head_pool").output)(x, training=True))
    rng = np.random.default_rng(2)

    def expected_excess(bound, bias_bound, draws=200):
        excess = []
        for _ in range(draws):
            logits = features @ rng.uniform(-bound, bound, (64, 10)) + rng.uniform(-bias_bound, bias_bound, 10)
            top = logits.max(axis=1, keepdims=True)
            probabilities = np.exp(logits - top) / np.exp(logits - top).sum(axis=1, keepdims=True)
            excess.append(_cross_entropy(probabilities, labels) - math.log(10))
        return np.mean(excess)

    assert expected_excess(1 / 8, 1 / 8) < 0.35                   # the rule: PyTorch's nn.Linear default
    assert expected_excess(math.sqrt(6 / (64 + 10)), 0.0) > 0.35  # Keras' glorot_uniform, zero bias


def _check_head_layer(layer, init):
    kernel, bias = np.asarray(layer.kernel), np.asarray(layer.bias)
    fan_in, fan_out = int(np.prod(kernel.shape[:-1])), kernel.shape[-1]
    kind, bias_kind = HEAD_INITS[init]
    if kind == "normal":
        assert _std_close(kernel, 0.01), (layer.name, kernel.std())
    else:
        bound = 1 / math.sqrt(fan_in if kind == "fan_in" else fan_out)
        assert np.abs(kernel).max() <= bound, layer.name
        assert _std_close(kernel, bound / math.sqrt(3)), (layer.name, kernel.std(), bound / math.sqrt(3))
    if bias_kind == "zeros":
        assert not bias.any(), layer.name
    else:
        assert np.abs(bias).max() <= 1 / math.sqrt(fan_in) and bias.any(), layer.name


@pytest.mark.parametrize("name, kwargs, head_layers, init", [
    ("resnet50", dict(REDUCED, num_classes=1000), ["head_fc"], "torch"),       # the rule, 128 x 1000
    pytest.param("resnet20", {}, ["head_fc"], "torch", marks=JAX),
    ("lenet5", {}, ["f6_fc", "head_fc"], "torch"),
    ("mobilenet_v1", SMALL, ["head_fc"], "torch"),                            # a 1x1 conv classifier
    ("nin_cifar", {}, ["head_conv"], "torch"),
    ("densenet121", SMALL, ["head_fc"], "torch_zero_bias"),
    ("vgg11", SMALL, ["head_fc1", "head_fc2", "head_fc"], "normal"),
    ("mobilenet_v3_small", SMALL, ["head_fc1", "head_fc"], "normal"),
    ("squeezenet1_1", dict(input_shape=(32, 32, 3)), ["head_conv"], "normal"),
    ("googlenet", dict(aux_logits=True), ["head_fc", "aux1_fc1", "aux1_fc2", "aux2_fc1", "aux2_fc2"],
     "normal_torch_bias"),
    ("efficientnet_b0", dict(input_shape=(32, 32, 3)), ["head_fc"], "fan_out"),
])
def test_heads_follow_the_documented_rule(name, kwargs, head_layers, init):
    model = catalog.create_model(name, **kwargs)
    for layer in head_layers:
        _check_head_layer(model.get_layer(layer), init)


@JAX
def test_head_initializers_reject_an_unknown_rule():
    with pytest.raises(ValueError, match="init must be one of"):
        head_initializers("glorot", 64)


def _torch_rule(rule):
    """(variance scale, PyTorch fan mode, distribution) read off the rule's name, as the texts define them:
    He 2/fan, Glorot 2/(fan_in + fan_out) = 1/fan_avg, LeCun 1/fan_in."""
    family, distribution = rule.split("_")[:2]
    mode = {"he": "fan_" + rule.rsplit("_", 1)[-1], "glorot": "fan_avg", "lecun": "fan_in"}[family]
    return {"he": 2.0, "glorot": 1.0, "lecun": 1.0}[family], mode, distribution


def _check_distribution(values, rule, fans):
    scale, mode, distribution = _torch_rule(rule)
    fan = {"fan_in": fans[0], "fan_out": fans[1], "fan_avg": (fans[0] + fans[1]) / 2}[mode]
    std = math.sqrt(scale / fan)
    assert _std_close(values, std), (rule, values.std(), std)
    if distribution == "uniform":
        assert np.abs(values).max() <= std * math.sqrt(3)
    else:  # untruncated, as PyTorch's: about 4.6% of the draws lie beyond two standard deviations
        assert np.mean(np.abs(values) > 2 * std) > 0.03, rule


@JAX
@pytest.mark.parametrize("rule", INITIALIZERS)
def test_every_rule_uses_pytorchs_fans(rule):
    # regular 3x3 conv 64 -> 96, torch weight (96, 64, 3, 3): fan_in 64 * 9, fan_out 96 * 9
    _check_distribution(np.asarray(conv_initializer(rule)((3, 3, 64, 96))), rule, (64 * 9, 96 * 9))
    # depthwise 3x3 on 1024 channels, torch weight (1024, 1, 3, 3): fan_in 9, fan_out 1024 * 9
    _check_distribution(np.asarray(depthwise_initializer(1, rule)((3, 3, 1024, 1))), rule, (9, 1024 * 9))
    if not rule.startswith("glorot"):  # multiplier 2: torch weight (1024, 1, 3, 3) from 512 channels
        _check_distribution(np.asarray(depthwise_initializer(2, rule)((3, 3, 512, 2))), rule, (9, 1024 * 9))


@JAX
def test_init_defaults_is_scoped_and_counts_the_kernels():
    with init_defaults("lecun_uniform") as inits:
        inner = conv_initializer()
        conv_initializer("he_normal_fan_in")  # an explicit rule is not the selection's
    assert (inner.scale, inner.mode, inner.distribution) == (1.0, "fan_in", "uniform")
    assert inits == {"rule": "lecun_uniform", "kernels": 1}
    outer = conv_initializer()
    assert (outer.scale, outer.mode, outer.distribution) == (2.0, "fan_out", "untruncated_normal")
    with init_defaults() as outer:
        with init_defaults() as inner:  # equal records: leaving the inner block must not drop the outer one
            pass
        conv_initializer()
    assert (outer["kernels"], inner["kernels"]) == (1, 0)
    with pytest.raises(ValueError, match="initializer must be one of he_normal_fan_out, .*lecun_uniform; got 'xavier'"):
        init_defaults("xavier").__enter__()


def _conv_inits(model):
    """{layer/attr: (scale, mode, distribution)} of every non-head convolution kernel of ``model``."""
    found = {}
    for layer in model.layers:
        if _is_head(layer):
            continue
        for attr in ("kernel_initializer", "depthwise_initializer", "pointwise_initializer"):
            init = getattr(layer, attr, None)
            if isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D) and init is not None:
                found[f"{layer.name}/{attr}"] = (init.scale, init.mode, init.distribution)
    return found


@pytest.mark.parametrize("name, kwargs, rule, regular, depthwise", [
    pytest.param("resnet20", {}, "glorot_uniform", (1.0, "fan_avg", "uniform"), None, marks=JAX),
    ("mobilenet_v2", SMALL, "lecun_normal", (1.0, "fan_in", "untruncated_normal"),
     (1.0, "fan_out", "untruncated_normal")),  # torch's fan_in kh*kw is Keras' fan_out for a multiplier of 1
])
def test_create_model_initializer_reaches_every_convolution_and_no_head(name, kwargs, rule, regular, depthwise):
    default = catalog.create_model(name, **kwargs)
    model = catalog.create_model(name, initializer=rule, **kwargs)
    inits = _conv_inits(model)
    assert inits.keys() == _conv_inits(default).keys() and len(inits) > 10
    assert {v for k, v in inits.items() if "depthwise" not in k} == {regular}
    assert {v for k, v in inits.items() if "depthwise" in k} == ({depthwise} if depthwise else set())
    head, default_head = model.get_layer("head_fc"), default.get_layer("head_fc")
    assert head.kernel_initializer.get_config() == default_head.kernel_initializer.get_config()
    if name == "resnet20":  # the std of one kernel: torch weight (64, 64, 3, 3), Glorot limit sqrt(6 / (2 * 576))
        _check_distribution(np.asarray(model.get_layer("stage3_block2_conv1_conv").kernel), rule, (576, 576))


@JAX
def test_cards_name_each_familys_initialization():
    assert FAMILY_INITIALIZATION == {"srcnn": "glorot_uniform", "espcn": "glorot_uniform", "edsr": "glorot_uniform",
                                     "dcgan": "normal_0.02"}
    cards = shipped_cards()
    for name in catalog.list_models():
        entry = get_entry(name)
        assert entry.initialization == FAMILY_INITIALIZATION.get(entry.family, "he_normal_fan_out"), name
        if name in cards:
            assert cards[name]["initialization"] == entry.initialization, name
    assert catalog.model_info("resnet50").initialization == "he_normal_fan_out"


@pytest.mark.parametrize("name, layer, expected", [
    ("srcnn_915", "conv1", keras.initializers.GlorotUniform), ("espcn", "conv1", keras.initializers.GlorotUniform),
    ("edsr_baseline_x2", "head_conv", keras.initializers.GlorotUniform),
    ("dcgan_generator", "up1_conv", keras.initializers.RandomNormal),
])
def test_the_named_rules_are_the_ones_the_code_uses(name, layer, expected):
    model = catalog.create_model(name)
    init = model.get_layer(layer).kernel_initializer
    assert type(init) is expected
    if expected is keras.initializers.RandomNormal:
        assert (init.mean, init.stddev) == (0.0, 0.02)
    with pytest.raises(ValueError, match=f"initializer='he_normal_fan_in' cannot be applied to {name}: its "
                                         f"convolutions use its own rule \\({get_entry(name).initialization}\\)"):
        catalog.create_model(name, initializer="he_normal_fan_in")


@JAX
def test_create_model_rejects_an_unknown_initializer():
    with pytest.raises(ValueError, match="initializer must be one of he_normal_fan_out, he_normal_fan_in"):
        catalog.create_model("resnet20", initializer="kaiming")
