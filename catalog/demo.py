"""The main job end to end on data the package generates: build, train, evaluate, write a report."""

from __future__ import annotations

import datetime
import os
import time


DEMO_MODEL = "resnet20"


def run_demo(out_dir: str | None = None, model_name: str = DEMO_MODEL, epochs: int = 6,
             train_images: int = 3000, test_images: int = 600, image_size: int = 32, seed: int = 0,
             verbose: int = 1) -> str:
    """Train ``model_name`` on generated shapes, evaluate it and write report.json, report.md and
    report.html (``catalog.evaluation.report``).

    Returns the report folder.
    """
    import keras

    from catalog.datasets.shapes import make_shapes
    from catalog.evaluation import classification_report
    from catalog.evaluation.report import write_report
    from catalog.registry import count_params, create_model, model_info

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

    start = time.time()
    probs = model.predict(x_test, batch_size=128, verbose=0)
    eval_seconds = time.time() - start
    y_true = test["labels"]
    metrics = classification_report(y_true, probs, class_names=class_names, top_k=(1, 2))
    metrics["top1"], metrics["top2"] = metrics["top_k"]["top1"], metrics["top_k"]["top2"]

    model_path = os.path.join(out_dir, "model.keras")
    model.save(model_path)
    card = model_info(model_name).to_dict()
    samples = {"images": test["images"][:12], "predictions": probs[:12].argmax(axis=1),
               "ground_truth": y_true[:12]}
    write_report(
        out_dir, "classification", metrics, class_names, samples=samples,
        settings={"epochs": epochs, "batch_size": 64, "optimizer": "adam", "learning_rate": 1e-3,
                  "validation_split": 0.1},
        model={**card, "params": count_params(model), "num_classes": len(class_names),
               "input_shape": (image_size, image_size, 3), "card_params": card["params"]},
        dataset={"name": "shapes", "train_images": train_images, "test_images": test_images,
                 "image_size": image_size, "seed": seed},
        seconds=round(eval_seconds, 2), title=f"Demo: {model_name} on generated shapes",
        extra={"history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
               "train_seconds": round(train_seconds, 2), "model_file": "model.keras", "model_name": model_name})
    return out_dir
