"""The benchmark job: inference and training speed of registered models, and the generated model-zoo table.

    rows = catalog.benchmark(["resnet20", "mobilenet_v2"], image_size=64, mode="both", csv="out.csv")

Per model (random weights: speed only), in the caller's process and Keras session:

- inference: ``predict_on_batch`` of the model compiled with the resolved XLA setting; the first call at
  batch N is ``compile_s`` (tracing, XLA compilation and one step), then ``warmup`` rounds, then ``repeats``
  timed rounds of one call at batch N and one at batch 1, in alternating order: ``infer_step_time`` (ms,
  median, with min and max) and ``infer_samples_per_sec`` at batch N, ``infer_latency_b1`` (ms) at batch 1.
  ``predict_on_batch`` returns NumPy, so every timed call includes the device-to-host copy of the outputs
  (what a user of the model pays).
- training: ``train_on_batch`` with SGD (momentum 0.9) and sparse categorical cross-entropy on random
  labels (task models: their registry recipe's loss on random targets: masks for segmentation, images for
  restoration; detection needs box targets and is skipped with a note); ``train_compile_s`` is the first
  step, then ``train_step_time`` (ms) and ``train_samples_per_sec`` as above.
- ``param_count``: trainable parameters in millions (the card's ``params`` / 1e6; timm's column);
  ``infer_gmacs``: ``catalog.flops.count_macs`` of the model as built, at the benchmarked size, / 1e9;
  ``peak_rss_mb``: the process's peak resident memory so far (``getrusage``: it never goes down, so on a
  list it is the peak up to and including that model); ``backend``, ``device``, ``jit`` (XLA as Keras
  compiled it) and ``precision`` (the dtype policy the model was built under) are what actually ran.

Rows use timm's results layout (``model, infer_img_size, infer_batch_size, infer_samples_per_sec,
infer_step_time, ...``); ``csv=`` writes them, ``json=`` writes ``{"machine": ..., "settings": ...,
"rows": ...}``. ``python -m catalog.benchmark --write-models-md`` regenerates ``docs/models.md`` from the
registry, the shipped cards and the last CPU benchmark kept in ``docs/benchmark_cpu.csv``.
"""

from __future__ import annotations

import csv as _csv
import datetime
import gc
import json as _json
import os
import platform
import re
import resource
import statistics
import sys
import time
import types

MODES = ("infer", "train", "both")
COLUMNS = ("model", "infer_img_size", "infer_batch_size", "infer_samples_per_sec", "infer_step_time",
           "infer_step_time_min", "infer_step_time_max", "infer_latency_b1", "infer_latency_b1_min",
           "infer_latency_b1_max", "param_count", "infer_gmacs", "train_samples_per_sec", "train_step_time",
           "train_step_time_min", "train_step_time_max", "train_batch_size", "train_img_size", "compile_s",
           "train_compile_s", "peak_rss_mb", "backend", "device", "jit", "precision", "note")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS_MD = os.path.join(ROOT, "docs", "models.md")
CPU_CSV = os.path.join(ROOT, "docs", "benchmark_cpu.csv")
ACCURACY_CSV = os.path.join(ROOT, "docs", "accuracy_cpu.csv")


def _check(names, batch_size, image_size, jit, precision, mode, repeats, warmup):
    """Validate every argument (and every name) before anything is built."""
    from catalog.registry import get_entry
    from catalog.training.config import JIT, PRECISIONS

    if isinstance(names, str):
        names = [names]
    names = list(names)
    if not names:
        raise ValueError("benchmark needs at least one registered model name; `catalog list` shows them.")
    for option, value, low in (("batch_size", batch_size, 1), ("repeats", repeats, 1), ("warmup", warmup, 0),
                               ("image_size", image_size, 1)):
        if value is None and option == "image_size":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            kind = "a positive integer" if low else "a non-negative integer"
            raise ValueError(f"{option} must be {kind}; got {value!r}.")
    for option, value, accepted in (("mode", mode, MODES), ("jit", jit, JIT), ("precision", precision, PRECISIONS)):
        if value not in accepted:
            raise ValueError(f"{option} must be one of {', '.join(accepted)}; got {value!r}.")
    entries = [get_entry(n) for n in names]  # an unknown name raises here, with the closest names
    if image_size is not None:
        for entry in entries:
            if entry.min_input_size and image_size < entry.min_input_size:
                raise ValueError(f"image_size {image_size} is below {entry.name}'s minimum input size "
                                 f"{entry.min_input_size}.")
    return entries


