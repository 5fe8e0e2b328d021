"""What a run leaves behind while it trains: checkpoints that survive SIGKILL, history.csv, the NaN guard.

One Keras callback, :class:`RunRecorder`, so the three agree on where the run is: after every epoch and
every ``checkpoint_every`` optimizer steps it writes ``checkpoints/last.keras`` (weights, optimizer state
with the EMA and the schedule's step, and the position in the data: epoch and step) atomically through
``catalog.saving.save_model`` (temporary file, fsync, rename), so the last good checkpoint is always a
whole file; it appends the epoch's row to ``history.csv`` (rewritten atomically); and it stops the run at
the first non-finite loss, before anything is written for that step.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time

import keras
import numpy as np

CHECKPOINT = os.path.join("checkpoints", "last.keras")


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite; the last good checkpoint is left in place."""


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, fsync and rename."""
    partial = f"{path}.partial"
    with open(partial, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def read_history(path: str) -> list[dict]:
    """The rows of a run's history.csv (numbers as floats, ``epoch`` as int); [] if there is none."""
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [{k: (int(v) if k == "epoch" else float(v) if v not in ("", None) else math.nan) for k, v in r.items()}
            for r in rows]


class RunRecorder(keras.callbacks.Callback):
    """Checkpoints, history rows and the NaN guard of one run (see the module docstring).

    Args:
        run_dir: the run directory. record: ``catalog.saving.save_model`` keywords stored with every
            checkpoint (preprocessing, class names, ...). steps_per_epoch, batch_size: the data's.
        checkpoint_every: optimizer steps between mid-epoch checkpoints (None: at epoch ends only).
        start_epoch, start_step: where this ``fit`` starts (a resumed run starts mid-epoch).
    """

    def __init__(self, run_dir: str, record: dict, steps_per_epoch: int, batch_size: int,
                 checkpoint_every: int | None = None, start_epoch: int = 0, start_step: int = 0):
        super().__init__()
        self.run_dir, self.record = run_dir, dict(record)
        self.steps_per_epoch, self.batch_size = steps_per_epoch, batch_size
        self.checkpoint_every = checkpoint_every
        self.epoch, self.step_offset = start_epoch, start_step
        self.history_path = os.path.join(run_dir, "history.csv")
        # rows are numbered 1.. (epochs done); a resumed run drops the rows of the epochs it redoes
        self.rows = [r for r in read_history(self.history_path) if r["epoch"] <= start_epoch]
        self.diverged = None
        os.makedirs(os.path.join(run_dir, "checkpoints"), exist_ok=True)

    @property
    def global_step(self) -> int:
        return self.epoch * self.steps_per_epoch + self.step_offset

    def checkpoint(self, epoch: int, step: int) -> str:
        from catalog.saving import save_model

        path = os.path.join(self.run_dir, CHECKPOINT)
        return save_model(self.model, path, **self.record, checkpoint={"epoch": epoch, "step": step,
                                                                       "global_step": epoch * self.steps_per_epoch + step})

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.started, self.steps_done = epoch, time.time(), 0

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        step = self.step_offset + batch + 1
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged = (self.epoch, step, float(loss))
            self.model.stop_training = True
            return
        self.steps_done = batch + 1
        every = self.checkpoint_every
        if every and (self.epoch * self.steps_per_epoch + step) % every == 0 and step < self.steps_per_epoch:
            self.checkpoint(self.epoch, step)

    def on_epoch_end(self, epoch, logs=None):
        if self.diverged is not None:
            return
        logs = {k: float(np.asarray(v)) for k, v in (logs or {}).items() if np.ndim(v) == 0}
        seconds = time.time() - self.started
        row = {"epoch": epoch + 1, **logs, "learning_rate": _current_lr(self.model.optimizer),
               "seconds": round(seconds, 3),
               "images_per_second": round(self.steps_done * self.batch_size / max(seconds, 1e-9), 2)}
        self.rows = [r for r in self.rows if r["epoch"] != epoch + 1] + [row]
        self._write_history()
        self.step_offset = 0
        self.checkpoint(epoch + 1, 0)

    def _write_history(self):
        keys = []
        for row in self.rows:
            keys += [k for k in row if k not in keys]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: row.get(k, "") for k in keys})
        write_atomic(self.history_path, out.getvalue())


def _current_lr(optimizer) -> float:
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
