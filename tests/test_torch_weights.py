"""torchvision checkpoints into catalog models (catalog.torch_weights).

CI tests need no torch: synthetic state dicts with torchvision's exact key names and shapes
(``torchvision_state_dicts.json`` beside this file, generated once with torchvision 0.29 from
``model.state_dict()`` of one model per family) are written with ``safetensors.numpy`` and loaded through
``create_model(..., weights=path)``. Every catalog weight must then hold the values of exactly one tensor of
the file (BatchNorm variances shifted by the epsilon fold, VGG-BN means by the conv bias), every tensor of
the file must be used, and a table of written-down pairs checks the orientation (OIHW -> HWIO, depthwise,
Linear, the channels-first flatten).

The parity tests (``-m slow``) need torch and torchvision and compare outputs with torchvision's:
``python -m pytest tests/test_torch_weights.py -m slow -s`` in a venv that has both.
"""

import importlib.util
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import save_file

import catalog

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "torchvision_state_dicts.json"), encoding="utf-8") as _f:
    STATE_DICTS = {k: v for k, v in json.load(_f).items() if not k.startswith("_")}

# fixture model: (catalog name, create_model keywords, torchvision's BatchNorm eps, drop the classifier).
# VGG's and AlexNet's classifiers (100M+ / 50M+ values) stay out of CI: those build with include_top=False.
CI = {
    "resnet18": ("resnet18", dict(input_shape=(32, 32, 3)), 1e-5, False),
    "densenet121": ("densenet121", dict(input_shape=(32, 32, 3)), 1e-5, False),
    "vgg16_bn": ("vgg16_bn", dict(include_top=False, input_shape=(32, 32, 3)), 1e-5, True),
    "alexnet": ("alexnet_tv", dict(include_top=False, input_shape=(63, 63, 3)), 1e-5, True),
    "googlenet": ("googlenet", dict(aux_logits=True), 1e-3, False),
    "squeezenet1_1": ("squeezenet1_1", dict(input_shape=(32, 32, 3)), 1e-5, False),
    "mobilenet_v2": ("mobilenet_v2", dict(input_shape=(32, 32, 3)), 1e-5, False),
    "mobilenet_v3_small": ("mobilenet_v3_small", dict(input_shape=(32, 32, 3)), 1e-3, False),
    "shufflenet_v2_x0_5": ("shufflenet_v2_x0_5", dict(input_shape=(32, 32, 3)), 1e-5, False),
    "efficientnet_b0": ("efficientnet_b0", dict(input_shape=(32, 32, 3)), 1e-5, False),
}


def oihw(w):
    return w.transpose(2, 3, 1, 0)


def depthwise(w):
    return w.transpose(2, 3, 0, 1)


def linear(w):
    return w.T


def chw_flatten(c, h, wd):
    """A Linear after torch's (C, H, W) flatten as the Dense after Keras' (H, W, C) flatten."""
    return lambda w: w.reshape(-1, c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1).T


