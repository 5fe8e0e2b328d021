"""catalog.datasets.shapes: the difficulty options of make_shapes (classes, rotate, object_scale, contrast,
clutter, noise) and the PRESETS, deterministic, each measurably harder, the default data unchanged."""

import numpy as np
import pytest

from catalog.datasets.shapes import ALL_SHAPE_CLASSES, PRESETS, SHAPE_CLASSES, make_shapes
from helpers import assert_boxes_tight_around_masks

HARD = PRESETS["hard"]


def _same(a, b):
    for key in ("images", "labels", "masks"):
        np.testing.assert_array_equal(a[key], b[key])
    for x, y in zip(a["boxes"] + a["box_labels"], b["boxes"] + b["box_labels"]):
        np.testing.assert_array_equal(x, y)


def test_default_options_spelled_out_give_the_default_data():
    plain = make_shapes(20, 32, seed=3, max_objects=2)
    spelled = make_shapes(20, 32, seed=3, max_objects=2, classes=SHAPE_CLASSES, rotate=False, object_scale=None,
                          contrast=1.0, clutter=0, noise=0.0)
    _same(plain, spelled)
    _same(make_shapes(20, 32, seed=3, max_objects=2, **PRESETS["easy"]), plain)


@pytest.mark.parametrize("max_objects", [1, 3])
def test_hard_is_deterministic_with_right_shapes_and_tight_boxes(max_objects):
    a = make_shapes(30, 40, seed=4, max_objects=max_objects, **HARD)
    _same(a, make_shapes(30, 40, seed=4, max_objects=max_objects, **HARD))
    assert not np.array_equal(a["images"], make_shapes(30, 40, seed=5, max_objects=max_objects, **HARD)["images"])
    assert a["images"].shape == (30, 40, 40, 3) and a["images"].dtype == np.uint8
    assert a["masks"].shape == (30, 40, 40) and a["labels"].shape == (30,) and a["labels"].dtype == np.int32
    assert a["class_names"] == ALL_SHAPE_CLASSES and len(set(ALL_SHAPE_CLASSES)) == 10
    assert a["masks"].max() <= len(ALL_SHAPE_CLASSES)
    assert_boxes_tight_around_masks(a)  # clutter is in no mask


@pytest.mark.parametrize("rotate", [False, True])
def test_every_kind_draws_at_the_smallest_scale(rotate):
    for kind in ALL_SHAPE_CLASSES:
        d = make_shapes(6, 16, seed=1, classes=(kind,), rotate=rotate, object_scale=0.08)
        assert (d["labels"] == 0).all()
        assert ((d["masks"] > 0).sum(axis=(1, 2)) > 0).all(), kind


def test_kinds_are_distinct_masks():
    masks = [make_shapes(1, 48, seed=2, classes=(kind,), object_scale=0.4)["masks"][0] > 0
             for kind in ALL_SHAPE_CLASSES]
    for i in range(len(masks)):
        for j in range(i):
            assert (masks[i] != masks[j]).mean() > 0.02, (ALL_SHAPE_CLASSES[i], ALL_SHAPE_CLASSES[j])


def test_contrast_clutter_and_noise_keep_the_scene():
    """They draw from their own random stream: the same seed gives the same shapes, classes and masks."""
    plain = make_shapes(40, 32, seed=6)
    for option in ({"contrast": (0.3, 0.6)}, {"clutter": 4}, {"noise": 10.0}, {"clutter": (1, 3), "noise": (2, 9)}):
        other = make_shapes(40, 32, seed=6, **option)
        np.testing.assert_array_equal(other["labels"], plain["labels"])
        np.testing.assert_array_equal(other["masks"], plain["masks"])
        assert not np.array_equal(other["images"], plain["images"])


def test_clutter_is_drawn_behind_the_shapes_only():
    plain, busy = make_shapes(40, 32, seed=7), make_shapes(40, 32, seed=7, clutter=3)
    inside = plain["masks"] > 0
    np.testing.assert_array_equal(busy["images"][inside], plain["images"][inside])
    changed = np.any(busy["images"] != plain["images"], axis=-1) & ~inside
    assert changed.sum(axis=(1, 2)).min() > 0  # every image got strokes
    # strokes take the shapes' bright colours: more bright pixels off the shapes
    bright = lambda d: (d["images"].max(-1) > 140)[~inside].mean()  # noqa: E731
    assert bright(busy) > bright(plain) + 0.02


