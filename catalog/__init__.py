"""catalog: a Keras 3 catalog of CNN architectures built from reusable blocks.

    import catalog
    catalog.list_models("*resnet*", task="classification")
    model = catalog.create_model("resnet20", num_classes=10)
    card = catalog.model_info("resnet20")
    report_dir = catalog.evaluate("runs/demo/model.keras", "shapes", out_dir="runs/eval")

Where things are: ``catalog.models`` (architectures), ``catalog.blocks`` (reusable blocks),
``catalog.datasets`` (loaders and generated data), ``catalog.evaluation`` (metrics and reports); the
jobs sit here, one module each (``scoring`` is the evaluate job, ``export``, ``demo``), with ``registry``,
``cli`` and ``flops``.
"""

from catalog.registry import (  # noqa: F401
    ModelCard,
    count_params,
    create_model,
    list_models,
    model_info,
    register_model,
)

__version__ = "0.1.0"


def __getattr__(name):
    # The jobs import TensorFlow and the datasets; load them on first use so `import catalog` stays light.
    if name == "evaluate":
        from catalog.scoring import evaluate

        return evaluate
    if name == "train":
        from catalog.training import train

        return train
    if name == "finetune":
        from catalog.training.finetune import finetune

        return finetune
    if name == "export":  # the module catalog.export, callable as its export() (a submodule import would
        import importlib  # replace a function of that name with the module anyway)

        return importlib.import_module("catalog.export")
    if name == "benchmark":  # the module catalog.benchmark, callable as its benchmark() (as export is)
        import importlib

        return importlib.import_module("catalog.benchmark")
    raise AttributeError(f"module 'catalog' has no attribute {name!r}")
