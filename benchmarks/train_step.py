"""Training-step time: XLA on/off, precision, catalog.train against plain ``model.fit``, folder input.

Every measurement runs its variants side by side in one process, alternating their order each round,
and times every step with a callback (wall clock and CPU seconds of the process at each batch end; the
loss is read back at each batch end, which ``catalog.train``'s recorder does anyway). The first
(compiling) fit or epoch is discarded; medians over the remaining steps are printed as a markdown table.

    python benchmarks/train_step.py --what jit --models resnet50,mobilenet_v2,resnet20@32 --image-size 96
    python benchmarks/train_step.py --what precision --models resnet50,mobilenet_v2 --image-size 96
    python benchmarks/train_step.py --what vs-fit --models resnet50 --image-size 96 --batch-size 16
    python benchmarks/train_step.py --what pipeline --models mobilenet_v2 --image-size 128 --batch-size 32
    python benchmarks/train_step.py --what arch --models resnet50 --image-size 96

``--models`` takes registered names; ``name@SIZE`` overrides ``--image-size`` for that model.

- ``jit``: per model two instances of the registered architecture (same seed), compiled with
  ``jit_compile=True`` and ``False`` (SGD, momentum 0.9), each fitted ``--steps`` steps per round on the
  same in-memory batches (a cached ``tf.data`` of tensors); round 0 (the compile) is discarded. This
  times the training step ``catalog.train(..., jit="on"/"off")`` compiles, without its per-call model
  build, tracing and checkpoints. ``jit_compile`` after fit says whether Keras kept XLA.
- ``precision``: the same with ``float32``, ``mixed_bfloat16`` and ``mixed_float16`` (Keras wraps the
  optimizer in a LossScaleOptimizer) dtype policies, XLA per ``--jit`` (default off, what ``auto``
  resolves to on CPU).
- ``vs-fit``: ``catalog.train(name, "shapes", jit="auto", val_split="none")`` against plain
  ``model.fit(x, y)`` of the ``keras.applications`` model of the same architecture (SGD momentum 0.9,
  default ``jit_compile="auto"``) on in-memory arrays of the same count, size and batch. Each round
  is one call of each (``--epochs`` epochs of ``--steps`` steps); epoch 1 of every call is discarded.
  Extra variants (``--variants``) split the difference: ``catalog-keras`` (catalog.train of the
  keras.applications model object), ``plain-catalog`` (plain fit of the registered model),
  ``catalog-noaug`` (``augment=False``), ``catalog-nowd`` (``weight_decay=0``), ``catalog-s1x1`` (ResNet
  ``model_options={"stride_on_1x1": True}``), ``catalog-nockpt`` (the epoch-end checkpoint skipped),
  ``catalog-notb`` (no TensorBoard callback), ``catalog-bare`` (all four of noaug, nowd, notb, nockpt).
- ``arch``: plain fit (XLA off) of the registered model against its ``keras.applications`` twin on the
  same in-memory batches, alternating as in ``jit``: how much of a vs-fit difference is the architecture.
- ``pipeline``: ``catalog.train`` on ``folder:`` JPEGs written from ``make_shapes`` against plain fit of
  the same registered model on in-memory arrays (and ``catalog.train`` on ``shapes``, in memory;
  ``catalog-folder-noaug``: on the folder with ``augment=False``).

"step ms" is the median interval between consecutive batch ends within the measured epochs; "epoch
ms/step" is the measured epochs' wall time (epoch begin to the next epoch's begin, so including the
epoch-end callbacks: catalog.train's checkpoint) divided by their steps, median over the rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

KERAS_APPS = {"resnet50": "ResNet50", "mobilenet_v2": "MobileNetV2", "densenet121": "DenseNet121",
              "efficientnet_b0": "EfficientNetB0", "resnet101": "ResNet101", "densenet169": "DenseNet169",
              "mobilenet_v3_large": "MobileNetV3Large", "xception": "Xception", "vgg16": "VGG16"}


def make_timer():
    import keras

    class StepTimer(keras.callbacks.Callback):
        """(wall, cpu) at every epoch begin, batch end and train end."""

        def __init__(self):
            super().__init__()
            self.epochs = []  # [{"begin": (w, c), "batches": [(w, c), ...], "end": (w, c) or None}]

        @staticmethod
        def now():
            return time.perf_counter(), time.process_time()

        def on_epoch_begin(self, epoch, logs=None):
            if self.epochs and self.epochs[-1]["end"] is None:
                self.epochs[-1]["end"] = self.now()
            self.epochs.append({"begin": self.now(), "batches": [], "end": None})

        def on_train_batch_end(self, batch, logs=None):
            if logs and "loss" in logs:
                np.asarray(logs["loss"])  # the step is done
            self.epochs[-1]["batches"].append(self.now())

        def on_train_end(self, logs=None):
            if self.epochs and self.epochs[-1]["end"] is None:
                self.epochs[-1]["end"] = self.now()

    return StepTimer()


def step_times(timer, skip_epochs=0, skip_first_step=False):
    """(wall intervals, cpu intervals) between batch ends of the epochs after ``skip_epochs``, and the
    (wall, cpu, steps) of those epochs from begin to end."""
    walls, cpus, epoch_wall, epoch_cpu, steps = [], [], 0.0, 0.0, 0
    for e in timer.epochs[skip_epochs:]:
        marks = [e["begin"], *e["batches"]]
        start = 2 if skip_first_step else 1
        walls += [marks[i][0] - marks[i - 1][0] for i in range(start, len(marks))]
        cpus += [marks[i][1] - marks[i - 1][1] for i in range(start, len(marks))]
        epoch_wall += e["end"][0] - e["begin"][0]
        epoch_cpu += e["end"][1] - e["begin"][1]
        steps += len(e["batches"])
    return walls, cpus, (epoch_wall, epoch_cpu, steps)


def parse_models(text, default_size):
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, _, size = item.partition("@")
        out.append((name, int(size) if size else default_size))
    return out


def family(name):
    from catalog.registry import get_entry

    return get_entry(name).family


def shapes_arrays(count, size, seed=0, preprocessing="unit"):
    """In-memory float32 images (scaled as ``preprocessing``) and int32 labels of the shapes data."""
    from catalog.datasets import make_shapes

    data = make_shapes(count, size, seed=seed)
    x = data["images"].astype(np.float32) / 255.0
    if preprocessing == "torch":
        x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    return x, data["labels"].astype(np.int32), len(data["class_names"])


def build_registered(name, size, num_classes, policy="float32", seed=0):
    import keras

    from catalog.registry import create_model

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(seed)
        return create_model(name, num_classes=num_classes, input_shape=(size, size, 3))
    finally:
        keras.config.set_dtype_policy(previous)


def ends_in_softmax(model):
    activation = getattr(model.layers[-1], "activation", None)
    return getattr(activation, "__name__", "") == "softmax"


def compile_plain(model, jit_compile="auto", lr=0.01):
    import keras

    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not ends_in_softmax(model)),
                  metrics=["accuracy"], jit_compile=jit_compile)
    return model


def median(values):
    return statistics.median(values) if values else float("nan")


def load_average():
    try:
        return "load average " + " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return ""


# --------------------------------------------------------------------------------------------------- fit-only


def alternate_fits(variants, ds, steps, repeats):
    """Fit each compiled model ``steps`` steps per round, alternating the order; round 0 is warm-up.
    Returns {variant: dict(walls, cpus, first_fit_s, rounds=[median wall per round])}."""
    results = {v: {"walls": [], "cpus": [], "rounds": [], "first_fit_s": None} for v in variants}
    names = list(variants)
    for r in range(repeats + 1):
        order = names[r % len(names):] + names[:r % len(names)]
        for v in order:
            timer = make_timer()
            start = time.perf_counter()
            variants[v].fit(ds, epochs=1, steps_per_epoch=steps, callbacks=[timer], verbose=0)
            if r == 0:
                results[v]["first_fit_s"] = time.perf_counter() - start
                continue
            walls, cpus, _ = step_times(timer, skip_first_step=True)
            results[v]["walls"] += walls
            results[v]["cpus"] += cpus
            results[v]["rounds"].append(median(walls))
    return results


def in_memory_dataset(x, y, batch):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch, drop_remainder=True).cache().repeat()


def run_jit(args):
    rows = []
    for name, size in parse_models(args.models, args.image_size):
        x, y, classes = shapes_arrays(args.batch_size * 4, size, preprocessing="unit")
        ds = in_memory_dataset(x, y, args.batch_size)
        variants = {}
        for v, jit in (("graph", False), ("xla", True)):
            variants[v] = compile_plain(build_registered(name, size, classes), jit_compile=jit)
        res = alternate_fits(variants, ds, args.steps, args.repeats)
        g, xl = res["graph"], res["xla"]
        rows.append([name, family(name), size, args.batch_size,
                     f"{1000 * median(g['walls']):.0f}", f"{1000 * median(xl['walls']):.0f}",
                     f"{median(xl['walls']) / median(g['walls']):.2f}",
                     f"{median(xl['cpus']) / median(g['cpus']):.2f}",
                     f"{1000 * median(g['cpus']):.0f} / {1000 * median(xl['cpus']):.0f}",
                     " ".join(f"{a / b:.2f}" for a, b in zip(xl["rounds"], g["rounds"])),
                     f"{g['first_fit_s']:.0f} / {xl['first_fit_s']:.0f}",
                     f"{variants['graph'].jit_compile} / {variants['xla'].jit_compile}"])
        print(f"# {name}: done ({load_average()})", flush=True)
        del variants
        import keras

        keras.backend.clear_session()
    header = ["model", "family", "px", "batch", "graph ms/step", "XLA ms/step", "XLA / graph (wall)",
              "XLA / graph (CPU s)", "CPU ms/step (graph / XLA)", "per-round ratios", "first fit s (graph / XLA)",
              "jit_compile after fit"]
    return header, rows


def run_precision(args):
    rows = []
    jit = args.jit == "on"
    for name, size in parse_models(args.models, args.image_size):
        x, y, classes = shapes_arrays(args.batch_size * 4, size, preprocessing="unit")
        ds = in_memory_dataset(x, y, args.batch_size)
        variants, failed = {}, {}
        for policy in ("float32", "mixed_bfloat16", "mixed_float16"):
            try:
                model = compile_plain(build_registered(name, size, classes, policy=policy), jit_compile=jit)
                model.fit(ds, epochs=1, steps_per_epoch=1, verbose=0)  # fails here if the policy cannot run
                variants[policy] = model
            except Exception as err:  # noqa: BLE001 - report and go on
                failed[policy] = f"{type(err).__name__}: {str(err).splitlines()[0][:80]}"
        res = alternate_fits(variants, ds, args.steps, args.repeats)
        base = res["float32"]
        for policy in ("float32", "mixed_bfloat16", "mixed_float16"):
            if policy in failed:
                rows.append([name, size, args.batch_size, policy, "failed: " + failed[policy], "", "", ""])
                continue
            r = res[policy]
            rows.append([name, size, args.batch_size, policy, f"{1000 * median(r['walls']):.0f}",
                         f"{median(r['walls']) / median(base['walls']):.2f}",
                         f"{median(r['cpus']) / median(base['cpus']):.2f}",
                         " ".join(f"{a / b:.2f}" for a, b in zip(r["rounds"], base["rounds"]))])
        print(f"# {name}: done ({load_average()})", flush=True)
        del variants
        import keras

        keras.backend.clear_session()
    header = ["model", "px", "batch", "policy", f"ms/step (jit {args.jit})", "/ float32 (wall)",
              "/ float32 (CPU s)", "per-round ratios"]
    return header, rows


def run_arch(args):
    """Plain fit of the registered model against its keras.applications twin, same data, XLA off."""
    import keras

    from catalog.flops import count_macs

    rows = []
    for name, size in parse_models(args.models, args.image_size):
        x, y, classes = shapes_arrays(args.batch_size * 4, size, preprocessing="unit")
        ds = in_memory_dataset(x, y, args.batch_size)
        keras.utils.set_random_seed(0)
        app = getattr(keras.applications, KERAS_APPS[name])
        app = app(weights=None, classes=classes, input_shape=(size, size, 3))
        variants = {"keras.applications": compile_plain(app, jit_compile=False),
                    "catalog": compile_plain(build_registered(name, size, classes), jit_compile=False)}
        res = alternate_fits(variants, ds, args.steps, args.repeats)
        base = res["keras.applications"]
        for v, r in res.items():
            wall, cpu = median(r["walls"]), median(r["cpus"])
            rows.append([name, size, args.batch_size, v, f"{count_macs(variants[v]) / 1e6:.0f}",
                         f"{1000 * wall:.0f}", f"{1000 * cpu:.0f}", f"{cpu / wall:.2f}",
                         f"{wall / median(base['walls']):.2f}", f"{cpu / median(base['cpus']):.2f}",
                         " ".join(f"{a / b:.2f}" for a, b in zip(r["rounds"], base["rounds"]))])
        print(f"# {name}: done ({load_average()})", flush=True)
        keras.backend.clear_session()
    header = ["model", "px", "batch", "architecture", "MMACs", "step ms", "step CPU ms", "cores used",
              "/ keras (wall)", "/ keras (CPU)", "per-round ratios"]
    return header, rows


# ------------------------------------------------------------------------------------- catalog.train vs fit


@contextlib.contextmanager
def no_epoch_checkpoint():
    """catalog.train without its epoch-end checkpoint (a diagnostic variant only)."""
    from catalog.training import recorder

    saved = recorder.RunRecorder.checkpoint
    recorder.RunRecorder.checkpoint = lambda self, epoch, step: None
    try:
        yield
    finally:
        recorder.RunRecorder.checkpoint = saved


@contextlib.contextmanager
def no_tensorboard():
    """catalog.train without its TensorBoard callback (a diagnostic variant only)."""
    from catalog.training import loop

    saved = loop._tensorboard
    loop._tensorboard = lambda run_dir: []
    try:
        yield
    finally:
        loop._tensorboard = saved


def catalog_run(model, data, size, args, count, **extra):
    import catalog

    timer = make_timer()
    out = tempfile.mkdtemp(prefix="train_step_")
    nockpt, notb = extra.pop("_nockpt", False), extra.pop("_notb", False)
    try:
        with no_epoch_checkpoint() if nockpt else contextlib.nullcontext(), \
                no_tensorboard() if notb else contextlib.nullcontext():
            result = catalog.train(model, data, epochs=args.epochs, batch_size=args.batch_size, image_size=size,
                                   num_images=count if data == "shapes" else None, val_split="none",
                                   jit=extra.pop("jit", "auto"), optimizer="sgd", momentum=0.9, verbose=0,
                                   out_dir=out, callbacks=[timer], **extra)
        resolved = result.config["resolved"]
        info = f"jit={resolved['jit']}"
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return timer, info


def plain_run(model, x, y, args):
    timer = make_timer()
    model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, shuffle=True, callbacks=[timer], verbose=0)
    return timer, f"jit={model.jit_compile}"


def alternate_runs(runners, repeats):
    """Call each runner once per round, order rotated per round; epoch 1 of each call is discarded."""
    results = {v: {"walls": [], "cpus": [], "epoch_per_step": [], "epoch_cpu_per_step": [], "rounds": [],
                   "info": ""} for v in runners}
    names = list(runners)
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for v in order:
            timer, info = runners[v]()
            walls, cpus, (ew, ec, steps) = step_times(timer, skip_epochs=1)
            res = results[v]
            res["walls"] += walls
            res["cpus"] += cpus
            res["rounds"].append(median(walls))
            res["epoch_per_step"].append(ew / steps)
            res["epoch_cpu_per_step"].append(ec / steps)
            res["info"] = info
        print(f"#   round {r + 1}/{repeats} ({load_average()})", flush=True)
    return results


def table_rows(model_label, size, results, base, args):
    rows = []
    b = results[base]
    for v, r in results.items():
        rows.append([model_label, size, args.batch_size, v, r["info"], f"{1000 * median(r['walls']):.0f}",
                     f"{1000 * median(r['epoch_per_step']):.0f}",
                     f"{median(r['walls']) / median(b['walls']):.2f}",
                     f"{median(r['epoch_per_step']) / median(b['epoch_per_step']):.2f}",
                     f"{median(r['epoch_cpu_per_step']) / median(b['epoch_cpu_per_step']):.2f}",
                     f"{1000 * median(r['cpus']):.0f}", f"{median(r['cpus']) / median(b['cpus']):.2f}",
                     " ".join(f"{a / c:.2f}" for a, c in zip(r["rounds"], b["rounds"]))])
    return rows


def run_vs_fit(args):
    import keras

    wanted = args.variants.split(",") if args.variants else ["plain", "catalog"]
    rows = []
    for name, size in parse_models(args.models, args.image_size):
        count = args.batch_size * args.steps
        x, y, classes = shapes_arrays(count, size, preprocessing="unit")
        app = getattr(keras.applications, KERAS_APPS[name])
        keras.utils.set_random_seed(0)
        plain = compile_plain(app(weights=None, classes=classes, input_shape=(size, size, 3)))
        runners = {"plain": lambda: plain_run(plain, x, y, args),
                   "catalog": lambda: catalog_run(name, "shapes", size, args, count)}
        if "catalog-keras" in wanted:
            keras.utils.set_random_seed(0)
            app_model = app(weights=None, classes=classes, input_shape=(size, size, 3))
            runners["catalog-keras"] = lambda: catalog_run(app_model, "shapes", size, args, count)
        if "plain-catalog" in wanted:
            registered = compile_plain(build_registered(name, size, classes))
            xt, _, _ = shapes_arrays(count, size, preprocessing="torch")
            runners["plain-catalog"] = lambda: plain_run(registered, xt, y, args)
        if "catalog-noaug" in wanted:
            runners["catalog-noaug"] = lambda: catalog_run(name, "shapes", size, args, count, augment=False)
        if "catalog-s1x1" in wanted:  # ResNet v1 layout (stride on the bottleneck's first 1x1), as Keras'
            runners["catalog-s1x1"] = lambda: catalog_run(name, "shapes", size, args, count,
                                                          model_options={"stride_on_1x1": True})
        if "catalog-nowd" in wanted:
            runners["catalog-nowd"] = lambda: catalog_run(name, "shapes", size, args, count, weight_decay=0.0)
        if "catalog-notb" in wanted:
            runners["catalog-notb"] = lambda: catalog_run(name, "shapes", size, args, count, _notb=True)
        if "catalog-bare" in wanted:  # no augmentation, weight decay, TensorBoard or epoch-end checkpoint
            runners["catalog-bare"] = lambda: catalog_run(name, "shapes", size, args, count, augment=False,
                                                          weight_decay=0.0, _notb=True, _nockpt=True)
        if "catalog-nockpt" in wanted:
            runners["catalog-nockpt"] = lambda: catalog_run(name, "shapes", size, args, count, _nockpt=True)
        print(f"# {name} @ {size}: {', '.join(runners)}", flush=True)
        results = alternate_runs(runners, args.repeats)
        rows += table_rows(f"{name} / {KERAS_APPS[name]}", size, results, "plain", args)
        keras.backend.clear_session()
    header = ["model (catalog / keras.applications)", "px", "batch", "variant", "XLA", "step ms",
              "epoch ms/step", "/ plain (step)", "/ plain (epoch)", "/ plain (epoch CPU s)", "step CPU ms",
              "/ plain (step CPU)", "per-round step ratios"]
    return header, rows


def write_jpegs(root, count, size, seed=0):
    from PIL import Image

    from catalog.datasets import make_shapes

    data = make_shapes(count, size, seed=seed)
    names = data["class_names"]
    for n in names:
        os.makedirs(os.path.join(root, "train", n), exist_ok=True)
    for i, (img, label) in enumerate(zip(data["images"], data["labels"])):
        Image.fromarray(img).save(os.path.join(root, "train", names[label], f"{i:05d}.jpg"), quality=90)
    return data


def run_pipeline(args):
    import keras

    wanted = args.variants.split(",") if args.variants else ["plain", "catalog-folder", "catalog-shapes"]
    rows = []
    for name, size in parse_models(args.models, args.image_size):
        count = args.batch_size * args.steps
        root = tempfile.mkdtemp(prefix="train_step_jpegs_")
        try:
            write_jpegs(root, count, size)
            from catalog.registry import get_entry

            prep = get_entry(name).preprocessing or "unit"
            x, y, classes = shapes_arrays(count, size, preprocessing=prep)
            plain = compile_plain(build_registered(name, size, classes), jit_compile=False)
            runners = {"plain": lambda: plain_run(plain, x, y, args)}
            if "catalog-folder" in wanted:
                runners["catalog-folder"] = lambda: catalog_run(name, f"folder:{root}", size, args, count)
            if "catalog-shapes" in wanted:
                runners["catalog-shapes"] = lambda: catalog_run(name, "shapes", size, args, count)
            if "catalog-folder-noaug" in wanted:
                runners["catalog-folder-noaug"] = lambda: catalog_run(name, f"folder:{root}", size, args, count,
                                                                      augment=False)
            print(f"# {name} @ {size}: {count} JPEGs in {root}; {', '.join(runners)}", flush=True)
            results = alternate_runs(runners, args.repeats)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        for row in table_rows(name, size, results, "plain", args):
            step_ms = float(row[5])
            rows.append(row[:6] + [f"{1000 / step_ms:.2f}"] + row[6:])
        keras.backend.clear_session()
    header = ["model", "px", "batch", "variant", "XLA", "step ms", "steps/s (step)", "epoch ms/step",
              "/ plain (step)", "/ plain (epoch)", "/ plain (epoch CPU s)", "step CPU ms", "/ plain (step CPU)",
              "per-round step ratios"]
    return header, rows


def markdown(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--what", choices=("jit", "precision", "vs-fit", "pipeline", "arch"), required=True)
    parser.add_argument("--models", default="resnet50,mobilenet_v2")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5, help="steps per fit (jit, precision) or per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="vs-fit, pipeline: epochs per call (first dropped)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jit", choices=("on", "off"), default="off", help="precision: XLA on or off")
    parser.add_argument("--variants", help="vs-fit / pipeline: comma-separated variants (see the docstring)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    start = time.perf_counter()
    print(f"# {' '.join(sys.argv)}", flush=True)
    print(f"# {os.cpu_count()} CPUs, TensorFlow {tf.__version__}, Keras {keras.__version__}, "
          f"{load_average()}", flush=True)
    run = {"jit": run_jit, "precision": run_precision, "vs-fit": run_vs_fit, "pipeline": run_pipeline,
           "arch": run_arch}[args.what]
    header, rows = run(args)
    print(markdown(header, rows))
    print(f"# {time.perf_counter() - start:.0f} s wall, {load_average()}")


if __name__ == "__main__":
    main()
