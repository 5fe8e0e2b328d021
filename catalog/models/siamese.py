"""Siamese and triplet networks (metric learning) over any registered classification backbone.

- Embedding network (the tower): the backbone without its classifier, global average pooled (``create_model(
  backbone, include_top=False, pooling="avg")``, a nested model named ``backbone``), a Dense layer to
  ``embedding_dim`` and L2 normalization (:func:`catalog.models.embedding.embedding_head`); output ``embedding``.
- ``triplet_net``: the embedding network trained with a triplet loss on class labels, triplets mined in each batch
  (Schroff et al. 2015, FaceNet; Hermans et al. 2017, batch-hard).
- ``siamese_net`` (Bromley et al. 1993; Hadsell et al. 2006, contrastive loss): a batch of B images becomes the
  pairs (i, i + B // 2) (:class:`catalog.models.embedding.PairHalf`, applied to the embeddings); one shared tower
  (``tower``) embeds every image once, or with ``shared=False`` (pseudo-siamese) two towers of the same structure
  and their own weights (``tower_a`` for the first items, ``tower_b`` for the second; each embeds the whole batch,
  twice the shared network's compute, so that no tower is ever called on an empty batch, which Keras' functional
  models reject); output ``distance`` (B // 2,) (:class:`catalog.models.embedding.PairDistance`).

Parameters: the headless backbone's plus E * (C + 1) for the Dense layer from its C pooled channels, once for a
shared tower and twice for a pseudo-siamese network. At the defaults (resnet20, E = 64): resnet20's card count
269,722 less its 10-class classifier (64 * 10 + 10) = 269,072, plus 64 * 65 = 4,160: 273,232.
"""

from __future__ import annotations

import keras

from catalog.models.embedding import (
    PairDistance,
    PairHalf,
    check_embedding_args,
    embedding_head,
    embedding_recipe,
    load_weights,
)
from catalog.registry import create_model, get_entry, register_model

SCHROFF2015 = ("Schroff, Kalenichenko and Philbin 2015, FaceNet: A Unified Embedding for Face Recognition and "
               "Clustering, CVPR (triplet loss); Hermans, Beyer and Leibe 2017, In Defense of the Triplet Loss "
               "for Person Re-Identification (batch-hard mining)")
HADSELL2006 = ("Bromley et al. 1993, Signature Verification using a Siamese Time Delay Neural Network, NIPS; "
               "Hadsell, Chopra and LeCun 2006, Dimensionality Reduction by Learning an Invariant Mapping, CVPR "
               "(contrastive loss)")
RESERVED_BACKBONE_OPTIONS = ("include_top", "pooling", "input_shape", "input_tensor", "weights", "features_only",
                             "out_indices", "num_classes", "classes", "name")
DEFAULT_INPUT = (32, 32, 3)


def headless_params(backbone_params: int, channels: int, num_classes: int) -> int:
    """A classifier card's trainable count without its Dense classifier from ``channels`` to ``num_classes``."""
    return backbone_params - (channels * num_classes + num_classes)


def embedding_params(backbone_params: int, channels: int, embedding_dim: int, towers: int = 1) -> int:
    """Closed form: (headless backbone + Dense from ``channels`` to ``embedding_dim`` with bias) per tower."""
    return towers * (backbone_params + channels * embedding_dim + embedding_dim)


# resnet20 (He et al. 2016, option A): card 269,722 with a 10-class head on 64 channels
RESNET20_HEADLESS = headless_params(269_722, 64, 10)


def _backbone(backbone, input_shape, backbone_options, backbone_weights):
    entry = get_entry(backbone)
    if entry.task != "classification":
        raise ValueError(f"backbone must be a registered classification model; {backbone!r} is a {entry.task} model.")
    if backbone_options is not None and not isinstance(backbone_options, dict):
        raise ValueError(f"backbone_options must be a dict of keywords; got {type(backbone_options).__name__}.")
    clash = sorted(set(backbone_options or {}) & set(RESERVED_BACKBONE_OPTIONS))
    if clash:
        raise ValueError(f"backbone_options must not set {', '.join(clash)}; the embedding network sets them.")
    return create_model(backbone, include_top=False, pooling="avg", input_shape=input_shape,
                        weights=backbone_weights, name="backbone", **(backbone_options or {}))


