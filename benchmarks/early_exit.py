"""BranchyNet on a small ResNet: train ``branchynet`` (resnet20 with exits after stages 1 and 2) on generated
shapes through ``catalog.train``, calibrate the entropy thresholds on the held-out ``val`` split so the early-exit
accuracy stays within ``--tolerance`` (default 1 point) of the final exit's, then score the ``test`` split: every
exit's accuracy, the share of images leaving early, the expected MACs, and the measured batch-1 latency of
early-exit inference (``catalog.models.early_exit.EarlyExitRunner``, which stops computing at the exit taken)
against the full network (the backbone alone, no branch), medians of repeated passes.

Setting: 32 px shapes (five classes), 2,000 training images, batch 64, Adam 2e-3 with cosine decay, BatchNorm
momentum 0.9, equal exit weights (the recipe's default), random initialization (nothing downloaded).

    python benchmarks/early_exit.py --epochs 12 --out runs/early-exit
    python benchmarks/early_exit.py --model runs/early-exit/model.keras --out runs/early-exit  # score again
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--num-images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--tolerance", type=float, default=0.01, help="accuracy the calibration may give up")
    parser.add_argument("--latency-images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default="runs/early-exit")
    parser.add_argument("--model", help="score this trained model.keras instead of training one")
    args = parser.parse_args()

    import catalog
    from catalog.models.early_exit import evaluate_early_exit

    start = time.time()
    model = args.model
    if model is None:
        run = catalog.train("branchynet", "shapes", image_size=32, num_images=args.num_images, epochs=args.epochs,
                            batch_size=args.batch_size, optimizer="adam", lr=2e-3, schedule="cosine",
                            bn_momentum=0.9, val_split="none", verbose=2, out_dir=args.out)
        model = os.path.join(run.run_dir, "model.keras")
        print(f"trained in {time.time() - start:.0f} s ({args.epochs} epochs of {args.num_images} images)")
    out = evaluate_early_exit(model, "shapes",
                              out_dir=os.path.join(args.out, "eval"), calibration_split="val",
                              tolerance=args.tolerance, latency_images=args.latency_images,
                              latency_repeats=args.repeats, verbose=0)
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        early = json.load(f)["metrics"]["early_exit"]
    latency = early["latency"]
    print(f"report {out}")
    print(f"thresholds (calibrated on {early['threshold_source']}, tolerance {args.tolerance:g}): "
          + ", ".join(f"{t:.4g}" for t in early["thresholds"][:-1]))
    print("| exit | accuracy | share leaving | MACs to leave |")
    print("|---|---|---|---|")
    for k, name in enumerate(early["exits"]):
        print(f"| {name} | {early['exit_accuracy'][k]:.4f} | {early['share'][k]:.3f} | {early['macs'][k]:,} |")
    print(f"early-exit accuracy {early['early_exit_accuracy']:.4f} vs final {early['final_accuracy']:.4f} "
          f"(difference {100 * (early['final_accuracy'] - early['early_exit_accuracy']):.2f} points); "
          f"{early['share_early']:.1%} leave early; expected cost {early['relative_cost']:.3f} of the full "
          f"network's {early['full_network_macs']:,} MACs")
    print(f"batch-1 latency ({latency['device']}, median of {latency['repeats']} passes over {latency['images']} "
          f"images): early exit {latency['early_exit_ms']:.3f} ms, full network {latency['full_network_ms']:.3f} ms, "
          f"speed-up {latency['speedup']:.2f}x")


if __name__ == "__main__":
    main()
