"""Adversarial training with ``fit``: the :class:`GAN` model and the four GAN losses as functions of logits.

Losses (``d`` = the discriminator's logits, real ``r`` and generated ``f``; means over the batch):

- ``non_saturating`` (Goodfellow et al. 2014, the generator maximizing log D(G(z))): D: softplus(-r) + softplus(f)
  (binary cross-entropy on logits), G: softplus(-f).
- ``lsgan`` (Mao et al. 2017, targets a = 0, b = c = 1): D: ((r - 1)^2 + f^2) / 2, G: (f - 1)^2 / 2.
- ``hinge`` (Lim and Ye 2017; Miyato et al. 2018): D: relu(1 - r) + relu(1 + f), G: -f.
- ``wgan_gp`` (Gulrajani et al. 2017): D: f - r + 10 (||grad_x D(x_hat)||_2 - 1)^2 on x_hat = e x + (1 - e) G(z),
  e ~ U[0, 1] per image; G: -f. The paper's critic has no BatchNorm; a BatchNorm critic (DCGAN's) computes the
  penalty on batch statistics, which couples the images of a batch: it trains, but is not the paper's setting.

One optimizer holds the state of both networks: ``compile`` takes the optimizer ``catalog.train`` makes, builds it
on the generator's and the discriminator's weights, and each batch applies it twice (the discriminator's step,
then the generator's on the updated discriminator), counting one iteration per batch (the learning-rate
schedule and Adam's bias correction advance once per batch). Adam/SGD/RMSprop keep their moments per weight,
so this equals two optimizers of the same configuration, and a checkpoint (``model.keras``) holds both networks'
optimizer states in the model's one optimizer, which is what Keras saves and what JAX's stateless ``fit``
threads through its step (a second optimizer would be invisible to both). An EMA of the weights (``ema``) is
updated at both applications (its decay then acts twice per batch).
"""

from __future__ import annotations

import warnings

import keras
from keras import ops

LOSSES = ("non_saturating", "lsgan", "hinge", "wgan_gp")


# ------------------------------------------------------------------------------------------ losses
def discriminator_loss(real_logits, fake_logits, loss: str = "non_saturating"):
    """The discriminator's (critic's) loss of ``loss`` from its logits on real and generated images, without the
    WGAN-GP penalty (see :func:`gradient_penalty`); a scalar."""
    r, f = ops.cast(real_logits, "float32"), ops.cast(fake_logits, "float32")
    if loss == "non_saturating":
        return ops.mean(ops.softplus(-r)) + ops.mean(ops.softplus(f))
    if loss == "lsgan":
        return 0.5 * ops.mean(ops.square(r - 1.0)) + 0.5 * ops.mean(ops.square(f))
    if loss == "hinge":
        return ops.mean(ops.relu(1.0 - r)) + ops.mean(ops.relu(1.0 + f))
    if loss == "wgan_gp":
        return ops.mean(f) - ops.mean(r)
    raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}.")


def generator_loss(fake_logits, loss: str = "non_saturating"):
    """The generator's loss of ``loss`` from the discriminator's logits on generated images; a scalar."""
    f = ops.cast(fake_logits, "float32")
    if loss == "non_saturating":
        return ops.mean(ops.softplus(-f))
    if loss == "lsgan":
        return 0.5 * ops.mean(ops.square(f - 1.0))
    if loss in ("hinge", "wgan_gp"):
        return -ops.mean(f)
    raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}.")


def discriminator_accuracy(real_logits, fake_logits):
    """Share of real and generated images the discriminator tells apart (real: logit > 0)."""
    r, f = ops.cast(real_logits, "float32"), ops.cast(fake_logits, "float32")
    right = ops.sum(ops.cast(r > 0, "float32")) + ops.sum(ops.cast(f <= 0, "float32"))
    return right / ops.cast(ops.size(r) + ops.size(f), "float32")


def gradient_penalty(critic, images):
    """WGAN-GP's penalty mean((||grad_x critic(x)||_2 - 1)^2) over the images (B, ...), differentiable with
    respect to the critic's weights (TensorFlow: a nested GradientTape; JAX: ``jax.grad``). ``critic`` maps the
    images to logits (B, 1); on JAX it must be a pure function of them (a ``stateless_call``)."""
    backend = keras.backend.backend()
    images = ops.cast(images, "float32")
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(images)
            out = ops.sum(ops.cast(critic(images), "float32"))
        grads = tape.gradient(out, images)
    elif backend == "jax":
        import jax

        grads = jax.grad(lambda x: ops.sum(ops.cast(critic(x), "float32")))(images)
    else:
        raise NotImplementedError(f"gradient_penalty runs on the TensorFlow and JAX backends; got {backend}.")
    axes = tuple(range(1, len(images.shape)))
    norm = ops.sqrt(ops.sum(ops.square(grads), axis=axes) + 1e-12)
    return ops.mean(ops.square(norm - 1.0))


