"""``catalog.train``: train a model on a dataset spec with ``model.fit`` and leave a run directory.

The run directory holds ``config.json`` (the resolved configuration, library versions, device, the XLA
and precision that actually ran), ``history.csv`` (a row per epoch: losses, metrics, learning rate,
seconds, images/s), TensorBoard logs (``logs/``), ``checkpoints/last.keras``, the final ``model.keras``
(with its input record, see ``catalog.saving``) and a report of the held-out split with training curves.

Nothing of the caller's Keras state changes: the dtype policy and the seeds are restored on return.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import platform
import random
import sys

import numpy as np

from catalog.training.config import TrainConfig, make_config
from catalog.training.recorder import CHECKPOINT, RunRecorder, TrainingDiverged, read_history, write_atomic

# `--jit auto`: whether XLA pays, by device kind and family. On the 2-core CPU (benchmarks/train_step.py
# --what jit, docs/performance.md) XLA was slower than graph mode for every measured family (resnet 1.5x,
# resnet_cifar 1.5x, densenet 1.04x, mobilenet_v2 6.8x, efficientnet 5.5x, shufflenet_v2 2.6x,
# squeezenet 2.4x), so the CPU default is off with no exceptions; GPU entries await a GPU measurement.
JIT_AUTO = {"cpu": {"default": False}, "gpu": {"default": True}, "tpu": {"default": True}}


@dataclasses.dataclass
class TrainResult:
    """What ``catalog.train`` returns: the run directory, the trained model and its history rows."""

    run_dir: str
    model: object
    history: list
    config: dict


@contextlib.contextmanager
def preserved_keras_state():
    """Restore the caller's dtype policy, Keras/Python/NumPy seeds (and TensorFlow's global seed) on exit."""
    import keras
    from keras.src.backend.common import global_state

    policy = keras.config.dtype_policy()
    keys = ("global_random_seed", "global_seed_generator")
    saved = {k: global_state.get_global_attribute(k) for k in keys}
    py_state, np_state = random.getstate(), np.random.get_state()
    tf_seed = _tf_global_seed()
    try:
        yield
    finally:
        keras.config.set_dtype_policy(policy)
        for k, v in saved.items():
            global_state.set_global_attribute(k, v)
        random.setstate(py_state)
        np.random.set_state(np_state)
        if tf_seed is not False:
            import tensorflow as tf

            tf.random.set_seed(tf_seed)


def _tf_global_seed():
    """TensorFlow's global seed (None if unset), or False when TensorFlow is not loaded."""
    if "tensorflow" not in sys.modules:
        return False
    import tensorflow as tf

    return tf.compat.v1.get_seed(None)[0]


def _device_kind() -> str:
    import keras

    devices = [d.lower() for d in keras.distribution.list_devices()]
    return "gpu" if any("gpu" in d or "cuda" in d for d in devices) else "tpu" if any("tpu" in d for d in devices) else "cpu"


def resolve_jit(jit: str, family: str | None) -> bool:
    if jit != "auto":
        return jit == "on"
    table = JIT_AUTO[_device_kind()]
    return bool(table.get(family, table["default"]))


def _versions() -> dict:
    import keras

    versions = {"python": platform.python_version(), "keras": keras.__version__, "numpy": np.__version__,
                "backend": keras.backend.backend()}
    for module in ("tensorflow", "jax"):
        if module in sys.modules:
            versions[module] = sys.modules[module].__version__
    return versions


