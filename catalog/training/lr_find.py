"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates", section 3.3): train for a few
hundred steps while the LR grows exponentially from ``start_lr`` to ``end_lr``, record the loss of every
step, and suggest the LR where the smoothed loss falls fastest (fastai's "steepest" point), which is
usually an order of magnitude below the LR of the minimum loss.

It runs through ``catalog.train`` (same model, data, optimizer and precision settings), with the ``exp``
schedule and a callback that records each step and stops once the loss has blown up.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os

import keras
import numpy as np


@dataclasses.dataclass
class LRFindResult:
    run_dir: str
    learning_rates: list
    losses: list
    suggested_lr: float
    plot: str


class _StepLosses(keras.callbacks.Callback):
    """Per-step losses (Keras logs the running mean of the epoch; the step's own loss is recovered from it)."""

    def __init__(self, steps: int, blow_up: float = 4.0):
        super().__init__()
        self.steps, self.blow_up = steps, blow_up
        self.lrs, self.losses, self._mean, self._seen = [], [], 0.0, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._mean, self._seen = 0.0, 0

    def on_train_batch_begin(self, batch, logs=None):
        self._lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_train_batch_end(self, batch, logs=None):
        mean = float((logs or {}).get("loss", math.nan))
        self._seen += 1
        loss = mean * self._seen - self._mean * (self._seen - 1)
        self._mean = mean
        self.lrs.append(self._lr)
        self.losses.append(loss)
        finite = [v for v in self.losses if math.isfinite(v)]
        if len(self.losses) >= self.steps or not math.isfinite(loss) or (
                finite and len(finite) > 10 and loss > self.blow_up * min(finite)):
            self.model.stop_training = True


def suggest_lr(lrs, losses, smoothing: float = 0.05) -> float:
    """The LR of the steepest descent of the exponentially smoothed loss (in log-LR), skipping the first
    and last tenth of the curve; the LR of the minimum over 10 when the curve is too short to tell."""
    lrs, losses = np.asarray(lrs, np.float64), np.asarray(losses, np.float64)
    keep = np.isfinite(losses)
    lrs, losses = lrs[keep], losses[keep]
    if len(losses) < 5:
        raise ValueError(f"the LR range test recorded only {len(losses)} finite losses; raise steps or lower "
                         f"start_lr.")
    smooth, average = np.empty_like(losses), 0.0
    for i, value in enumerate(losses):  # bias-corrected EMA, as fastai's recorder
        average = (1 - smoothing) * average + smoothing * value
        smooth[i] = average / (1 - (1 - smoothing) ** (i + 1))
    lo, hi = len(smooth) // 10, max(len(smooth) - len(smooth) // 10, len(smooth) // 10 + 3)
    slopes = np.gradient(smooth[lo:hi], np.log(lrs[lo:hi]))
    if len(slopes) < 3 or not np.any(slopes < 0):
        return float(lrs[int(np.argmin(smooth))] / 10)
    return float(lrs[lo + int(np.argmin(slopes))])


def lr_find(model, data=None, *, start_lr: float = 1e-7, end_lr: float = 10.0, steps: int = 200,
            out_dir: str | None = None, **settings) -> LRFindResult:
    """Run the LR range test for ``model`` on ``data`` (``catalog.train`` settings apply); write
    ``lr_find.csv`` and ``lr_find.png`` into the run directory and return the curve and the suggestion."""
    from catalog.training.loop import TrainingDiverged, train
    from catalog.training.recorder import write_atomic

    if not (0 < start_lr < end_lr):
        raise ValueError(f"start_lr and end_lr must satisfy 0 < start_lr < end_lr; got {start_lr!r} and {end_lr!r}.")
    if not isinstance(steps, int) or steps < 10:
        raise ValueError(f"steps must be an integer of at least 10; got {steps!r}.")
    gamma = (end_lr / start_lr) ** (1.0 / steps)
    recorder = _StepLosses(steps)
    settings = {**settings, "schedule": "exp", "lr": start_lr, "lr_scaling": "none", "warmup_epochs": 0.0,
                "schedule_options": {"gamma": gamma}, "val_split": "none"}
    settings["epochs"] = steps  # an upper bound: every epoch has a step at least; the recorder stops the run
    run_dir = out_dir or os.path.join("runs", "lr-find-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    try:
        train(model, data, callbacks=[recorder], out_dir=run_dir, **settings)
    except TrainingDiverged:  # expected: the LR grows until the loss explodes
        pass
    suggestion = suggest_lr(recorder.lrs, recorder.losses)
    rows = "\n".join(f"{i},{lr:.6g},{loss:.6g}" for i, (lr, loss) in enumerate(zip(recorder.lrs, recorder.losses)))
    write_atomic(os.path.join(run_dir, "lr_find.csv"), "step,learning_rate,loss\n" + rows + "\n")
    plot = os.path.join(run_dir, "lr_find.png")
    _plot(recorder.lrs, recorder.losses, suggestion, plot)
    return LRFindResult(run_dir, recorder.lrs, recorder.losses, suggestion, plot)


def _plot(lrs, losses, suggestion, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(lrs, losses, lw=1)
    ax.axvline(suggestion, color="tab:red", ls="--", label=f"suggested {suggestion:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    finite = [v for v in losses if math.isfinite(v)]
    if finite:
        ax.set_ylim(min(finite) * 0.9, min(max(finite), 4 * min(finite)) * 1.05)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