def _timed(calls, warmup, repeats):
    """Time ``calls`` side by side: each once (first calls, s), ``warmup`` untimed rounds, then ``repeats``
    rounds in alternating order (so a burst of load on a shared machine hits them alike).
    Returns ([first call s per call], [[ms of each timed call] per call])."""
    firsts, times = [], [[] for _ in calls]
    for call in calls:
        start = time.perf_counter()
        call()
        firsts.append(time.perf_counter() - start)
    for _ in range(warmup):
        for call in calls:
            call()
    for r in range(repeats):
        order = list(range(len(calls)))[::-1 if r % 2 else 1]
        for i in order:
            start = time.perf_counter()
            calls[i]()
            times[i].append(1000.0 * (time.perf_counter() - start))
    return firsts, times


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux, bytes on macOS
    return round(peak / (2 ** 20 if sys.platform == "darwin" else 2 ** 10), 1)


def _train_setup(model, entry, batch_size, rng):
    """(loss, targets, note) for a training step of ``model``; loss None: training skipped (note says why)."""
    import keras
    import numpy as np

    from catalog.models.classifier import ends_in_softmax
    from catalog.registry import recipe_of

    if entry.task == "classification":
        classes = int(model.output.shape[-1])
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=not ends_in_softmax(model))
        return loss, rng.integers(0, classes, size=(batch_size,)).astype("int32"), ""
    if entry.task == "detection":
        return None, None, "train skipped: detection training needs box targets (catalog train times it)"
    if entry.task in ("generation", "embedding", "early_exit"):
        return None, None, f"train skipped: {entry.task} models train in their own loop (catalog train times it)"
    recipe = recipe_of(model, entry.name)
    output = model.output
    main = output["logits"] if isinstance(output, dict) and "logits" in output else output
    if recipe is None or isinstance(main, dict):
        return None, None, f"train skipped: no simple training recipe for {entry.task} models"
    shape = (batch_size, *(int(d) for d in main.shape[1:]))
    if recipe.task == "segmentation":
        base = rng.integers(0, shape[-1], size=shape[:-1]).astype("int32")
    elif recipe.task == "video":  # one label per clip
        base = rng.integers(0, shape[-1], size=shape[:1]).astype("int32")
    elif recipe.task in ("super_resolution", "denoising"):
        base = rng.random(shape, dtype=np.float32)
    else:
        return None, None, f"train skipped: {entry.task} training needs {recipe.task} targets (catalog train times it)"
    return recipe.loss, recipe.targets(base) if recipe.targets is not None else base, ""