# Written-down pairs: (fixture model, torchvision key, catalog layer, variable, conversion).
PAIRS = [
    ("resnet18", "conv1.weight", "stem_conv", "kernel", oihw),
    ("resnet18", "layer2.0.downsample.0.weight", "stage2_block1_shortcut_conv", "kernel", oihw),
    ("resnet18", "layer4.1.bn2.running_mean", "stage4_block2_conv2_bn", "moving_mean", None),
    ("resnet18", "fc.weight", "head_fc", "kernel", linear),
    ("densenet121", "features.denseblock2.denselayer3.conv2.weight", "block2_layer3_growth_conv", "kernel", oihw),
    ("densenet121", "features.transition3.norm.weight", "transition3_bn", "gamma", None),
    ("densenet121", "classifier.weight", "head_fc", "kernel", linear),
    ("vgg16_bn", "features.40.weight", "stage5_conv3_conv", "kernel", oihw),
    ("alexnet", "features.8.weight", "conv4_conv", "kernel", oihw),
    ("googlenet", "inception4e.branch3.1.conv.weight", "inception4e_branch2_conv2_conv", "kernel", oihw),
    ("googlenet", "inception5b.branch4.1.bn.bias", "inception5b_branch3_conv2_bn", "beta", None),
    ("googlenet", "aux2.fc1.weight", "aux2_fc1", "kernel", chw_flatten(128, 4, 4)),
    ("googlenet", "aux1.fc2.bias", "aux1_fc2", "bias", None),
    ("squeezenet1_1", "features.12.expand3x3.weight", "fire9_expand3x3_conv", "kernel", oihw),
    ("squeezenet1_1", "classifier.1.weight", "head_conv", "kernel", oihw),
    ("mobilenet_v2", "features.1.conv.0.0.weight", "stage1_block1_dw_conv", "kernel", depthwise),
    ("mobilenet_v2", "features.17.conv.2.weight", "stage7_block1_project_conv", "kernel", oihw),
    ("mobilenet_v2", "features.18.0.weight", "head_conv_conv", "kernel", oihw),
    ("mobilenet_v3_small", "features.1.block.1.fc1.weight", "block1_se_reduce", "kernel", oihw),
    ("mobilenet_v3_small", "features.11.block.3.1.bias", "block11_project_bn", "beta", None),
    ("mobilenet_v3_small", "classifier.0.weight", "head_fc1", "kernel", linear),
    ("shufflenet_v2_x0_5", "stage2.0.branch1.0.weight", "stage2_block1_branch1_dw_conv", "kernel", depthwise),
    ("shufflenet_v2_x0_5", "stage4.3.branch2.5.weight", "stage4_block4_branch2_conv2_conv", "kernel", oihw),
    ("efficientnet_b0", "features.6.3.block.2.fc2.weight", "stage6_block4_se_expand", "kernel", oihw),
    ("efficientnet_b0", "features.8.0.weight", "head_conv_conv", "kernel", oihw),
]


