"""Reusable blocks (``import catalog.blocks``): one module per family, each block a function
``block(x, ..., name=...) -> tensor`` built from standard Keras layers."""

from catalog.blocks import layers  # noqa: F401
