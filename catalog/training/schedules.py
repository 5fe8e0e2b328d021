"""Per-step learning-rate schedules: Caffe's solver policies, SGDR cosine with restarts, and one-cycle.

``make_schedule`` returns a :class:`CatalogSchedule`, one registered ``LearningRateSchedule`` for every
policy, written with ``keras.ops`` (TensorFlow and JAX), that an optimizer takes as ``learning_rate`` and
that survives ``model.save`` / ``keras.saving.load_model(..., safe_mode=True)``. ``step`` counts optimizer
steps (``optimizer.iterations``, 0 at the first update); ``T`` is ``total_steps``.

    schedule = make_schedule("cosine", scale_lr(0.1, batch_size=512), total_steps=10_000, warmup_steps=500)
    optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=0.9)

| name      | LR at step s                                       | options (defaults)                      |
|-----------|----------------------------------------------------|-----------------------------------------|
| fixed     | base_lr                                            | none                                    |
| step      | base_lr * gamma ** floor(s / step_size)            | gamma 0.1, step_size max(1, T // 3)     |
| multistep | base_lr * gamma ** (number of milestones <= s)     | gamma 0.1, milestones (T//2, 3*T//4)    |
| exp       | base_lr * gamma ** s                               | gamma 0.01 ** (1 / T): base_lr/100 at T |
| inv       | base_lr * (1 + gamma * s) ** -power                | gamma 1e-4, power 0.75 (Caffe's LeNet)  |
| poly      | base_lr * (1 - s / T) ** power; 0 from T on        | power 1.0 (linear decay)                |
| sigmoid   | base_lr / (1 + exp(-gamma * (s - step_size)))      | gamma -10 / T, step_size T // 2         |
|           |   (defaults: 0.9933 * base_lr at 0, 0.0067 at T)   |                                         |
| cosine    | min_lr + (base_lr * m_mul ** i - min_lr) / 2       | period T (one cosine over the run),     |
|           |   * (1 + cos(pi * t / (period * t_mul ** i)))      | t_mul 1, m_mul 1, min_lr 0.0            |
|           |   in restart cycle i, t steps into it; from T on:  |                                         |
|           |   min_lr                                           |                                         |
| onecycle  | cosine from base_lr / div_factor up to base_lr at  | pct_start 0.3, div_factor 25.0,         |
|           |   step pct_start * T - 1, then cosine down to      | final_div_factor 1e4                    |
|           |   base_lr / (div_factor * final_div_factor) at     |                                         |
|           |   T - 1 and after                                  |                                         |

Sources: fixed to sigmoid are Caffe's ``lr_policy`` (``SGDSolver::GetLearningRate`` in
caffe/src/caffe/solvers/sgd_solver.cpp, ``iter`` = step, ``max_iter`` = T). cosine is SGDR (Loshchilov &
Hutter 2017, eq. 5; arXiv:1608.03983) with timm's ``CosineLRScheduler`` cycle arithmetic (``cycle_mul`` =
t_mul, ``cycle_decay`` = m_mul, which scales the peak but not min_lr). onecycle is Smith & Topin 2019
(arXiv:1708.07120) exactly as ``torch.optim.lr_scheduler.OneCycleLR(max_lr=base_lr,
anneal_strategy="cos", three_phase=False)`` computes it: torch puts the peak at step
``pct_start * T - 1`` and the final LR at ``T - 1``; its momentum cycling is not part of a LR schedule.

Warm-up (``warmup_steps`` W > 0): for s < W the LR rises linearly from ``warmup_start_lr`` to the
schedule's value at W; from W on the schedule is evaluated at the global step, not shifted by W (timm's
default, ``warmup_prefix=False``), so cosine's ``period`` defaults to T, not T - W: one cosine still ends
at T, as timm's ``t_initial`` = epochs. onecycle warms up by itself and takes no ``warmup_steps``.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, NamedTuple

import keras
import numpy as np
from keras import ops

SCHEDULES = ("fixed", "step", "multistep", "exp", "inv", "poly", "sigmoid", "cosine", "onecycle")
SCALING_RULES = ("linear", "sqrt", "none")


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_milestones(value) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) > 0 and all(_is_int(m) and m >= 0 for m in value)
            and all(a < b for a, b in zip(value, value[1:])))


class _Check(NamedTuple):
    """What an option accepts: a test, its wording in an error, and the stored (JSON-friendly) form."""

    test: Callable
    accepted: str
    convert: Callable


_POSITIVE = _Check(lambda v: _is_real(v) and v > 0, "a positive number", float)
_NON_NEGATIVE = _Check(lambda v: _is_real(v) and v >= 0, "a non-negative number", float)
_REAL = _Check(_is_real, "a finite number", float)
_AT_LEAST_ONE = _Check(lambda v: _is_real(v) and v >= 1, "a number >= 1", float)
_FRACTION = _Check(lambda v: _is_real(v) and 0 < v < 1, "a number in (0, 1)", float)
_DECAY = _Check(lambda v: _is_real(v) and 0 < v <= 1, "a number in (0, 1]", float)
_POSITIVE_INT = _Check(lambda v: _is_int(v) and v > 0, "a positive integer", int)
_NON_NEGATIVE_INT = _Check(lambda v: _is_int(v) and v >= 0, "a non-negative integer", int)
_MILESTONES = _Check(_is_milestones, "a non-empty increasing sequence of non-negative integers",
                     lambda v: [int(m) for m in v])

# Every policy's options: option -> (default from total_steps, check). The table in the docstring.
_OPTIONS = {
    "fixed": {},
    "step": {"gamma": (lambda t: 0.1, _POSITIVE), "step_size": (lambda t: max(1, t // 3), _POSITIVE_INT)},
    "multistep": {"gamma": (lambda t: 0.1, _POSITIVE),
                  "milestones": (lambda t: sorted({t // 2, 3 * t // 4}), _MILESTONES)},
    "exp": {"gamma": (lambda t: 0.01 ** (1.0 / t), _POSITIVE)},
    "inv": {"gamma": (lambda t: 1e-4, _NON_NEGATIVE), "power": (lambda t: 0.75, _NON_NEGATIVE)},
    "poly": {"power": (lambda t: 1.0, _POSITIVE)},
    "sigmoid": {"gamma": (lambda t: -10.0 / t, _REAL), "step_size": (lambda t: t // 2, _NON_NEGATIVE_INT)},
    "cosine": {"period": (lambda t: t, _POSITIVE_INT), "t_mul": (lambda t: 1.0, _AT_LEAST_ONE),
               "m_mul": (lambda t: 1.0, _DECAY), "min_lr": (lambda t: 0.0, _NON_NEGATIVE)},
    "onecycle": {"pct_start": (lambda t: 0.3, _FRACTION), "div_factor": (lambda t: 25.0, _POSITIVE),
                 "final_div_factor": (lambda t: 1e4, _POSITIVE)},
}


def _count_reached(s, boundaries):
    """How many of the increasing ``boundaries`` are <= each step in ``s``."""
    table = ops.convert_to_tensor(np.asarray(boundaries, dtype="float32"))
    return ops.sum(ops.cast(ops.greater_equal(ops.expand_dims(s, -1), table), "float32"), axis=-1)


def _cos_anneal(start, end, fraction):
    """torch's ``OneCycleLR._annealing_cos``: from ``start`` at fraction 0 to ``end`` at 1."""
    return end + (start - end) / 2.0 * (1.0 + ops.cos(math.pi * fraction))