def _one(entry, batch_size, image_size, jit, precision, mode, repeats, warmup):
    """Benchmark one registered model; returns its row."""
    import keras
    import numpy as np

    from catalog import flops
    from catalog.registry import count_params, create_model
    from catalog.training.loop import _device_kind, preserved_keras_state, resolve_jit

    *frames, height, width, channels = entry.input_shape  # video: (frames, height, width, channels)
    size = image_size or height
    shape = (*frames, size, size if image_size else width, channels)
    xla = resolve_jit(jit, entry.family)
    row = dict.fromkeys(COLUMNS)
    row.update(model=entry.name, infer_img_size=size, param_count=None, backend=keras.backend.backend(),
               device=_device_kind(), precision=precision, note="")
    rng = np.random.default_rng(0)
    with preserved_keras_state():
        keras.config.set_dtype_policy(precision)
        keras.utils.set_random_seed(0)
        model = create_model(entry.name, input_shape=shape)
    row["param_count"] = round(count_params(model) / 1e6, 6)
    row["infer_gmacs"] = round(flops.count_macs(model) / 1e9, 6)
    row["precision"] = model.dtype_policy.name
    model.compile(jit_compile=xla)
    row["jit"] = "on" if model.jit_compile else "off"
    def inputs(batch):  # random data for each model input (a generator's noise vector, a pair's two images)
        x = [rng.random((batch, *(int(d) for d in t.shape[1:])), dtype=np.float32) for t in model.inputs]
        return x[0] if len(x) == 1 else x

    if mode in ("infer", "both"):
        x, x1 = inputs(batch_size), inputs(1)
        (row["compile_s"], _), (times, times1) = _timed(
            [lambda: model.predict_on_batch(x), lambda: model.predict_on_batch(x1)], warmup, repeats)
        row.update(infer_batch_size=batch_size, infer_step_time=statistics.median(times),
                   infer_step_time_min=min(times), infer_step_time_max=max(times))
        row["infer_samples_per_sec"] = 1000.0 * batch_size / row["infer_step_time"]
        row.update(infer_latency_b1=statistics.median(times1), infer_latency_b1_min=min(times1),
                   infer_latency_b1_max=max(times1))
    if mode in ("train", "both"):
        loss, y, note = _train_setup(model, entry, batch_size, rng)
        row["note"] = note
        if loss is not None:
            x = inputs(batch_size)
            model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9), loss=loss,
                          jit_compile=xla)
            row["jit"] = "on" if model.jit_compile else "off"
            (row["train_compile_s"],), (times,) = _timed([lambda: model.train_on_batch(x, y)], warmup, repeats)
            row.update(train_batch_size=batch_size, train_img_size=size, train_step_time=statistics.median(times),
                       train_step_time_min=min(times), train_step_time_max=max(times))
            row["train_samples_per_sec"] = 1000.0 * batch_size / row["train_step_time"]
    row["peak_rss_mb"] = _peak_rss_mb()
    return {k: round(v, 3) if isinstance(v, float) and k not in ("param_count", "infer_gmacs") else v
            for k, v in row.items()}


def machine() -> dict:
    """What ran the benchmark: platform, processor, CPU count, device, Python/Keras/backend versions."""
    from catalog.training.loop import _device_kind, _versions

    processor = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            processor = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), processor)
    except OSError:
        pass
    return {"platform": platform.platform(), "processor": processor,
            "cpu_count": os.cpu_count(), "device": _device_kind(), **_versions(),
            "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def benchmark(names, batch_size: int = 8, image_size: int | None = None, jit: str = "auto",
              precision: str = "float32", mode: str = "infer", repeats: int = 10, warmup: int = 2,
              csv: str | None = None, json: str | None = None, verbose: int = 1, append: bool = False) -> list[dict]:
    """Time registered models (random weights) and return one row per model in timm's results layout.

    Args:
        names: registered names (a string for one).
        batch_size: the throughput and training batch (latency is also measured at batch 1).
        image_size: square input side (default: each card's input shape).
        jit: XLA "on", "off" or "auto" (``catalog.train``'s per-device choice).
        precision: the dtype policy: float32, mixed_float16 or mixed_bfloat16.
        mode: "infer", "train" or "both".
        repeats: timed calls per measurement (medians, min and max are reported).
        warmup: untimed calls after the first (compiling) call.
        csv: write the rows to this CSV file, each as soon as it is measured (an interrupted run keeps the
            models it finished).
        json: write ``{"machine", "settings", "rows"}`` to this JSON file.
        verbose: 1 prints a progress line per model (on a list of several).
        append: add the rows to an existing ``csv`` (same columns) instead of replacing it; a reader takes the
            last row of a name (:func:`read_csv`).

    Raises:
        ValueError: an unknown name or a bad value (naming the argument); nothing is built then.
    """
    entries = _check(names, batch_size, image_size, jit, precision, mode, repeats, warmup)
    if csv and append and os.path.exists(csv):
        with open(csv, encoding="utf-8", newline="") as f:
            header = next(_csv.reader(f), [])
        if header != list(COLUMNS):
            raise ValueError(f"csv {csv} has other columns than catalog benchmark writes; append to a file this "
                             "function wrote, or write a new one.")
    elif csv:
        write_csv([], csv)
    rows = []
    for i, entry in enumerate(entries, 1):
        row = _one(entry, batch_size, image_size, jit, precision, mode, repeats, warmup)
        gc.collect()  # the model and its compiled functions go before the next one is built
        rows.append(row)
        if csv:
            write_csv([row], csv, append=True)
        if verbose and len(entries) > 1:
            print(f"[{i}/{len(entries)}] {progress_line(row)}", flush=True)
    settings = dict(batch_size=batch_size, image_size=image_size, jit=jit, precision=precision, mode=mode,
                    repeats=repeats, warmup=warmup)
    if json:
        with open(json, "w", encoding="utf-8") as f:
            _json.dump({"machine": machine(), "settings": settings, "rows": rows}, f, indent=1)
            f.write("\n")
    return rows