def embedding_net(backbone: str = "resnet20", embedding_dim: int = 64, num_classes=None, input_shape=None,
                  backbone_options: dict | None = None, backbone_weights=None, weights=None,
                  name: str = "embedding_net"):
    """The embedding network: backbone (headless, average pooled), Dense to ``embedding_dim``, L2 normalization.

    Args:
        backbone: any registered classification model.
        embedding_dim: size E of the embedding.
        num_classes: ignored (``catalog.train`` passes the data's classes), validated as an int or None.
        input_shape: (height, width, channels); default (32, 32, 3).
        backbone_options: more keywords of the backbone (e.g. ``{"width": 8}``).
        backbone_weights: a local weights file of the backbone.
        weights: a local weights file of this whole model.
        name: model name.
    """
    shape = check_embedding_args(num_classes, DEFAULT_INPUT if input_shape is None else input_shape, embedding_dim)
    features = _backbone(backbone, shape, backbone_options, backbone_weights)
    inputs = keras.Input(shape=shape, name="input")
    outputs = embedding_head(features(inputs), embedding_dim)
    return load_weights(keras.Model(inputs, outputs, name=name), weights)


def siamese_net(backbone: str = "resnet20", embedding_dim: int = 64, shared: bool = True, num_classes=None,
                input_shape=None, backbone_options: dict | None = None, backbone_weights=None, weights=None,
                name: str = "siamese_net"):
    """Siamese network: pairs (i, i + B // 2) of a batch, a shared embedding tower (or two with ``shared=False``,
    pseudo-siamese), output the Euclidean ``distance`` of each pair's embeddings (B // 2,).

    Args:
        backbone, embedding_dim, num_classes, input_shape, backbone_options, backbone_weights: as for
            :func:`embedding_net` (the tower).
        shared: one tower for both items (siamese) or two with their own weights (pseudo-siamese).
        weights: a local weights file of this whole model.
        name: model name.
    """
    if not isinstance(shared, bool):
        raise ValueError(f"shared must be True (siamese) or False (pseudo-siamese); got {shared!r}.")
    shape = check_embedding_args(num_classes, DEFAULT_INPUT if input_shape is None else input_shape, embedding_dim)

    def tower(tower_name):
        return embedding_net(backbone, embedding_dim, input_shape=shape, backbone_options=backbone_options,
                             backbone_weights=backbone_weights, name=tower_name)

    inputs = keras.Input(shape=shape, name="input")
    if shared:  # each image embedded once, then paired
        first = second = tower("tower")(inputs)
    else:  # each tower embeds the whole batch (a tower never sees an empty batch), half of it is used
        first, second = tower("tower_a")(inputs), tower("tower_b")(inputs)
    first, second = PairHalf(0, name="pair_first")(first), PairHalf(1, name="pair_second")(second)
    distance = PairDistance(name="distance", dtype="float32")([first, second])
    return load_weights(keras.Model(inputs, distance, name=name), weights)


_SOURCE = ("closed form: resnet20's card count 269,722 (He et al. 2016, option A) less its 10-class classifier "
           "(64 * 10 + 10) = 269,072, plus the embedding Dense 64 * 64 + 64 = 4,160")
register_model(embedding_net, name="triplet_net", family="siamese", task="embedding", paper=SCHROFF2015,
               input_shape=DEFAULT_INPUT, num_classes=0, defaults=dict(name="triplet_net"),
               reference_params=embedding_params(RESNET20_HEADLESS, 64, 64), reference_params_source=_SOURCE,
               preprocessing="tf", crop_fraction=1.0, recipe=embedding_recipe)
register_model(siamese_net, name="siamese_net", family="siamese", task="embedding", paper=HADSELL2006,
               input_shape=DEFAULT_INPUT, num_classes=0, defaults=dict(name="siamese_net"),
               reference_params=embedding_params(RESNET20_HEADLESS, 64, 64),
               reference_params_source=_SOURCE + " (one shared tower; shared=False doubles it)",
               preprocessing="tf", crop_fraction=1.0, recipe=embedding_recipe)
