"""Detection metrics: COCO mAP/mAR with pycocotools' exact conventions, and Pascal VOC AP.

COCO (Lin et al. 2014; the ``COCOeval`` protocol): AP averaged over IoU 0.50:0.05:0.95 at 101 recall
points of the monotone precision envelope; AR at 1/10/100 detections per image and category; area ranges
all/small (< 32^2)/medium/large (> 96^2) on the ground truth's ``area`` field; crowd ground truth matches
any number of detections with IoU taken over the detection's area, and is ignored like ground truth
outside the area range; unmatched detections outside the area range are ignored; a category without
(non-ignored) ground truth is left out of the mean (-1 when nothing is left).

The greedy matching is sequential only over a detection's rank within its (image, category); every step
runs vectorized over all (image, category) pairs, the 4 area ranges and the 10 IoU thresholds at once.
"""

from __future__ import annotations

import json
import os

import numpy as np

from catalog.evaluation.boxes import _iou_xywh, as_boxes, convert_boxes, iou_matrix

COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETS = (1, 10, 100)
AREA_RANGES = ((0, 1e5 ** 2), (0, 32 ** 2), (32 ** 2, 96 ** 2), (96 ** 2, 1e5 ** 2))
AREA_NAMES = ("all", "small", "medium", "large")


def _load_json(source, argument: str):
    if isinstance(source, (str, os.PathLike)):
        if not os.path.isfile(source):
            raise FileNotFoundError(f"{argument} file not found: {os.fspath(source)!r}.")
        with open(source) as f:
            return json.load(f)
    return source


def _ground_truth_arrays(gt: dict, box_format: str):
    if not isinstance(gt, dict) or "images" not in gt or "annotations" not in gt:
        raise ValueError("ground_truth must be a COCO dict (or a path to one) with 'images', 'annotations' "
                         "and 'categories'.")
    image_ids = np.array(sorted({int(im["id"]) for im in gt["images"]}), np.int64)
    anns = gt["annotations"]
    if "categories" in gt and gt["categories"]:
        cat_ids = np.array(sorted({int(c["id"]) for c in gt["categories"]}), np.int64)
    else:
        cat_ids = np.array(sorted({int(a["category_id"]) for a in anns}), np.int64)
    n = len(anns)
    boxes = convert_boxes(np.array([a["bbox"] for a in anns], np.float64).reshape(n, 4), box_format, "xywh")
    ann_ids = np.array([a.get("id", i + 1) for i, a in enumerate(anns)], np.int64)
    if n and np.any(ann_ids == 0):
        raise ValueError("ground_truth annotation ids must be non-zero (pycocotools reads id 0 as 'no match').")
    areas = np.array([a["area"] if "area" in a else b[2] * b[3] for a, b in zip(anns, boxes)], np.float64)
    return {
        "image_ids": image_ids, "cat_ids": cat_ids, "boxes": boxes, "areas": areas,
        "image": np.array([a["image_id"] for a in anns], np.int64).reshape(n),
        "category": np.array([a["category_id"] for a in anns], np.int64).reshape(n),
        "crowd": np.array([bool(a.get("iscrowd", 0)) for a in anns], bool).reshape(n),
    }


def _detection_arrays(dets, box_format: str):
    if isinstance(dets, dict):  # columns: image_id, category_id, bbox (N, 4), score
        cols = dets
        n = len(np.asarray(cols["score"]).reshape(-1))
        boxes = np.asarray(cols["bbox"], np.float64).reshape(n, 4)
        image, category, score = (np.asarray(cols[k]).reshape(n) for k in ("image_id", "category_id", "score"))
    elif isinstance(dets, (list, tuple)):
        n = len(dets)
        boxes = np.array([d["bbox"] for d in dets], np.float64).reshape(n, 4)
        image = np.array([d["image_id"] for d in dets], np.int64).reshape(n)
        category = np.array([d["category_id"] for d in dets], np.int64).reshape(n)
        score = np.array([d["score"] for d in dets], np.float64).reshape(n)
    else:
        raise ValueError("detections must be a COCO results list of dicts (image_id, category_id, bbox, "
                         f"score), a dict of such columns, or a path to a JSON list; got {type(dets).__name__}.")
    return {"boxes": convert_boxes(boxes, box_format, "xywh"), "image": image.astype(np.int64),
            "category": category.astype(np.int64), "score": score.astype(np.float64)}


