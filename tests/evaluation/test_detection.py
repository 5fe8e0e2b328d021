"""COCO mAP/mAR against pycocotools on randomized cases; VOC AP against a plain reference; box formats."""

import contextlib
import io

import numpy as np
import pytest

from catalog.evaluation import boxes as B
from catalog.evaluation.detection import COCO_STAT_NAMES, coco_evaluate, voc_ap, voc_evaluate

COCO = pytest.importorskip("pycocotools.coco").COCO
COCOeval = pytest.importorskip("pycocotools.cocoeval").COCOeval


def random_case(seed):
    """Random images, categories, crowd flags, images without ground truth or without detections,
    jittered copies of ground truth (IoUs around every threshold), score ties, duplicated ground truth
    (IoU ties) and >100 detections per image."""
    rng = np.random.default_rng(seed)
    n_img, n_cat = int(rng.integers(1, 12)), int(rng.integers(1, 5))
    images = [{"id": int(i)} for i in rng.permutation(100)[:n_img] + 1]
    cats = [{"id": int(c)} for c in rng.permutation(20)[:n_cat] + 1]
    anns, dets = [], []
    for im in images:
        kind = rng.integers(4)
        ng = 0 if kind == 0 else int(rng.integers(0, 8))
        nd = 0 if kind == 1 else int(rng.integers(0, 40 if seed % 4 else 260))
        centers = rng.uniform(0, 300, size=(max(ng, 1), 2))
        for j in range(ng):
            w, h = rng.uniform(2, 150, size=2)
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": cats[rng.integers(n_cat)]["id"],
                         "bbox": [*map(float, centers[j]), float(w), float(h)],
                         "area": float(w * h * rng.uniform(0.5, 1.0)), "iscrowd": int(rng.random() < 0.15)})
        for _ in range(nd):
            if ng and rng.random() < 0.6:
                x, y, w, h = np.array(anns[-1 - int(rng.integers(ng))]["bbox"]) * rng.uniform(0.85, 1.15, 4)
            else:
                x, y = centers[rng.integers(len(centers))] + rng.normal(0, 15, 2)
                w, h = rng.uniform(2, 150, size=2)
            cat = cats[rng.integers(n_cat)]["id"] if rng.random() > 0.05 else 999  # 999: unknown category
            dets.append({"image_id": im["id"], "category_id": cat, "bbox": [float(x), float(y), float(w), float(h)],
                         "score": float(np.round(rng.random(), 1 if seed % 3 == 0 else 6))})
    if seed % 5 == 4:  # duplicated ground truth: exact IoU ties between candidates
        anns += [dict(a, id=len(anns) + i + 1, iscrowd=int(rng.random() < 0.3)) for i, a in enumerate(anns[:len(anns) // 3])]
    if not dets:  # pycocotools cannot load an empty result list
        dets.append({"image_id": images[0]["id"], "category_id": cats[0]["id"], "bbox": [1.0, 2.0, 30.0, 40.0],
                     "score": 0.5})
    return {"images": images, "annotations": anns, "categories": cats}, dets


def pycocotools_stats(gt, dets):
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_coco_stats_equal_pycocotools_on_24_random_cases():
    for seed in range(24):
        gt, dets = random_case(seed)
        ours = coco_evaluate(gt, dets)
        assert list(ours) == list(COCO_STAT_NAMES)
        np.testing.assert_allclose([ours[k] for k in COCO_STAT_NAMES], pycocotools_stats(gt, dets), rtol=0,
                                   atol=1e-6, err_msg=f"case {seed}")


def test_coco_box_formats_paths_and_columns(tmp_path):
    import json

    gt, dets = random_case(5)
    expected = coco_evaluate(gt, dets)
    xyxy = [{**d, "bbox": B.convert_boxes(d["bbox"], "xywh", "xyxy").tolist()} for d in dets]
    gt_xyxy = {**gt, "annotations": [{**a, "bbox": B.convert_boxes(a["bbox"], "xywh", "xyxy").tolist()}
                                     for a in gt["annotations"]]}
    np.testing.assert_allclose(list(coco_evaluate(gt_xyxy, xyxy, box_format="xyxy").values()),
                               list(expected.values()), atol=1e-9)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dets))
    assert coco_evaluate(str(tmp_path / "gt.json"), str(tmp_path / "dt.json")) == expected
    columns = {k: np.array([d[k] for d in dets]) for k in ("image_id", "category_id", "bbox", "score")}
    assert coco_evaluate(gt, columns) == expected


def test_coco_perfect_and_empty_detections():
    gt, _ = random_case(7)
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in gt["annotations"] if not a["iscrowd"]]
    assert coco_evaluate(gt, perfect)["AP50"] == pytest.approx(1.0)
    assert coco_evaluate(gt, [])["AP"] == 0.0
    with pytest.raises(ValueError, match="image ids"):
        coco_evaluate(gt, [{"image_id": 12345, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}])
    with pytest.raises(FileNotFoundError):
        coco_evaluate("/no/such/gt.json", [])


