"""Measured accuracy per classification family at one small common budget (issue: measured choice).

For each family, its smallest registered member (fewest parameters on its card) is trained from random
weights with ``catalog.train`` on two datasets this machine holds, with one recipe for every family:

- ``shapes``: the generated shapes (5 classes), 2,000 training images, tested on its 500 test images;
- ``digits``: scikit-learn's 8x8 handwritten digits (10 classes), upscaled, 60/20/20 fixed split
  (1,078 training and 359 test images);

both at 32 px (or the model's minimum input size), batch 32, Adam at 1e-3 with a cosine schedule, the
loader's default augmentation, every BatchNorm's momentum 0.9 (the catalog's default; the MobileNet,
EfficientNet, Inception-v3 and Xception cards keep keras.applications' 0.99-0.999, whose moving averages a
few hundred steps do not settle), seed 0, ``--epochs`` epochs. The score is the top-1 of the final model on
the test split (``report.json`` of the run). Each result is appended to ``docs/accuracy_cpu.csv`` as it
finishes, so an interrupted run keeps what it measured and ``--skip-done`` continues it: a training run
stopped mid-way resumes from its last checkpoint (``catalog.train(resume=...)``, which ends with the weights
of an uninterrupted run; ``seconds`` then counts the resumed part only). ``--cheapest-first`` orders the
families by their member's MACs at the training size, so a partial pass covers the most families. The model
zoo table (``docs/models.md``) shows the last row per name and dataset. Once a result is recorded, the run's
weights (``model.keras`` and its checkpoint, up to 0.7 GB each for the ResNet-50-sized members) are deleted
and its config, history and reports kept, unless ``--keep-models``: 30 families on two datasets would
otherwise hold about 30 GB.

    python benchmarks/family_accuracy.py --skip-done [--families resnet,vgg] [--epochs 6] [--cheapest-first]
    python benchmarks/family_accuracy.py --table     # the results as docs/performance.md's table

These are small-budget numbers for comparing families on this CPU, not ImageNet accuracies.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSV = os.path.join(ROOT, "docs", "accuracy_cpu.csv")
COLUMNS = ["model", "family", "data", "top1", "image_size", "epochs", "batch_size", "optimizer", "lr",
           "train_images", "test_images", "seconds", "date", "backend", "versions"]
DATASETS = {"shapes": dict(num_images=2000), "digits": {}}
BN_MOMENTUM = 0.9


def smallest_members(families=None):
    """{family: the registered classification name with the fewest parameters on its card}."""
    import catalog

    best = {}
    for name in catalog.list_models(task="classification"):
        info = catalog.model_info(name)
        if families and info.family not in families:
            continue
        if info.family not in best or info.params < best[info.family][1]:
            best[info.family] = (name, info.params)
    return {family: name for family, (name, _) in sorted(best.items())}


def done_rows(path):
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return {(r["model"], r["data"]) for r in csv.DictReader(f)}
    except FileNotFoundError:
        return set()


def _resumable(run_dir, epochs):
    """Whether ``run_dir`` holds an unfinished run of this recipe's length with a checkpoint to resume."""
    from catalog.training.recorder import CHECKPOINT

    try:
        with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
            config = json.load(f)["config"]
    except (OSError, ValueError, KeyError):
        return False
    return (os.path.exists(os.path.join(run_dir, CHECKPOINT)) and config.get("epochs") == epochs
            and config.get("bn_momentum") == BN_MOMENTUM and not os.path.exists(os.path.join(run_dir, "report.json")))


def drop_weights(run_dir):
    """Delete a finished run's weights (final model and checkpoint), keeping its config, history and reports."""
    from catalog.training.recorder import CHECKPOINT

    for name in ("model.keras", CHECKPOINT):
        path = os.path.join(run_dir, name)
        if os.path.exists(path):
            os.remove(path)