def progress_line(row: dict) -> str:
    parts = [f"{row['model']} @ {row['infer_img_size']} px"]
    if row["infer_step_time"] is not None:
        parts.append(f"infer {row['infer_step_time']:.1f} ms/batch of {row['infer_batch_size']} "
                     f"({row['infer_samples_per_sec']:.1f} img/s), batch 1 {row['infer_latency_b1']:.1f} ms")
    if row["train_step_time"] is not None:
        parts.append(f"train {row['train_step_time']:.1f} ms/step ({row['train_samples_per_sec']:.1f} img/s)")
    parts.append(f"XLA {row['jit']}, {row['precision']}, peak RSS {row['peak_rss_mb']:.0f} MB")
    return "; ".join(parts) + (f"; {row['note']}" if row["note"] else "")


def markdown_table(rows) -> str:
    """The rows as a short markdown table (times in ms: medians, min-max in brackets)."""
    def span(row, key):
        if row[key] in (None, ""):
            return "-"
        return f"{float(row[key]):.1f} ({float(row[key + '_min']):.1f}-{float(row[key + '_max']):.1f})"

    def number(value, digits=1):
        return "-" if value in (None, "") else f"{float(value):.{digits}f}"

    lines = ["| model | px | batch | infer ms/batch | infer img/s | latency b1 ms | train ms/step | train img/s "
             "| params M | GMACs | compile s | XLA | precision |", "|---|" + "---:|" * 10 + "---|---|"]
    for row in rows:
        batch = row["infer_batch_size"] if row["infer_batch_size"] not in (None, "") else row["train_batch_size"]
        lines.append("| " + " | ".join(str(v) for v in (
            row["model"], row["infer_img_size"], batch, span(row, "infer_step_time"),
            number(row["infer_samples_per_sec"]), span(row, "infer_latency_b1"), span(row, "train_step_time"),
            number(row["train_samples_per_sec"]), number(row["param_count"], 3), number(row["infer_gmacs"], 3),
            number(row["compile_s"] if row["compile_s"] not in (None, "") else row["train_compile_s"], 2),
            row["jit"], row["precision"])) + " |")
    return "\n".join(lines)


def write_csv(rows, path: str, append: bool = False) -> str:
    """Write ``rows`` with a header to ``path``, or add them to its end (``append``; a header only if it is new)."""
    new = not append or not os.path.exists(path)
    with open(path, "w" if new else "a", encoding="utf-8", newline="") as f:
        writer = _csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerows({k: "" if row.get(k) is None else row[k] for k in COLUMNS} for row in rows)
        f.flush()
        os.fsync(f.fileno())
    return path


def read_csv(path: str) -> dict:
    """The rows of a benchmark CSV by model name (the last row of a name wins); {} if there is no file."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return {row["model"]: row for row in _csv.DictReader(f)}
    except FileNotFoundError:
        return {}


def read_accuracy_csv(path: str = ACCURACY_CSV) -> dict:
    """{(model, data): row} of ``benchmarks/family_accuracy.py``'s CSV (the last row of a pair wins)."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return {(row["model"], row["data"]): row for row in _csv.DictReader(f)}
    except FileNotFoundError:
        return {}