# ------------------------------------------------------------------------------------------ the model
@keras.saving.register_keras_serializable(package="catalog")
class GAN(keras.Model):
    """A generator and a discriminator trained adversarially by ``fit`` (TensorFlow and JAX backends).

    The model is functional: calling it (and ``predict``) maps noise (B, noise_dim), or ``[noise, labels]`` for a
    conditional generator, to the generator's images. ``fit`` takes (images, labels) or images batches; labels
    are used only when the networks are conditional (two inputs each: ``[noise, labels]``, ``[images, labels]``).
    Each batch: one discriminator step on the real batch and a generated one, then one generator step on fresh
    noise. Logs ``d_loss``, ``g_loss``, ``d_accuracy`` (share of real and generated images told apart, logit > 0)
    and ``loss`` (d_loss + g_loss, the one number ``catalog.train`` watches for divergence); validation computes
    them without the gradient penalty and without updates.

    Args:
        generator: a model of noise (or [noise, labels]) to images.
        discriminator: a model of images (or [images, labels]) to logits (B, 1).
        seed: seed of the training noise (None: from Keras' global seed).
    """

    def __init__(self, generator, discriminator, seed=None, **kwargs):
        for model, argument in ((generator, "generator"), (discriminator, "discriminator")):
            if not isinstance(model, keras.Model):
                raise ValueError(f"{argument} must be a keras.Model; got {type(model).__name__}.")
        if len(generator.inputs) != len(discriminator.inputs) or len(generator.inputs) not in (1, 2):
            raise ValueError("generator and discriminator must both take one input (unconditional) or both two "
                             "(conditional: [noise, labels] and [images, labels]).")
        image_shape = tuple(generator.outputs[0].shape[1:])
        if tuple(discriminator.inputs[0].shape[1:]) != image_shape:
            raise ValueError(f"discriminator takes {tuple(discriminator.inputs[0].shape[1:])} images but the "
                             f"generator makes {image_shape}; build both for the same image shape.")
        names = ("noise", "labels")
        inputs = [keras.Input(shape=t.shape[1:], dtype=t.dtype, name=n) for t, n in zip(generator.inputs, names)]
        inputs = inputs[0] if len(inputs) == 1 else inputs
        super().__init__(inputs, generator(inputs), **kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.seed = seed
        self.conditional = len(generator.inputs) == 2
        self.noise_dim = int(generator.inputs[0].shape[-1])
        self.noise_generator = keras.random.SeedGenerator(seed, name="noise_seed")
        self.trackers = [keras.metrics.Mean(name=n) for n in ("loss", "d_loss", "g_loss", "d_accuracy")]
        self.gan_loss, self.gp_weight = "non_saturating", 10.0

    # -------------------------------------------------------------------- configuration
    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "seed": self.seed,
                "generator": keras.saving.serialize_keras_object(self.generator),
                "discriminator": keras.saving.serialize_keras_object(self.discriminator)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        generator = keras.saving.deserialize_keras_object(config.pop("generator"), custom_objects=custom_objects)
        discriminator = keras.saving.deserialize_keras_object(config.pop("discriminator"),
                                                              custom_objects=custom_objects)
        return cls(generator, discriminator, **config)

    def compile(self, optimizer="adam", loss="non_saturating", metrics=None, loss_weights=None,
                gp_weight: float = 10.0, **kwargs):
        """``optimizer`` trains both networks (see the module docstring); ``loss`` is one of :data:`LOSSES`;
        ``gp_weight`` weighs WGAN-GP's gradient penalty (10, the paper's). ``metrics`` and ``loss_weights``
        must be empty (the model logs its own); other keywords go to ``keras.Model.compile``."""
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}.")
        if metrics or loss_weights:
            raise ValueError("metrics and loss_weights must be empty for a GAN: it logs d_loss, g_loss and "
                             "d_accuracy itself.")
        if isinstance(gp_weight, bool) or not isinstance(gp_weight, (int, float)) or gp_weight < 0:
            raise ValueError(f"gp_weight must be a number >= 0; got {gp_weight!r}.")
        kwargs.pop("weighted_metrics", None)
        super().compile(optimizer=optimizer, **kwargs)
        self.gan_loss, self.gp_weight = loss, float(gp_weight)
        if not self.optimizer.built:  # on both networks' weights: each step applies it to one of them
            self.optimizer.build(self.trainable_variables)

    def get_compile_config(self):
        config = super().get_compile_config()
        if config is not None:
            config = {**config, "loss": self.gan_loss, "gp_weight": self.gp_weight}
            config.pop("loss_weights", None)
            config.pop("metrics", None)
        return config

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)

    @property
    def metrics(self):
        return list(self.trackers)

    # -------------------------------------------------------------------- shared pieces
    def _unpack(self, data):
        images, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        if self.conditional and labels is None:
            raise ValueError("a conditional GAN trains on (images, labels) batches; the data has no labels.")
        return ops.cast(images, "float32"), (ops.cast(ops.reshape(labels, (-1,)), "int32")
                                             if self.conditional else None)

    def _with_labels(self, x, labels):
        return [x, labels] if self.conditional else x

    def _draws(self, batch, image_shape):
        """Noise for the discriminator's and the generator's step and WGAN-GP's interpolation weights."""
        seed = self.noise_generator
        z_d = keras.random.normal((batch, self.noise_dim), seed=seed)
        z_g = keras.random.normal((batch, self.noise_dim), seed=seed)
        e = keras.random.uniform((batch,) + (1,) * len(image_shape), seed=seed)
        return z_d, z_g, e

    def _logs(self, values):
        for tracker in self.trackers:
            tracker.update_state(values[tracker.name])
        return {t.name: t.result() for t in self.trackers}

    def _values(self, d_loss, g_loss, real_logits, fake_logits):
        return {"loss": d_loss + g_loss, "d_loss": d_loss, "g_loss": g_loss,
                "d_accuracy": discriminator_accuracy(real_logits, fake_logits)}

    # -------------------------------------------------------------------- steps
    def train_step(self, *args):
        if keras.backend.backend() == "jax":
            return self._jax_train_step(*args)
        if keras.backend.backend() != "tensorflow":
            raise NotImplementedError("GAN trains on the TensorFlow and JAX backends.")
        return self._tf_train_step(*args)

    def test_step(self, *args):
        if keras.backend.backend() == "jax":
            state, data = args
            trainable, non_trainable, metrics_variables = state
            mapping = list(zip(self.trainable_variables, trainable)) + list(
                zip(self.non_trainable_variables, non_trainable)) + list(
                zip(self.metrics_variables, metrics_variables))
            with keras.StatelessScope(state_mapping=mapping) as scope:
                logs = self._test_values(args[1])
            non_trainable = [scope.get_current_value(v) for v in self.non_trainable_variables]
            metrics_variables = [scope.get_current_value(v) for v in self.metrics_variables]
            return logs, (trainable, non_trainable, metrics_variables)
        return self._test_values(*args)

    def _test_values(self, data):
        real, labels = self._unpack(data)
        z, _, _ = self._draws(ops.shape(real)[0], real.shape[1:])
        fake = self.generator(self._with_labels(z, labels), training=False)
        real_logits = self.discriminator(self._with_labels(real, labels), training=False)
        fake_logits = self.discriminator(self._with_labels(fake, labels), training=False)
        d_loss = discriminator_loss(real_logits, fake_logits, self.gan_loss)
        return self._logs(self._values(d_loss, generator_loss(fake_logits, self.gan_loss), real_logits,
                                       fake_logits))

    def _tf_train_step(self, data):
        import tensorflow as tf

        real, labels = self._unpack(data)
        z_d, z_g, e = self._draws(ops.shape(real)[0], real.shape[1:])
        d_vars, g_vars = self.discriminator.trainable_variables, self.generator.trainable_variables

        def critic(x):
            return self.discriminator(self._with_labels(x, labels), training=True)

        with tf.GradientTape() as tape:
            fake = tf.stop_gradient(self.generator(self._with_labels(z_d, labels), training=True))
            real_logits, fake_logits = critic(real), critic(fake)
            d_loss = discriminator_loss(real_logits, fake_logits, self.gan_loss)
            if self.gan_loss == "wgan_gp":
                d_loss += self.gp_weight * gradient_penalty(critic, e * real + (1.0 - e) * fake)
            scaled = self.optimizer.scale_loss(d_loss)
        self.optimizer.apply(tape.gradient(scaled, d_vars), d_vars)
        self.optimizer.iterations.assign_sub(1)  # one iteration per batch: the generator's step counts it
        with tf.GradientTape() as tape:
            g_loss = generator_loss(critic(self.generator(self._with_labels(z_g, labels), training=True)),
                                    self.gan_loss)
            scaled = self.optimizer.scale_loss(g_loss)
        self.optimizer.apply(tape.gradient(scaled, g_vars), g_vars)
        return self._logs(self._values(d_loss, g_loss, real_logits, fake_logits))

    def _jax_train_step(self, state, data):
        import jax

        trainable, non_trainable, optimizer_variables, metrics_variables = state
        real, labels = self._unpack(data)
        with keras.StatelessScope(state_mapping=list(zip(self.non_trainable_variables, non_trainable))) as scope:
            z_d, z_g, e = self._draws(real.shape[0], real.shape[1:])
        non_trainable = [scope.get_current_value(v) for v in self.non_trainable_variables]
        G, D = self.generator, self.discriminator

        def part(all_values, all_variables, variables):
            where = {id(v): i for i, v in enumerate(all_variables)}
            return [all_values[where[id(v)]] for v in variables]

        def merge(all_values, all_variables, variables, new):
            where = {id(v): i for i, v in enumerate(all_variables)}
            out = list(all_values)
            for v, value in zip(variables, new):
                out[where[id(v)]] = value
            return out

        g_nt = part(non_trainable, self.non_trainable_variables, G.non_trainable_variables)
        d_nt = part(non_trainable, self.non_trainable_variables, D.non_trainable_variables)
        g_t = part(trainable, self.trainable_variables, G.trainable_variables)

        def d_objective(d_t, g_nt, d_nt):
            fake, g_nt = G.stateless_call(g_t, g_nt, self._with_labels(z_d, labels), training=True)
            fake = jax.lax.stop_gradient(fake)
            real_logits, d_nt = D.stateless_call(d_t, d_nt, self._with_labels(real, labels), training=True)
            fake_logits, d_nt = D.stateless_call(d_t, d_nt, self._with_labels(fake, labels), training=True)
            loss = discriminator_loss(real_logits, fake_logits, self.gan_loss)
            if self.gan_loss == "wgan_gp":
                penalty_state = d_nt

                def critic(x):
                    return D.stateless_call(d_t, penalty_state, self._with_labels(x, labels), training=True)[0]

                loss += self.gp_weight * gradient_penalty(critic, e * real + (1.0 - e) * fake)
            return self.optimizer.scale_loss(loss), (loss, real_logits, fake_logits, g_nt, d_nt)

        d_t = part(trainable, self.trainable_variables, D.trainable_variables)
        (_, (d_loss, real_logits, fake_logits, g_nt, d_nt)), d_grads = jax.value_and_grad(
            d_objective, has_aux=True)(d_t, g_nt, d_nt)
        iterations = self._iterations_index()
        before = optimizer_variables[iterations]
        trainable, optimizer_variables = self._stateless_apply(trainable, optimizer_variables, d_grads,
                                                               D.trainable_variables)
        optimizer_variables[iterations] = before  # one iteration per batch: the generator's step counts it
        d_t = part(trainable, self.trainable_variables, D.trainable_variables)

        def g_objective(g_t, g_nt, d_nt):
            fake, g_nt = G.stateless_call(g_t, g_nt, self._with_labels(z_g, labels), training=True)
            fake_logits, d_nt = D.stateless_call(d_t, d_nt, self._with_labels(fake, labels), training=True)
            loss = generator_loss(fake_logits, self.gan_loss)
            return self.optimizer.scale_loss(loss), (loss, g_nt, d_nt)

        (_, (g_loss, g_nt, d_nt)), g_grads = jax.value_and_grad(g_objective, has_aux=True)(g_t, g_nt, d_nt)
        trainable, optimizer_variables = self._stateless_apply(trainable, optimizer_variables, g_grads,
                                                               G.trainable_variables)
        non_trainable = merge(non_trainable, self.non_trainable_variables, G.non_trainable_variables, g_nt)
        non_trainable = merge(non_trainable, self.non_trainable_variables, D.non_trainable_variables, d_nt)
        values = self._values(d_loss, g_loss, real_logits, fake_logits)
        with keras.StatelessScope(state_mapping=list(zip(self.metrics_variables, metrics_variables))) as scope:
            logs = self._logs(values)
        metrics_variables = [scope.get_current_value(v) for v in self.metrics_variables]
        return logs, (trainable, non_trainable, optimizer_variables, metrics_variables)

    def _iterations_index(self) -> int:
        iterations = self.optimizer.iterations
        return next(i for i, v in enumerate(self.optimizer.variables) if v is iterations)

    def _stateless_apply(self, trainable, optimizer_variables, grads, variables):
        """``optimizer.apply(grads, variables)`` on the values of a JAX step: (trainable, optimizer values)."""
        optimizer = self.optimizer
        mapping = list(zip(self.trainable_variables, trainable)) + list(zip(optimizer.variables, optimizer_variables))
        with keras.StatelessScope(state_mapping=mapping) as scope, warnings.catch_warnings():
            optimizer.apply(grads, variables)
        return ([scope.get_current_value(v) for v in self.trainable_variables],
                [scope.get_current_value(v) for v in optimizer.variables])


__all__ = ["GAN", "LOSSES", "discriminator_loss", "generator_loss", "discriminator_accuracy", "gradient_penalty"]