def _cosine(s, base, total, o):
    """SGDR with restarts; cycle starts in float64 on the host so restarts land on the exact step."""
    period, t_mul, m_mul, low = o["period"], o["t_mul"], o["m_mul"], o["min_lr"]
    if t_mul == 1.0:
        cycle = ops.floor(s / period)
        start, length = cycle * period, ops.full_like(s, period)
        peak = base * ops.exp(cycle * math.log(m_mul))
    else:  # cycles that start before T (from T on the LR is min_lr); at most T / period of them
        starts, lengths = [0.0], [float(period)]
        while starts[-1] + lengths[-1] < total:
            starts.append(starts[-1] + lengths[-1])
            lengths.append(lengths[-1] * t_mul)
        index = ops.cast(ops.maximum(_count_reached(s, starts) - 1.0, 0.0), "int32")
        start = ops.take(ops.convert_to_tensor(np.asarray(starts, "float32")), index)
        length = ops.take(ops.convert_to_tensor(np.asarray(lengths, "float32")), index)
        peak = ops.take(ops.convert_to_tensor(np.asarray([base * m_mul ** i for i in range(len(starts))],
                                                         "float32")), index)
    lr = _cos_anneal(peak, low, ops.clip((s - start) / length, 0.0, 1.0))
    return ops.where(s >= total, ops.full_like(s, low), lr)


