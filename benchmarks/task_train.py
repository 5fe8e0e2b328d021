"""A detector trained from scratch on generated shapes through ``catalog.train``, scored with COCO AP on the
held-out generated split, against the same model untrained (the acceptance run of the detection issue).

The recipe: ``retinanet_mobilenet_v2_fpn`` at 96 px with a MobileNetV2 of alpha 0.5 and 64-channel FPN
and subnets, random initialization (nothing downloaded), 2,000 generated training images of up to three
shapes (the ``shapes`` detection default), batch 16, Adam 2e-3 with clipnorm 10, half an epoch of warm-up
then cosine, BatchNorm momentum 0.9 (``bn_momentum``: the 0.999 of MobileNetV2 keeps its moving
statistics near their initial values over a run this short), no augmentation (it halves what a short run
reaches: see docs/performance.md). The untrained model is the same build (same seed) before any step.

    python benchmarks/detection_train.py --epochs 12 --out runs/detection-shapes
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MODEL = "retinanet_mobilenet_v2_fpn"
OPTIONS = {"fpn_channels": 64, "backbone_options": {"alpha": 0.5}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--num-images", type=int, default=2000)
    parser.add_argument("--augment", action="store_true")
    parser.add_argument("--out", default="runs/detection-shapes")
    args = parser.parse_args()

    import keras

    import catalog

    keras.utils.set_random_seed(0)
    untrained = catalog.create_model(MODEL, num_classes=5, input_shape=(args.image_size, args.image_size, 3),
                                     **OPTIONS)
    baseline = catalog.evaluate(untrained, "shapes", task="detection", out_dir=os.path.join(args.out, "untrained"),
                                image_size=args.image_size, preprocessing="tf", allow_random_weights=True,
                                verbose=0)
    start = time.time()
    run = catalog.train(MODEL, "shapes", epochs=args.epochs, batch_size=16, image_size=args.image_size,
                        num_images=args.num_images, model_options=OPTIONS, optimizer="adam", lr=2e-3,
                        clipnorm=10.0, warmup_epochs=0.5, bn_momentum=0.9, augment=args.augment,
                        out_dir=os.path.join(args.out, "trained"), verbose=2)
    seconds = time.time() - start
    before = json.load(open(os.path.join(baseline, "report.json")))["metrics"]
    after = json.load(open(os.path.join(run.run_dir, "report.json")))["metrics"]
    print(f"| model | AP50 | AP | AP75 | AR100 | VOC AP50 |\n|---|---|---|---|---|---|")
    for name, m in (("untrained", before), (f"trained {args.epochs} epochs ({seconds:.0f} s)", after)):
        print(f"| {name} | {m['AP50']:.3f} | {m['AP']:.3f} | {m['AP75']:.3f} | {m['AR100']:.3f} | "
              f"{m['VOC_AP50']:.3f} |")


if __name__ == "__main__":
    main()