def _strategy(config: TrainConfig):
    """A context for building, compiling and fitting the model under ``config.distribute``, and the replica
    count (the global batch is ``batch_size * replicas``).

    The context may be entered more than once: ``_train`` builds and compiles in it, and fits in it too,
    because JAX's ``keras.distribution`` splits the batches of ``fit`` only while its distribution is set
    (TensorFlow's model keeps the strategy it was built under). ``mirrored`` takes every GPU, else every
    logical CPU device; ``multi-worker`` reads ``TF_CONFIG``; ``data-parallel`` takes every device of every
    process. The context's ``worker_dir`` is None on the chief (``multi-worker``: worker 0 or the ``chief``
    task; ``data-parallel``: process 0); on another worker it is a temporary directory for its run directory
    (Keras' practice: only the chief writes the real one), removed when the process ends.
    """
    import keras

    class Scope:  # re-enterable: each ``with`` opens a fresh scope of the strategy or distribution
        def __init__(self, make, worker_dir=None):
            self.make, self.worker_dir, self.opened = make, worker_dir, []

        def __enter__(self):
            self.opened.append(self.make())
            return self.opened[-1].__enter__()

        def __exit__(self, *exc):
            return self.opened.pop().__exit__(*exc)

    def temporary_run_dir(worker):  # where a worker that is not the chief writes its run directory
        import atexit
        import shutil
        import tempfile

        path = tempfile.mkdtemp(prefix=f"catalog-{worker}-")
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        return path

    if config.distribute == "none":
        return Scope(contextlib.nullcontext), 1
    backend = keras.backend.backend()
    if config.distribute in ("mirrored", "multi-worker"):
        if backend != "tensorflow":
            raise ValueError(f"distribute {config.distribute!r} needs the TensorFlow backend (KERAS_BACKEND="
                             f"tensorflow); on {backend} use 'data-parallel'.")
        import tensorflow as tf

        class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
            """The strategy's ``reduce`` as Keras 3's trainer calls it across workers (keras-team/keras#20585):
            ``fit`` and ``evaluate`` first reduce a batch, an (x, y) tuple, where TensorFlow reduces single
            values only ("Attempt to convert a value (PerReplica...)"); and each step reduces its scalar
            logs along axis 0 ("Invalid reduction dimension 0 for input with 0 dimensions"): a nest is
            reduced value by value, a scalar across replicas."""

            def reduce(self, reduce_op, value, axis=None):
                parent = super(MultiWorkerMirroredStrategy, self)

                def one(v):
                    rank = tf.TensorShape(getattr(self.experimental_local_results(v)[0], "shape", ())).rank
                    return parent.reduce(reduce_op, v, None if rank == 0 else axis)

                return tf.nest.map_structure(one, value)

        worker_dir = None
        if config.distribute == "mirrored":
            strategy = tf.distribute.MirroredStrategy()  # every GPU, else every logical CPU device
        else:
            # before any other TensorFlow op runs: it configures the collective ops of this process
            strategy = MultiWorkerMirroredStrategy()
            if not strategy.extended.should_checkpoint:
                worker_dir = temporary_run_dir(f"{strategy.cluster_resolver.task_type}"
                                               f"{strategy.cluster_resolver.task_id}")

        # Keras 3 creates BatchNormalization's moving statistics with aggregation "none": each replica
        # updates its own copy from its own batches, and the copies drift apart (across workers too). On
        # leaving the scope without an error (after fit) every copy takes the mean over all replicas, so the
        # saved model holds the statistics of all the data and every worker ends with the same weights.
        moving = []

        def record(next_creator, **kwargs):
            variable = next_creator(**kwargs)
            if (not kwargs.get("trainable", True) and kwargs.get("aggregation") == tf.VariableAggregation.NONE
                    and str(kwargs.get("name")).split("/")[-1].split(":")[0] in ("moving_mean", "moving_variance")):
                moving.append(variable)
            return variable

        def average_moving():
            variables = list(moving)

            def replica_fn():
                means = tf.distribute.get_replica_context().all_reduce(
                    tf.distribute.ReduceOp.MEAN, [v.read_value() for v in variables])
                for variable, mean in zip(variables, means):
                    variable.assign(mean)  # aggregation "none": each replica sets its own copy

            tf.function(lambda: strategy.run(replica_fn))()  # a graph: collectives of several local devices

        @contextlib.contextmanager
        def scope():
            with strategy.scope(), tf.variable_creator_scope(record):
                yield
            if moving and strategy.num_replicas_in_sync > 1:
                average_moving()

        return Scope(scope, worker_dir), strategy.num_replicas_in_sync
    if backend != "jax":
        raise ValueError(f"distribute 'data-parallel' is keras.distribution's and needs the JAX backend; "
                         f"on {backend} use 'mirrored' or 'multi-worker'.")
    import jax

    # every device of every process (after keras.distribution.initialize on several hosts), where process 0
    # is the chief
    distribution = keras.distribution.DataParallel(devices=keras.distribution.list_devices())
    worker_dir = temporary_run_dir(f"process{jax.process_index()}") if jax.process_index() else None
    return Scope(distribution.scope, worker_dir), len(distribution.device_mesh.devices.reshape(-1))


