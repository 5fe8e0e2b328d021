"""A DCGAN trained briefly on generated shapes through ``catalog.train``, scored by the Inception Score and FID of
``catalog evaluate --task generation`` with a small classifier trained on the same shapes (issue 16's generation
acceptance run). Random initialization, nothing downloaded; CPU-sized.

1. The scoring classifier: ``resnet20`` trained on ``shapes`` (5 classes) with Adam and no augmentation; its
   test-split accuracy is printed (the Inception Score of real images is the ceiling it allows).
2. Before: the untrained generator (``dcgan_32`` at ``--filters``, seed ``--seed``) scored with that classifier.
3. ``dcgan_32`` trained with ``catalog.train`` (Adam, fixed learning rate, ``--loss``, no augmentation), then
   scored the same way: the same noise, the same real images, the same number of images.

    python benchmarks/gan_train.py --epochs 20 --num-images 2000 --filters 128 --out runs/gan-shapes
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/gan-shapes")
    parser.add_argument("--model", default="dcgan_32")
    parser.add_argument("--filters", type=int, default=128, help="generator channels at 4x4 (the paper's 1024)")
    parser.add_argument("--loss", default="non_saturating", help="non_saturating, lsgan, hinge or wgan_gp")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--num-images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--beta-1", type=float, default=0.5, help="Adam's beta_1 (the DCGAN paper's 0.5)")
    parser.add_argument("--classifier", default="resnet20")
    parser.add_argument("--classifier-file", help="score with this trained .keras classifier instead of training one")
    parser.add_argument("--classifier-epochs", type=int, default=4)
    parser.add_argument("--classifier-images", type=int, default=3000)
    parser.add_argument("--score-images", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import catalog

    size, timing = 32, {}
    start = time.time()
    if args.classifier_file:
        classifier, accuracy = args.classifier_file, None
    else:
        classifier, accuracy = train_classifier(args, size)
    timing["classifier_seconds"] = round(time.time() - start, 1)
    score = dict(classifier=classifier, num_images=args.score_images, verbose=0)

    import keras

    keras.utils.set_random_seed(args.seed)
    untrained = catalog.create_model(args.model, filters=args.filters, input_shape=(size, size, 3))
    start = time.time()
    before = catalog.evaluate(untrained, "shapes", task="generation", out_dir=os.path.join(args.out, "untrained"),
                              allow_random_weights=True, **score)
    timing["score_seconds"] = round(time.time() - start, 1)
    start = time.time()
    run = catalog.train(args.model, "shapes", epochs=args.epochs, batch_size=args.batch_size,
                        num_images=args.num_images, image_size=size, optimizer="adam", lr=args.lr,
                        beta_1=args.beta_1, schedule="fixed", weight_decay=0.0, augment=False, seed=args.seed, model_options={"filters": args.filters},
                        task_options={"loss": args.loss}, out_dir=os.path.join(args.out, "gan"), verbose=0)
    timing["gan_train_seconds"] = round(time.time() - start, 1)
    after = catalog.evaluate(os.path.join(run.run_dir, "model.keras"), "shapes", task="generation",
                             out_dir=os.path.join(args.out, "trained"), **score)
    result = {"classifier_top1": accuracy, **timing, "settings": vars(args),
              "d_accuracy_per_epoch": [round(r["d_accuracy"], 4) for r in run.history],
              "d_loss_per_epoch": [round(r["d_loss"], 4) for r in run.history],
              "g_loss_per_epoch": [round(r["g_loss"], 4) for r in run.history]}
    for name, folder in (("untrained", before), ("trained", after)):
        metrics = json.load(open(os.path.join(folder, "report.json")))["metrics"]
        result[name] = {k: metrics[k] for k in ("inception_score", "inception_score_std", "real_inception_score",
                                                "fid")}
    with open(os.path.join(args.out, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


def train_classifier(args, size):
    """The scoring classifier's ``model.keras`` and its test-split top-1."""
    import catalog

    clf = catalog.train(args.classifier, "shapes", epochs=args.classifier_epochs, batch_size=64,
                        num_images=args.classifier_images, image_size=size, optimizer="adam", lr=1e-3,
                        augment=False, weight_decay=0.0, bn_momentum=0.9, seed=args.seed, val_split="test",
                        out_dir=os.path.join(args.out, "classifier"), verbose=0)
    accuracy = json.load(open(os.path.join(clf.run_dir, "report.json")))["metrics"]["top_k"]["top1"]
    return os.path.join(clf.run_dir, "model.keras"), accuracy


if __name__ == "__main__":
    main()
