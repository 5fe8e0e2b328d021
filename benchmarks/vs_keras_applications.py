"""The catalog's models against keras.applications' same architectures, side by side in one process:
inference (``predict_on_batch`` at batch 1 and at ``--batch-size``) and the training step (``fit`` of SGD
momentum 0.9 and sparse cross-entropy on the same in-memory batches), XLA off and on, alternating the
order every round; medians; the ratio catalog / keras.applications per row (above 1.0: the catalog is
slower). Run it once per backend:

    python benchmarks/vs_keras_applications.py --image-size 96 --batch-size 16 --repeats 5
    KERAS_BACKEND=jax python benchmarks/vs_keras_applications.py --image-size 96 --batch-size 16 --repeats 5

Both models of a pair get the same input (the shapes images scaled to [0, 1]); where keras.applications
puts its preprocessing inside the model (MobileNetV3, EfficientNet) the catalog model is built with
``include_preprocessing=True`` too, so both graphs do the same work. Random weights: speed only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from train_step import (alternate_fits, compile_plain, in_memory_dataset, load_average, markdown,  # noqa: E402
                        median, shapes_arrays)

# registered name: (keras.applications class, catalog keywords that give the same graph's work)
PAIRS = {
    "resnet50": ("ResNet50", {}), "resnet50_v2": ("ResNet50V2", {}), "mobilenet_v2": ("MobileNetV2", {}),
    "mobilenet_v3_large": ("MobileNetV3Large", {"include_preprocessing": True}),
    "densenet121": ("DenseNet121", {}), "inception_v3": ("InceptionV3", {}), "xception": ("Xception", {}),
    "efficientnet_b0": ("EfficientNetB0", {"include_preprocessing": True}),
}


def predict_times(models, x, repeats):
    """Median ``predict_on_batch`` seconds per model, alternating the order each round (first call: trace)."""
    times = {k: [] for k in models}
    for model in models.values():
        model.predict_on_batch(x)
    names = list(models)
    for r in range(repeats):
        for k in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            models[k].predict_on_batch(x)
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(PAIRS))
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--jit", default="off,on")
    args = parser.parse_args()

    import keras

    import catalog

    size = args.image_size
    x, y, classes = shapes_arrays(args.batch_size * 4, size, preprocessing="unit")
    rows = []
    for name in args.models.split(","):
        app_class, options = PAIRS[name]
        min_size = catalog.model_info(name).min_input_size or 32
        if size < min_size:
            print(f"# {name}: skipped, needs at least {min_size} px", flush=True)
            continue
        for jit in args.jit.split(","):
            keras.utils.set_random_seed(0)
            app = getattr(keras.applications, app_class)(weights=None, classes=classes, input_shape=(size, size, 3))
            ours = catalog.create_model(name, num_classes=classes, input_shape=(size, size, 3), **options)
            pair = {"keras.applications": app, "catalog": ours}
            for model in pair.values():
                compile_plain(model, jit_compile=jit == "on")
            infer_1 = predict_times(pair, x[:1], args.repeats)
            infer_n = predict_times(pair, x[:args.batch_size], args.repeats)
            fits = alternate_fits(pair, in_memory_dataset(x, y, args.batch_size), args.steps, args.repeats)
            train = {k: median(v["walls"]) for k, v in fits.items()}
            for what, t in (("infer b1", infer_1), (f"infer b{args.batch_size}", infer_n),
                            (f"train b{args.batch_size}", train)):
                rows.append([name, size, what, f"XLA {jit}", f"{1000 * t['keras.applications']:.1f}",
                             f"{1000 * t['catalog']:.1f}", f"{t['catalog'] / t['keras.applications']:.2f}"])
            print(f"# {name} XLA {jit}: done ({load_average()})", flush=True)
            keras.backend.clear_session()
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}, {os.cpu_count()} logical CPUs")
    print(markdown(["model", "px", "measure", "XLA", "keras.applications ms", "catalog ms", "catalog / keras"],
                   rows))


if __name__ == "__main__":
    main()