def markdown_table(path):
    """One row per measured family: its member, the training size, and the last top-1 on each dataset."""
    from catalog.benchmark import read_accuracy_csv

    results = {}
    for (_, data), r in read_accuracy_csv(path).items():
        results.setdefault((r["family"], r["model"], r["image_size"]), {})[data] = r["top1"]
    lines = ["| family | smallest member | px | shapes top-1 | digits top-1 |", "|---|---|---:|---:|---:|"]
    for (family, name, size), scores in sorted(results.items()):
        cells = [f"{float(scores[d]):.3f}" if d in scores else "-" for d in ("shapes", "digits")]
        lines.append(f"| {family} | {name} | {size} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def append_row(path, row):
    new = not os.path.exists(path)
    with open(path, "a", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(row)
        f.flush()
        os.fsync(f.fileno())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default="", help="comma-separated families (default: all)")
    parser.add_argument("--data", default="shapes,digits")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--csv", default=CSV)
    parser.add_argument("--runs", default=os.path.join(ROOT, "runs", "accuracy"))
    parser.add_argument("--skip-done", action="store_true", help="skip (model, data) pairs already in the CSV")
    parser.add_argument("--table", action="store_true",
                        help="print the CSV's results as the markdown table of docs/performance.md and exit")
    parser.add_argument("--keep-models", action="store_true",
                        help="keep each finished run's model.keras and checkpoint (deleted by default)")
    parser.add_argument("--cheapest-first", action="store_true",
                        help="families in the order of their member's MACs at the training size")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(args.csv))
        return 0

    import keras
    import tensorflow as tf

    import catalog

    families = {f for f in args.families.split(",") if f}
    members = smallest_members(families or None)
    done = done_rows(args.csv) if args.skip_done else set()
    versions = f"keras {keras.__version__}, tensorflow {tf.__version__}"
    def size_of(name):
        return max(args.image_size, catalog.model_info(name).min_input_size or 0)

    def cost(item):  # MACs scale with the input area
        card = catalog.model_info(item[1])
        return (card.macs or 0) * size_of(item[1]) ** 2 / (card.input_shape[0] * card.input_shape[1])

    order = sorted(members.items(), key=cost) if args.cheapest_first else list(members.items())
    for i, (family, name) in enumerate(order, 1):
        size = size_of(name)
        for data in args.data.split(","):
            if (name, data) in done:
                continue
            out = os.path.join(args.runs, f"{name}-{data}")
            start = time.time()
            try:
                if _resumable(out, args.epochs):
                    result = catalog.train(resume=out, verbose=0)
                else:
                    result = catalog.train(name, data, epochs=args.epochs, batch_size=args.batch_size,
                                           image_size=size, optimizer="adam", lr=args.lr, schedule="cosine", seed=0,
                                           bn_momentum=BN_MOMENTUM, out_dir=out, verbose=0, **DATASETS[data])
            except Exception as err:  # noqa: BLE001 - one family's failure is reported, the others still run
                print(f"[{i}/{len(order)}] {family} {name} on {data}: FAILED {type(err).__name__}: {err}",
                      flush=True)
                continue
            with open(os.path.join(result.run_dir, "report.json"), encoding="utf-8") as f:
                report = json.load(f)
            resolved = result.config["resolved"]
            top1 = report["metrics"]["accuracy"]
            append_row(args.csv, {
                "model": name, "family": family, "data": data, "top1": round(top1, 4), "image_size": size,
                "epochs": args.epochs, "batch_size": args.batch_size, "optimizer": "adam", "lr": args.lr,
                "train_images": resolved["train_images"], "test_images": report["metrics"]["num_samples"],
                "seconds": round(time.time() - start, 1), "date": time.strftime("%Y-%m-%d"),
                "backend": keras.backend.backend(), "versions": versions})
            print(f"[{i}/{len(order)}] {family} {name} on {data}: top-1 {top1:.3f} "
                  f"({time.time() - start:.0f} s)", flush=True)
            if not args.keep_models:
                drop_weights(result.run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