def synthetic(model, seed=0, drop=(), classes=None):
    """Random arrays with torchvision's keys and shapes for ``model`` (running variances positive)."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in STATE_DICTS[model].items():
        if key.startswith(drop):
            continue
        if classes and shape and shape[0] == 1000 and key.startswith(("fc.", "classifier.", "aux")):
            shape = [classes, *shape[1:]]
        if key.endswith("num_batches_tracked"):
            out[key] = np.array(7, "int64")
        elif key.endswith("running_var"):
            out[key] = rng.uniform(0.5, 1.5, shape).astype("float32")
        else:
            out[key] = rng.standard_normal(shape).astype("float32")
    return out


def write(tmp_path, tensors, name="model.safetensors"):
    path = str(tmp_path / name)
    save_file(tensors, path)
    return path


def said(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "catalog.weights"]


def fingerprint(array):
    array = np.asarray(array, "float32")
    return array.size, np.sort(array.ravel()).tobytes()


def candidates(tensors, eps_torch):
    """``{fingerprint: keys}`` of every value a catalog weight may hold: a tensor as it is, a running variance
    with the epsilon folded (catalog eps 1e-5 or 1e-3), a running mean less the bias of the conv before it."""
    table = {}
    for key, value in tensors.items():
        if key.endswith("num_batches_tracked"):
            continue
        table[fingerprint(value)] = (key,)
        if key.endswith("running_var"):
            for eps in (1e-5, 1e-3):
                table[fingerprint((value.astype("float64") + eps_torch - eps).astype("float32"))] = (key,)
        if key.endswith("running_mean"):  # torchvision VGG-BN: conv at features.i, BatchNorm at features.i+1
            head, _, index = key[:-len(".running_mean")].rpartition(".")
            bias = f"{head}.{int(index) - 1}.bias" if index.isdigit() else None
            if bias in tensors:
                folded = (value.astype("float64") - tensors[bias]).astype("float32")
                table[fingerprint(folded)] = (key, bias)
    return table


@pytest.mark.parametrize("fixture", list(CI))
def test_every_weight_comes_from_one_tensor_and_every_tensor_is_used(tmp_path, fixture):
    name, kwargs, eps_torch, drop_head = CI[fixture]
    tensors = synthetic(fixture, drop=("classifier.",) if drop_head else ())
    model = catalog.create_model(name, weights=write(tmp_path, tensors), **kwargs)
    table = candidates(tensors, eps_torch)
    used = set()
    for layer in model.layers:
        for w in layer.weights:
            keys = table.get(fingerprint(w.numpy()))
            assert keys, f"{w.path} holds no tensor of the file"
            used.update(keys)
    left = {k for k in tensors if not k.endswith("num_batches_tracked")} - used
    assert not left, sorted(left)[:5]
    for model_key, key, layer_name, var, convert in PAIRS:
        if model_key == fixture:
            got = {w.name: w.numpy() for w in model.get_layer(layer_name).weights}[var]
            np.testing.assert_array_equal(got, convert(tensors[key]) if convert else tensors[key])


def test_epsilon_and_conv_bias_fold_exactly(tmp_path):
    tensors = synthetic("vgg16_bn", drop=("classifier.",))
    model = catalog.create_model("vgg16_bn", weights=write(tmp_path, tensors), include_top=False,
                                 input_shape=(32, 32, 3))
    bn = model.get_layer("stage5_conv3_bn")
    folded = tensors["features.41.running_mean"] - tensors["features.40.bias"]
    np.testing.assert_allclose(bn.moving_mean.numpy(), folded, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy() + bn.epsilon, tensors["features.41.running_var"] + 1e-5,
                               rtol=1e-6)
    tensors = synthetic("mobilenet_v2")  # torchvision eps 1e-5, the catalog's 1e-3
    model = catalog.create_model("mobilenet_v2", weights=write(tmp_path, tensors), input_shape=(32, 32, 3))
    bn = model.get_layer("stem_bn")
    assert bn.epsilon == pytest.approx(1e-3)
    np.testing.assert_allclose(bn.moving_variance.numpy() + bn.epsilon, tensors["features.0.1.running_var"] + 1e-5,
                               rtol=1e-6)


@pytest.mark.jax
def test_new_head_skips_only_the_classifier_and_says_so(tmp_path, caplog):
    tensors = synthetic("resnet18")
    with caplog.at_level(logging.INFO, logger="catalog.weights"):
        model = catalog.create_model("resnet18", weights=write(tmp_path, tensors), num_classes=5,
                                     input_shape=(32, 32, 3))
    assert said(caplog) == ["head_fc: 1000 -> 5 classes, not loaded"]
    assert model.output.shape[-1] == 5
    np.testing.assert_array_equal(model.get_layer("stem_conv").kernel.numpy(), oihw(tensors["conv1.weight"]))


def test_squeezenet_and_googlenet_heads_skip_by_their_own_classifiers(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="catalog.weights"):
        catalog.create_model("squeezenet1_1", weights=write(tmp_path, synthetic("squeezenet1_1")), num_classes=3,
                             input_shape=(32, 32, 3))
        catalog.create_model("googlenet", weights=write(tmp_path, synthetic("googlenet"), "g.safetensors"),
                             num_classes=3, aux_logits=True)
    lines = said(caplog)
    assert "head_conv: 1000 -> 3 classes, not loaded" in lines
    for layer in ("head_fc", "aux1_fc2", "aux2_fc2"):
        assert f"{layer}: 1000 -> 3 classes, not loaded" in lines


def test_without_num_classes_the_files_classes_are_built(tmp_path, caplog):
    tensors = synthetic("shufflenet_v2_x0_5", classes=10)
    with caplog.at_level(logging.INFO, logger="catalog.weights"):
        model = catalog.create_model("shufflenet_v2_x0_5", weights=write(tmp_path, tensors), input_shape=(32, 32, 3))
    assert model.output.shape[-1] == 10
    assert said(caplog) == ["head_fc: the file's classifier has 10 classes; building num_classes=10."]
    np.testing.assert_array_equal(model.get_layer("head_fc").kernel.numpy(), tensors["fc.weight"].T)


def test_include_top_false_and_features_only_skip_what_they_lack(tmp_path, caplog):
    path = write(tmp_path, synthetic("resnet18"))
    with caplog.at_level(logging.INFO, logger="catalog.weights"):
        catalog.create_model("resnet18", weights=path, include_top=False, input_shape=(32, 32, 3))
    assert said(caplog) == ["head_fc: not loaded (include_top=False)"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="catalog.weights"):
        model = catalog.create_model("resnet18", weights=path, features_only=True, out_indices=(0, 1),
                                     input_shape=(32, 32, 3))
    assert len(model.outputs) == 2
    assert said(caplog) == ["head_fc: not loaded (features_only=True)",
                            "30 layers after the last requested feature map (stage2_block1_conv1_conv, ...): "
                            "not loaded (features_only=True)"]


def test_googlenet_aux_heads_are_skipped_unless_asked_for(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="catalog.weights"):
        model = catalog.create_model("googlenet", weights=write(tmp_path, synthetic("googlenet")),
                                     input_shape=(96, 96, 3))
    lines = said(caplog)
    assert lines[0] == ("googlenet: building torchvision's layout for model.safetensors (layout='torchvision').")
    assert lines[1].startswith("googlenet: transform_input=False (torchvision's googlenet(weights=None)); ")
    assert lines[2].startswith("aux1, aux2: torchvision's auxiliary classifiers (training only), not loaded")
    assert len(model.outputs) == 1


def test_layout_knobs_build_torchvision_layouts_with_unchanged_parameters():
    for name, knob in (("mobilenet_v2", dict(padding="symmetric")), ("efficientnet_b0", dict(padding="symmetric")),
                       ("mobilenet_v3_small", dict(padding="same"))):
        default = catalog.create_model(name, input_shape=(64, 64, 3))
        other = catalog.create_model(name, input_shape=(64, 64, 3), **knob)
        assert default.count_params() == other.count_params()
        padded = other if knob["padding"] == "symmetric" else default
        assert any(layer.name == "stem_pad" for layer in padded.layers)
    tv = catalog.create_model("googlenet", layout="torchvision", transform_input=True)
    assert sum(int(np.prod(w.shape)) for w in tv.trainable_weights) == 6_624_904  # torchvision googlenet
    x = np.random.default_rng(0).standard_normal((1, 8, 8, 3)).astype("float32")
    scale = tv.get_layer("transform_input")
    expected = x * (np.array([0.229, 0.224, 0.225]) / 0.5) + (np.array([0.485, 0.456, 0.406]) - 0.5) / 0.5
    np.testing.assert_allclose(scale(x), expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="layout must be one of paper, torchvision"):
        catalog.create_model("googlenet", layout="tf")
    with pytest.raises(ValueError, match="padding must be"):
        catalog.create_model("mobilenet_v2", padding="valid")


@pytest.mark.jax
def test_rgb_file_into_a_grayscale_model_sums_the_first_kernel(tmp_path, caplog):
    tensors = synthetic("resnet18")
    with caplog.at_level(logging.INFO, logger="catalog.weights"):
        model = catalog.create_model("resnet18", weights=write(tmp_path, tensors), input_shape=(32, 32, 1))
    assert "stem_conv: weights for 3 input channels adapted to 1 (summed over the channels)" in said(caplog)
    np.testing.assert_allclose(model.get_layer("stem_conv").kernel.numpy(),
                               oihw(tensors["conv1.weight"]).sum(axis=2, keepdims=True), rtol=1e-6)


def test_file_of_another_architecture_names_the_layer_and_the_shapes(tmp_path):
    path = write(tmp_path, synthetic("shufflenet_v2_x0_5"))
    with pytest.raises(ValueError, match=r"does not fit shufflenet_v2_x1_0: layer stage2_block1_branch2_conv1_conv "
                                         r"expects kernel \(1, 1, 24, 58\) but the file holds \(1, 1, 24, 24\) in "
                                         r"Keras' layout \(stage2\.0\.branch2\.0\.weight \(24, 24, 1, 1\)\)\.$"):
        catalog.create_model("shufflenet_v2_x1_0", weights=path, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match=r"does not fit resnet34: layer stage1_block3_conv1_conv "
                                         r"\[\(3, 3, 64, 64\)\] has no counterpart in the file"):
        catalog.create_model("resnet34", weights=write(tmp_path, synthetic("resnet18"), "r18.safetensors"),
                             input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match=r"does not fit resnet18: layer stem_conv \[\(7, 7, 3, 64\)\] has no "
                                         r"counterpart in the file; the file's first unmatched module is "):
        catalog.create_model("resnet18", weights=path, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match=r"xception \(family xception\) has no torchvision counterpart"):
        catalog.create_model("xception", weights=path)


def test_a_tensor_left_over_in_the_file_is_an_error(tmp_path):
    tensors = synthetic("squeezenet1_1")
    tensors["features.12.extra.weight"] = np.ones((4, 4), "float32")
    with pytest.raises(ValueError, match=r"the file's module features\.12\.extra \[\(4, 4\)\] is left over"):
        catalog.create_model("squeezenet1_1", weights=write(tmp_path, tensors), input_shape=(32, 32, 3))


def test_flattening_head_at_another_input_size_says_why(tmp_path):
    tensors = synthetic("alexnet", drop=("classifier.",))
    tensors.update({"classifier.1.weight": np.zeros((10, 9), "float32"),
                    "classifier.1.bias": np.zeros(10, "float32")})
    with pytest.raises(ValueError, match=r"layer head_fc1 expects kernel \(2304, 4096\) .* it takes the flattened "
                                         r"3x3x256 map of this input size"):
        catalog.create_model("alexnet_tv", weights=write(tmp_path, tensors), input_shape=(127, 127, 3))


def test_truncated_and_corrupt_files_fail_in_one_sentence(tmp_path):
    path = write(tmp_path, synthetic("squeezenet1_1"))
    with open(path, "rb") as f:
        data = f.read()
    for name, content in (("cut.safetensors", data[: len(data) // 2]), ("junk.safetensors", b"not a file at all")):
        bad = tmp_path / name
        bad.write_bytes(content)
        with pytest.raises(ValueError) as err:
            catalog.create_model("squeezenet1_1", weights=str(bad))
        message = str(err.value)
        assert message.startswith(f"weights file {bad} is not a readable safetensors file (")
        assert message.endswith(").") and "\n" not in message


def test_pth_without_torch_names_the_missing_package(tmp_path, monkeypatch):
    path = tmp_path / "model.pth"
    path.write_bytes(b"PK\x03\x04 not read")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError, torch installed or not
    with pytest.raises(ValueError, match=r"is a PyTorch checkpoint, which needs the package torch to read"):
        catalog.create_model("resnet18", weights=str(path))


# ------------------------------------------------------------------------------ parity (slow, torch)

# (torchvision builder, its keywords, catalog name, catalog keywords, input size): one or more per family.
PARITY = [
    ("resnet18", {}, "resnet18", {}, 224),
    ("resnet50", {}, "resnet50", {}, 224),
    ("resnext50_32x4d", {}, "resnext50_32x4d", {}, 160),
    ("densenet121", {}, "densenet121", {}, 224),
    ("vgg16", {}, "vgg16", {}, 224),
    ("vgg16_bn", {}, "vgg16_bn", {}, 224),
    ("alexnet", {}, "alexnet_tv", {}, 224),
    ("googlenet", {"init_weights": True}, "googlenet", {}, 224),
    ("googlenet", {"init_weights": True, "transform_input": True}, "googlenet",
     {"transform_input": True, "aux_logits": True}, 224),
    ("googlenet", {"init_weights": True}, "googlenet", {}, 200),  # odd maps: PyTorch's ceil_mode pools
    ("squeezenet1_0", {}, "squeezenet1_0", {}, 224),
    ("squeezenet1_1", {}, "squeezenet1_1", {}, 224),
    ("mobilenet_v2", {}, "mobilenet_v2", {}, 224),
    ("mobilenet_v3_large", {}, "mobilenet_v3_large", {}, 224),
    ("mobilenet_v3_small", {}, "mobilenet_v3_small", {}, 224),
    ("shufflenet_v2_x1_0", {}, "shufflenet_v2_x1_0", {}, 224),
    ("efficientnet_b0", {}, "efficientnet_b0", {}, 224),
]
TORCH_REASON = ("torch and torchvision are not installed (the project does not depend on them); run the parity tests "
                "in a venv that has them: python -m pytest tests/test_torch_weights.py -m slow -s")

# The torchvision side runs in a child process: importing torchvision into a process that already imported
# TensorFlow crashes (their native libraries clash), and conftest imports Keras first.
TORCH_SIDE = """
import json, sys
import numpy as np, torch, torchvision
from safetensors.torch import save_file
args = json.loads(sys.argv[1])
torch.manual_seed(0)
model = getattr(torchvision.models, args["builder"])(weights=None, **args["kwargs"])
size = args["size"]
with torch.no_grad():  # random gammas, betas and biases, so every weight matters to the output
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.uniform_(0.5, 1.5)
            module.bias.uniform_(-0.5, 0.5)
            module.reset_running_stats()
            module.momentum = None  # cumulative: the running stats become the calibration batches' stats
        elif isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and module.bias is not None:
            module.bias.uniform_(-0.1, 0.1)
    model.train()  # BatchNorm statistics of real activations, so the logits depend on the input
    for _ in range(2):
        model(torch.randn(4, 3, size, size))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.mul_(torch.empty_like(module.running_var).uniform_(0.8, 1.25))
