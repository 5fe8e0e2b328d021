"""DenseNet-BC: closed-form parameter counts, dense connectivity, CIFAR variant, knobs."""

import pytest

import catalog
from catalog.registry import count_params


def layer_params(c, k, b=4):
    return 2 * c + c * b * k + 2 * b * k + 9 * b * k * k


def closed_form(blocks, k, stem_params, c, classes, theta=0.5):
    """Stem + dense blocks + transitions (2C + C * floor(theta C)) + final BN + FC."""
    total = stem_params
    for i, n in enumerate(blocks):
        total += sum(layer_params(c + j * k, k) for j in range(n))
        c += n * k
        if i < len(blocks) - 1:
            total += 2 * c + c * int(theta * c)
            c = int(theta * c)
    return total + 2 * c + c * classes + classes


@pytest.mark.parametrize("blocks, reference", [((6, 12, 24, 16), 7_978_856), ((6, 12, 32, 32), 14_149_480),
                                               ((6, 12, 48, 32), 20_013_928)])
def test_imagenet_closed_form_equals_torchvision(blocks, reference):
    assert closed_form(blocks, 32, 7 * 7 * 3 * 64 + 2 * 64, 64, 1000) == reference


def test_densenet_bc_100_12():
    model = catalog.create_model("densenet_bc_100_12")
    assert model.input.shape == (None, 32, 32, 3) and model.output.shape == (None, 10)
    expected = closed_form((16, 16, 16), 12, 3 * 3 * 3 * 24, 24, 10)
    assert count_params(model) == expected == 769_162  # the paper's "0.8M"
    # 3 blocks of (L - 4) / 6 = 16 layers, each with two convs: 96 + stem + 2 transitions + FC = 100
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert len(convs) + 1 == 100


def test_connections_per_block():
    """Layer l of a block sees the block input and the l - 1 layers before it: L(L+1)/2 connections."""
    model = catalog.create_model("densenet121", include_top=False, input_shape=(32, 32, 3))
    c = 64
    for i, n in enumerate((6, 12, 24, 16), start=1):
        seen = [(model.get_layer(f"block{i}_layer{j}_bn1").input.shape[-1] - c) // 32 + 1
                for j in range(1, n + 1)]
        assert seen == list(range(1, n + 1))
        assert sum(seen) == n * (n + 1) // 2
        c = (c + 32 * n) // 2


def test_features():
    feats = catalog.create_model("densenet121", features_only=True, input_shape=(64, 64, 3))
    assert [int(t.shape[-1]) for t in feats.outputs] == [64, 256, 512, 1024, 1024]
    assert [64 // t.shape[1] for t in feats.outputs] == [2, 4, 8, 16, 32]
    cifar = catalog.create_model("densenet_bc_100_12", features_only=True)
    assert [tuple(t.shape[1:]) for t in cifar.outputs] == [(32, 32, 216), (16, 16, 300), (8, 8, 342)]


@pytest.mark.parametrize("kwargs, match", [
    (dict(compression=0.0), "compression must be in"), (dict(stem="tiny"), "stem must be one of"),
    (dict(blocks=()), "blocks must be"), (dict(growth_rate=0), "growth_rate must be"),
])
def test_knob_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        catalog.create_model("densenet_bc_100_12", **kwargs)


def test_compression_knob():
    """DenseNet-B (theta = 1): transitions keep every channel."""
    model = catalog.create_model("densenet_bc_100_12", compression=1.0)
    expected = closed_form((16, 16, 16), 12, 3 * 3 * 3 * 24, 24, 10, theta=1.0)
    assert count_params(model) == expected
