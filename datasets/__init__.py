"""Datasets (``import catalog.datasets``): generated data, loaders and tf.data pipelines."""

from catalog.datasets.shapes import SHAPE_CLASSES, make_shapes  # noqa: F401
