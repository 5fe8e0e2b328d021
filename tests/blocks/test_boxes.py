"""catalog.blocks.boxes against evaluation.boxes (numpy), hand-computed cases and a numpy greedy NMS."""

import itertools
import math

import keras
import numpy as np
import pytest
from keras import ops

from catalog.blocks import boxes as B
from catalog.evaluation import boxes as eval_boxes

R2 = math.sqrt(2)


def _np(x):
    return ops.convert_to_numpy(x)


def _random_boxes(rng, n, low=0.0, high=100.0):
    xy = rng.uniform(low, high, (n, 2))
    wh = rng.uniform(1.0, 40.0, (n, 2))
    return np.concatenate([xy, xy + wh], axis=-1).astype(np.float32)


@pytest.mark.jax
def test_formats_match_evaluation_and_round_trip_every_ordered_pair():
    assert B.FORMATS == eval_boxes.BOX_FORMATS
    xyxy = _random_boxes(np.random.default_rng(0), 12).reshape(3, 4, 4)
    for source, target in itertools.permutations(B.FORMATS, 2):
        src = eval_boxes.convert_boxes(xyxy, "xyxy", source).astype(np.float32)
        out = _np(B.convert_boxes(src, source, target))
        np.testing.assert_allclose(out, eval_boxes.convert_boxes(src, source, target), atol=1e-4)
        np.testing.assert_allclose(_np(B.convert_boxes(out, target, source)), src, atol=1e-4)
    np.testing.assert_array_equal(_np(B.convert_boxes(xyxy, "xyxy", "xyxy")), xyxy)
    np.testing.assert_allclose(_np(B.convert_boxes([[10, 20, 30, 60]], "xyxy", "xywh")), [[10, 20, 20, 40]])
    np.testing.assert_allclose(_np(B.convert_boxes([[10, 20, 30, 60]], "xyxy", "cxcywh")), [[20, 40, 20, 40]])


def test_normalized_coordinates_and_errors():
    image = (100, 200, 3)  # height, width, channels
    np.testing.assert_allclose(_np(B.to_pixels([[0.1, 0.2, 0.5, 1.0]], image)), [[20, 20, 100, 100]])
    np.testing.assert_allclose(_np(B.to_pixels([[0.1, 0.2, 0.5, 1.0]], image, "yxyx")), [[10, 40, 50, 200]])
    for fmt in B.FORMATS:
        boxes = np.array([[3.0, 7.0, 50.0, 90.0]], np.float32)
        np.testing.assert_allclose(_np(B.to_pixels(B.to_normalized(boxes, image, fmt), image, fmt)), boxes,
                                   rtol=1e-6)
    with pytest.raises(ValueError, match="source must be one of"):
        B.convert_boxes([[0, 0, 1, 1]], "ltrb", "xyxy")
    with pytest.raises(ValueError, match="target must be one of"):
        B.convert_boxes([[0, 0, 1, 1]], "xyxy", "xyhw")
    with pytest.raises(ValueError, match="box_format"):
        B.iou([[0, 0, 1, 1]], [[0, 0, 1, 1]], box_format="XYXY")


