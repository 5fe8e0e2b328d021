"""What every early-exit model (BranchyNet, Teerapittayanon et al. 2016) shares: the output convention, the joint
training recipe, the entropy exit rule, threshold calibration, staged batch-1 inference and the evaluation.

Output convention: a functional model whose outputs are class probabilities (softmax, float32), one per exit in
order, produced by layers named ``exit1``, ``exit2``, ..., and ``final`` (the backbone's own classifier) last.
Each side branch starts with a layer named ``exit{k}_block1_conv`` whose input is the backbone tensor it hangs
off; :class:`EarlyExitRunner` cuts the model there into segments.

The exit rule (the paper's): the entropy of an exit's softmax, ``-sum_c p_c ln p_c`` (natural log, 0 for a
one-hot vector, ln C for a uniform one), is compared with that exit's threshold T_k; a sample leaves at the first
exit k with entropy < T_k, else at ``final``. T_k = inf sends every sample out at exit k; T_k = 0 (or -inf) lets
none out there.
"""

from __future__ import annotations

import math
import time
from typing import Sequence

import keras
import numpy as np

from catalog.registry import TrainingRecipe

FINAL = "final"


# ------------------------------------------------------------------------------------------ conventions
def exit_names(model) -> list[str]:
    """The exit names of an early-exit model in order (``exit1``, ..., ``final``); ValueError for another model."""
    names = [t._keras_history.operation.name for t in model.outputs] if isinstance(model.outputs, list) else []
    want = [f"exit{k}" for k in range(1, len(names))] + [FINAL]
    if len(names) < 2 or names != want:
        raise ValueError(f"model {model.name!r} is not an early-exit model: its outputs must be softmax layers named "
                         f"exit1, ..., final (as branchynet builds); got {names}.")
    return names


def entropy(probabilities) -> np.ndarray:
    """Softmax entropy ``-sum_c p_c ln p_c`` over the last axis (natural log; 0 * ln 0 = 0), float64."""
    p = np.asarray(probabilities, np.float64)
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)


def check_thresholds(thresholds, num_branches: int) -> tuple[float, ...]:
    """``thresholds`` as a tuple of ``num_branches`` floats (inf and -inf allowed, NaN not)."""
    try:
        values = tuple(float(t) for t in thresholds)
    except (TypeError, ValueError):
        values = None
    if values is None or len(values) != num_branches or any(math.isnan(v) for v in values):
        raise ValueError(f"thresholds must be {num_branches} numbers (one entropy threshold per side exit, inf and "
                         f"-inf allowed); got {thresholds!r}.")
    return values


def exit_taken(probabilities: Sequence, thresholds) -> np.ndarray:
    """Per sample, the index of the exit it leaves at: the first side exit k with entropy < ``thresholds[k]``,
    else the final one (``len(probabilities) - 1``). ``probabilities``: one (N, C) array per exit, final last."""
    thresholds = check_thresholds(thresholds, len(probabilities) - 1)
    taken = np.full(len(probabilities[0]), len(probabilities) - 1)
    for k in reversed(range(len(thresholds))):  # the earliest qualifying exit wins
        taken = np.where(entropy(probabilities[k]) < thresholds[k], k, taken)
    return taken


def early_exit_outputs(probabilities: Sequence, thresholds) -> tuple[np.ndarray, np.ndarray]:
    """(exit index per sample, the (N, C) probabilities of the exit each sample leaves at)."""
    taken = exit_taken(probabilities, thresholds)
    stacked = np.stack([np.asarray(p) for p in probabilities])  # E, N, C
    return taken, stacked[taken, np.arange(len(taken))]


