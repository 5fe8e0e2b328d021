"""Images/second: catalog.datasets.load("folder:...") against keras.utils.image_dataset_from_directory.

Both read the same generated JPEGs (class-per-subfolder), decode, resize to the same size, batch and
prefetch; one epoch each, alternating, ``--repeats`` times; the medians are printed. Run:

    python benchmarks/folder_pipeline.py --images 2000 --image-size 160 --repeats 3

The catalog pipeline runs its eval transform (resize the short side to size / 0.875, center crop), the
Keras one stretches to size; both scale to [0, 1]. "setup" is the time to build the pipeline (the
catalog's includes its validation pass over every file's header and end). On a shared machine the
wall-clock rate swings with the neighbours' load, so the script also prints images per CPU-second of this
process (all threads): the work each pipeline does per image, which other processes do not change much.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
from PIL import Image


def make_jpegs(root: str, count: int, classes: int = 10, seed: int = 0) -> None:
    """``count`` JPEGs of 320..500 x 240..375 pixels (photo-like sizes), spread over ``classes`` folders."""
    from catalog.datasets import make_shapes

    rng = np.random.default_rng(seed)
    tiles = make_shapes(64, 64, seed=seed, max_objects=3)["images"]
    for c in range(classes):
        os.makedirs(os.path.join(root, f"class_{c:02d}"), exist_ok=True)
    for i in range(count):
        w, h = int(rng.integers(320, 501)), int(rng.integers(240, 376))
        img = Image.fromarray(tiles[i % len(tiles)]).resize((w, h), Image.BILINEAR)
        noise = rng.normal(0, 6, (h, w, 3))
        arr = np.clip(np.asarray(img, np.float32) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(os.path.join(root, f"class_{i % classes:02d}", f"{i:05d}.jpg"), quality=90)


def epoch(ds) -> int:
    n = 0
    for x, _ in ds:
        n += int(x.shape[0])
    return n


def run_catalog(root, size, batch):
    from catalog import datasets

    start = time.perf_counter()
    ds, info = datasets.load(f"folder:{root}", split="all", image_size=size, batch_size=batch, shuffle=False,
                             preprocessing="unit")
    setup = time.perf_counter() - start
    n, seconds, cpu = timed_epoch(ds)
    return n, setup, seconds, cpu


def timed_epoch(ds):
    cpu, start = time.process_time(), time.perf_counter()
    n = epoch(ds)
    return n, time.perf_counter() - start, time.process_time() - cpu


def run_keras(root, size, batch):
    import keras
    import tensorflow as tf

    start = time.perf_counter()
    ds = keras.utils.image_dataset_from_directory(root, image_size=(size, size), batch_size=batch, shuffle=False,
                                                  verbose=False)
    ds = ds.map(lambda x, y: (x / 255.0, y), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    setup = time.perf_counter() - start
    n, seconds, cpu = timed_epoch(ds)
    return n, setup, seconds, cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", help="reuse/create the JPEG folder here (default: a temporary folder)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    root = args.dir or tempfile.mkdtemp(prefix="folder_pipeline_")
    if not any(os.scandir(root)) if os.path.isdir(root) else True:
        start = time.perf_counter()
        make_jpegs(root, args.images)
        print(f"generated {args.images} JPEGs in {root} ({time.perf_counter() - start:.1f} s)")
    runners = {"catalog.datasets.load": run_catalog, "keras image_dataset_from_directory": run_keras}
    results = {name: [] for name in runners}
    for r in range(args.repeats + 1):  # the first round warms up (TF init, page cache) and is not counted
        for name, fn in runners.items():
            n, setup, seconds, cpu = fn(root, args.image_size, args.batch_size)
            if r:
                results[name].append((n / seconds, setup, n / cpu))
    print(f"{args.images} JPEGs -> {args.image_size}x{args.image_size}, batch {args.batch_size}, "
          f"median of {args.repeats} epochs, {os.cpu_count()} CPUs")
    for name, rows in results.items():
        rate = statistics.median(r[0] for r in rows)
        setup = statistics.median(r[1] for r in rows)
        per_cpu = statistics.median(r[2] for r in rows)
        print(f"  {name:36s} {rate:7.1f} images/s  {per_cpu:7.1f} images/CPU-s  setup {setup:5.2f} s  (runs: "
              + ", ".join(f"{r[0]:.0f}" for r in rows) + ")")


if __name__ == "__main__":
    main()