@pytest.mark.jax
def test_iou_and_giou_hand_values_and_evaluation_matrix():
    a = np.array([[0, 0, 10, 10], [0, 0, 1, 1]], np.float32)
    b = np.array([[5, 5, 15, 15], [2, 2, 3, 3], [0, 0, 10, 10]], np.float32)
    np.testing.assert_allclose(_np(B.iou(a, b)), [[25 / 175, 1 / 100, 1], [0, 0, 1 / 100]], rtol=1e-6)
    expected_giou = [[25 / 175 - 50 / 225, 1 / 100, 1], [-124 / 225, -7 / 9, 1 / 100]]
    np.testing.assert_allclose(_np(B.giou(a, b)), expected_giou, rtol=1e-6)
    np.testing.assert_allclose(_hand_giou(a, b), expected_giou, rtol=1e-12)
    np.testing.assert_allclose(_np(B.giou(a[:1], b[:1], aligned=True)), [25 / 175 - 50 / 225], rtol=1e-6)
    np.testing.assert_allclose(_np(B.giou(a[1:], b[1:2], aligned=True)), [-7 / 9], rtol=1e-6)
    np.testing.assert_allclose(_np(B.box_area(a)), [100, 1])
    np.testing.assert_allclose(_np(B.box_area([[0, 0, 2, 3]], "xywh")), [6])

    rng = np.random.default_rng(1)
    p, q = _random_boxes(rng, 30), _random_boxes(rng, 20)
    np.testing.assert_allclose(_np(B.iou(p, q)), eval_boxes.iou_matrix(p, q), atol=1e-6)
    xywh = eval_boxes.convert_boxes(p, "xyxy", "xywh").astype(np.float32)
    np.testing.assert_allclose(_np(B.iou(xywh, xywh, "xywh")), eval_boxes.iou_matrix(xywh, xywh, "xywh"),
                               atol=1e-6)
    batched = _np(B.iou(np.stack([p[:5], p[5:10]]), q))  # (2, 5, 20) against shared boxes
    np.testing.assert_allclose(batched[1], eval_boxes.iou_matrix(p[5:10], q), atol=1e-6)
    g = _np(B.giou(p, q))
    assert np.all(g <= _np(B.iou(p, q)) + 1e-6) and np.all(g >= -1)


