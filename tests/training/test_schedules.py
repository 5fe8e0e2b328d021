"""Learning-rate schedules against closed forms written here in numpy (Caffe, SGDR, torch's OneCycleLR)."""

import json
import math

import keras
import numpy as np
import pytest

from catalog.training.schedules import (SCHEDULES, CatalogSchedule, make_schedule, scale_lr,
                                        schedule_values)

pytestmark = pytest.mark.jax

T = 1000
BASE = 0.1
STEPS = np.array([0, 1, 7, 99, 100, 249, 250, 299, 300, 333, 334, 499, 500, 666, 667, 749, 750, 998, 999,
                  1000, 1001, 1500])


def _cos_anneal(start, end, fraction):
    return end + (start - end) / 2 * (1 + np.cos(np.pi * fraction))


def _onecycle(s, base, total, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):
    """torch.optim.lr_scheduler.OneCycleLR(anneal_strategy="cos", three_phase=False) at step_num s."""
    initial = base / div_factor
    final = initial / final_div_factor
    peak_step, end_step = float(pct_start * total) - 1, total - 1
    s = np.minimum(s, end_step)  # torch stops at T - 1; the schedule holds its last value
    return np.where(s <= peak_step, _cos_anneal(initial, base, s / peak_step),
                    _cos_anneal(base, final, (s - peak_step) / (end_step - peak_step)))


def _sgdr(s, base, total, period, t_mul=1.0, m_mul=1.0, min_lr=0.0):
    """timm's CosineLRScheduler._get_lr (cycle_limit unbounded, no warm-up), min_lr from T on."""
    s = np.asarray(s, dtype=np.float64)
    if t_mul != 1:
        cycle = np.floor(np.log(1 - s / period * (1 - t_mul)) / np.log(t_mul))
        length = t_mul ** cycle * period
        into = s - (1 - t_mul ** cycle) / (1 - t_mul) * period
    else:
        cycle = np.floor(s / period)
        length, into = period, s - period * cycle
    lr = min_lr + 0.5 * (base * m_mul ** cycle - min_lr) * (1 + np.cos(np.pi * into / length))
    return np.where(s >= total, min_lr, lr)


