"""Training on ``model.fit`` (``import catalog.training``): the train job, its configuration, schedules,
optimizers and the recorder that checkpoints a run.

    import catalog
    run = catalog.train("resnet20", "shapes", epochs=10, batch_size=64, out_dir="runs/r20")
    run = catalog.train(resume="runs/r20", epochs=20)       # continue from the last checkpoint

Modules: ``config`` (TrainConfig: every setting, TOML/JSON files), ``schedules`` (per-step LR schedules),
``optim`` (optimizers, weight decay without norms and biases, the losses), ``recorder`` (checkpoints,
history.csv, NaN guard), ``loop`` (``train``), ``finetune`` (``catalog.finetune``: freezing by stage or
name, a new head on old weights, the two-stage recipe).
"""



def __getattr__(name):
    # Lazily, so that `catalog train --help` reads the settings (catalog.training.config) without Keras.
    if name in ("train", "TrainResult"):
        from catalog.training import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'catalog.training' has no attribute {name!r}")