def _model_facts(model_arg):
    """(registered name or None, registry entry or None) of the model argument."""
    from catalog.registry import get_entry, list_models

    if isinstance(model_arg, str) and model_arg in list_models():
        return model_arg, get_entry(model_arg)
    return None, None


def _build_model(name, config, num_classes, input_shape, seed):
    """A registered model, built with the run's seed."""
    import keras

    from catalog.registry import create_model

    keras.utils.set_random_seed(seed)
    kwargs = {**config.model_options, "num_classes": num_classes, "input_shape": input_shape}
    if config.zero_init_residual:
        kwargs["zero_init_residual"] = True
    return create_model(name, **kwargs)


def train(model=None, data=None, *, config_file=None, resume=None, callbacks=(), out_dir=None,
          **settings) -> TrainResult:
    """Train ``model`` on ``data`` with ``model.fit``; write a run directory; return a :class:`TrainResult`.

    Args:
        model: a registered name, a ``.keras`` file or a ``keras.Model`` (compiled here).
        data: a ``catalog.datasets`` spec (``shapes``, ``folder:PATH``, ``tfds:NAME``, ...).
        config_file: a TOML or JSON file of settings; keywords override it.
        resume: a run directory: continue it from ``checkpoints/last.keras`` (epoch and step), with the
            configuration it was started with (keywords may raise ``epochs``).
        callbacks: more Keras callbacks for ``fit``.
        out_dir: the run directory (alias of the ``out`` setting; default ``runs/<model>-<timestamp>``).
        settings: the fields of :class:`catalog.training.config.TrainConfig` (epochs, batch_size,
            optimizer, lr, schedule, precision, jit, distribute, ...).

    Raises:
        ValueError: a bad setting, data that does not fit the model, or a diverged loss
            (:class:`TrainingDiverged`, naming the step; the last good checkpoint stays).
    """
    import keras

    if out_dir is not None:
        settings["out"] = out_dir
    state = None
    if resume is not None:
        settings, state, model = _resume_settings(resume, settings, model)
    else:
        if model is None:
            raise ValueError("model must be a registered name, a .keras file or a keras.Model; got None.")
        if not isinstance(model, keras.Model):
            settings["model"] = os.fspath(model)
        if data is not None:
            settings["data"] = data
    config = make_config(settings, config_file)
    with preserved_keras_state():
        return _train(model if model is not None else config.model, config, state, list(callbacks))


def _resume_settings(run_dir, settings, model):
    from catalog.saving import read_record

    run_dir = os.path.expanduser(os.fspath(run_dir))
    config_path, checkpoint = os.path.join(run_dir, "config.json"), os.path.join(run_dir, CHECKPOINT)
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"resume: {config_path} does not exist; pass the directory of a run.")
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"resume: {checkpoint} does not exist; the run wrote no checkpoint yet.")
    with open(config_path, encoding="utf-8") as f:
        saved = json.load(f)["config"]
    allowed = {"epochs", "verbose", "checkpoint_every"}
    changed = sorted(k for k, v in settings.items() if k not in allowed and saved.get(k) != v)
    if changed:
        raise ValueError(f"resume continues a run with its own configuration; only {', '.join(sorted(allowed))} "
                         f"may change, got {', '.join(changed)}.")
    record = read_record(checkpoint) or {}
    state = {"checkpoint": checkpoint, **record.get("checkpoint", {"epoch": 0, "step": 0})}
    return {**saved, **settings, "out": run_dir}, state, checkpoint


