"""Time catalog's coco_evaluate against pycocotools' COCOeval on generated COCO-sized data.

    python benchmarks/coco_eval.py --images 5000 --detections 100 --repeats 3

Ground truth: 1-15 boxes per image over 80 categories, 10% crowd; detections: 100 per image, about half
jittered copies of ground-truth boxes (some with the wrong class), half random. Both evaluators get the
same dicts/lists in memory; the time covers loading the results, matching, accumulating and the stats.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time

import numpy as np


def generate(num_images: int, dets_per_image: int, num_classes: int = 80, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = [{"id": i + 1, "width": 640, "height": 480} for i in range(num_images)]
    n_gt = rng.integers(1, 16, num_images)
    gi = np.repeat(np.arange(num_images) + 1, n_gt)
    g = len(gi)
    wh = np.exp(rng.uniform(np.log(4), np.log(400), (g, 2)))
    xy = rng.uniform(0, 640 - wh.clip(max=600))
    gcls = rng.integers(1, num_classes + 1, g)
    anns = [{"id": int(j + 1), "image_id": int(gi[j]), "category_id": int(gcls[j]),
             "bbox": [float(xy[j, 0]), float(xy[j, 1]), float(wh[j, 0]), float(wh[j, 1])],
             "area": float(wh[j, 0] * wh[j, 1]), "iscrowd": int(rng.random() < 0.1)} for j in range(g)]
    starts = np.r_[0, np.cumsum(n_gt)[:-1]]
    d = num_images * dets_per_image
    di = np.repeat(np.arange(num_images), dets_per_image)
    src = starts[di] + (rng.random(d) * n_gt[di]).astype(int)
    copy = rng.random(d) < 0.5
    box = np.where(copy[:, None], np.c_[xy[src], wh[src]] * rng.uniform(0.85, 1.15, (d, 4)),
                   np.c_[rng.uniform(0, 600, (d, 2)), np.exp(rng.uniform(np.log(4), np.log(400), (d, 2)))])
    dcls = np.where(copy & (rng.random(d) < 0.8), gcls[src], rng.integers(1, num_classes + 1, d))
    score = np.clip(0.4 * copy + 0.6 * rng.random(d), 0, 1)  # jittered copies score higher
    dets = [{"image_id": int(di[j] + 1), "category_id": int(dcls[j]), "bbox": box[j].tolist(),
             "score": float(score[j])} for j in range(d)]
    cats = [{"id": c, "name": f"class{c}"} for c in range(1, num_classes + 1)]
    return {"images": images, "annotations": anns, "categories": cats}, dets


def run_pycocotools(gt, dets):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def run_catalog(gt, dets):
    from catalog.evaluation.detection import COCO_STAT_NAMES, coco_evaluate

    out = coco_evaluate(gt, dets)
    return np.array([out[k] for k in COCO_STAT_NAMES])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--detections", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    gt, dets = generate(args.images, args.detections)
    print(f"{args.images} images, {len(gt['annotations'])} ground-truth boxes, {len(dets)} detections")
    times = {"catalog": [], "pycocotools": []}
    cpu = {"catalog": [], "pycocotools": []}
    for _ in range(args.repeats):
        for name, fn in (("catalog", run_catalog), ("pycocotools", run_pycocotools)):
            start, start_cpu = time.perf_counter(), time.process_time()
            stats = fn(gt, dets)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
            if name == "catalog":
                ours = stats
            else:
                ref = stats
    diff = float(np.max(np.abs(ours - ref)))
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    print(f"stats: {np.round(ours, 4).tolist()}  max |catalog - pycocotools| = {diff:.2e}")
    print(f"median seconds over {args.repeats} runs: catalog {med['catalog']:.2f}, "
          f"pycocotools {med['pycocotools']:.2f}; catalog is {med['pycocotools'] / med['catalog']:.1f}x faster")
    print(f"median CPU seconds (this process): catalog {med_cpu['catalog']:.2f}, pycocotools "
          f"{med_cpu['pycocotools']:.2f}; ratio {med_cpu['pycocotools'] / med_cpu['catalog']:.1f}x")


if __name__ == "__main__":
    main()
