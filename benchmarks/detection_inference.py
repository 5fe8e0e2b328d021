"""Detector inference speed: images/s of the inference model (network + anchor decoding + class-aware NMS)
and the share of it that is post-processing, at each detector's default input size.

For every model the training model (network only: class logits and box deltas) and its inference model
(the same layers with decoding, scores and NMS appended) are timed side by side in one process, alternating
their order each round, on the same random batch, with ``predict_on_batch`` (graph mode, XLA off: the CPU
default of ``catalog.train``'s ``--jit auto``). The first call of each is the trace and is discarded. The
post-processing share is 1 - median(network) / median(inference model). Random weights give few
detections above the score threshold; ``--score-threshold 0`` makes NMS work on every candidate (the
worst case), which is the default here.

    python benchmarks/detection_inference.py --models retinanet_mobilenet_v2_fpn,ssdlite_mobilenet_v2 \\
        --batch-sizes 1,8 --rounds 7
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="retinanet_mobilenet_v2_fpn,ssdlite_mobilenet_v2")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--score-threshold", type=float, default=0.0)
    args = parser.parse_args()

    import keras
    import numpy as np

    import catalog
    from catalog.registry import get_entry, recipe_of

    print(f"keras {keras.__version__}, backend {keras.backend.backend()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} logical CPUs")
    print("| model | input | batch | network ms | inference ms | images/s | post-processing share |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        entry = get_entry(name)
        network = catalog.create_model(name, num_classes=80)
        recipe = recipe_of(network, name, score_threshold=args.score_threshold)
        detector = recipe.inference(network)
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            x = np.random.default_rng(0).uniform(0, 255, (batch, *entry.input_shape)).astype("float32")
            times = {"network": [], "inference": []}
            for model in (network, detector):  # trace once
                model.predict_on_batch(x)
            for r in range(args.rounds):
                order = ("network", "inference") if r % 2 == 0 else ("inference", "network")
                for key in order:
                    model = network if key == "network" else detector
                    start = time.perf_counter()
                    model.predict_on_batch(x)
                    times[key].append(time.perf_counter() - start)
            net, inf = statistics.median(times["network"]), statistics.median(times["inference"])
            print(f"| {name} | {entry.input_shape[0]} | {batch} | {net * 1e3:.1f} | {inf * 1e3:.1f} | "
                  f"{batch / inf:.1f} | {max(0.0, 1 - net / inf):.0%} |", flush=True)


if __name__ == "__main__":
    main()
