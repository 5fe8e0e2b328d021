"""``catalog.train(distribute=...)`` on one machine: MirroredStrategy over two logical CPUs, two
MultiWorkerMirroredStrategy workers on 127.0.0.1, and JAX's keras.distribution.DataParallel over two host
devices; and the one-sentence errors for a strategy of the other backend.

Each run is a subprocess: logical devices, TF_CONFIG and XLA's host device count must be set before
TensorFlow or JAX initialise. The JAX test needs no jax marker: its subprocess picks its own backend.
docs/distributed.md describes these tests and their commands.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import catalog
from catalog.saving import load_model
from catalog.training.config import make_config
from catalog.training.loop import _strategy

# 16 images per replica; Adam's LR given at a reference batch of 16 and scaled linearly to the global batch
# (3e-3 at 2 x 16), which learns the generated shapes visibly within three epochs without augmentation
TINY = dict(model_options={"width": 8, "depths": [1, 1, 1]}, data="shapes", num_images=256, batch_size=16,
            optimizer="adam", lr=1.5e-3, lr_scaling="linear", reference_batch=16, augment=False, verbose=0)
TIMEOUT = 240  # a bound for a stuck run; each run takes well under a minute alone on two cores

# Shared by every script: train, then print the losses, the resolved settings, what fit saw, and save the
# final weights. argv: out_dir, weights.npz, distribute.
TRAIN = """
import json, sys
import keras
import numpy as np
import catalog

seen = {}

class Probe(keras.callbacks.Callback):  # what fit runs under (weights are read after fit, see below)
    def on_train_begin(self, logs=None):
        if "fit" not in seen:
            strategy = getattr(self.model, "distribute_strategy", None)
            distribution = keras.distribution.distribution()
            seen["fit"] = {
                "tf_replicas": strategy.num_replicas_in_sync if strategy is not None else None,
                "jax_distribution": type(distribution).__name__ if distribution is not None else None}

result = catalog.train("resnet20", epochs=3, distribute=sys.argv[3], out_dir=sys.argv[1], callbacks=[Probe()],
                       **%(tiny)r)
np.savez(sys.argv[2], *[np.asarray(w) for w in result.model.get_weights()])
if keras.backend.backend() == "jax":  # the weights were laid out over every device of the distribution
    seen["fit"]["jax_weight_devices"] = len(result.model.trainable_variables[0].value.sharding.device_set)
print("RESULT " + json.dumps({"loss": [row["loss"] for row in result.history], "run_dir": result.run_dir,
                              "resolved": result.config["resolved"], **seen}, default=str))