def test_noise_has_the_asked_standard_deviation():
    plain, noisy = make_shapes(30, 32, seed=8), make_shapes(30, 32, seed=8, noise=10.0)
    diff = noisy["images"].astype(float) - plain["images"]
    assert 8.5 < diff.std() < 10.5  # clipping at 0 and 255 trims a little
    ranged = make_shapes(30, 32, seed=8, noise=(1.0, 20.0))["images"].astype(float) - plain["images"]
    per_image = ranged.std(axis=(1, 2, 3))
    assert per_image.min() < 6 and per_image.max() > 12


def test_lower_contrast_brings_shapes_closer_to_the_background():
    def gap(d):
        gray = d["images"].astype(float).mean(-1)
        inside = d["masks"] > 0
        return np.mean([g[m].mean() - g[~m].mean() for g, m in zip(gray, inside)])

    full, low = make_shapes(40, 32, seed=9), make_shapes(40, 32, seed=9, contrast=(0.2, 0.4))
    assert gap(low) < 0.5 * gap(full)
    assert gap(low) > 0  # still brighter on average: contrast 0.2..0.4 of the way to a bright colour


def test_object_scale_sets_the_size():
    default = make_shapes(40, 32, seed=10)
    small = make_shapes(40, 32, seed=10, object_scale=(0.1, 0.14))
    assert (small["masks"] > 0).mean() < 0.4 * (default["masks"] > 0).mean()
    sides = np.concatenate([b[:, 2:] - b[:, :2] for b in small["boxes"]])
    assert sides.max() <= 2 * 0.14 * 32 + 1


def test_rotate_turns_every_kind():
    fill = lambda d: np.mean([(m > 0).sum() / np.prod(b[0, 2:] - b[0, :2])  # noqa: E731
                              for m, b in zip(d["masks"], d["boxes"])])
    upright = make_shapes(30, 48, seed=11, classes=("square",))
    turned = make_shapes(30, 48, seed=11, classes=("square",), rotate=True)
    assert fill(upright) > 0.97 and fill(turned) < 0.85


def _nearest_neighbour_accuracy(options):
    """A fixed, cheap baseline: 1-nearest neighbour on standardized 16 x 16 grey images."""
    def features(d):
        x = d["images"].astype(np.float32).mean(-1).reshape(-1, 16, 2, 16, 2).mean((2, 4)).reshape(len(d["images"]), -1)
        x -= x.mean(1, keepdims=True)
        return x / (x.std(1, keepdims=True) + 1e-6)

    train, test = make_shapes(500, 32, seed=20, **options), make_shapes(200, 32, seed=21, **options)
    a, b = features(train), features(test)
    dist = (b * b).sum(1)[:, None] - 2 * b @ a.T + (a * a).sum(1)[None]
    return np.mean(train["labels"][dist.argmin(1)] == test["labels"])


def test_hard_preset_makes_a_simple_baseline_much_worse():
    easy = _nearest_neighbour_accuracy({"classes": ALL_SHAPE_CLASSES})  # same ten classes, easy drawing
    hard = _nearest_neighbour_accuracy(HARD)
    assert easy > hard + 0.15, (easy, hard)
    assert hard > 0.1  # above chance: still learnable


@pytest.mark.parametrize("kwargs, match", [
    ({"classes": ("circle", "blob")}, "classes"),
    ({"classes": ("circle", "circle")}, "classes"),
    ({"rotate": 1}, "rotate"),
    ({"object_scale": (0.2, 0.1)}, "object_scale"),
    ({"object_scale": 0.0}, "object_scale"),
    ({"object_scale": (0.1, 0.6)}, "object_scale"),
    ({"contrast": 1.5}, "contrast"),
    ({"contrast": (0.5,)}, "contrast"),
    ({"clutter": -1}, "clutter"),
    ({"clutter": 1.5}, "clutter"),
    ({"noise": -3.0}, "noise"),
    ({"noise": "loud"}, "noise"),
])
def test_bad_options_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_shapes(2, 32, **kwargs)