def _ranks(keys_sorted: np.ndarray) -> np.ndarray:
    """Position of each element within its run of equal keys (keys already sorted)."""
    n = len(keys_sorted)
    if n == 0:
        return np.zeros(0, np.int64)
    starts = np.r_[0, np.flatnonzero(keys_sorted[1:] != keys_sorted[:-1]) + 1]
    lengths = np.diff(np.r_[starts, n])
    return np.arange(n) - np.repeat(starts, lengths)


def _match(gt_group, gt_boxes, gt_crowd, gt_ignore, det_group, det_rank, det_boxes, thresholds):
    """pycocotools' greedy matching for all groups at once.

    ``gt_*`` are sorted by group (original order inside a group); ``gt_ignore`` is (A, G_total);
    ``det_*`` are sorted by group then rank. Returns ``matched`` (A, T, D) and ``matched_ignore``
    (A, T, D): whether each detection matched and whether the ground truth it matched is ignored.
    """
    n_area, n_thr, n_det = gt_ignore.shape[0], len(thresholds), len(det_group)
    matched = np.zeros((n_area, n_thr, n_det), bool)
    matched_ignore = np.zeros((n_area, n_thr, n_det), bool)
    groups, gt_start, gt_count = np.unique(gt_group, return_index=True, return_counts=True)
    has_gt = np.isin(det_group, groups)
    if not has_gt.any():
        return matched, matched_ignore
    det_idx = np.flatnonzero(has_gt)
    dg = det_group[det_idx]
    pos = np.searchsorted(groups, dg)            # group row of each detection
    n_dets_per_group = np.bincount(pos, minlength=len(groups))
    # Bucket groups by ground-truth count (powers of two) so the padding stays small.
    bucket = np.ceil(np.log2(np.maximum(gt_count, 1))).astype(int)
    thr = np.minimum(thresholds, 1 - 1e-10)[None, None, :, None]
    for b in np.unique(bucket[n_dets_per_group > 0]):
        rows = np.flatnonzero((bucket == b) & (n_dets_per_group > 0))
        rows = rows[np.argsort(-n_dets_per_group[rows], kind="stable")]  # most detections first
        g_pad = int(gt_count[rows].max())
        slot = np.arange(g_pad)
        valid = slot[None, :] < gt_count[rows, None]                      # (R, G)
        gidx = np.where(valid, gt_start[rows, None] + slot[None, :], 0)
        boxes = gt_boxes[gidx]                                             # (R, G, 4)
        crowd = gt_crowd[gidx] & valid
        ignore = np.moveaxis(gt_ignore[:, gidx], 0, 1)                     # (R, A, G)
        taken = np.zeros((len(rows), n_area, n_thr, g_pad), bool)
        # Detections of these groups, laid out so rank r is a slice of the first k_r rows.
        row_of_group = np.full(len(groups), -1)
        row_of_group[rows] = np.arange(len(rows))
        sel = det_idx[row_of_group[pos] >= 0]
        det_row = row_of_group[np.searchsorted(groups, det_group[sel])]
        ranks = det_rank[sel]
        for r in range(int(n_dets_per_group[rows].max())):
            at_rank = ranks == r
            d = sel[at_rank]
            rr = det_row[at_rank]
            order = np.argsort(rr)
            d, rr = d[order], rr[order]
            k = len(rr)  # rows 0..k-1 are exactly the groups with more than r detections
            iou = _iou_xywh(det_boxes[d][:, None, :], boxes[:k], crowd[:k])          # (k, G)
            ok = valid[:k, None, None, :] & ~(taken[:k] & ~crowd[:k, None, None, :])
            ok &= iou[:, None, None, :] >= thr                                        # (k, A, T, G)
            ign = ignore[:k, :, None, :]
            regular = ok & ~ign
            use = np.where(regular.any(-1, keepdims=True), regular, ok & ign)
            score = np.where(use, iou[:, None, None, :], -1.0)
            best = g_pad - 1 - np.argmax(score[..., ::-1], axis=-1)                   # last maximum
            hit = use.any(-1)                                                         # (k, A, T)
            kk, aa, tt = np.nonzero(hit)
            taken[kk, aa, tt, best[kk, aa, tt]] = True
            matched[:, :, d] = np.moveaxis(hit, 0, -1)
            hit_ignore = np.take_along_axis(np.broadcast_to(ign, (k, n_area, n_thr, g_pad)),
                                            best[..., None], -1)[..., 0]
            matched_ignore[:, :, d] = np.moveaxis(hit & hit_ignore, 0, -1)
    return matched, matched_ignore