# ------------------------------------------------------------------------------------------ per-layer profile
def _group(name: str) -> str:
    """A layer's group: its name up to the first ``_`` (``stage3_block2_conv1`` -> ``stage3``); a nested
    model's layers (``backbone/...``) group under the nested model."""
    return name.split("/")[0] if "/" in name else name.split("_")[0]


def layer_profile(model, input_shape=None, latency: bool = False, repeats: int = 10, warmup: int = 2) -> dict:
    """The per-layer numbers of the mobile slimming recipe (profile, then shrink input, width and depth):
    ``{"layers": catalog.flops.layer_table rows, "groups": [...], "total": {...}}``. Groups are consecutive
    layers sharing a name prefix (:func:`_group`), with their parameters, MACs and activation memory, and with
    ``latency=True`` their measured CPU latency at batch 1: the median time of the model cut after the group
    minus that of the model cut after the group before (``keras.Model(inputs, the group's last output)``; in a
    graph whose paths cross a group boundary the split is approximate, the total is not).

    Args:
        model: a registered name (built at its card's input, or ``input_shape``) or a functional keras.Model.
        input_shape: (H, W, C) without the batch; default the model's own.
        latency: also time the groups (``repeats`` timed rounds after ``warmup``, medians in ms).
    """
    import keras
    import numpy as np

    from catalog.flops import layer_table
    from catalog.registry import create_model

    if isinstance(model, str):
        model = create_model(model, **({"input_shape": tuple(input_shape)} if input_shape else {}))
        input_shape = None
    for option, value in (("repeats", repeats), ("warmup", warmup)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if option == "repeats" else 0):
            raise ValueError(f"{option} must be a {'positive' if option == 'repeats' else 'non-negative'} "
                             f"integer; got {value!r}.")
    rows = layer_table(model, input_shape)
    groups = []
    for row in rows:
        key = _group(row["name"])
        if not groups or groups[-1]["group"] != key:
            groups.append({"group": key, "layers": 0, "params": 0, "macs": 0, "activation_bytes": 0,
                           "last": row["name"]})
        group = groups[-1]
        group["layers"] += 1
        group["params"] += row["params"]
        group["macs"] += row["macs"]
        group["activation_bytes"] += row["activation_bytes"]
        group["last"] = row["name"]
    total = {key: sum(g[key] for g in groups) for key in ("layers", "params", "macs", "activation_bytes")}
    if latency:
        shape = tuple(input_shape) if input_shape else tuple(model.input_shape[1:])
        x = np.random.default_rng(0).random((1, *shape)).astype("float32")
        cuts = []
        for group in groups:
            name = group["last"].split("/")[0]
            cuts.append(keras.Model(model.inputs, model.get_layer(name).output) if name in
                        {layer.name for layer in model.layers} else None)
        calls = [(lambda m=m: m.predict_on_batch(x)) for m in cuts if m is not None]
        _, times = _timed(calls, warmup, repeats)
        medians = iter(statistics.median(t) for t in times)
        previous = 0.0
        for group, cut in zip(groups, cuts):
            if cut is None:
                group["latency_ms"] = None
                continue
            now = next(medians)
            group["latency_ms"] = round(max(now - previous, 0.0), 3)
            previous = now
        total["latency_ms"] = round(previous, 3)
    for group in groups:
        del group["last"]
    return {"layers": rows, "groups": groups, "total": total}


def profile_text(profile: dict) -> str:
    """:func:`layer_profile` as the two tables ``catalog info NAME --layers`` prints."""
    lines = [f"{'layer':44s} {'class':22s} {'output':>18s} {'params':>10s} {'MACs':>12s} {'act KiB':>9s}"]
    for row in profile["layers"]:
        shape = "x".join(str(d) for d in row["output_shape"])
        lines.append(f"{row['name'][:44]:44s} {row['class'][:22]:22s} {shape:>18s} {row['params']:>10,} "
                     f"{row['macs']:>12,} {row['activation_bytes'] / 1024:>9.1f}")
    timed = "latency_ms" in profile["total"]
    lines += ["", f"{'group':24s} {'layers':>6s} {'params':>12s} {'MACs':>14s} {'act KiB':>10s}"
              + (f" {'ms b1':>8s}" if timed else "")]
    for g in [*profile["groups"], {"group": "total", **profile["total"]}]:
        ms = g.get("latency_ms")
        lines.append(f"{g['group'][:24]:24s} {g['layers']:>6} {g['params']:>12,} {g['macs']:>14,} "
                     f"{g['activation_bytes'] / 1024:>10.1f}" + ((f" {ms:>8.3f}" if ms is not None else
                                                                  f" {'-':>8s}") if timed else ""))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ the model-zoo table


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _gmacs(macs) -> str:
    return "-" if macs is None else f"{macs / 1e9:.4g}"


