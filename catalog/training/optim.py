"""Optimizers, decoupled weight decay without BatchNorm and biases, and the classification losses.

Everything is Keras' own machinery configured the way the references train: weight decay is the
optimizer's decoupled ``weight_decay`` (Loshchilov & Hutter 2019) with BatchNorm gamma/beta and biases
excluded by default (as timm's ``param_groups_weight_decay``); gradient clipping (``clipnorm``),
accumulation (``gradient_accumulation_steps``, Caffe's ``iter_size``) and the weight EMA (``use_ema``,
whose averaged weights replace the model's at the end of ``fit``) are the optimizer's own options.
"""

from __future__ import annotations

import keras
from keras import ops

from catalog.training.config import DEFAULT_LR, TrainConfig


def default_weight_decay(optimizer: str) -> float:
    return {"sgd": 5e-5, "adamw": 0.05}.get(optimizer, 0.0)


def no_decay_variables(model) -> list:
    """BatchNorm / LayerNorm scales and offsets and every bias: the weights decay should not shrink."""
    chosen = []
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, (keras.layers.BatchNormalization, keras.layers.LayerNormalization,
                              keras.layers.GroupNormalization)):
            chosen += list(layer.trainable_weights)
        else:
            chosen += [w for w in layer.trainable_weights if w.path.split("/")[-1] in ("bias", "depthwise_bias")]
    seen, unique = set(), []
    for w in chosen:
        if id(w) not in seen:
            seen.add(id(w))
            unique.append(w)
    return unique


def make_optimizer(config: TrainConfig, learning_rate, model=None):
    """The optimizer of ``config`` with ``learning_rate`` (a float or a schedule); ``model`` is needed to
    exclude BatchNorm and bias weights from weight decay."""
    decay = config.weight_decay if config.weight_decay is not None else default_weight_decay(config.optimizer)
    common = dict(learning_rate=learning_rate, weight_decay=decay or None, clipnorm=config.clipnorm,
                  use_ema=config.ema is not None, ema_momentum=config.ema if config.ema is not None else 0.99,
                  gradient_accumulation_steps=config.accumulate if config.accumulate > 1 else None)
    if config.layer_decay != 1.0 and model is not None:
        common["lr_multipliers"] = layer_lr_multipliers(model, config.layer_decay)
        classes = LAYER_SCALED
    else:
        classes = {name: getattr(keras.optimizers, cls.__name__[len("LayerScaled"):])
                   for name, cls in LAYER_SCALED.items()}
    if config.optimizer == "sgd":
        optimizer = classes["sgd"](momentum=config.momentum, nesterov=config.nesterov, **common)
    elif config.optimizer in ("adam", "adamw"):
        betas = {} if config.beta_1 is None else {"beta_1": float(config.beta_1)}
        optimizer = classes[config.optimizer](**{**common, **betas, **(
            {"weight_decay": decay} if config.optimizer == "adamw" else {})})
    else:
        optimizer = classes["rmsprop"](momentum=config.momentum, **common)
    if decay and model is not None and not config.decay_norm_and_bias:
        optimizer.exclude_from_weight_decay(var_list=no_decay_variables(model))
    return optimizer


def layer_lr_multipliers(model, decay: float) -> dict[str, float]:
    """``{variable path: LR multiplier}`` for layer-wise LR decay: the head 1, the last stage ``decay``, the
    one before ``decay**2``, ... (stages as :mod:`catalog.training.finetune` defines them)."""
    from catalog.training.finetune import layer_stages

    stages = layer_stages(model)
    head = max(stages.values())
    return {w.path: float(decay ** (head - stages[layer.name])) for layer in model.layers
            for w in layer.trainable_weights if stages[layer.name] < head}


def _layer_scaled(base):
    """``base`` (a Keras optimizer class) with a learning-rate multiplier per variable."""

    class LayerScaled(base):
        def __init__(self, *args, lr_multipliers=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.lr_multipliers = {str(k): float(v) for k, v in (lr_multipliers or {}).items()}
            self._scale_by_key = {}

        def build(self, variables):
            super().build(variables)
            self._scale_by_key = {self._var_key(v): self.lr_multipliers[v.path] for v in variables
                                  if v.path in self.lr_multipliers}

        def update_step(self, gradient, variable, learning_rate):
            scale = self._scale_by_key.get(self._var_key(variable), 1.0)
            return super().update_step(gradient, variable, learning_rate * scale if scale != 1.0 else learning_rate)

        def get_config(self):
            return {**super().get_config(), "lr_multipliers": self.lr_multipliers}

    LayerScaled.__name__ = LayerScaled.__qualname__ = f"LayerScaled{base.__name__}"
    LayerScaled.__doc__ = (f"keras.optimizers.{base.__name__} with a learning-rate multiplier per variable path "
                           f"(``lr_multipliers``; layer-wise LR decay). Decoupled weight decay keeps the base LR.")
    return keras.saving.register_keras_serializable(package="catalog")(LayerScaled)


LAYER_SCALED = {name: _layer_scaled(cls) for name, cls in (
    ("sgd", keras.optimizers.SGD), ("adam", keras.optimizers.Adam), ("adamw", keras.optimizers.AdamW),
    ("rmsprop", keras.optimizers.RMSprop))}


def base_learning_rate(config: TrainConfig) -> float:
    return float(config.lr if config.lr is not None else DEFAULT_LR[config.optimizer])


@keras.saving.register_keras_serializable(package="catalog")
class SparseCrossentropy(keras.losses.Loss):
    """Categorical cross-entropy on integer labels with label smoothing (Szegedy et al. 2016):
    (1 - eps) * CE(y) + eps * mean over classes of -log p, on probabilities or logits."""

    def __init__(self, label_smoothing: float = 0.0, from_logits: bool = False, name="sparse_crossentropy",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.label_smoothing = float(label_smoothing)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        if self.from_logits:
            log_p = ops.log_softmax(y_pred, axis=-1)
        else:
            log_p = ops.log(ops.clip(y_pred, keras.config.epsilon(), 1.0))
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        picked = ops.take_along_axis(log_p, ops.expand_dims(labels, -1), axis=-1)[:, 0]
        eps = self.label_smoothing
        return -(1.0 - eps) * picked - eps * ops.mean(log_p, axis=-1)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing, "from_logits": self.from_logits}


def classification_loss(config: TrainConfig, from_logits: bool = False):
    """The loss for integer labels, or one-hot (mixed) labels when mixup/cutmix is on."""
    if config.mixup or config.cutmix:
        return keras.losses.CategoricalCrossentropy(from_logits=from_logits, label_smoothing=config.label_smoothing)
    return SparseCrossentropy(label_smoothing=config.label_smoothing, from_logits=from_logits)