def _onecycle(s, base, total, o):
    """torch's OneCycleLR, two cosine phases: peak at pct_start * T - 1, final LR at T - 1 and after."""
    initial = base / o["div_factor"]
    final = initial / o["final_div_factor"]
    peak_step, end_step = o["pct_start"] * total - 1.0, total - 1.0
    up = _cos_anneal(initial, base, ops.clip(s / peak_step, 0.0, 1.0))
    down = _cos_anneal(base, final, ops.clip((s - peak_step) / (end_step - peak_step), 0.0, 1.0))
    return ops.where(s <= peak_step, up, down)


# LR at float32 step(s) s: (s, base_lr, total_steps, options) -> tensor shaped like s. gamma ** k is
# exp(k * log(gamma)) with the log taken in float64, and poly uses (T - s) / T, to keep float32 exact.
_FORMULAS = {
    "fixed": lambda s, base, total, o: ops.full_like(s, base),
    "step": lambda s, base, total, o: base * ops.exp(ops.floor(s / o["step_size"]) * math.log(o["gamma"])),
    "multistep": lambda s, base, total, o: base * ops.exp(_count_reached(s, o["milestones"])
                                                          * math.log(o["gamma"])),
    "exp": lambda s, base, total, o: base * ops.exp(s * math.log(o["gamma"])),
    "inv": lambda s, base, total, o: base * ops.power(1.0 + o["gamma"] * s, -o["power"]),
    "poly": lambda s, base, total, o: base * ops.power(ops.maximum(total - s, 0.0) / total, o["power"]),
    "sigmoid": lambda s, base, total, o: base * ops.sigmoid(o["gamma"] * (s - o["step_size"])),
    "cosine": _cosine,
    "onecycle": _onecycle,
}


def _require(check: _Check, value, label: str):
    if not check.test(value):
        raise ValueError(f"{label} must be {check.accepted}; got {value!r}.")
    return check.convert(value)


@keras.saving.register_keras_serializable(package="catalog")
class CatalogSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """One of ``SCHEDULES`` with an optional linear warm-up, per optimizer step (definitions: module docstring).

    ``options`` default per the module table; ``get_config`` stores every resolved option.
    """

    def __init__(self, name: str, base_lr: float, total_steps: int, warmup_steps: int = 0,
                 warmup_start_lr: float = 0.0, **options):
        if name not in SCHEDULES:
            raise ValueError(f"name must be one of {', '.join(SCHEDULES)}; got {name!r}.")
        self.name = name
        self.base_lr = _require(_POSITIVE, base_lr, "base_lr")
        self.total_steps = _require(_POSITIVE_INT, total_steps, "total_steps")
        self.warmup_steps = _require(_NON_NEGATIVE_INT, warmup_steps, "warmup_steps")
        self.warmup_start_lr = _require(_NON_NEGATIVE, warmup_start_lr, "warmup_start_lr")
        if self.warmup_steps >= self.total_steps:
            raise ValueError(f"warmup_steps must be less than total_steps ({self.total_steps}); "
                             f"got {warmup_steps!r}.")
        if name == "onecycle" and self.warmup_steps:
            raise ValueError(f"warmup_steps must be 0 for onecycle, which warms up by itself over pct_start; "
                             f"got {warmup_steps!r}.")
        accepted = _OPTIONS[name]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ValueError(f"Schedule {name!r} has no option {', '.join(unknown)}; it accepts "
                             f"{', '.join(accepted) or 'no options'}.")
        self.options = {key: _require(check, options[key] if key in options else default(self.total_steps),
                                      f"{name} option {key}")
                        for key, (default, check) in accepted.items()}
        if name == "onecycle" and self.options["pct_start"] * self.total_steps <= 1:
            raise ValueError(f"onecycle option pct_start must put the peak after step 0 (pct_start * "
                             f"total_steps > 1); got {self.options['pct_start']} * {self.total_steps}.")

    def _formula(self, s):
        return _FORMULAS[self.name](s, self.base_lr, float(self.total_steps), self.options)

    def __call__(self, step):
        s = ops.cast(ops.convert_to_tensor(step), "float32")
        lr = self._formula(s)
        if self.warmup_steps:
            width = float(self.warmup_steps)
            target = self._formula(ops.convert_to_tensor(width, "float32"))
            ramp = self.warmup_start_lr + (target - self.warmup_start_lr) * (s / width)
            lr = ops.where(s < width, ramp, lr)
        return lr

    def get_config(self) -> dict:
        options = {key: list(value) if isinstance(value, list) else value
                   for key, value in self.options.items()}
        return {"name": self.name, "base_lr": self.base_lr, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "warmup_start_lr": self.warmup_start_lr, **options}

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items() if key != "name")
        return f"CatalogSchedule({self.name!r}, {fields})"