def _train(model_arg, config: TrainConfig, state, callbacks):
    import keras

    from catalog import datasets
    from catalog.scoring import evaluate as evaluate_job
    from catalog.training.optim import base_learning_rate, classification_loss, make_optimizer
    from catalog.training.schedules import make_schedule, scale_lr

    from catalog.registry import get_entry, list_models, recipe_of
    from catalog.scoring import _is_path, load_keras_file

    name, entry = _model_facts(config.model if state else model_arg)
    probe = None  # a model that exists before the data is read: the caller's, or one from a .keras file
    if isinstance(model_arg, keras.Model):
        probe = model_arg
    elif state is None and _is_path(model_arg):
        probe = load_keras_file(model_arg)
    elif state is None and name is None:
        get_entry(model_arg)  # the registry's one-sentence error for an unknown name
    if entry is None and probe is not None:  # a model of a registered task family keeps its recipe
        from catalog.saving import read_record

        recorded = (read_record(os.path.expanduser(model_arg)) or {}).get("model_name") if probe is not model_arg \
            else None
        task_name = recorded or probe.name
        entry = get_entry(task_name) if task_name in list_models() else None
        entry = entry if entry is not None and entry.recipe is not None else None
    task = entry.task if entry is not None and entry.recipe is not None else "classification"
    if config.task is not None and config.task != task:
        raise ValueError(f"task {config.task!r} disagrees with the model, a {task} model; drop task or pick a "
                         f"{config.task} model (`catalog list --task {config.task}`).")
    if config.task_options and task == "classification":
        raise ValueError(f"task_options apply to task models (detection, segmentation, ...); the model is a "
                         f"classifier, got task_options {config.task_options!r}.")
    shape = tuple(probe.input_shape[1:]) if probe is not None else None
    # the height: (H, W, C) images, (T, H, W, C) video clips
    size = config.image_size or (shape[-3] if shape and shape[-3] else None) or (
        entry.input_shape[-3] if entry else 224)
    channels = (shape[-1] if shape else None) or (entry.input_shape[-1] if entry else 3)
    from catalog.models.classifier import ends_in_softmax, has_builtin_preprocessing

    builtin = has_builtin_preprocessing(probe) if probe is not None else bool(
        config.model_options.get("include_preprocessing"))
    preprocessing = config.preprocessing or ("none" if builtin else  # the model scales raw pixels itself
                                             entry.preprocessing if entry and entry.preprocessing else "unit")
    crop = entry.crop_fraction if entry else 1.0
    from catalog.saving import record_of

    if probe is not None and config.preprocessing is None and not builtin and record_of(probe) is not None:
        # a model that exists trains on what it was trained with: the record a catalog.train result, a catalog
        # .keras file or a model compressed from one carries
        record = record_of(probe)
        preprocessing, crop = record["preprocessing"], float(record.get("crop_fraction") or 1.0)
    if config.deterministic:
        _deterministic_ops()
    if config.distribute != "none" and probe is not None:
        raise ValueError(f"distribute {config.distribute!r} builds the model inside its strategy, so the model "
                         f"must be a registered name; got {type(model_arg).__name__ if probe is model_arg else model_arg!r}.")
    context, replicas = _strategy(config)
    global_batch = config.batch_size * replicas
    start_epoch, start_step = (state["epoch"], state["step"]) if state else (0, 0)

    model = recipe = None
    from catalog.registry import TASK_DATA

    data_task, data_options = TASK_DATA[task], {}
    if data_task is None:  # restoration: the built model's recipe names the data (super-resolution at
        # its scale, or denoising) and its options, so the model exists before the data is read
        def build():
            from catalog.registry import create_model

            keras.utils.set_random_seed(config.seed)
            return create_model(name, **{"input_shape": (None, None), **config.model_options})

        with context:
            model = _run_model(state, probe, config, build)
        recipe = recipe_of(model, entry.name, **config.task_options)
        data_task, data_options = recipe.task, dict(recipe.data_options)
        channels = int(model.input_shape[-1])
        if config.image_size is None and shape and shape[0]:  # a fixed-size model: the clean images' size
            size = int(shape[0]) * int(data_options.get("scale", 1))

    if data_task == "video":  # the clip length of the model (a .keras file's) or of its card
        frames = (shape[0] if shape and len(shape) == 4 else None) or (entry.input_shape[0] if entry else None)
        data_options.update({"frames": frames} if frames else {})
    data_options.update(config.data_options)
    load = dict(task=data_task, image_size=size, batch_size=global_batch, preprocessing=preprocessing,
                channels=channels, seed=config.seed, **data_options)
    _, info = datasets.load(config.data, split=config.train_split, num_images=config.num_images, **load)
    if global_batch > info["count"]:
        raise ValueError(f"batch_size {global_batch} is larger than the {config.train_split!r} split of "
                         f"{config.data} ({info['count']} images); lower batch_size.")
    class_names = list(info["class_names"])
    if task == "segmentation":  # label maps hold 0 for background and class k as k + 1
        class_names = ["background", *class_names]
    if config.num_classes and config.num_classes != len(class_names):
        raise ValueError(f"num_classes {config.num_classes} disagrees with {config.data}, which has "
                         f"{len(class_names)} classes{' (with background)' if task == 'segmentation' else ''}; "
                         f"drop num_classes or pick the matching data.")
    num_classes = len(class_names)
    steps_per_epoch = info["count"] // global_batch
    if start_epoch >= config.epochs:
        raise ValueError(f"the run in {config.out} already finished its {start_epoch} epochs; pass a larger "
                         f"epochs to continue it.")
    val_data = config.val_data or config.data
    val_split = config.val_split or datasets.evaluation_split(val_data)
    val_split = None if val_split == "none" else val_split
    report_notes = []
    if val_split is not None and val_data == config.data and (
            val_split in (config.train_split, "all") or config.data.startswith("coco:")):  # coco: one file
        report_notes.append(f"the validation and the report score images the model trained on ({config.data}, "
                            f"split {val_split!r}); pass val_data, a spec of held-out images.")
    run_dir = context.worker_dir or config.out or os.path.join(
        "runs", f"{name or 'model'}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}")
    config = dataclasses.replace(config, out=run_dir)
    os.makedirs(run_dir, exist_ok=True)

    with context:
        if model is None:  # else a restoration model, built above
            # a video model's input is (frames, height, width, channels)
            frames = (info["frames"],) if info.get("frames") else ()
            model = _run_model(state, probe, config,
                               lambda: _build_model(name, config, num_classes, (*frames, size, size, channels),
                                                    config.seed))
        trained = model  # what fit trains: the model, or the distillation wrapper holding it and its teacher
        if config.teacher:
            trained, model = _with_teacher(model, config, state, task)
            report_notes.append(f"distilled from the teacher {config.teacher} (temperature "
                                f"{config.distill_temperature:g}, alpha {config.distill_alpha:g}); the run saves "
                                f"the student alone.")
        if recipe is None and task != "classification":
            recipe = recipe_of(model, entry.name, **config.task_options)
        if recipe is not None:
            outputs = recipe.num_classes if recipe.num_classes is not None else num_classes
        else:
            outputs = int(model.output.shape[-1]) if not isinstance(model.output, (list, dict)) else None
        if outputs != num_classes:
            raise ValueError(f"the model outputs {outputs} classes but {config.data} has {num_classes}; build "
                             f"the model with num_classes={num_classes}.")
        total_steps = config.epochs * steps_per_epoch
        report_notes += _short_run_batch_norm(model, total_steps, state is None)
        lr = scale_lr(base_learning_rate(config), global_batch * config.accumulate, config.reference_batch,
                      config.lr_scaling)
        schedule = make_schedule(config.schedule, lr, total_steps=total_steps,
                                 warmup_steps=int(round(config.warmup_epochs * steps_per_epoch)),
                                 **config.schedule_options)
        jit = resolve_jit(config.jit, entry.family if entry else None)
        saved_optimizer = trained.optimizer if state is not None else None
        loss_weights = None
        if config.teacher:
            from catalog.training.distill import DistillationLoss, student_accuracy

            teacher = [layer for layer in trained.layers if isinstance(layer, keras.Model) and layer is not model][0]
            loss = DistillationLoss(config.distill_temperature, config.distill_alpha,
                                    student_logits=not ends_in_softmax(model),
                                    teacher_logits=not ends_in_softmax(teacher))
            metrics = [student_accuracy]
        elif recipe is not None:
            loss, metrics, loss_weights = recipe.loss, list(recipe.metrics), recipe.loss_weights
            if recipe.targets is not None:
                load["targets"] = recipe.targets  # the validation data and the training stream
        else:
            loss, metrics = classification_loss(config, not ends_in_softmax(model)), _accuracy(config, num_classes)
        trained.compile(optimizer=make_optimizer(config, schedule, model), loss=loss, metrics=metrics,
                        loss_weights=loss_weights, jit_compile=jit)
        if saved_optimizer is not None:
            # A fresh optimizer (its weight-decay exclusions are not part of a saved config) takes the
            # checkpoint's state: iterations, moments, EMA.
            trained.optimizer.build(trained.trainable_variables)
            if len(trained.optimizer.variables) != len(saved_optimizer.variables):
                raise ValueError(f"the checkpoint {state['checkpoint']} holds another optimizer state than this "
                                 f"configuration builds; resume with the configuration it was written with.")
            for new, old in zip(trained.optimizer.variables, saved_optimizer.variables):
                new.assign(old)

    resolved = {"global_batch": global_batch, "replicas": replicas, "learning_rate": lr,
                "steps_per_epoch": steps_per_epoch, "total_steps": total_steps, "image_size": size,
                "channels": channels, "num_classes": num_classes, "class_names": class_names,
                "preprocessing": preprocessing, "val_split": val_split, "train_images": info["count"],
                "precision": model.dtype_policy.name, "jit_requested": config.jit, "jit": bool(model.jit_compile),
                "device": _device_kind(), "devices": keras.distribution.list_devices(),
                "model_name": name, "started": datetime.datetime.now().isoformat(timespec="seconds")}
    write_atomic(os.path.join(run_dir, "config.json"), json.dumps(
        {"config": dataclasses.asdict(config), "resolved": resolved, "versions": _versions()}, indent=2,
        default=str))
    record = dict(preprocessing=preprocessing, crop_fraction=crop, class_names=class_names,
                  model_name=name, trained_by="catalog.train", data=config.data)
    recorder = RunRecorder(run_dir, record, steps_per_epoch, global_batch, config.checkpoint_every,
                           start_epoch, start_step)
    fit_callbacks = [recorder, *_tensorboard(run_dir), *(recipe.callbacks(run_dir) if recipe and recipe.callbacks
                                                          else []), *callbacks]
    val_ds = None
    if val_split is not None:
        # JAX's DataParallel splits every batch over the devices: validation batches must all be whole
        # (the final report still scores every image, from the saved model)
        whole = config.distribute == "data-parallel"
        val_ds, _ = datasets.load(val_data, split=val_split, shuffle=False, drop_remainder=whole,
                                  **{**load, "batch_size": global_batch if whole else config.batch_size,
                                     "crop_fraction": crop})
    verbose = config.verbose if config.verbose is not None else (1 if sys.stdout.isatty() else 2)
    if verbose:
        print(f"catalog train: {name or model.name} on {config.data} ({info['count']} images), {config.epochs} "
              f"epochs x {steps_per_epoch} steps, global batch {global_batch} ({replicas} replica"
              f"{'s' if replicas > 1 else ''} x {config.batch_size}), lr {lr:.4g} ({config.schedule}; scaling "
              f"{config.lr_scaling} from batch {config.reference_batch}), precision {resolved['precision']}, "
              f"XLA {'on' if resolved['jit'] else 'off'}; run directory {run_dir}"
              + (f"; resuming at epoch {start_epoch + 1}, step {start_step}" if state else ""), flush=True)
        for note in report_notes:
            print(f"note: {note}", flush=True)
    stream = dict(split=config.train_split, augment=config.augment, mixup=config.mixup, cutmix=config.cutmix,
                  drop_remainder=True, num_images=config.num_images, **load)
    if start_step:  # finish the interrupted epoch, then the rest
        part, _ = datasets.load(config.data, epochs=start_epoch + 1, start_epoch=start_epoch,
                                skip_batches=start_step, **stream)
        with _ema_kept_running(trained.optimizer), context:
            trained.fit(part, epochs=start_epoch + 1, initial_epoch=start_epoch,
                        steps_per_epoch=steps_per_epoch - start_step, validation_data=val_ds,
                        callbacks=fit_callbacks, verbose=verbose, shuffle=False)
        start_epoch += 1
    if start_epoch < config.epochs and recorder.diverged is None:
        rest, _ = datasets.load(config.data, epochs=config.epochs, start_epoch=start_epoch, **stream)
        with context:
            trained.fit(rest, epochs=config.epochs, initial_epoch=start_epoch, steps_per_epoch=steps_per_epoch,
                        validation_data=val_ds, callbacks=fit_callbacks, verbose=verbose, shuffle=False)
    if recorder.diverged is not None:
        epoch, step, loss = recorder.diverged
        raise TrainingDiverged(f"training diverged: the loss was {loss} at step {epoch * steps_per_epoch + step} "
                               f"(epoch {epoch + 1}, step {step}); the last good checkpoint is "
                               f"{os.path.join(run_dir, CHECKPOINT)}; lower the learning rate.")

    from catalog.saving import save_model

    save_model(model, os.path.join(run_dir, "model.keras"), **record)
    history = read_history(os.path.join(run_dir, "history.csv"))
    resolved["jit"] = bool(model.jit_compile)
    resolved["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    write_atomic(os.path.join(run_dir, "config.json"), json.dumps(
        {"config": dataclasses.asdict(config), "resolved": resolved, "versions": _versions()}, indent=2,
        default=str))
    if val_split is not None:
        columns = {k: [row.get(k) for row in history] for k in (history[0] if history else {})}
        # a model of several replicas predicts each batch once per replica (predict_on_batch): score the file
        evaluate_job(model if replicas == 1 else os.path.join(run_dir, "model.keras"), val_data, task=task,
                     out_dir=run_dir, split=val_split, image_size=size,
                     batch_size=config.batch_size, preprocessing=preprocessing, crop_fraction=crop,
                     seed=config.seed, history=columns, verbose=0,
                     notes=report_notes + (recipe.notes if recipe else []),
                     title=f"{name or model.name} trained on {config.data}", **data_options)
    return TrainResult(run_dir=run_dir, model=model, history=history,
                       config={"config": dataclasses.asdict(config), "resolved": resolved})