def _hand_giou(a, b):
    """GIoU from the definition, one pair at a time, in float64."""
    out = np.zeros((len(a), len(b)))
    for i, j in itertools.product(range(len(a)), range(len(b))):
        (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = a[i].astype(float), b[j].astype(float)
        inter = max(min(ax2, bx2) - max(ax1, bx1), 0) * max(min(ay2, by2) - max(ay1, by1), 0)
        union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
        hull = (max(ax2, bx2) - min(ax1, bx1)) * (max(ay2, by2) - min(ay1, by1))
        out[i, j] = inter / union - (hull - union) / hull
    return out


def test_retinanet_anchors_counts_sizes_and_first_coordinates():
    anchors = _np(B.anchors((512, 512)))
    assert anchors.shape == ((64 ** 2 + 32 ** 2 + 16 ** 2 + 8 ** 2 + 4 ** 2) * 9, 4) == (49104, 4)
    # the first position of P3 (stride 8, size 32), centre (4, 4): ratio 0.5 (h/w) then 1 then 2, scales inner
    np.testing.assert_allclose(anchors[0], [4 - 16 * R2, 4 - 8 * R2, 4 + 16 * R2, 4 + 8 * R2], rtol=1e-6)
    np.testing.assert_allclose(anchors[3], [-12, -12, 20, 20])
    s = 16 * 2 ** (1 / 3)
    np.testing.assert_allclose(anchors[4], [4 - s, 4 - s, 4 + s, 4 + s], rtol=1e-6)
    np.testing.assert_allclose(anchors[6], [4 - 8 * R2, 4 - 16 * R2, 4 + 8 * R2, 4 + 16 * R2], rtol=1e-6)
    np.testing.assert_allclose(anchors[9], anchors[0] + [8, 0, 8, 0], atol=1e-5)         # next x
    np.testing.assert_allclose(anchors[64 * 9], anchors[0] + [0, 8, 0, 8], atol=1e-5)    # next row y
    first_p7 = 49104 - 16 * 9                                                   # P7: stride 128, size 512
    np.testing.assert_allclose(anchors[first_p7 + 3], [64 - 256, 64 - 256, 64 + 256, 64 + 256])
    # per level H * W * 9 on an odd image, maps ceil(size / stride)
    odd = B.anchors((100, 130), levels=(3, 4))
    assert odd.shape[0] == (13 * 17 + 7 * 9) * 9
    level = _np(B.anchors_for_level(3, 5, stride=16, size=64))
    assert level.shape == (3 * 5 * 9, 4)
    w, h = level[:, 2] - level[:, 0], level[:, 3] - level[:, 1]
    np.testing.assert_allclose(w * h, np.tile(np.repeat([[64.0 ** 2 * 2 ** (2 * k / 3) for k in range(3)]], 3, 0)
                                              .reshape(-1), 15), rtol=1e-5)
    np.testing.assert_allclose(h / w, np.tile(np.repeat([0.5, 1.0, 2.0], 3), 15), rtol=1e-5)
    # a conv head's (H, W, 9 * K) output reshaped to (H * W * 9, K) lines up with the anchors' order
    centre = ((level[:, :2] + level[:, 2:]) / 2).reshape(3, 5, 9, 2)
    ys, xs = np.meshgrid(np.arange(3), np.arange(5), indexing="ij")
    np.testing.assert_allclose(centre[..., 0], np.repeat(((xs + 0.5) * 16)[..., None], 9, -1))
    np.testing.assert_allclose(centre[..., 1], np.repeat(((ys + 0.5) * 16)[..., None], 9, -1))
    with pytest.raises(ValueError, match="sizes"):
        B.anchors((64, 64), levels=(3, 4), sizes=(32,))


@pytest.mark.jax
def test_encode_decode_hand_values_and_round_trip():
    np.testing.assert_allclose(_np(B.encode([[0, 0, 20, 10]], [[0, 0, 10, 10]])), [[0.5, 0, math.log(2), 0]],
                               rtol=1e-6)
    ssd = (0.1, 0.1, 0.2, 0.2)
    np.testing.assert_allclose(_np(B.encode([[0, 0, 20, 10]], [[0, 0, 10, 10]], ssd)),
                               [[5, 0, math.log(2) / 0.2, 0]], rtol=1e-5)
    rng = np.random.default_rng(2)
    boxes, anchors = _random_boxes(rng, 200), _random_boxes(rng, 200)
    for variances in ((1, 1, 1, 1), ssd):
        deltas = B.encode(boxes, anchors, variances)
        np.testing.assert_allclose(_np(B.decode(deltas, anchors, variances)), boxes, atol=1e-4, rtol=1e-5)
    # batched deltas against shared anchors; exp clipped at log(1000 / 16)
    batched = _np(B.decode(np.zeros((2, 200, 4), np.float32), anchors))
    np.testing.assert_allclose(batched[1], anchors, atol=1e-5)
    huge = _np(B.decode([[0, 0, 100, 0]], [[0, 0, 10, 10]]))
    np.testing.assert_allclose(huge[0, 2] - huge[0, 0], 10 * 1000 / 16, rtol=1e-5)


def test_round_trip_within_1e_5_on_normalized_boxes():
    rng = np.random.default_rng(3)
    boxes, anchors = _random_boxes(rng, 100, 0, 1), _random_boxes(rng, 100, 0, 1)
    out = _np(B.decode(B.encode(boxes, anchors), anchors))
    np.testing.assert_allclose(out, boxes, atol=1e-5)


# anchors: exact match, IoU 0.45 (ignored), IoU 0.3 (negative), gt1's best at IoU 1/3 (low quality),
# nowhere, and IoU 0.25 with gt1 (negative); the padding gt row sits exactly on anchor 4.
ANCHORS = np.array([[0, 0, 10, 10], [0, 0, 10, 4.5], [0, 0, 10, 3], [50, 50, 80, 60],
                    [200, 200, 210, 210], [50, 50, 90, 60]], np.float32)
GT = np.array([[0, 0, 10, 10], [50, 50, 60, 60], [200, 200, 210, 210]], np.float32)
GT_LABELS = np.array([3, 7, -1])


@pytest.mark.jax
def test_match_anchors_hand_case():
    matched, labels = B.match_anchors(ANCHORS, GT, GT_LABELS)
    np.testing.assert_array_equal(_np(matched), [0, -1, -1, 1, -1, -1])
    np.testing.assert_array_equal(_np(labels), [3, B.IGNORE, B.BACKGROUND, 7, B.BACKGROUND, B.BACKGROUND])
    assert (B.IGNORE, B.BACKGROUND) == (-1, -2)
    matched, labels = B.match_anchors(ANCHORS, GT, GT_LABELS, allow_low_quality=False)
    np.testing.assert_array_equal(_np(matched), [0, -1, -1, -1, -1, -1])
    np.testing.assert_array_equal(_np(labels), [3, -1, -2, -2, -2, -2])
    # a padded batch: the second image has padding only; an image without gt rows at all
    batch_gt = np.stack([GT, GT])
    batch_labels = np.array([[3, 7, -1], [-1, -1, -1]])
    matched, labels = B.match_anchors(ANCHORS, batch_gt, batch_labels)
    np.testing.assert_array_equal(_np(labels), [[3, -1, -2, 7, -2, -2], [-2] * 6])
    np.testing.assert_array_equal(_np(matched)[1], [-1] * 6)
    _, labels = B.match_anchors(ANCHORS, np.zeros((2, 0, 4), np.float32), np.zeros((2, 0), np.int32))
    np.testing.assert_array_equal(_np(labels), [[-2] * 6] * 2)


def test_low_quality_anchor_stays_with_the_gt_it_is_best_for():
    # anchor 0 is gt 0's best (IoU 10/11) but overlaps gt 1 more (11/12); gt 1 has anchor 1 (IoU 1)
    anchors = np.array([[0, 0, 10, 11], [0, 0, 10, 12]], np.float32)
    gt = np.array([[0, 0, 10, 10], [0, 0, 10, 12]], np.float32)
    matched, labels = B.match_anchors(anchors, gt, [1, 2], positive_iou=0.95, negative_iou=0.95)
    np.testing.assert_array_equal(_np(matched), [0, 1])
    np.testing.assert_array_equal(_np(labels), [1, 2])
    with pytest.raises(ValueError, match="negative_iou"):
        B.match_anchors(anchors, gt, [1, 2], positive_iou=0.4, negative_iou=0.5)


def test_detection_targets_layout():
    labels, targets = B.detection_targets(ANCHORS, GT[None], GT_LABELS[None], variances=(0.1, 0.1, 0.2, 0.2))
    labels, targets = _np(labels), _np(targets)
    assert targets.shape == (1, 6, 5)
    np.testing.assert_array_equal(targets[0, :, 4], labels[0])
    np.testing.assert_allclose(targets[0, 3, :4], _np(B.encode(GT[1], ANCHORS[3], (0.1, 0.1, 0.2, 0.2))),
                               rtol=1e-6)
    np.testing.assert_array_equal(targets[0, 0, :4], 0)  # exact match
    np.testing.assert_array_equal(targets[0, [1, 2, 4, 5], :4], 0)


def _numpy_nms(boxes, scores, labels, iou_threshold, score_threshold, max_detections):
    order = [i for i in np.argsort(-scores, kind="stable") if scores[i] >= score_threshold]
    keep = []
    for i in order:
        if all(labels[j] != labels[i] or eval_boxes.iou_matrix(boxes[i:i + 1], boxes[j:j + 1])[0, 0]
               <= iou_threshold for j in keep):
            keep.append(i)
    return keep[:max_detections]


NMS_BOXES = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [1, 0, 11, 10], [50, 50, 60, 60], [100, 100, 110, 110]],
                     np.float32)