def coco_evaluate(ground_truth, detections, box_format: str = "xywh", return_details: bool = False) -> dict:
    """The 12 numbers of pycocotools' ``COCOeval.stats`` for bounding boxes, computed vectorized.

    Args:
        ground_truth: a COCO dict (``images``, ``annotations`` with ``id``, ``image_id``, ``category_id``,
            ``bbox``, ``area``, ``iscrowd``; ``categories``) or a path to its JSON file. A missing ``area``
            is taken as the box area, a missing ``iscrowd`` as 0.
        detections: the COCO results list (``image_id``, ``category_id``, ``bbox``, ``score``), a dict of
            those columns as arrays, or a path to the JSON list. Detections of categories absent from the
            ground truth are dropped (as pycocotools does); images absent from it are an error.
        box_format: the format of every ``bbox`` (COCO's is ``xywh``).
        return_details: also return ``precision`` (T, R, K, A, M), ``recall`` (T, K, A, M) and the
            ``category_ids``, ``iou_thresholds`` and ``recall_thresholds`` under ``"details"``.

    Returns:
        ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"}`` as
        floats (-1.0 where no category has ground truth in that setting).
    """
    gt = _ground_truth_arrays(_load_json(ground_truth, "ground_truth"), box_format)
    dt = _detection_arrays(_load_json(detections, "detections"), box_format)
    image_ids, cat_ids = gt["image_ids"], gt["cat_ids"]
    n_img, n_cat, n_area, n_thr = len(image_ids), len(cat_ids), len(AREA_RANGES), len(IOU_THRESHOLDS)
    n_rec, n_max = len(RECALL_THRESHOLDS), len(MAX_DETS)

    unknown = ~np.isin(dt["image"], image_ids)
    if unknown.any():
        raise ValueError("detections refer to image ids absent from ground_truth, e.g. "
                         f"{int(dt['image'][unknown][0])}.")
    keep = np.isin(dt["category"], cat_ids)
    dt = {k: v[keep] for k, v in dt.items()}
    keep_gt = np.isin(gt["image"], image_ids) & np.isin(gt["category"], cat_ids)
    gt = {k: (v[keep_gt] if k in ("boxes", "areas", "image", "category", "crowd") else v) for k, v in gt.items()}

    # Ground truth: group = image index * K + category index, original order inside a group.
    g_img = np.searchsorted(image_ids, gt["image"])
    g_cat = np.searchsorted(cat_ids, gt["category"])
    g_group = g_img * n_cat + g_cat
    order = np.argsort(g_group, kind="stable")
    g_group, g_cat, g_boxes = g_group[order], g_cat[order], gt["boxes"][order]
    g_crowd, g_area = gt["crowd"][order], gt["areas"][order]
    lo = np.array([a[0] for a in AREA_RANGES])[:, None]
    hi = np.array([a[1] for a in AREA_RANGES])[:, None]
    g_ignore = g_crowd[None, :] | (g_area[None, :] < lo) | (g_area[None, :] > hi)          # (A, G)

    # Detections: sorted by group, then by score (stable); only the top maxDets[-1] of a group count.
    d_img = np.searchsorted(image_ids, dt["image"])
    d_cat = np.searchsorted(cat_ids, dt["category"])
    d_group = d_img * n_cat + d_cat
    order = np.lexsort((-dt["score"], d_group))
    d_group, d_score, d_boxes = d_group[order], dt["score"][order], dt["boxes"][order]
    d_rank = _ranks(d_group)
    top = d_rank < MAX_DETS[-1]
    d_group, d_score, d_boxes, d_rank = d_group[top], d_score[top], d_boxes[top], d_rank[top]
    d_cat, d_img = d_group % n_cat, d_group // n_cat
    d_area = d_boxes[:, 2] * d_boxes[:, 3]
    d_out = (d_area[None, :] < lo) | (d_area[None, :] > hi)                                 # (A, D)

    matched, matched_ignore = _match(g_group, g_boxes, g_crowd, g_ignore, d_group, d_rank, d_boxes,
                                     IOU_THRESHOLDS)
    d_ignore = matched_ignore | (~matched & d_out[:, None, :])                             # (A, T, D)
    tps = matched & ~d_ignore
    fps = ~matched & ~d_ignore

    # Per category, detections of all images in pycocotools' order: score (descending, stable), then image.
    npig = np.stack([np.bincount(g_cat[~g_ignore[a]], minlength=n_cat) for a in range(n_area)], 1)  # (K, A)
    precision = -np.ones((n_thr, n_rec, n_cat, n_area, n_max))
    recall = -np.ones((n_thr, n_cat, n_area, n_max))
    cat_order = np.lexsort((d_rank, d_img, -d_score, d_cat))
    cat_sorted = d_cat[cat_order]
    bounds = np.searchsorted(cat_sorted, np.arange(n_cat + 1))
    has_any = np.zeros(n_cat, bool)
    has_any[np.unique(g_cat)] = True
    has_any[np.unique(d_cat)] = True
    for k in range(n_cat):
        if not has_any[k]:
            continue
        idx_k = cat_order[bounds[k]:bounds[k + 1]]
        for m, max_det in enumerate(MAX_DETS):
            idx = idx_k[d_rank[idx_k] < max_det]
            nd = len(idx)
            tp = np.cumsum(tps[:, :, idx], axis=-1).astype(np.float64)                   # (A, T, nd)
            fp = np.cumsum(fps[:, :, idx], axis=-1).astype(np.float64)
            for a in range(n_area):
                if npig[k, a] == 0:
                    continue
                rc = tp[a] / npig[k, a]
                pr = tp[a] / (fp[a] + tp[a] + np.spacing(1))
                recall[:, k, a, m] = rc[:, -1] if nd else 0
                pr = np.maximum.accumulate(pr[:, ::-1], axis=-1)[:, ::-1]                  # envelope
                q = np.zeros((n_thr, n_rec))
                for t in range(n_thr):
                    inds = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
                    inside = inds < nd
                    q[t, inside] = pr[t, inds[inside]]
                precision[:, :, k, a, m] = q

    def summarize(values, thr=None, area="all", max_det=100):
        a, m = AREA_NAMES.index(area), MAX_DETS.index(max_det)
        if thr is not None:
            values = values[np.where(thr == IOU_THRESHOLDS)[0]]
        s = values[..., a, m]
        s = s[s > -1]
        return float(np.mean(s)) if s.size else -1.0

    stats = [summarize(precision), summarize(precision, 0.5), summarize(precision, 0.75),
             summarize(precision, area="small"), summarize(precision, area="medium"),
             summarize(precision, area="large"),
             summarize(recall, max_det=1), summarize(recall, max_det=10), summarize(recall),
             summarize(recall, area="small"), summarize(recall, area="medium"), summarize(recall, area="large")]
    result = dict(zip(COCO_STAT_NAMES, stats))
    if return_details:
        result["details"] = {"precision": precision, "recall": recall, "category_ids": cat_ids,
                             "iou_thresholds": IOU_THRESHOLDS, "recall_thresholds": RECALL_THRESHOLDS}
    return result