def _deterministic_ops():
    """Deterministic kernels for ``deterministic=True`` (TensorFlow: process-wide, it cannot be undone;
    JAX on CPU is deterministic already, on GPU set XLA_FLAGS=--xla_gpu_deterministic_ops=true)."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def _short_run_batch_norm(model, total_steps, from_start):
    """A note when the BatchNorm moving averages will still hold over 5% of their starting values at the end
    of the run (momentum ** steps): the saved model in inference mode then scores far below its training-mode
    self (MobileNetV2's 0.999 over 300 steps keeps 74% of them)."""
    import keras

    momenta = [layer.momentum for layer in model._flatten_layers(include_self=False)
               if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
    if not momenta or not from_start:
        return []
    left = max(momenta) ** total_steps
    if left <= 0.05:
        return []
    return [f"BatchNorm moving statistics (momentum {max(momenta)}) will still hold {left:.0%} of their initial "
            f"values after this run's {total_steps} steps, so the trained model scores below its training-mode "
            f"self in evaluation; for a short run set bn_momentum (e.g. 0.9)."]


def _run_model(state, probe, config, build):
    """The model a run trains: its checkpoint's when resuming, else the caller's (``probe``) or ``build()``
    under the run's precision, with ``bn_momentum`` applied."""
    import keras

    if state is not None:
        return keras.saving.load_model(state["checkpoint"], safe_mode=True)
    keras.config.set_dtype_policy(config.precision)
    try:
        model = probe if probe is not None else build()
    finally:
        keras.config.set_dtype_policy("float32")
    if config.bn_momentum is not None:
        _set_bn_momentum(model, config.bn_momentum)
    return model


def _set_bn_momentum(model, momentum):
    """Every BatchNormalization layer of ``model`` (nested models too) takes ``momentum``: a 0.99 or 0.999
    moving average still holds much of its initial (0, 1) after a few hundred steps from scratch, and the
    trained model then scores far below its training-mode self."""
    import keras

    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = float(momentum)


def _accuracy(config, num_classes):
    """A classifier's metrics: accuracy, and top-5 above 5 classes (categorical when labels are mixed)."""
    import keras

    mixed = config.mixup or config.cutmix
    metrics = [(keras.metrics.CategoricalAccuracy if mixed else keras.metrics.SparseCategoricalAccuracy)(
        name="accuracy")]
    if num_classes > 5:
        top5 = keras.metrics.TopKCategoricalAccuracy if mixed else keras.metrics.SparseTopKCategoricalAccuracy
        metrics.append(top5(k=5, name="top5"))
    return metrics


def _with_teacher(model, config, state, task):
    """(the distillation wrapper fit trains, the student) for a run with a ``teacher``: a new wrapper around
    the built student, or, when resuming, the checkpoint's wrapper and the student inside it."""
    import keras

    from catalog.scoring import load_keras_file
    from catalog.training.distill import distillation_model

    if task != "classification":
        raise ValueError(f"teacher distils classifiers; the model is a {task} model, drop teacher.")
    if state is not None:
        students = [layer for layer in model.layers if isinstance(layer, keras.Model) and layer.trainable]
        return model, students[0]
    teacher = load_keras_file(config.teacher)
    return distillation_model(model, teacher), model


def _tensorboard(run_dir):
    try:  # Keras' TensorBoard callback writes with tf.summary, which needs the tensorboard package
        import tensorboard  # noqa: F401
        import tensorflow  # noqa: F401
    except ImportError:
        return []
    import keras

    return [keras.callbacks.TensorBoard(log_dir=os.path.join(run_dir, "logs"))]


@contextlib.contextmanager
def _ema_kept_running(optimizer):
    """``fit`` ends by copying the EMA into the weights; a run resumed mid-epoch calls ``fit`` twice, and
    only the last call may do that."""
    finalize = optimizer.finalize_variable_values
    optimizer.finalize_variable_values = lambda *args, **kwargs: None
    try:
        yield
    finally:
        optimizer.finalize_variable_values = finalize