def make_schedule(name: str, base_lr: float, *, total_steps: int, warmup_steps: int = 0,
                  warmup_start_lr: float = 0.0, **options) -> CatalogSchedule:
    """The ``name`` schedule (one of ``SCHEDULES``) from ``base_lr`` over ``total_steps`` optimizer steps.

    Args:
        name: the policy; its formula, options and their defaults are in the module docstring's table.
        base_lr: the schedule's reference (peak) LR, e.g. from :func:`scale_lr`.
        total_steps: optimizer steps in the run (epochs * steps per epoch).
        warmup_steps: steps of linear warm-up to the schedule's value at ``warmup_steps`` (not onecycle).
        warmup_start_lr: the LR at step 0 of the warm-up.
        options: the policy's options (``gamma``, ``step_size``, ``milestones``, ``power``, ``period``,
            ``t_mul``, ``m_mul``, ``min_lr``, ``pct_start``, ``div_factor``, ``final_div_factor``).
    """
    return CatalogSchedule(name, base_lr, total_steps, warmup_steps=warmup_steps,
                           warmup_start_lr=warmup_start_lr, **options)


def scale_lr(base_lr: float, batch_size: int, reference_batch: int = 256, rule: str = "linear") -> float:
    """``base_lr`` (tuned at ``reference_batch``) scaled to ``batch_size``.

    ``linear``: base_lr * batch_size / reference_batch (Goyal et al. 2017, arXiv:1706.02677); ``sqrt``:
    base_lr * sqrt(batch_size / reference_batch) (Krizhevsky 2014, arXiv:1404.5997); ``none``: base_lr.
    """
    if rule not in SCALING_RULES:
        raise ValueError(f"rule must be one of {', '.join(SCALING_RULES)}; got {rule!r}.")
    base_lr = _require(_POSITIVE, base_lr, "base_lr")
    ratio = _require(_POSITIVE_INT, batch_size, "batch_size") / _require(_POSITIVE_INT, reference_batch,
                                                                          "reference_batch")
    return base_lr * {"linear": ratio, "sqrt": math.sqrt(ratio), "none": 1.0}[rule]


def schedule_values(schedule, steps) -> np.ndarray:
    """``schedule`` (any ``LearningRateSchedule``) at ``steps`` (an int n: steps 0..n-1; or a sequence)."""
    if _is_int(steps):
        if steps < 0:
            raise ValueError(f"steps must be a non-negative integer or a sequence of integers; got {steps!r}.")
        steps = np.arange(steps)
    steps = np.asarray(steps)
    if steps.ndim != 1 or (steps.size and not np.issubdtype(steps.dtype, np.integer)):
        raise ValueError(f"steps must be a non-negative integer or a sequence of integers; got {steps!r}.")
    if isinstance(schedule, CatalogSchedule):
        values = ops.convert_to_numpy(schedule(ops.convert_to_tensor(steps)))
    else:
        values = [ops.convert_to_numpy(schedule(int(step))) for step in steps]
    return np.asarray(values, dtype=np.float64).reshape(steps.shape)
