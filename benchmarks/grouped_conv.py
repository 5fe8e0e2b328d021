"""Grouped convolutions on a CPU: Keras' grouped ``Conv2D`` against the catalog's ``GroupedConv2D`` (one
convolution per group, concatenated), side by side in one process, alternating the order every round.

Each registered model is built once and cloned with its ``GroupedConv2D`` layers turned back into Keras'
``Conv2D`` (same config, same weights), so the two graphs differ only in how the grouped convolutions run.
Measured: ``predict_on_batch`` at ``--batch-size`` and the training step (``fit`` of SGD momentum 0.9 and
sparse cross-entropy on the same in-memory shapes batches), XLA off and on; medians; the ratio
Keras / catalog per row (above 1.0: the catalog is faster). Run it once per backend:

    python benchmarks/grouped_conv.py --image-size 32 --batch-size 32 --repeats 3
    python benchmarks/grouped_conv.py --mode infer --image-size 224 --batch-size 8 --jit off --repeats 5
    KERAS_BACKEND=jax python benchmarks/grouped_conv.py --image-size 32 --batch-size 32 --repeats 3

Random weights: speed only. resnet50 (no grouped convolution) is the yardstick of the same MACs.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from train_step import alternate_fits, compile_plain, in_memory_dataset, load_average, markdown, median, shapes_arrays  # noqa: E402,E501
from vs_keras_applications import predict_times  # noqa: E402

MODELS = "resnext50_32x4d,se_resnext50_32x4d,sknet50,dpn68,shufflenet_v1,resnet50"


def with_keras_grouped_convs(model):
    """A copy of ``model`` (same weights) whose GroupedConv2D layers are Keras' Conv2D."""
    import keras

    from catalog.blocks.layers import GroupedConv2D

    def clone(layer):
        kind = keras.layers.Conv2D if isinstance(layer, GroupedConv2D) else type(layer)
        return kind.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jit", default="off,on")
    parser.add_argument("--mode", choices=("both", "infer"), default="both",
                        help="infer: inference at batch 1 and --batch-size only (for large inputs)")
    args = parser.parse_args()

    import keras

    import catalog
    from catalog.blocks.layers import GroupedConv2D

    size = args.image_size
    x, y, classes = shapes_arrays(args.batch_size * 4, size, preprocessing="unit")
    header = ["model", "grouped convs", "px", "measure", "XLA", "Keras Conv2D ms", "GroupedConv2D ms",
              "Keras / catalog"]
    print(markdown(header, []), flush=True)
    rows = []
    for name in args.models.split(","):
        for jit in args.jit.split(","):
            keras.utils.set_random_seed(0)
            ours = catalog.create_model(name, num_classes=classes, input_shape=(size, size, 3))
            grouped = sum(isinstance(layer, GroupedConv2D) for layer in ours.layers)
            pair = {"keras": with_keras_grouped_convs(ours), "catalog": ours}
            for model in pair.values():
                compile_plain(model, jit_compile=jit == "on")
            measured = [(f"infer b{args.batch_size}", predict_times(pair, x[:args.batch_size], args.repeats))]
            if args.mode == "infer":
                measured.insert(0, ("infer b1", predict_times(pair, x[:1], args.repeats)))
            else:
                fits = alternate_fits(pair, in_memory_dataset(x, y, args.batch_size), args.steps, args.repeats)
                measured.append((f"train b{args.batch_size}", {k: median(v["walls"]) for k, v in fits.items()}))
            for what, t in measured:
                rows.append([name, grouped, size, what, f"XLA {jit}", f"{1000 * t['keras']:.1f}",
                             f"{1000 * t['catalog']:.1f}", f"{t['keras'] / t['catalog']:.2f}"])
                print(markdown(header, rows[-1:]).split("\n")[-1], flush=True)
            print(f"# {name} XLA {jit}: done ({load_average()})", flush=True)
            keras.backend.clear_session()
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}, {os.cpu_count()} logical CPUs")
    print(markdown(header, rows))


if __name__ == "__main__":
    main()
