"""Moving-shapes clips: determinism, the label is the direction the shape's pixels move, the loader's ``video``
task (clip batches, info, the label-keeping flip) and its argument errors."""

import numpy as np
import pytest

from catalog import datasets
from catalog.datasets.video import DIRECTIONS, MOTION_CLASSES, hflip_labels, make_moving_shapes


def _shape_centroids(clip):
    """(frames, 2) centroid (row, column) of the pixels holding the frame's most frequent bright colour: with
    noise=0 the shape is one flat colour (every channel >= 140), while the background's every pixel carries its
    own noise (and clips to black where it is darkest)."""
    out = []
    for frame in clip:
        flat = frame.reshape(-1, 3)
        colours, counts = np.unique(flat[flat.min(axis=1) >= 140], axis=0, return_counts=True)
        assert counts.max() >= 9  # a shape of at least 9 pixels, not a background coincidence
        rows, cols = np.nonzero((frame == colours[counts.argmax()]).all(axis=-1))
        out.append((rows.mean(), cols.mean()))
    return np.array(out)


@pytest.mark.parametrize("directions", [4, 8])
def test_the_label_is_the_direction_the_shape_moves(directions):
    data = make_moving_shapes(24, frames=6, image_size=32, seed=3, directions=directions, noise=0.0)
    names = data["class_names"]
    assert names == MOTION_CLASSES[directions] and set(data["labels"]) <= set(range(directions))
    assert len(set(data["labels"])) >= directions - 2
    for clip, label, centers in zip(data["clips"], data["labels"], data["centers"]):
        found = _shape_centroids(clip)
        moved = found[-1] - found[0]
        unit = np.array(DIRECTIONS[names[label]], float)
        # it moves along the labelled direction (0.3-0.5 of 32 px over the clip), not across it
        assert moved @ unit / np.linalg.norm(unit) >= 0.25 * 32 * np.linalg.norm(unit) - 1.5
        across = moved - (moved @ unit) * unit / (unit @ unit)
        assert np.abs(across).max() <= 1.5
        # steadily: every frame-to-frame step points the same way
        assert np.all(np.diff(found, axis=0) @ unit > -0.75)
        np.testing.assert_allclose(centers[-1] - centers[0], moved, atol=1.5)


def test_generation_is_deterministic_and_inside_the_frame():
    a = make_moving_shapes(5, frames=4, image_size=20, seed=1)
    b = make_moving_shapes(5, frames=4, image_size=20, seed=1)
    c = make_moving_shapes(5, frames=4, image_size=20, seed=2)
    for key in ("clips", "labels", "centers", "shapes"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["clips"], c["clips"])
    assert a["clips"].shape == (5, 4, 20, 20, 3) and a["clips"].dtype == np.uint8
    assert a["labels"].dtype == np.int32 and a["centers"].shape == (5, 4, 2)
    # the radius is at most 0.18 of the side: every centre keeps the whole shape inside
    assert a["centers"].min() >= 0.1 * 20 - 1e-4 and a["centers"].max() <= 0.9 * 20 + 1e-4
    frames_differ = [not np.array_equal(clip[0], clip[1]) for clip in a["clips"]]
    assert all(frames_differ)  # fresh noise and a moved shape in every frame


def test_horizontal_flip_label_map():
    assert list(hflip_labels(4)) == [1, 0, 2, 3]  # left <-> right, up and down stay
    names = MOTION_CLASSES[8]
    mirror = hflip_labels(8)
    assert [names[i] for i in mirror] == ["right", "left", "up", "down", "up_right", "up_left", "down_right",
                                          "down_left"]


def test_loader_video_task_batches_and_info():
    ds, info = datasets.load("shapes", split="val", task="video", image_size=16, batch_size=4, frames=5, num_images=6)
    assert info["frames"] == 5 and info["count"] == 6 and info["class_names"] == ("left", "right", "up", "down")
    batches = list(ds)
    assert [tuple(x.shape) for x, _ in batches] == [(4, 5, 16, 16, 3), (2, 5, 16, 16, 3)]
    x, y = batches[0]
    assert x.dtype.name == "float32" and y.dtype.name == "int32"
    raw = make_moving_shapes(6, frames=5, image_size=16, seed=1)  # val: seed + 1
    np.testing.assert_allclose(x.numpy(), raw["clips"][:4] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y.numpy(), raw["labels"][:4])
    gray, _ = datasets.load("shapes", split="test", task="video", image_size=16, batch_size=2, frames=3,
                            num_images=2, channels=1, preprocessing="tf")
    g, _ = next(iter(gray))
    assert g.shape == (2, 3, 16, 16, 1) and -1.0 <= float(np.min(g)) and float(np.max(g)) <= 1.0


def test_augment_flips_whole_clips_and_mirrors_their_labels():
    kwargs = dict(split="train", task="video", image_size=16, batch_size=16, frames=4, num_images=16, shuffle=False)
    plain_x, plain_y = (t.numpy() for t in next(iter(datasets.load("shapes", **kwargs)[0])))
    aug_x, aug_y = (t.numpy() for t in next(iter(datasets.load("shapes", augment=True, **kwargs)[0])))
    mirror = hflip_labels(4)
    flipped = 0
    for px, py, ax, ay in zip(plain_x, plain_y, aug_x, aug_y):
        if np.array_equal(px, ax):
            assert ay == py
        else:
            np.testing.assert_array_equal(ax, px[:, :, ::-1])  # every frame flipped alike
            assert ay == mirror[py]
            flipped += 1
    assert 0 < flipped < 16


def test_video_argument_errors_name_the_argument():
    with pytest.raises(ValueError, match="task 'video' needs spec 'shapes'"):
        datasets.load("folder:/nowhere", task="video")
    with pytest.raises(ValueError, match="frames must be an integer >= 2"):
        datasets.load("shapes", task="video", frames=1, image_size=16)
    with pytest.raises(ValueError, match="no presets"):
        datasets.load("shapes:hard", task="video", image_size=16)
    with pytest.raises(ValueError, match="directions must be 4 or 8"):
        make_moving_shapes(2, directions=6)
    with pytest.raises(ValueError, match="radius and travel"):
        make_moving_shapes(2, radius=0.3, travel=0.6)
