"""catalog: a Keras 3 catalog of CNN architectures built from reusable blocks.

    import catalog
    catalog.list_models("*resnet*", task="classification")
    model = catalog.create_model("resnet20", num_classes=10)
    card = catalog.model_info("resnet20")
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
