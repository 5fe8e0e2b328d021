"""A task model trained from scratch on generated shapes through ``catalog.train``, scored on the held-out
generated split, against the same model untrained (the acceptance runs of the detection and segmentation
issues). Random initialization (nothing downloaded); the untrained model is the same build (same seed)
before any step.

- ``detection``: ``retinanet_mobilenet_v2_fpn`` at 96 px with a MobileNetV2 of alpha 0.5 and 64-channel FPN
  and subnets, 2,000 training images of up to three shapes (the ``shapes`` detection default), batch 16,
  Adam 2e-3 with clipnorm 10, half an epoch of warm-up then cosine, BatchNorm momentum 0.9
  (``bn_momentum``: MobileNetV2's 0.999 keeps its moving statistics near their initial values over a run
  this short), no augmentation (it halves what a short run reaches: see docs/performance.md); COCO AP.
- ``segmentation``: the paper's ``unet`` with ``width=16`` and BatchNorm (``norm=True``) at 64 px, 2,000
  training images, batch 16, Adam 1e-3, half an epoch of warm-up then cosine, ``bn_momentum=0.9``, no
  augmentation; mIoU over background and the five shapes.

    python benchmarks/task_train.py --task detection --epochs 12 --out runs/detection-shapes
    python benchmarks/task_train.py --task segmentation --epochs 8 --out runs/segmentation-shapes
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RECIPES = {
    "detection": dict(model="retinanet_mobilenet_v2_fpn", image_size=96, preprocessing="tf",
                      model_options={"fpn_channels": 64, "backbone_options": {"alpha": 0.5}},
                      train=dict(optimizer="adam", lr=2e-3, clipnorm=10.0), columns=("AP50", "AP", "AP75", "AR100",
                                                                                     "VOC_AP50")),
    "segmentation": dict(model="unet", image_size=64, preprocessing="unit", model_options={"width": 16, "norm": True},
                         train=dict(optimizer="adam", lr=1e-3), columns=("miou", "pixel_accuracy", "fwiou",
                                                                         "mean_dice")),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(RECIPES), default="detection")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--num-images", type=int, default=2000)
    parser.add_argument("--augment", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import keras

    import catalog

    recipe = RECIPES[args.task]
    out = args.out or f"runs/{args.task}-shapes"
    size = recipe["image_size"]
    classes = 5 if args.task == "detection" else 6  # segmentation: background and the five shapes
    keras.utils.set_random_seed(0)
    untrained = catalog.create_model(recipe["model"], num_classes=classes, input_shape=(size, size, 3),
                                     **recipe["model_options"])
    baseline = catalog.evaluate(untrained, "shapes", task=args.task, out_dir=os.path.join(out, "untrained"),
                                image_size=size, preprocessing=recipe["preprocessing"], allow_random_weights=True,
                                verbose=0)
    start = time.time()
    run = catalog.train(recipe["model"], "shapes", epochs=args.epochs, batch_size=16, image_size=size,
                        num_images=args.num_images, model_options=recipe["model_options"], warmup_epochs=0.5,
                        bn_momentum=0.9, augment=args.augment, out_dir=os.path.join(out, "trained"), verbose=2,
                        **recipe["train"])
    seconds = time.time() - start
    before = json.load(open(os.path.join(baseline, "report.json")))["metrics"]
    after = json.load(open(os.path.join(run.run_dir, "report.json")))["metrics"]
    columns = recipe["columns"]
    print(f"| model | {' | '.join(columns)} |\n|---|{'---|' * len(columns)}")
    for name, m in (("untrained", before), (f"trained {args.epochs} epochs ({seconds:.0f} s)", after)):
        print(f"| {name} | {' | '.join(f'{m[c]:.3f}' for c in columns)} |")


if __name__ == "__main__":
    main()