def models_markdown(csv_path: str = CPU_CSV, accuracy_path: str = ACCURACY_CSV) -> str:
    """The text of ``docs/models.md``: every registered name's card, its measured CPU latency and, for each
    family's smallest member, its measured small-budget accuracy.

    Reads the registry's names, the shipped cards (a name missing from them is built once, as
    :func:`catalog.registry.model_info` does), the benchmark CSV at ``csv_path`` and the accuracy CSV
    (``benchmarks/family_accuracy.py``) at ``accuracy_path``.
    """
    from catalog.registry import TASKS, list_models, model_info

    cards = [model_info(n).to_dict() for n in list_models()]
    timings = read_csv(csv_path)
    accuracy = read_accuracy_csv(accuracy_path)
    sources: list[str] = []

    def cite(source):
        if not source:
            return ""
        if source not in sources:
            sources.append(source)
        return f" [{sources.index(source) + 1}]"

    counts = ", ".join(f"{sum(c['task'] == t for c in cards)} {t}" for t in TASKS if any(c["task"] == t for c in cards))
    bench = next(iter(timings.values()), None)
    lines = [
        "# Model zoo",
        "",
        "<!-- Generated by `python -m catalog.benchmark --write-models-md` from the registry, the shipped cards",
        "     (catalog/models/cards.json) and docs/benchmark_cpu.csv; do not edit by hand. -->",
        "",
        f"{len(cards)} registered names ({counts}). Parameters are trainable weights, counted on the model "
        "built at its defaults; MACs are `catalog.flops.count_macs` (conv + FC multiply-accumulates, batch 1) at "
        "the default input; reference numbers are the published ones, their sources numbered below the table.",
        "",
        "CPU latency: `infer_latency_b1` of the last `catalog benchmark` run kept in `docs/benchmark_cpu.csv` "
        "(median ms of `predict_on_batch` at batch 1, random weights, at the size shown"
        + (f"; {bench['backend']}, XLA {bench['jit']}, {bench['precision']}" if bench else "")
        + "); n/a: not benchmarked yet. Regenerate the CSV with the command in docs/performance.md "
        "(\"Benchmark (catalog benchmark)\"), then this file.",
        "",
        "Top-1 shapes / digits: test accuracy of each classification family's smallest member trained from random "
        "weights at one small common budget (`benchmarks/family_accuracy.py`: 32 px or the model's minimum, "
        "batch 32, Adam 1e-3 cosine, BatchNorm momentum 0.9, the loader's augmentation, seed 0; generated shapes, "
        "2,000 training and 500 test images, 5 classes; scikit-learn's digits, 1,078 training and 359 test images, "
        "10 classes), kept "
        "in `docs/accuracy_cpu.csv`; its epochs in docs/performance.md. A comparison of families on this CPU, not "
        "ImageNet accuracy; -: not measured.",
        "",
        "| name | task | family | params | reference params | GMACs | reference GMACs | input | paper "
        "| CPU latency b1 | top-1 shapes / digits |",
        "|---|---|---|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for c in cards:
        ref_params = (f"{c['reference_params']:,}{cite(c['reference_params_source'])}"
                      if c["reference_params"] else "-")
        ref_macs = (f"{_gmacs(c['reference_macs'])}{cite(c['reference_macs_source'])}" if c["reference_macs"] else "-")
        timing = timings.get(c["name"])
        latency = (f"{float(timing['infer_latency_b1']):.1f} ms @ {timing['infer_img_size']} px"
                   if timing and timing.get("infer_latency_b1") else "n/a")
        shape = "x".join(str(v) for v in c["input_shape"])
        scores = [accuracy.get((c["name"], data)) for data in ("shapes", "digits")]
        top1 = " / ".join(f"{float(r['top1']):.3f}" if r else "-" for r in scores) if any(scores) else "-"
        lines.append("| " + " | ".join(_cell(v) for v in (
            c["name"], c["task"], c["family"], f"{c['params']:,}", ref_params, _gmacs(c["macs"]), ref_macs, shape,
            c["paper"] or "-", latency, top1)) + " |")
    lines += ["", "Sources of the reference numbers:", ""]
    lines += [f"{i}. {_cell(s)}" for i, s in enumerate(sources, 1)]
    return "\n".join(lines) + "\n"


README = os.path.join(ROOT, "README.md")
README_MARKERS = ("<!-- architectures: generated by `python -m catalog.benchmark --write-models-md` -->",
                  "<!-- architectures: end -->")


def architectures_markdown() -> str:
    """The README's architecture table: one row per task and family, its registered names and their range of
    trainable parameters, from the registry and the shipped cards (nothing is built)."""
    from catalog.registry import TASKS, list_models, model_info

    cards = [model_info(n).to_dict() for n in list_models()]
    lines = [README_MARKERS[0], "",
             f"{len(cards)} registered names. Each reproduces its reference trainable-parameter count "
             "(torchvision, keras.applications, timm, the paper or a stated closed form; the card names the "
             "source) and, where one is published, its MACs within 5% (`catalog.flops.count_macs`, conv + FC "
             "multiply-accumulates at batch 1, as torchvision/fvcore count). Per-name cards, MACs and latency: "
             "[docs/models.md](docs/models.md).", "",
             "| task | family | names | parameters |", "|---|---|---|---:|"]
    for task in TASKS:
        families = sorted({c["family"] for c in cards if c["task"] == task})
        for family in families:
            members = sorted((c for c in cards if c["task"] == task and c["family"] == family),
                             key=lambda c: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", c["name"])])
            low, high = min(c["params"] for c in members), max(c["params"] for c in members)
            span = f"{low / 1e6:.2f}M" if low == high else f"{low / 1e6:.2f}M - {high / 1e6:.2f}M"
            lines.append(f"| {task} | {family} | {', '.join(c['name'] for c in members)} | {span} |")
    return "\n".join(lines + ["", README_MARKERS[1]])


def readme_with_architectures(text: str) -> str:
    """``text`` (the README) with its architecture block replaced by :func:`architectures_markdown`."""
    start, end = text.find(README_MARKERS[0]), text.find(README_MARKERS[1])
    if start < 0 or end < start:
        raise ValueError(f"README.md must hold the markers {README_MARKERS[0]!r} and {README_MARKERS[1]!r}.")
    return text[:start] + architectures_markdown() + text[end + len(README_MARKERS[1]):]


def _write(path, text):
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def write_models_md(path: str = MODELS_MD, csv_path: str = CPU_CSV, readme: str | None = README) -> str:
    """Write :func:`models_markdown` to ``path`` (default ``docs/models.md``) and the architecture table into
    ``readme`` (None: not); return the path."""
    _write(path, models_markdown(csv_path))
    if readme is not None:
        with open(readme, encoding="utf-8") as f:
            _write(readme, readme_with_architectures(f.read()))
    return path


class _CallableModule(types.ModuleType):
    """``catalog.benchmark`` is this module (Python sets a package's attribute to its submodule on import), so
    calling the module calls :func:`benchmark`: ``catalog.benchmark(["resnet20"], image_size=64)``."""

    def __call__(self, *args, **kwargs):
        return benchmark(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule


if __name__ == "__main__":
    if sys.argv[1:] != ["--write-models-md"]:
        sys.exit("usage: python -m catalog.benchmark --write-models-md")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from catalog import benchmark as module  # this file runs as __main__; write through the package's module

    print(module.write_models_md())