model.eval()
x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    y = model(x)
state = {k: v.contiguous() for k, v in model.state_dict().items()}
out = args["out"]
save_file(state, out + ".safetensors")
torch.save(state, out + "_plain.pth")
torch.save({"state_dict": state, "epoch": 3}, out + "_wrapped.pth")
torch.save({"model": {"module." + k: v for k, v in state.items()}}, out + "_parallel.pt")
np.savez(out + ".npz", x=x.numpy().transpose(0, 2, 3, 1), y=y.numpy())
"""


def torchvision_files(tmp_path, builder, kwargs, size):
    """A random torchvision model's state dict (.safetensors, and .pth plain / wrapped / "module."-prefixed),
    an NHWC input and torchvision's logits for it, written by a child process."""
    for package in ("torch", "torchvision"):
        if importlib.util.find_spec(package) is None:
            pytest.skip(TORCH_REASON)
    out = str(tmp_path / builder)
    done = subprocess.run([sys.executable, "-c", TORCH_SIDE, json.dumps(dict(builder=builder, kwargs=kwargs,
                                                                             size=size, out=out))],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    data = np.load(out + ".npz")
    return out, data["x"], data["y"]


@pytest.mark.slow
@pytest.mark.parametrize("builder,tv_kwargs,name,kwargs,size", PARITY,
                         ids=[f"{p[0]}-{p[4]}{'-tf' if 'transform_input' in p[1] else ''}" for p in PARITY])
def test_torchvision_checkpoint_gives_torchvision_outputs(tmp_path, builder, tv_kwargs, name, kwargs, size):
    out, x, expected = torchvision_files(tmp_path, builder, tv_kwargs, size)
    model = catalog.create_model(name, weights=out + ".safetensors", input_shape=(size, size, 3),
                                 classifier_activation=None, **kwargs)
    got = model.predict(x, verbose=0)
    got = got[0] if isinstance(got, list) else got
    diff, scale = float(np.abs(got - expected).max()), float(np.abs(expected).max())
    # The logits of two inputs differ by 10x the tolerance or more, so a wrongly mapped weight cannot hide in it.
    spread = float(np.abs(expected[0] - expected[1]).max())
    print(f"\nPARITY {builder} -> {name} at {size}: max abs diff {diff:.3g}, output scale {scale:.3g}, "
          f"between-input spread {spread:.3g}")
    assert spread >= 10 * 1e-4 * scale, (spread, scale)
    assert diff <= 1e-4 * scale, (diff, scale)


@pytest.mark.slow
def test_pth_files_with_a_wrapped_or_prefixed_state_dict_load(tmp_path):
    out, x, expected = torchvision_files(tmp_path, "shufflenet_v2_x0_5", {}, 64)
    for suffix in ("_plain.pth", "_wrapped.pth", "_parallel.pt"):
        model = catalog.create_model("shufflenet_v2_x0_5", weights=out + suffix, input_shape=(64, 64, 3),
                                     classifier_activation=None)
        np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-4 * float(np.abs(expected).max()))