""" % {"tiny": TINY}

LOGICAL_CPUS = """
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
"""


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "XLA_FLAGS", "KERAS_BACKEND")}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", **extra}


def _result(stdout, stderr):
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"no result; stdout:\n{stdout[-3000:]}\nstderr:\n{stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def _run(script, args, env, tmp_path, retry_on=None):
    path = tmp_path / "train_script.py"
    path.write_text(textwrap.dedent(script))
    for attempt in range(3 if retry_on else 1):
        if attempt:
            shutil.rmtree(args[0], ignore_errors=True)
        done = subprocess.run([sys.executable, str(path), *map(str, args)], capture_output=True, text=True,
                              timeout=TIMEOUT, env=env, cwd=tmp_path)
        if done.returncode == 0 or not retry_on or retry_on not in done.stderr:
            break
    assert done.returncode == 0, done.stderr[-3000:]
    return _result(done.stdout, done.stderr)


def _weights(path):
    with np.load(path) as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


def _check_run(result, run_dir, replicas, batch_size):
    losses = result["loss"]
    assert len(losses) == 3 and all(np.isfinite(losses)), losses
    assert losses[-1] < losses[0], losses
    resolved = result["resolved"]
    assert resolved["replicas"] == replicas
    assert resolved["global_batch"] == batch_size * replicas
    assert resolved["steps_per_epoch"] == resolved["train_images"] // (batch_size * replicas)
    assert resolved["learning_rate"] == pytest.approx(TINY["lr"] * batch_size * replicas / TINY["reference_batch"])
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["resolved"]["replicas"] == replicas
    assert saved["resolved"]["global_batch"] == batch_size * replicas
    assert saved["config"]["distribute"] in ("mirrored", "multi-worker", "data-parallel")
    assert (run_dir / "model.keras").is_file() and (run_dir / "checkpoints" / "last.keras").is_file()


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    """One MirroredStrategy run over two logical CPUs (the multi-worker test compares its losses with it)."""
    tmp_path = tmp_path_factory.mktemp("mirrored")
    run = tmp_path / "run"
    result = _run(LOGICAL_CPUS + TRAIN, [run, tmp_path / "w.npz", "mirrored"], _env(KERAS_BACKEND="tensorflow"),
                  tmp_path)
    return result, run


def test_mirrored_over_two_logical_cpus(mirrored):
    result, run = mirrored
    _check_run(result, run, replicas=2, batch_size=TINY["batch_size"])
    assert result["fit"]["tf_replicas"] == 2  # fit itself ran on both replicas
    assert len(result["resolved"]["devices"]) == 2


def _free_ports(n):
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def test_multi_worker_mirrored_two_workers_on_loopback(tmp_path, mirrored):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    script = tmp_path / "train_script.py"
    script.write_text(textwrap.dedent(TRAIN))
    run = tmp_path / "run"  # the same --out for both, as on a shared file system
    procs = []
    try:
        for index in range(2):
            env = _env(KERAS_BACKEND="tensorflow", CUDA_VISIBLE_DEVICES="-1",
                       TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
            procs.append(subprocess.Popen(
                [sys.executable, str(script), str(run), str(tmp_path / f"w{index}.npz"), "multi-worker"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path))
        outputs = [p.communicate(timeout=TIMEOUT) for p in procs]
    finally:
        for p in procs:  # a worker that waits for a dead peer never ends by itself
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stderr[-3000:]
    chief, worker = (_result(*out) for out in outputs)

    _check_run(chief, run, replicas=2, batch_size=TINY["batch_size"])
    assert chief["run_dir"] == str(run) and chief["fit"]["tf_replicas"] == 2
    # the other worker trained alike into a temporary directory, removed when its process ended
    assert worker["run_dir"] != str(run) and not os.path.exists(worker["run_dir"])
    assert worker["loss"] == pytest.approx(chief["loss"], rel=1e-6)
    # each global batch was split between the workers as between the two replicas of one process: the data
    # stream (tf.data auto-sharding, by data) and the arithmetic are those of MirroredStrategy
    assert chief["loss"] == pytest.approx(mirrored[0]["loss"], rel=1e-5)
    assert worker["resolved"]["replicas"] == 2 and worker["resolved"]["global_batch"] == 2 * TINY["batch_size"]
    ours, theirs = _weights(tmp_path / "w0.npz"), _weights(tmp_path / "w1.npz")
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(load_model(run / "model.keras").get_weights(), ours):  # the chief's run holds them
        np.testing.assert_array_equal(a, b)


@pytest.mark.serial  # alone: beside a busy xdist worker XLA:CPU's all-reduce stalls (three tries failed in CI)
def test_jax_data_parallel_over_two_host_devices(tmp_path):
    run = tmp_path / "data-parallel"
    # XLA:CPU's in-process all-reduce over forced host devices now and then waits for its second device for
    # ever on a busy two-core machine (about one run in five here, in the first step: "only 1 of them arrived";
    # a 200 s bound instead of 40 s did not help, and the process sat idle); XLA then aborts with this message
    # and the run is tried up to twice more (two failures in a row happened once in a full CI run). Real
    # accelerators use other collectives.
    result = _run(TRAIN, [run, tmp_path / "w.npz", "data-parallel"],
                  _env(KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2",
                       JAX_PLATFORMS="cpu"), tmp_path, retry_on="Termination timeout for `all reduce")
    _check_run(result, run, replicas=2, batch_size=TINY["batch_size"])
    # fit ran under the distribution: the batches were split and the weights live on both devices
    assert result["fit"]["jax_distribution"] == "DataParallel"
    assert result["fit"]["jax_weight_devices"] == 2
    assert json.loads((run / "config.json").read_text())["versions"]["backend"] == "jax"


def test_a_strategy_of_the_other_backend_is_one_sentence(tmp_path, monkeypatch):
    backend = keras.backend.backend()
    other = "data-parallel" if backend == "tensorflow" else "mirrored"
    with pytest.raises(ValueError) as err:
        catalog.train("resnet20", epochs=1, distribute=other, out_dir=tmp_path / "run", **TINY)
    if backend == "tensorflow":
        assert str(err.value) == ("distribute 'data-parallel' is keras.distribution's and needs the JAX backend; "
                                  "on tensorflow use 'mirrored' or 'multi-worker'.")
    else:
        assert str(err.value) == ("distribute 'mirrored' needs the TensorFlow backend (KERAS_BACKEND=tensorflow); "
                                  f"on {backend} use 'data-parallel'.")
    assert not (tmp_path / "run").exists()  # refused before anything was written

    # and the other way round, with the backend the process does not run faked
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    for name in ("mirrored", "multi-worker"):
        with pytest.raises(ValueError, match=rf"^distribute '{name}' needs the TensorFlow backend \(KERAS_BACKEND="
                                             r"tensorflow\); on jax use 'data-parallel'\.$"):
            _strategy(make_config({"distribute": name}))
    monkeypatch.setattr(keras.backend, "backend", lambda: "tensorflow")
    with pytest.raises(ValueError, match=r"^distribute 'data-parallel' is keras.distribution's and needs the JAX "
                                         r"backend; on tensorflow use 'mirrored' or 'multi-worker'\.$"):
        _strategy(make_config({"distribute": "data-parallel"}))


def test_no_distribution_is_one_replica_and_a_reusable_context():
    context, replicas = _strategy(make_config({}))
    assert replicas == 1
    for _ in range(2):
        with context:
            pass