# ------------------------------------------------------------------------------------------ training
def early_exit_recipe(model, exit_weights=None) -> TrainingRecipe:
    """BranchyNet's joint training: the weighted sum of one sparse categorical cross-entropy per exit.

    The paper's joint loss is ``sum_n w_n L_n`` over the exits; the default weights here are equal (1.0 per exit,
    final included), this catalog's choice (pass ``exit_weights`` for others). The labels are replicated per exit
    in the data pipeline; each exit reports its accuracy (``exit1_accuracy``, ..., ``final_accuracy``). The
    evaluation is :func:`evaluate_early_exit`.

    Args:
        model: an early-exit model (see the module docstring).
        exit_weights: one non-negative weight per exit (final last), or None for equal weights.
    """
    names = exit_names(model)
    if exit_weights is None:
        weights = [1.0] * len(names)
    else:
        ok = isinstance(exit_weights, (list, tuple)) and len(exit_weights) == len(names) and all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in exit_weights) and any(
            w > 0 for w in exit_weights)
        if not ok:
            raise ValueError(f"exit_weights must be {len(names)} non-negative numbers (one per exit: "
                             f"{', '.join(names)}), not all 0; got {exit_weights!r}.")
        weights = [float(w) for w in exit_weights]
    count = len(names)

    def replicate(labels):
        return tuple(labels for _ in range(count))

    return TrainingRecipe(
        task="classification", loss=[keras.losses.SparseCategoricalCrossentropy() for _ in names],
        num_classes=int(model.outputs[-1].shape[-1]), targets=replicate,
        metrics=[[keras.metrics.SparseCategoricalAccuracy(name="accuracy")] for _ in names],
        loss_weights=weights, evaluate=evaluate_early_exit,
        notes=[f"joint loss: {' + '.join(f'{w:g} CE({n})' for w, n in zip(weights, names))} (BranchyNet, "
               f"Teerapittayanon et al. 2016)."])


# ------------------------------------------------------------------------------------------ staged inference
class EarlyExitRunner:
    """Batch-1 early-exit inference that stops computing at the exit it takes.

    The model is cut into segments: segment k (k = 1..E-1) maps the previous cut tensor (the input for k = 1) to
    (the backbone tensor exit k hangs off, exit k's probabilities); the last maps the last cut tensor to
    ``final``. :meth:`predict` runs segment after segment and returns at the first exit whose entropy is below
    its threshold. :attr:`full_network` is the backbone alone (input to ``final``, no side branch): the network
    early exits are measured against.
    """

    def __init__(self, model, thresholds):
        self.names = exit_names(model)
        self.thresholds = check_thresholds(thresholds, len(self.names) - 1)
        cuts = [model.get_layer(f"{name}_block1_conv").input for name in self.names[:-1]]
        starts = [model.inputs[0], *cuts]
        self.segments = [keras.Model(starts[k], [cuts[k], model.get_layer(self.names[k]).output],
                                     name=f"segment{k + 1}") for k in range(len(cuts))]
        self.segments.append(keras.Model(starts[-1], model.get_layer(FINAL).output, name=f"segment{len(cuts) + 1}"))
        self.full_network = keras.Model(model.inputs[0], model.get_layer(FINAL).output, name=f"{model.name}_full")

    def predict(self, image) -> tuple[np.ndarray, int]:
        """(class probabilities (C,), index of the exit taken) of one image (H, W, C) or a batch of one."""
        x = np.asarray(image, np.float32)
        x = x[None] if x.ndim == len(self.full_network.input_shape) - 1 else x
        for k, segment in enumerate(self.segments[:-1]):
            x, probabilities = segment.predict_on_batch(x)
            probabilities = np.asarray(probabilities)
            if entropy(probabilities[0]) < self.thresholds[k]:
                return probabilities[0], k
        return np.asarray(self.segments[-1].predict_on_batch(x))[0], len(self.segments) - 1

    def predict_full(self, image) -> np.ndarray:
        """Class probabilities (C,) of the full network (no side branch) on one image."""
        x = np.asarray(image, np.float32)
        x = x[None] if x.ndim == len(self.full_network.input_shape) - 1 else x
        return np.asarray(self.full_network.predict_on_batch(x))[0]

    def all_exits(self, x) -> list[np.ndarray]:
        """Every exit's probabilities for a batch, computed segment by segment (what the model outputs)."""
        out = []
        for segment in self.segments[:-1]:
            x, probabilities = segment.predict_on_batch(np.asarray(x))
            out.append(np.asarray(probabilities))
        return out + [np.asarray(self.segments[-1].predict_on_batch(np.asarray(x)))]

    def exit_macs(self) -> tuple[list[int], int]:
        """(MACs at batch 1 of inference that leaves at each exit, MACs of the full network), by
        :func:`catalog.flops.count_macs`: leaving at exit k runs segments 1..k (branches 1..k included)."""
        from catalog import flops

        per_segment = [flops.count_macs(s) for s in self.segments]
        return [int(sum(per_segment[:k + 1])) for k in range(len(per_segment))], int(
            flops.count_macs(self.full_network))


