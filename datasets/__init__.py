"""Datasets (``import catalog.datasets``): generated data, loaders and tf.data pipelines.

    from catalog import datasets
    ds, info = datasets.load("folder:/data/flowers", split="train", image_size=224, augment=True,
                             preprocessing=catalog.model_info("resnet50").preprocessing)
    test, _ = datasets.load("folder:~/flowers", split=datasets.evaluation_split("folder:~/flowers"),
                            channels=1)   # grayscale (B, H, W, 1)

TensorFlow and tensorflow-datasets load lazily: ``make_shapes`` works without importing them.
"""

from catalog.datasets.shapes import SHAPE_CLASSES, make_restoration_pairs, make_shapes  # noqa: F401

__all__ = ["SHAPE_CLASSES", "evaluation_split", "load", "make_restoration_pairs", "make_shapes",
           "prepare_shapes"]


def load(spec, split="train", task="classification", **kwargs):
    """See ``catalog.datasets.loader.load``: (tf.data.Dataset, info) for a dataset spec."""
    from catalog.datasets.loader import load as _load

    return _load(spec, split=split, task=task, **kwargs)


def evaluation_split(spec, data_dir=None):
    """See ``catalog.datasets.loader.evaluation_split``: the split of ``spec`` to evaluate on."""
    from catalog.datasets.loader import evaluation_split as _evaluation_split

    return _evaluation_split(spec, data_dir=data_dir)


def prepare_shapes(data_dir, config="small"):
    """Generate the ``catalog_shapes`` TFDS dataset into ``data_dir`` (see ``tfds_shapes.prepare_shapes``)."""
    from catalog.datasets.tfds_shapes import prepare_shapes as _prepare

    return _prepare(data_dir, config=config)