def voc_ap(recall, precision, use_07_metric: bool = False) -> float:
    """Pascal VOC average precision of a PR curve (points ordered by decreasing score).

    ``use_07_metric=True``: the VOC2007 11-point mean of the best precision at recall >= 0, 0.1, ..., 1.
    Otherwise the VOC2010+ area under the monotone precision envelope at every recall change.
    """
    rec = np.asarray(recall, np.float64).reshape(-1)
    prec = np.asarray(precision, np.float64).reshape(-1)
    if rec.shape != prec.shape:
        raise ValueError(f"recall and precision must have the same length; got {rec.size} and {prec.size}.")
    if use_07_metric:
        points = np.arange(0.0, 1.1, 0.1)
        best = np.where(rec[None, :] >= points[:, None], prec[None, :], -np.inf).max(axis=1, initial=-np.inf)
        return float(np.sum(np.where(np.isfinite(best), best, 0.0) / 11.0))
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def voc_evaluate(gt_boxes, gt_labels, det_boxes, det_labels, det_scores, num_classes: int | None = None,
                 gt_difficult=None, iou_threshold: float = 0.5, use_07_metric: bool = False,
                 box_format: str = "xyxy", plus_one: bool = False) -> dict:
    """Per-class Pascal VOC evaluation over arrays (the devkit's protocol).

    Detections of a class are taken by decreasing score; each is compared with the ground truth of its
    image and class of highest IoU; IoU > ``iou_threshold`` on a "difficult" box counts neither way, on
    an unclaimed box is a true positive (claiming it), otherwise a false positive.

    Args:
        gt_boxes, gt_labels, gt_difficult: per image, a (G_i, 4) array, (G_i,) ints and (G_i,) booleans.
        det_boxes, det_labels, det_scores: per image, (D_i, 4), (D_i,) and (D_i,).
        num_classes: number of classes (default: one more than the largest label seen).
        box_format: format of all boxes. ``plus_one``: the devkit's integer-pixel areas (x2 - x1 + 1).

    Returns:
        ``{"ap": (C,) array (NaN for a class without non-difficult ground truth), "map": nanmean of ap,
        "recall": [per class arrays], "precision": [per class arrays], "npos": (C,) ints}``.
    """
    n_img = len(gt_boxes)
    if not (len(gt_labels) == len(det_boxes) == len(det_labels) == len(det_scores) == n_img):
        raise ValueError("gt_boxes, gt_labels, det_boxes, det_labels and det_scores must list the same images.")
    if gt_difficult is None:
        gt_difficult = [np.zeros(len(np.asarray(lab).reshape(-1)), bool) for lab in gt_labels]

    def cat(items, dtype, shape=(-1,)):
        arrays = [np.asarray(x, dtype).reshape(shape) for x in items]
        return np.concatenate(arrays) if arrays else np.zeros((0,) + shape[1:], dtype)

    gb = convert_boxes(cat([as_boxes(b) for b in gt_boxes], np.float64, (-1, 4)), box_format, "xyxy")
    gl, gd = cat(gt_labels, np.int64), cat(gt_difficult, bool)
    gi = np.repeat(np.arange(n_img), [len(np.asarray(x).reshape(-1)) for x in gt_labels])
    db = convert_boxes(cat([as_boxes(b) for b in det_boxes], np.float64, (-1, 4)), box_format, "xyxy")
    dl, ds = cat(det_labels, np.int64), cat(det_scores, np.float64)
    di = np.repeat(np.arange(n_img), [len(np.asarray(x).reshape(-1)) for x in det_labels])
    if num_classes is None:
        num_classes = int(max(gl.max(initial=-1), dl.max(initial=-1))) + 1
    off = 1.0 if plus_one else 0.0
    aps, recalls, precisions = np.full(num_classes, np.nan), [], []
    npos_all = np.bincount(gl[~gd], minlength=num_classes)[:num_classes]
    for c in range(num_classes):
        gsel, dsel = np.flatnonzero(gl == c), np.flatnonzero(dl == c)
        order = dsel[np.argsort(-ds[dsel], kind="stable")]
        nd = len(order)
        # (detection, ground truth of the same image) pairs, by detection in score order.
        g_sorted = gsel[np.argsort(gi[gsel], kind="stable")]
        g_img = gi[g_sorted]
        start = np.searchsorted(g_img, di[order], "left")
        count = np.searchsorted(g_img, di[order], "right") - start
        pair_det = np.repeat(np.arange(nd), count)
        pair_gt = g_sorted[np.repeat(start, count) + _ranks(pair_det)] if len(pair_det) else pair_det
        a, b = db[order][pair_det], gb[pair_gt]
        iw = np.maximum(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + off, 0.0)
        ih = np.maximum(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + off, 0.0)
        inter = iw * ih
        union = ((a[:, 2] - a[:, 0] + off) * (a[:, 3] - a[:, 1] + off)
                 + (b[:, 2] - b[:, 0] + off) * (b[:, 3] - b[:, 1] + off) - inter)
        ov = inter / union if len(pair_det) else inter
        ovmax = np.full(nd, -np.inf)
        jmax = np.full(nd, -1)
        if len(pair_det):
            has = count > 0
            seg = np.r_[0, np.cumsum(count)[:-1]][has]
            ovmax[has] = np.maximum.reduceat(ov, seg)
            first = np.where(ov == ovmax[pair_det], np.arange(len(ov)), len(ov))
            jmax[has] = pair_gt[np.minimum.reduceat(first, seg)]
        hit = ovmax > iou_threshold
        difficult = np.zeros(nd, bool)
        difficult[hit] = gd[jmax[hit]]
        claim = hit & ~difficult
        first_claim = np.zeros(nd, bool)
        claimed = np.flatnonzero(claim)
        _, firsts = np.unique(jmax[claimed], return_index=True)
        first_claim[claimed[firsts]] = True
        tp = np.cumsum(first_claim).astype(np.float64)
        fp = np.cumsum(~hit | (claim & ~first_claim)).astype(np.float64)
        npos = int(npos_all[c])
        rec = tp / npos if npos else np.full(nd, np.nan)
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        recalls.append(rec)
        precisions.append(prec)
        if npos:
            aps[c] = voc_ap(rec, prec, use_07_metric)
    return {"ap": aps, "map": float(np.nanmean(aps)) if np.isfinite(aps).any() else float("nan"),
            "recall": recalls, "precision": precisions, "npos": npos_all}


__all__ = ["coco_evaluate", "voc_ap", "voc_evaluate", "iou_matrix", "COCO_STAT_NAMES"]
