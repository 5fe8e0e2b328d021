"""The main job end to end on data the package generates: build, train, evaluate, write a report."""

from __future__ import annotations

import datetime
import json
import os
import time

import numpy as np

DEMO_MODEL = "lenet5"


def run_demo(out_dir: str | None = None, model_name: str = DEMO_MODEL, epochs: int = 6,
             train_images: int = 3000, test_images: int = 600, image_size: int = 32, seed: int = 0,
             verbose: int = 1) -> str:
    """Train ``model_name`` on generated shapes, evaluate it and write ``report.json``/``report.md``.

    Returns the report folder.
    """
    import keras

    from catalog.datasets.shapes import make_shapes
    from catalog.registry import create_model, model_info

    if not isinstance(epochs, int) or epochs <= 0:
        raise ValueError(f"epochs must be a positive integer; got {epochs!r}.")
    keras.utils.set_random_seed(seed)
    out_dir = out_dir or os.path.join("runs", "demo-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out_dir, exist_ok=True)

    train = make_shapes(train_images, image_size, seed=seed)
    test = make_shapes(test_images, image_size, seed=seed + 1)
    class_names = train["class_names"]
    x_train = train["images"].astype("float32") / 255.0
    x_test = test["images"].astype("float32") / 255.0

    model = create_model(model_name, num_classes=len(class_names),
                         input_shape=(image_size, image_size, 3))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    start = time.time()
    history = model.fit(x_train, train["labels"], batch_size=64, epochs=epochs,
                        validation_split=0.1, verbose=verbose)
    train_seconds = time.time() - start

    probs = model.predict(x_test, batch_size=128, verbose=0)
    y_true = test["labels"]
    order = np.argsort(-probs, axis=1)
    top1 = float(np.mean(order[:, 0] == y_true))
    top2 = float(np.mean(np.any(order[:, :2] == y_true[:, None], axis=1)))
    confusion = np.zeros((len(class_names),) * 2, np.int64)
    np.add.at(confusion, (y_true, order[:, 0]), 1)

    model_path = os.path.join(out_dir, "model.keras")
    model.save(model_path)
    card = model_info(model_name).to_dict()
    report = {
        "task": "classification", "model": model_name, "card": card,
        "dataset": {"name": "shapes", "train_images": train_images, "test_images": test_images,
                    "image_size": image_size, "seed": seed, "class_names": list(class_names)},
        "settings": {"epochs": epochs, "batch_size": 64, "optimizer": "adam", "learning_rate": 1e-3},
        "metrics": {"top1": top1, "top2": top2, "confusion_matrix": confusion.tolist()},
        "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
        "train_seconds": round(train_seconds, 2), "model_file": "model.keras",
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(report, f, indent=2, default=str)
    rows = "\n".join(f"| {n} | " + " | ".join(str(v) for v in row) + " |"
                     for n, row in zip(class_names, confusion.tolist()))
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(f"# Demo report: {model_name} on generated shapes\n\n"
                f"- top-1 accuracy: {top1:.4f}\n- top-2 accuracy: {top2:.4f}\n"
                f"- trainable parameters: {card['params']:,}\n- training time: {train_seconds:.1f} s\n\n"
                f"## Confusion matrix (rows: truth, columns: prediction)\n\n"
                f"| | {' | '.join(class_names)} |\n|---|{'---|' * len(class_names)}\n{rows}\n")
    return out_dir