def median_latency(runs: dict, images, repeats: int = 3) -> dict:
    """Per name of ``runs`` (name: a function of one image), the median over ``repeats`` passes of the mean seconds
    per image over ``images``; the functions take turns within each pass, so load on the machine falls on each."""
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            for image in images:
                run(image)
            times[name].append((time.perf_counter() - start) / len(images))
    return {name: float(np.median(values)) for name, values in times.items()}


# ------------------------------------------------------------------------------------------ calibration
def exit_probabilities(model, data) -> tuple[list[np.ndarray], np.ndarray]:
    """(one (N, C) probability array per exit, (N,) labels) over ``data``: (images, labels) arrays or an iterable
    of such batches."""
    if isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], tuple):
        data = [data]
    outs, labels = [], []
    for x, y in data:
        outs.append([np.asarray(p) for p in model.predict_on_batch(np.asarray(x, np.float32))])
        labels.append(np.asarray(y).reshape(-1))
    if not outs:
        raise ValueError("data gave no examples.")
    return [np.concatenate(p) for p in zip(*outs)], np.concatenate(labels).astype(np.int64)


def thresholds_for(probabilities: Sequence, labels, tolerance: float = 0.01) -> tuple[float, ...]:
    """Entropy thresholds that let as many samples as possible leave early while the early-exit accuracy on these
    samples stays at least the final exit's minus ``tolerance`` (a fraction: 0.01 is one point).

    Greedy over the exits in order (the paper tunes the thresholds by hand on a validation set): for exit k, the
    samples not yet out sorted by entropy; the largest prefix that can leave (cut between distinct entropies)
    whose accuracy, with every later sample taking the final exit, keeps the bound; T_k is the midpoint between
    the last entropy let out and the next (inf when all leave, 0 when none may).
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance <= 1:
        raise ValueError(f"tolerance must be a number in [0, 1] (a fraction of accuracy); got {tolerance!r}.")
    labels = np.asarray(labels).reshape(-1)
    correct = [np.argmax(np.asarray(p), axis=-1) == labels for p in probabilities]
    n = len(labels)
    bound = correct[-1].mean() - tolerance - 1e-12
    remaining = np.ones(n, bool)
    got = 0  # correct samples already out
    thresholds = []
    for k in range(len(probabilities) - 1):
        idx = np.flatnonzero(remaining)
        ent = entropy(probabilities[k])[idx]
        order = np.argsort(ent, kind="stable")
        ent, idx = ent[order], idx[order]
        here = np.concatenate([[0], np.cumsum(correct[k][idx])])  # correct at exit k if the first i leave
        rest = np.concatenate([np.cumsum(correct[-1][idx][::-1])[::-1], [0]])  # final on the others
        accuracy = (got + here + rest) / n
        between = np.ones(len(idx) + 1, bool)  # cut i (the first i leave) only between distinct entropies
        between[1:-1] = ent[1:] > ent[:-1]
        cuts = np.flatnonzero(between)
        ok = cuts[accuracy[cuts] >= bound]
        i = int(ok.max()) if len(ok) else 0
        if i == 0:
            threshold = 0.0
        elif i == len(idx):
            threshold = math.inf
        else:
            threshold = float((ent[i - 1] + ent[i]) / 2)
        thresholds.append(threshold)
        got += int(here[i])
        remaining[idx[:i]] = False
    return tuple(thresholds)


def calibrate_thresholds(model, data, tolerance: float = 0.01) -> tuple[float, ...]:
    """Entropy thresholds of ``model``'s side exits chosen on ``data`` (a validation split: (images, labels) or
    batches of them) so the early-exit accuracy stays within ``tolerance`` of the final exit's (see
    :func:`thresholds_for`)."""
    exit_names(model)
    probabilities, labels = exit_probabilities(model, data)
    return thresholds_for(probabilities, labels, tolerance)


# ------------------------------------------------------------------------------------------ evaluation
def evaluate_early_exit(model, data, *, out_dir, thresholds=None, tolerance: float = 0.01,
                        calibration_split: str | None = None, latency_images: int = 64, latency_repeats: int = 3,
                        record=None, card=None, split=None, image_size=None, batch_size: int = 32,
                        preprocessing=None, max_batches=None, num_samples: int = 8, allow_random_weights=False,
                        seed: int = 0, history=None, title=None, verbose: int = 1, notes=None, **load_kwargs) -> str:
    """Score an early-exit model: every exit's accuracy, the early-exit accuracy, the share of samples per exit,
    the MACs of leaving at each exit and their expected relative cost, and the measured batch-1 latency of
    early-exit inference (:class:`EarlyExitRunner`) against the full network (median of repeats); write
    report.json/md/html (a classification report of the early-exit predictions plus an "Early exits" section).

    Thresholds: the given ones, else calibrated (:func:`thresholds_for`, ``tolerance``) on ``calibration_split``
    of ``data``, else on a seeded random half of the evaluated examples, the report scoring the other half.

    Args:
        model: an early-exit model, a ``.keras`` file of one or a registered name.
        data: a ``catalog.datasets`` spec, or an iterable of (images, labels) batches (then ``class_names`` in
            ``load_kwargs``).
        thresholds: one entropy threshold per side exit, or None to calibrate.
        tolerance: the accuracy (fraction) the calibration may give up against the final exit.
        calibration_split: the split of ``data`` to calibrate on (None: half of the evaluated examples).
        latency_images: images timed one by one; latency_repeats: passes over them (the median is reported).
        Others: as :func:`catalog.scoring.evaluate`.
    """
    from catalog.evaluation.classification import classification_report
    from catalog.evaluation.report import write_early_exit_section, write_report
    from catalog.registry import list_models
    from catalog.scoring import input_settings, report_card, task_model

    if not isinstance(model, keras.Model):
        model, record, card, _ = task_model(model, None, allow_random_weights)
    names = exit_names(model)
    source = "given"
    if thresholds is not None:
        thresholds = check_thresholds(thresholds, len(names) - 1)
    for value, argument, least in ((latency_images, "latency_images", 0), (latency_repeats, "latency_repeats", 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{argument} must be an integer of at least {least}; got {value!r}.")
    if record is None and model.name in list_models():  # a model built from a registered name: its card's settings
        record = {"model_name": model.name}
    preprocessing, crop_fraction, settings_notes = input_settings(model, record, preprocessing, None)
    notes = list(notes or []) + settings_notes
    size = image_size or int(model.input_shape[1])
    channels = int(model.input_shape[-1])
    class_names = load_kwargs.pop("class_names", None)

    def batches(which):
        if not isinstance(data, str):
            return data, None
        from catalog import datasets

        ds, info = datasets.load(data, split=which, task="classification", image_size=size, batch_size=batch_size,
                                 preprocessing=preprocessing, crop_fraction=crop_fraction, channels=channels,
                                 shuffle=max_batches is not None, seed=seed, **load_kwargs)
        return ds, info

    if isinstance(data, str):
        from catalog import datasets

        split = split or datasets.evaluation_split(data, data_dir=load_kwargs.get("data_dir"))
    if thresholds is None and calibration_split is not None:
        if not isinstance(data, str):
            raise ValueError("calibration_split needs data as a dataset spec; pass thresholds or a spec.")
        ds, _ = batches(calibration_split)
        thresholds = calibrate_thresholds(model, _limited(ds, max_batches), tolerance)
        source = f"split {calibration_split!r} of {data}"
    ds, info = batches(split)
    names_of_classes = list(class_names or (info or {}).get("class_names") or [])
    halves = thresholds is None
    rng = np.random.default_rng(seed)
    keep = latency_images + num_samples
    evaluated = {"probabilities": [], "labels": []}
    held = {"probabilities": [], "labels": []}
    images, start = [], time.time()
    for x, y in _limited(ds, max_batches):
        x = np.asarray(x, np.float32)
        y = np.asarray(y).reshape(-1).astype(np.int64)
        out = [np.asarray(p) for p in model.predict_on_batch(x)]
        report_part = rng.random(len(y)) < 0.5 if halves else np.ones(len(y), bool)
        for part, mask in ((evaluated, report_part), (held, ~report_part)):
            part["probabilities"].append([p[mask] for p in out])
            part["labels"].append(y[mask])
        if len(images) < keep:
            images += list(x[report_part][:keep - len(images)])
    if not evaluated["labels"]:
        raise ValueError(f"data {data!r} gave no examples for split {split!r}.")

    def joined(part):
        return [np.concatenate(p) for p in zip(*part["probabilities"])], np.concatenate(part["labels"])

    probabilities, labels = joined(evaluated)
    if halves:
        calibration, calibration_labels = joined(held)
        if len(labels) == 0 or len(calibration_labels) == 0:
            raise ValueError("too few examples to calibrate on one half and score the other; evaluate more images "
                             "or pass thresholds.")
        thresholds = thresholds_for(calibration, calibration_labels, tolerance)
        source = f"a seeded random half of the evaluated examples ({len(calibration_labels)}; seed {seed})"
        notes.append(f"the thresholds were calibrated on {source}; the report scores the other "
                     f"{len(labels)} examples.")
    num_classes = int(probabilities[-1].shape[-1])
    names_of_classes = names_of_classes or [str(c) for c in range(num_classes)]
    taken, chosen = early_exit_outputs(probabilities, thresholds)
    metrics = classification_report(labels, chosen, names_of_classes)

    runner = EarlyExitRunner(model, thresholds)
    exit_cost, full_macs = runner.exit_macs()
    counts = np.bincount(taken, minlength=len(names))
    shares = counts / len(labels)
    accuracy = [float(np.mean(np.argmax(p, -1) == labels)) for p in probabilities]
    summary = {
        "exits": names, "thresholds": [*thresholds, None], "tolerance": tolerance, "threshold_source": source,
        "exit_accuracy": accuracy, "early_exit_accuracy": float(np.mean(np.argmax(chosen, -1) == labels)),
        "final_accuracy": accuracy[-1], "count": counts, "share": shares, "share_early": float(1 - shares[-1]),
        "accuracy_of_exited": [float(np.mean(np.argmax(chosen[taken == k], -1) == labels[taken == k]))
                               if counts[k] else None for k in range(len(names))],
        "macs": exit_cost, "full_network_macs": full_macs,
        "expected_macs": float(np.dot(shares, exit_cost)),
        "relative_cost": float(np.dot(shares, exit_cost) / full_macs) if full_macs else None,
    }
    timed = images[:latency_images]
    if timed:
        for image in timed[:2]:  # warm up: every segment and the full network compiled
            runner.predict_full(image)
            runner.all_exits(image[None])
        seconds = median_latency({"early_exit": runner.predict, "full": runner.predict_full}, timed, latency_repeats)
        exit_ms, full_ms = 1e3 * seconds["early_exit"], 1e3 * seconds["full"]
        summary["latency"] = {"images": len(timed), "repeats": latency_repeats, "early_exit_ms": exit_ms,
                              "full_network_ms": full_ms, "speedup": full_ms / exit_ms,
                              "device": keras.backend.backend()}
    metrics["early_exit"] = summary
    card = report_card(model, card, notes, "its scores are chance level")
    if verbose:
        for note in notes:
            print(f"note: {note}")
    shown = images[:num_samples]
    samples = None
    if shown:
        n = len(shown)
        samples = {"images": np.stack(shown), "predictions": np.argmax(chosen[:n], -1),
                   "ground_truth": labels[:n], "confidences": np.max(chosen[:n], -1)}
    settings = {"split": split, "preprocessing": preprocessing, "image_size": size, "batch_size": batch_size,
                "thresholds": ", ".join(f"{t:.4g}" for t in thresholds), "tolerance": tolerance}
    dataset = {"spec": data if isinstance(data, str) else "batches", "examples": int(len(labels))}
    write_report(out_dir, "classification", metrics, names_of_classes, samples=samples, settings=settings,
                 model=card, dataset=dataset, seconds=time.time() - start,
                 title=title or f"Early-exit evaluation of {model.name}", history=history, notes=notes)
    write_early_exit_section(out_dir, summary)
    return out_dir


def _limited(ds, max_batches):
    for step, batch in enumerate(ds):
        if max_batches is not None and step >= max_batches:
            return
        yield batch


__all__ = ["FINAL", "EarlyExitRunner", "calibrate_thresholds", "check_thresholds", "early_exit_outputs",
           "early_exit_recipe", "entropy", "evaluate_early_exit", "exit_names", "exit_probabilities", "exit_taken",
           "median_latency", "thresholds_for"]