def reference_voc_ap(rec, prec, use_07_metric):
    """py-faster-rcnn's voc_ap, written out with loops."""
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = 0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap += p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def reference_voc_class(gts, dets, cls, thr=0.5):
    """The VOC devkit's per-class loop: gts/dets are per-image (boxes, labels, difficult|scores)."""
    detected = {i: np.zeros(int(np.sum(g[1] == cls)), bool) for i, g in enumerate(gts)}
    npos = sum(int(np.sum((g[1] == cls) & ~g[2])) for g in gts)
    flat = [(s, i, b) for i, (bb, ll, ss) in enumerate(dets) for b, l, s in zip(bb, ll, ss) if l == cls]
    flat.sort(key=lambda x: -x[0])  # stable
    tp, fp = np.zeros(len(flat)), np.zeros(len(flat))
    for d, (_, i, bb) in enumerate(flat):
        sel = gts[i][1] == cls
        gb, diff = gts[i][0][sel], gts[i][2][sel]
        ovmax, jmax = -np.inf, -1
        if len(gb):
            ixmin, iymin = np.maximum(gb[:, 0], bb[0]), np.maximum(gb[:, 1], bb[1])
            ixmax, iymax = np.minimum(gb[:, 2], bb[2]), np.minimum(gb[:, 3], bb[3])
            inter = np.maximum(ixmax - ixmin, 0) * np.maximum(iymax - iymin, 0)
            uni = (bb[2] - bb[0]) * (bb[3] - bb[1]) + (gb[:, 2] - gb[:, 0]) * (gb[:, 3] - gb[:, 1]) - inter
            ov = inter / uni
            ovmax, jmax = np.max(ov), int(np.argmax(ov))
        if ovmax > thr:
            if not diff[jmax]:
                if not detected[i][jmax]:
                    tp[d], detected[i][jmax] = 1, True
                else:
                    fp[d] = 1
        else:
            fp[d] = 1
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    return tp / npos, tp / np.maximum(tp + fp, np.finfo(np.float64).eps)


@pytest.mark.parametrize("use_07", [False, True])
def test_voc_equals_reference(use_07):
    for seed in range(5):
        check_voc_case(seed, use_07)


def check_voc_case(seed, use_07):
    rng = np.random.default_rng(seed)
    n_cls, gts, dets = 3, [], []
    for _ in range(15):
        ng, nd = int(rng.integers(0, 6)), int(rng.integers(0, 12))
        xy = rng.uniform(0, 200, (ng, 2))
        gb = np.concatenate([xy, xy + rng.uniform(5, 80, (ng, 2))], 1)
        gts.append((gb, rng.integers(0, n_cls, ng), rng.random(ng) < 0.2))
        src = gb[rng.integers(0, ng, nd)] if ng else rng.uniform(0, 200, (nd, 4))
        db = src + rng.normal(0, 6, (nd, 4))
        db[:, 2:] = np.maximum(db[:, 2:], db[:, :2] + 1)
        dets.append((db, rng.integers(0, n_cls, nd), np.round(rng.random(nd), 2)))
    ours = voc_evaluate([g[0] for g in gts], [g[1] for g in gts], [d[0] for d in dets], [d[1] for d in dets],
                        [d[2] for d in dets], num_classes=n_cls, gt_difficult=[g[2] for g in gts],
                        use_07_metric=use_07)
    for c in range(n_cls):
        rec, prec = reference_voc_class(gts, dets, c)
        np.testing.assert_allclose(ours["recall"][c], rec, atol=1e-12)
        np.testing.assert_allclose(ours["precision"][c], prec, atol=1e-12)
        assert ours["ap"][c] == pytest.approx(reference_voc_ap(rec, prec, use_07), abs=1e-12)
        # voc_ap on random, non-monotone curves as well
        r = np.sort(rng.random(20))
        p = rng.random(20)
        assert voc_ap(r, p, use_07) == pytest.approx(reference_voc_ap(r, p, use_07), abs=1e-12)


def test_voc_ap_closed_forms():
    assert voc_ap([0.5, 1.0], [1.0, 0.5]) == pytest.approx(0.75)
    assert voc_ap([0.5, 1.0], [1.0, 0.5], use_07_metric=True) == pytest.approx((6 * 1.0 + 5 * 0.5) / 11)


def test_box_formats_round_trip_and_iou():
    rng = np.random.default_rng(0)
    xyxy = np.concatenate([rng.uniform(0, 50, (6, 2)), rng.uniform(60, 100, (6, 2))], 1)
    for fmt in B.BOX_FORMATS:
        np.testing.assert_allclose(B.convert_boxes(B.convert_boxes(xyxy, "xyxy", fmt), fmt, "xyxy"), xyxy)
    assert B.convert_boxes([10, 20, 30, 60], "xyxy", "cxcywh").tolist() == [20, 40, 20, 40]
    assert B.convert_boxes([10, 20, 30, 60], "xyxy", "yxyx").tolist() == [20, 10, 60, 30]
    iou = B.iou_matrix([[0, 0, 10, 10]], [[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    np.testing.assert_allclose(iou, [[50 / 150, 0.0, 1.0]])
    crowd = B.iou_matrix([[0, 0, 10, 10]], [[5, 0, 100, 100]], crowd=[True])
    np.testing.assert_allclose(crowd, [[0.5]])  # overlap / detection area
    with pytest.raises(ValueError, match="source"):
        B.convert_boxes(xyxy, "ltrb", "xyxy")