# (name, options, LR at step s in float64)
CLOSED_FORMS = [
    ("fixed", {}, lambda s: np.full(s.shape, BASE)),
    ("step", {}, lambda s: BASE * 0.1 ** np.floor(s / (T // 3))),
    ("step", {"gamma": 0.5, "step_size": 100}, lambda s: BASE * 0.5 ** np.floor(s / 100)),
    ("multistep", {}, lambda s: BASE * 0.1 ** ((s >= 500).astype(int) + (s >= 750))),
    ("multistep", {"gamma": 0.3, "milestones": [100, 300, 999]},
     lambda s: BASE * 0.3 ** ((s >= 100).astype(int) + (s >= 300) + (s >= 999))),
    ("exp", {}, lambda s: BASE * (0.01 ** (1 / T)) ** s),
    ("exp", {"gamma": 0.995}, lambda s: BASE * 0.995 ** s),
    ("inv", {}, lambda s: BASE * (1 + 1e-4 * s) ** -0.75),
    ("inv", {"gamma": 1e-3, "power": 0.5}, lambda s: BASE * (1 + 1e-3 * s) ** -0.5),
    ("poly", {}, lambda s: BASE * np.maximum(1 - s / T, 0)),
    ("poly", {"power": 2.0}, lambda s: BASE * np.maximum(1 - s / T, 0) ** 2),
    ("sigmoid", {}, lambda s: BASE / (1 + np.exp(10 / T * (s - T // 2)))),
    ("sigmoid", {"gamma": 0.05, "step_size": 300}, lambda s: BASE / (1 + np.exp(-0.05 * (s - 300)))),
    ("cosine", {}, lambda s: np.where(s >= T, 0.0, BASE / 2 * (1 + np.cos(np.pi * s / T)))),
    ("cosine", {"min_lr": 1e-3, "period": 300, "m_mul": 0.5},
     lambda s: _sgdr(s, BASE, T, 300, m_mul=0.5, min_lr=1e-3)),
    ("cosine", {"period": 100, "t_mul": 1.5, "m_mul": 0.8, "min_lr": 1e-4},
     lambda s: _sgdr(s, BASE, T, 100, t_mul=1.5, m_mul=0.8, min_lr=1e-4)),
    ("onecycle", {}, lambda s: _onecycle(s, BASE, T)),
    ("onecycle", {"pct_start": 0.25, "div_factor": 10.0, "final_div_factor": 100.0},
     lambda s: _onecycle(s, BASE, T, 0.25, 10.0, 100.0)),
]


# The conftest's per-test clear_session costs ~0.25 s, so cases run as subtests of a few tests.
def test_schedule_equals_closed_form(subtests):
    for name, options, formula in CLOSED_FORMS:
        with subtests.test(name=name, options=options):
            schedule = make_schedule(name, BASE, total_steps=T, **options)
            np.testing.assert_allclose(schedule_values(schedule, STEPS), formula(STEPS.astype(np.float64)),
                                       rtol=2e-5, atol=1e-9)


def test_every_schedule_has_a_closed_form_test():
    assert {name for name, _, _ in CLOSED_FORMS} == set(SCHEDULES)


def test_inv_acceptance_case_on_int_and_tensor_steps():
    schedule = make_schedule("inv", 0.01, total_steps=20_000, gamma=1e-4, power=0.75)
    expected = 0.01 * (1 + 1e-4 * 10_000) ** -0.75
    assert abs(expected - 0.0059460) < 1e-7
    for step in (10_000, keras.ops.convert_to_tensor(10_000), keras.ops.convert_to_tensor(10_000.0),
                 keras.Variable(10_000, dtype="int32", trainable=False)):
        assert abs(float(schedule(step)) - expected) < 1e-7


def test_exp_default_reaches_one_percent_at_total_steps():
    schedule = make_schedule("exp", BASE, total_steps=T)
    assert schedule.options["gamma"] == pytest.approx(0.01 ** (1 / T))
    assert float(schedule(T)) == pytest.approx(BASE * 0.01, rel=1e-5)


def test_warmup_is_linear_then_the_unshifted_schedule(subtests):
    width, start = 100, 1e-3
    steps = np.concatenate([np.arange(width + 1), [500, 999, 1000]])
    for name in SCHEDULES[:-1]:  # all but onecycle
        with subtests.test(name=name):
            warm = schedule_values(make_schedule(name, BASE, total_steps=T, warmup_steps=width,
                                                 warmup_start_lr=start), steps)
            plain = schedule_values(make_schedule(name, BASE, total_steps=T), steps)
            target, ramp = plain[width], warm[:width + 1]
            assert ramp[0] == pytest.approx(start, rel=1e-6)
            assert ramp[width // 2] == pytest.approx(start + (target - start) / 2, rel=1e-5)
            assert ramp[width] == pytest.approx(target, rel=1e-6)
            # linear, and continuous at the end: the last ramp step is one increment short of the schedule
            np.testing.assert_allclose(np.diff(ramp), (target - start) / width, rtol=1e-3, atol=1e-9)
            np.testing.assert_allclose(warm[width:], plain[width:], rtol=1e-6)  # global step, not shifted


def test_warmup_ends_at_the_global_step_value_of_cosine():
    schedule = make_schedule("cosine", BASE, total_steps=T, warmup_steps=100)
    assert float(schedule(0)) == 0.0
    assert float(schedule(100)) == pytest.approx(BASE / 2 * (1 + math.cos(math.pi * 100 / T)), rel=1e-6)
    assert float(schedule(50)) == pytest.approx(float(schedule(100)) / 2, rel=1e-6)


def test_cosine_restarts_with_t_mul_2_and_m_mul_half():
    low = 1e-4
    schedule = make_schedule("cosine", BASE, total_steps=1500, period=100, t_mul=2.0, m_mul=0.5, min_lr=low)
    starts, peaks = [0, 100, 300, 700], [BASE, BASE / 2, BASE / 4, BASE / 8]
    values = schedule_values(schedule, np.arange(1501))
    for start, peak, length in zip(starts, peaks, [100, 200, 400, 800]):
        assert values[start] == pytest.approx(peak, rel=1e-6)  # a restart lands exactly on its step
        assert values[start + length // 2] == pytest.approx(low + (peak - low) / 2, rel=1e-5)
        if start:
            previous_length = length // 2
            assert values[start - 1] == pytest.approx(
                low + (2 * peak - low) / 2 * (1 + math.cos(math.pi * (previous_length - 1) / previous_length)),
                rel=1e-4)
    jumps = np.flatnonzero(np.diff(values) > 0) + 1
    np.testing.assert_array_equal(jumps, [100, 300, 700])
    assert values[1499] > low and values[1500] == pytest.approx(low)
    np.testing.assert_allclose(values, _sgdr(np.arange(1501), BASE, 1500, 100, 2.0, 0.5, low), rtol=2e-5,
                               atol=1e-9)


def test_cosine_restarts_every_period_with_t_mul_1():
    values = schedule_values(make_schedule("cosine", BASE, total_steps=1000, period=250, m_mul=0.5), 1000)
    np.testing.assert_array_equal(np.flatnonzero(np.diff(values) > 0) + 1, [250, 500, 750])
    np.testing.assert_allclose(values[[0, 250, 500, 750]], [BASE, BASE / 2, BASE / 4, BASE / 8], rtol=1e-6)


def test_onecycle_start_peak_and_end_follow_torch():
    schedule = make_schedule("onecycle", BASE, total_steps=T)
    peak_step = 0.3 * T - 1
    assert float(schedule(0)) == pytest.approx(BASE / 25, rel=1e-6)
    assert float(schedule(int(peak_step))) == pytest.approx(BASE, rel=1e-6)
    assert schedule_values(schedule, np.arange(T)).argmax() == peak_step
    assert float(schedule(T - 1)) == pytest.approx(BASE / 25 / 1e4, rel=1e-4)
    assert float(schedule(T + 100)) == pytest.approx(BASE / 25 / 1e4, rel=1e-4)
    low, final = BASE / 25, BASE / 25 / 1e4
    assert float(schedule(149)) == pytest.approx(low + (BASE - low) / 2 * (1 - math.cos(math.pi * 149 / 299)),
                                                 rel=1e-5)
    assert float(schedule(649)) == pytest.approx((BASE + final) / 2, rel=1e-5)  # halfway down: (649-299)/700


def test_multistep_changes_exactly_at_each_milestone():
    schedule = make_schedule("multistep", BASE, total_steps=T, gamma=0.5, milestones=(100, 300))
    values = schedule_values(schedule, [0, 99, 100, 101, 299, 300, 999])
    np.testing.assert_allclose(values, BASE * np.array([1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]), rtol=1e-6)
    assert make_schedule("multistep", BASE, total_steps=T).options["milestones"] == [500, 750]


def test_step_changes_exactly_at_multiples_of_step_size():
    schedule = make_schedule("step", BASE, total_steps=T, step_size=100, gamma=0.5)
    values = schedule_values(schedule, [99, 100, 199, 200])
    np.testing.assert_allclose(values, BASE * np.array([1, 0.5, 0.5, 0.25]), rtol=1e-6)


def test_config_round_trip(subtests):
    for name in SCHEDULES:
        with subtests.test(name=name):
            warmup = {} if name == "onecycle" else {"warmup_steps": 10, "warmup_start_lr": 1e-4}
            schedule = make_schedule(name, BASE, total_steps=T, **warmup)
            config = schedule.get_config()
            assert set(config) == {"name", "base_lr", "total_steps", "warmup_steps", "warmup_start_lr",
                                   *schedule.options}
            assert json.loads(json.dumps(config)) == config
            clone = CatalogSchedule.from_config(config)
            assert clone.get_config() == config
            revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
            assert isinstance(revived, CatalogSchedule) and revived.get_config() == config
            np.testing.assert_array_equal(schedule_values(clone, STEPS), schedule_values(schedule, STEPS))


def test_keras_round_trip_inside_an_optimizer(tmp_path):
    schedule = make_schedule("cosine", BASE, total_steps=20, warmup_steps=4, warmup_start_lr=0.01, t_mul=2.0,
                             period=5, m_mul=0.5)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=schedule), loss="mse")
    x, y = np.random.default_rng(0).normal(size=(2, 8, 3)).astype("float32")[0], np.zeros((8, 1), "float32")
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert int(model.optimizer.iterations) == 4
    assert float(model.optimizer.learning_rate) == pytest.approx(float(schedule(4)))
    path = str(tmp_path / "tiny.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    restored = loaded.optimizer._learning_rate
    assert isinstance(restored, CatalogSchedule) and restored.get_config() == schedule.get_config()
    assert int(loaded.optimizer.iterations) == 4
    assert float(loaded.optimizer.learning_rate) == pytest.approx(float(schedule(4)))
    loaded.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert float(loaded.optimizer.learning_rate) == pytest.approx(float(schedule(6)))


def test_schedule_values_takes_a_count_and_any_keras_schedule():
    assert schedule_values(make_schedule("fixed", BASE, total_steps=T), 5).shape == (5,)
    decay = keras.optimizers.schedules.ExponentialDecay(BASE, decay_steps=10, decay_rate=0.5)
    np.testing.assert_allclose(schedule_values(decay, [0, 10, 20]), [BASE, BASE / 2, BASE / 4], rtol=1e-6)


def test_scale_lr_rules():
    assert scale_lr(0.1, 512) == pytest.approx(0.2)
    assert scale_lr(0.1, 64, rule="linear") == pytest.approx(0.025)
    assert scale_lr(0.1, 1024, reference_batch=256, rule="sqrt") == pytest.approx(0.2)
    assert scale_lr(0.1, 1024, rule="none") == 0.1


BAD_CALLS = [
    (dict(name="cos"), "name must be one of fixed, step, multistep, exp, inv, poly, sigmoid, cosine, onecycle; "
                       "got 'cos'."),
    (dict(base_lr=-0.1), "base_lr must be a positive number; got -0.1."),
    (dict(base_lr=0.0), "base_lr must be a positive number; got 0.0."),
    (dict(total_steps=0), "total_steps must be a positive integer; got 0."),
    (dict(total_steps=10.0), "total_steps must be a positive integer; got 10.0."),
    (dict(warmup_steps=-1), "warmup_steps must be a non-negative integer; got -1."),
    (dict(warmup_steps=1000), r"warmup_steps must be less than total_steps \(1000\); got 1000."),
    (dict(warmup_steps=10, warmup_start_lr=-1e-3),
     "warmup_start_lr must be a non-negative number; got -0.001."),
    (dict(name="onecycle", warmup_steps=10),
     "warmup_steps must be 0 for onecycle, which warms up by itself over pct_start; got 10."),
    (dict(name="step", power=2.0), "Schedule 'step' has no option power; it accepts gamma, step_size."),
    (dict(name="fixed", gamma=0.1), "Schedule 'fixed' has no option gamma; it accepts no options."),
    (dict(name="step", gamma=-0.1), "step option gamma must be a positive number; got -0.1."),
    (dict(name="step", step_size=0), "step option step_size must be a positive integer; got 0."),
    (dict(name="multistep", milestones=[300, 100]),
     r"multistep option milestones must be a non-empty increasing sequence of non-negative integers; "
     r"got \[300, 100\]."),
    (dict(name="multistep", milestones=[]),
     r"multistep option milestones must be a non-empty increasing sequence of non-negative integers; "
     r"got \[\]."),
    (dict(name="exp", gamma=0.0), "exp option gamma must be a positive number; got 0.0."),
    (dict(name="inv", power=-1.0), "inv option power must be a non-negative number; got -1.0."),
    (dict(name="poly", power=0.0), "poly option power must be a positive number; got 0.0."),
    (dict(name="sigmoid", gamma=float("nan")), "sigmoid option gamma must be a finite number; got nan."),
    (dict(name="cosine", t_mul=0.5), "cosine option t_mul must be a number >= 1; got 0.5."),
    (dict(name="cosine", m_mul=1.5), r"cosine option m_mul must be a number in \(0, 1\]; got 1.5."),
    (dict(name="cosine", min_lr=-1e-5), "cosine option min_lr must be a non-negative number; got -1e-05."),
    (dict(name="cosine", period=0), "cosine option period must be a positive integer; got 0."),
    (dict(name="onecycle", pct_start=1.0), r"onecycle option pct_start must be a number in \(0, 1\); got 1.0."),
    (dict(name="onecycle", div_factor=0), "onecycle option div_factor must be a positive number; got 0."),
    (dict(name="onecycle", total_steps=3),
     r"onecycle option pct_start must put the peak after step 0 \(pct_start \* total_steps > 1\); "
     r"got 0.3 \* 3."),
]


def test_make_schedule_errors(subtests):
    for overrides, message in BAD_CALLS:
        with subtests.test(**overrides):
            arguments = {"name": "cosine", "base_lr": BASE, "total_steps": T, **overrides}
            name, base_lr = arguments.pop("name"), arguments.pop("base_lr")
            with pytest.raises(ValueError, match=f"^{message}$"):
                make_schedule(name, base_lr, **arguments)


def test_scale_lr_and_schedule_values_errors(subtests):
    for arguments, message in [
        (dict(rule="cube"), "rule must be one of linear, sqrt, none; got 'cube'."),
        (dict(batch_size=0), "batch_size must be a positive integer; got 0."),
        (dict(batch_size=32.5), "batch_size must be a positive integer; got 32.5."),
        (dict(reference_batch=-256), "reference_batch must be a positive integer; got -256."),
        (dict(base_lr=-0.1), "base_lr must be a positive number; got -0.1."),
    ]:
        with subtests.test(**arguments), pytest.raises(ValueError, match=f"^{message}$"):
            scale_lr(**{"base_lr": 0.1, "batch_size": 64, **arguments})
    for steps in (-1, [0.5, 1.5], [[0, 1]]):
        with subtests.test(steps=steps), pytest.raises(
                ValueError, match="^steps must be a non-negative integer or a sequence of integers; got"):
            schedule_values(make_schedule("fixed", BASE, total_steps=T), steps)