NMS_SCORES = np.array([0.9, 0.8, 0.85, 0.7, 0.01], np.float32)
NMS_LABELS = np.array([0, 0, 1, 0, 0])


@pytest.mark.jax
def test_nms_hand_cases():
    out = {k: _np(v) for k, v in B.non_max_suppression(NMS_BOXES, NMS_SCORES, NMS_LABELS,
                                                       max_detections=6).items()}
    # box 1 duplicates box 0 (IoU 0.68); box 2 overlaps box 0 but is class 1; box 4 scores below 0.05
    assert out["num_detections"] == 3
    np.testing.assert_array_equal(out["boxes"], np.concatenate([NMS_BOXES[[0, 2, 3]], np.zeros((3, 4))]))
    np.testing.assert_allclose(out["scores"], [0.9, 0.85, 0.7, 0, 0, 0])
    np.testing.assert_array_equal(out["labels"], [0, 1, 0, -1, -1, -1])
    top2 = B.non_max_suppression(NMS_BOXES, NMS_SCORES, NMS_LABELS, max_detections=2)
    assert _np(top2["num_detections"]) == 2
    np.testing.assert_array_equal(_np(top2["boxes"]), NMS_BOXES[[0, 2]])
    blind = B.non_max_suppression(NMS_BOXES, NMS_SCORES, NMS_LABELS, max_detections=3, class_aware=False)
    np.testing.assert_array_equal(_np(blind["labels"]), [0, 0, -1])
    low = B.non_max_suppression(NMS_BOXES, NMS_SCORES, NMS_LABELS, score_threshold=0.0, max_detections=6)
    assert _np(low["num_detections"]) == 4
    # greedy, not "fast" NMS: c overlaps b (0.53) but b is already suppressed by a, so c stays
    chain = np.array([[0, 0, 10, 10], [0, 0, 10, 13], [0, 5, 10, 15]], np.float32)
    out = B.non_max_suppression(chain, [0.9, 0.8, 0.7], [0, 0, 0], max_detections=3)
    np.testing.assert_array_equal(_np(out["boxes"])[:2], chain[[0, 2]])
    assert _np(out["num_detections"]) == 2


def test_batched_nms_against_numpy_greedy():
    rng = np.random.default_rng(4)
    boxes = np.stack([_random_boxes(rng, 60, 0, 60) for _ in range(2)])
    scores = rng.uniform(0, 1, (2, 60)).astype(np.float32)
    labels = rng.integers(0, 3, (2, 60))
    out = {k: _np(v) for k, v in B.batched_non_max_suppression(boxes, scores, labels, 0.45, 0.2, 25).items()}
    for b in range(2):
        keep = _numpy_nms(boxes[b], scores[b], labels[b], 0.45, 0.2, 25)
        assert out["num_detections"][b] == len(keep)
        np.testing.assert_array_equal(out["boxes"][b, :len(keep)], boxes[b, keep])
        np.testing.assert_array_equal(out["labels"][b, :len(keep)], labels[b, keep])
        np.testing.assert_array_equal(out["labels"][b, len(keep):], -1)


@pytest.mark.jax
def test_nms_layer_in_a_model_saves_and_reloads(tmp_path):
    boxes_in = keras.Input((5, 4), name="boxes")
    scores_in = keras.Input((5, 2), name="scores")
    outputs = B.NonMaxSuppression(max_detections=4, pre_nms_top_k=6, name="nms")(boxes_in, scores_in)
    model = keras.Model([boxes_in, scores_in], outputs)
    class_scores = np.zeros((1, 5, 2), np.float32)
    class_scores[0, np.arange(5), NMS_LABELS] = NMS_SCORES
    expected = B.non_max_suppression(NMS_BOXES, NMS_SCORES, NMS_LABELS, max_detections=4)
    got = model.predict([NMS_BOXES[None], class_scores], verbose=0)
    for key in ("boxes", "scores", "labels", "num_detections"):
        np.testing.assert_allclose(np.asarray(got[key])[0], _np(expected[key]))
    path = str(tmp_path / "nms.keras")
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    assert again.get_layer("nms").get_config() == model.get_layer("nms").get_config()
    np.testing.assert_array_equal(again.predict([NMS_BOXES[None], class_scores], verbose=0)["labels"],
                                  got["labels"])
    with pytest.raises(ValueError, match="max_detections"):
        B.NonMaxSuppression(max_detections=0)
