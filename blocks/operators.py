"""Operators the source texts teach, as layers and blocks (``keras.ops`` only; TensorFlow and JAX).

- :class:`DeformableConv2D` / :func:`deformable_conv`: deformable convolution v1 (Dai et al. 2017) and
  v2 with a modulation mask (Zhu et al. 2019).
- :class:`SpatialTransformer` / :func:`spatial_transformer`: localization net, affine grid and bilinear
  sampler (Jaderberg et al. 2015), identity at initialization.
- :class:`Maxout` / :func:`maxout` (Goodfellow et al. 2013), :class:`CReLU` (Shang et al. 2016).
- :class:`MixedPooling` (Yu et al. 2014; learned mix as Lee et al. 2016), :class:`StochasticPooling`
  (Zeiler & Fergus 2013).
- :class:`HighwayGate` / :func:`highway` (Srivastava et al. 2015), dense or convolutional.

PReLU and a chosen LeakyReLU slope are activations of ``catalog.blocks.layers.act`` (``"prelu"``,
``"leaky_relu_0.2"``); AlexNet's local response normalization is
``catalog.models.alexnet.LocalResponseNormalization``.

Both samplers here share one bilinear rule, torchvision's: a sample at a fractional pixel position
(y, x) is the bilinear mix of its four neighbouring pixels, and a neighbour outside the image counts as
zero (so a position more than one pixel outside gives 0).
"""

from __future__ import annotations

import numpy as np

import keras
from keras import layers, ops

from catalog.blocks.layers import conv2d, conv_initializer


def _pair(value, what: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair):
        raise ValueError(f"{what} must be a positive integer or a pair of them; got {value!r}.")
    return int(pair[0]), int(pair[1])


def _size(tensor, axis: int):
    """The static size of ``axis`` when known, else the dynamic one."""
    static = tensor.shape[axis]
    return int(static) if static is not None else ops.shape(tensor)[axis]


def _bilinear_sample(rows, base, ys, xs, height, width):
    """Bilinear samples of an image stored as ``rows`` (B * height * width, C), zero outside the image.

    ``base`` (broadcastable to ``ys``) is the first row of each sample's image, ``ys``/``xs`` are
    fractional pixel positions (pixel centres at integers). Returns ``ys.shape + (C,)``.
    """
    y0, x0 = ops.floor(ys), ops.floor(xs)
    fy, fx = ys - y0, xs - x0
    y0, x0 = ops.cast(y0, "int32"), ops.cast(x0, "int32")
    out = None
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        for dx, wx in ((0, 1.0 - fx), (1, fx)):
            yi, xi = y0 + dy, x0 + dx
            inside = ops.logical_and(ops.logical_and(yi >= 0, yi < height), ops.logical_and(xi >= 0, xi < width))
            index = base + ops.clip(yi, 0, height - 1) * width + ops.clip(xi, 0, width - 1)
            weight = wy * wx * ops.cast(inside, ys.dtype)
            term = ops.take(rows, index, axis=0) * ops.expand_dims(weight, -1)
            out = term if out is None else out + term
    return out


@keras.saving.register_keras_serializable(package="catalog")
class DeformableConv2D(layers.Layer):
    """Deformable convolution v1 (Dai et al. 2017) and v2 (Zhu et al. 2019), called on ``[x, offsets]``
    or, with ``modulated=True``, ``[x, offsets, mask]``.

    ``y(p) = sum_k w_k * m_k * x(p_0 + p_k + dp_k) (+ bias)``: for each output position p_0 and kernel tap
    k (p_k the tap's dilated grid position), the input is sampled bilinearly at the learned offset dp_k
    (zero outside the image, as torchvision's ``deform_conv2d``) and scaled by the mask m_k (v2; m_k = 1
    for v1); the kernel is then one matrix product over the sampled columns. With zero offsets and mask
    one it equals ``Conv2D`` with the same kernel, padding, strides and dilation.

    Layouts (NHWC, torchvision's channel order): ``offsets`` has ``2 * kh * kw * deformable_groups``
    channels, ``(dy, dx)`` pairs in pixels per kernel tap, taps row-major, deformable groups outermost:
    channel ``2 * (g * kh * kw + i * kw + j) + {0: dy, 1: dx}``. ``mask`` has ``kh * kw *
    deformable_groups`` channels (``g * kh * kw + i * kw + j``) and is used as given: the caller applies
    the sigmoid (:func:`deformable_conv` does). Deformable group g deforms input channels
    ``[g * C / dg, (g + 1) * C / dg)``. Both have the output's height and width.

    Args:
        filters: output channels.
        kernel_size: int or (kh, kw).
        strides: int or (sh, sw).
        padding: "same" (Keras/TensorFlow's, extra padding at the bottom/right), "valid", or an int p
            (p zeros on every side, as PyTorch's ``padding=p``).
        dilation_rate: int or (dh, dw).
        groups: convolution groups (the kernel is (kh, kw, C / groups, filters), as ``Conv2D``'s).
        deformable_groups: groups of input channels that share one set of offsets (and mask).
        modulated: v2: take a third input, the modulation mask.
        use_bias: add a bias per filter.
        kernel_initializer: defaults to the catalog's He-normal fan-out.
    """

    def __init__(self, filters: int, kernel_size=3, strides=1, padding="same", dilation_rate=1,
                 groups: int = 1, deformable_groups: int = 1, modulated: bool = False, use_bias: bool = True,
                 kernel_initializer=None, bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        self.dilation_rate = _pair(dilation_rate, "dilation_rate")
        if padding not in ("same", "valid") and (isinstance(padding, bool) or not isinstance(padding, int)
                                                 or padding < 0):
            raise ValueError(f"padding must be 'same', 'valid' or a non-negative integer; got {padding!r}.")
        self.padding = padding
        self.groups, self.deformable_groups = int(groups), int(deformable_groups)
        if self.groups < 1 or self.filters % self.groups:
            raise ValueError(f"groups must divide filters ({self.filters}); got {groups!r}.")
        if self.deformable_groups < 1:
            raise ValueError(f"deformable_groups must be a positive integer; got {deformable_groups!r}.")
        self.modulated, self.use_bias = bool(modulated), bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer or conv_initializer())
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        channels = input_shape[0][-1]
        if channels is None or channels % self.groups or channels % self.deformable_groups:
            raise ValueError(f"the input channels ({channels}) must be divisible by groups ({self.groups}) "
                             f"and deformable_groups ({self.deformable_groups}).")
        taps = self.kernel_size[0] * self.kernel_size[1] * self.deformable_groups
        expected = [2 * taps] + ([taps] if self.modulated else [])
        got = [shape[-1] for shape in input_shape[1:]]
        if got != expected:
            inputs = "[x, offsets, mask]" if self.modulated else "[x, offsets]"
            raise ValueError(f"DeformableConv2D {self.name} takes {inputs} with {expected} channels after x; "
                             f"got {got}.")
        self.kernel = self.add_weight(name="kernel", shape=(*self.kernel_size, channels // self.groups,
                                                            self.filters), initializer=self.kernel_initializer)
        self.bias = (self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer)
                     if self.use_bias else None)

    def _output_and_pad(self, size, axis: int):
        """(output size, zeros before) along ``axis`` (0: height, 1: width); ints or tensors."""
        k, s, d = self.kernel_size[axis], self.strides[axis], self.dilation_rate[axis]
        span = d * (k - 1) + 1
        if self.padding == "same":
            out = (size + s - 1) // s
            total = (out - 1) * s + span - size
            return out, (max(total, 0) if isinstance(size, int) else ops.maximum(total, 0)) // 2
        pad = 0 if self.padding == "valid" else self.padding
        return (size + 2 * pad - span) // s + 1, pad

    def call(self, inputs):
        x, offsets = inputs[0], inputs[1]
        kh, kw = self.kernel_size
        taps, dg, channels = kh * kw, self.deformable_groups, x.shape[-1]
        height, width = _size(x, 1), _size(x, 2)
        out_h, pad_top = self._output_and_pad(height, 0)
        out_w, pad_left = self._output_and_pad(width, 1)
        dtype = x.dtype
        # Tap positions of the regular grid (row-major taps), then the learned offsets.
        tap_y = np.repeat(np.arange(kh) * self.dilation_rate[0], kw).astype("float32")
        tap_x = np.tile(np.arange(kw) * self.dilation_rate[1], kh).astype("float32")
        row = ops.cast(ops.arange(out_h) * self.strides[0] - pad_top, dtype)
        col = ops.cast(ops.arange(out_w) * self.strides[1] - pad_left, dtype)
        offsets = ops.reshape(offsets, (-1, out_h, out_w, dg, taps, 2))
        ys = ops.reshape(row, (1, -1, 1, 1, 1)) + ops.cast(tap_y, dtype) + offsets[..., 0]
        xs = ops.reshape(col, (1, 1, -1, 1, 1)) + ops.cast(tap_x, dtype) + offsets[..., 1]
        # One image per (sample, deformable group), flattened to rows of C / dg channels.
        group_channels = channels // dg
        rows = ops.reshape(ops.transpose(ops.reshape(x, (-1, height * width, dg, group_channels)), (0, 2, 1, 3)),
                           (-1, group_channels))
        images = ops.arange(ops.shape(x)[0] * dg) * (height * width)
        base = ops.reshape(images, (-1, 1, 1, dg, 1))
        columns = _bilinear_sample(rows, base, ys, xs, height, width)  # (N, Ho, Wo, dg, taps, C / dg)
        if self.modulated:
            columns = columns * ops.expand_dims(ops.reshape(inputs[2], (-1, out_h, out_w, dg, taps)), -1)
        columns = ops.reshape(ops.transpose(columns, (0, 1, 2, 4, 3, 5)), (-1, out_h, out_w, taps, channels))
        g = self.groups
        columns = ops.reshape(columns, (-1, out_h, out_w, taps, g, channels // g))
        columns = ops.reshape(ops.transpose(columns, (0, 1, 2, 4, 3, 5)),
                              (-1, out_h, out_w, g, taps * channels // g))
        kernel = ops.reshape(ops.cast(self.kernel, dtype), (taps * channels // g, g, self.filters // g))
        y = ops.reshape(ops.einsum("nhwgi,igo->nhwgo", columns, kernel), (-1, out_h, out_w, self.filters))
        return y + ops.cast(self.bias, dtype) if self.use_bias else y

    def compute_output_shape(self, input_shape):
        shape = input_shape[0]
        sizes = [None if shape[1 + a] is None else self._output_and_pad(int(shape[1 + a]), a)[0] for a in (0, 1)]
        return (shape[0], *sizes, self.filters)

    def count_macs(self, input_shapes, output_shapes):
        """The kernel's multiply-adds, as a convolution's: kh * kw * C / groups * filters per output pixel
        (the bilinear sampling and the mask are not counted, as papers count a conv)."""
        out = output_shapes[0]
        return int(np.prod(self.kernel.shape)) * int(out[1]) * int(out[2])

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "dilation_rate": self.dilation_rate,
                "groups": self.groups, "deformable_groups": self.deformable_groups, "modulated": self.modulated,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer)}


def deformable_conv(x, filters: int, kernel_size=3, strides=1, *, name: str, modulated: bool = False,
                    dilation: int = 1, padding: str = "same", groups: int = 1, deformable_groups: int = 1,
                    use_bias: bool = True):
    """Deformable convolution block: offsets (and mask) predicted from ``x``, then :class:`DeformableConv2D`.

    As both papers: the offsets come from a convolution over the same input with the same kernel size,
    strides, padding and dilation as the deformable one, to ``2 * kh * kw * deformable_groups`` channels;
    v2 (``modulated=True``) adds a sibling convolution to ``kh * kw * deformable_groups`` channels with a
    sigmoid, the mask. Both are zero-initialized (kernel and bias), so the block starts as a plain
    convolution with offsets 0 and, for v2, masks sigmoid(0) = 0.5 (Zhu et al.'s initial values): v1
    starts equal to a ``Conv2D``, v2 to half of one. Layers ``{name}_offset``, ``{name}_mask``, ``{name}``.

    Parameters: kh*kw*C/groups*filters (+ filters bias) + (kh*kw*C + 1) * 2*kh*kw*dg (+ (kh*kw*C + 1) *
    kh*kw*dg for v2). Keras' ``Conv2D`` refuses strides > 1 together with dilation > 1, so the offset
    convolution does too.

    Args:
        x: input tensor (NHWC).
        filters: output channels.
        kernel_size: int or (kh, kw).
        strides: int or (sh, sw).
        name: layer name prefix.
        modulated: v2 (with the modulation mask) instead of v1.
        dilation: dilation rate of all three convolutions.
        padding: "same" or "valid".
        groups: groups of the deformable convolution.
        deformable_groups: groups of input channels with their own offsets.
        use_bias: bias of the deformable convolution.
    """
    if padding not in ("same", "valid"):
        raise ValueError(f"padding must be 'same' or 'valid'; got {padding!r}.")
    kh, kw = _pair(kernel_size, "kernel_size")
    taps = kh * kw * deformable_groups
    common = dict(padding=padding, dilation_rate=dilation, kernel_initializer="zeros", bias_initializer="zeros")
    inputs = [x, conv2d(2 * taps, (kh, kw), strides, name=f"{name}_offset", **common)(x)]
    if modulated:
        inputs.append(conv2d(taps, (kh, kw), strides, activation="sigmoid", name=f"{name}_mask", **common)(x))
    return DeformableConv2D(filters, (kh, kw), strides, padding=padding, dilation_rate=dilation, groups=groups,
                            deformable_groups=deformable_groups, modulated=modulated, use_bias=use_bias,
                            name=name)(inputs)


IDENTITY_THETA = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@keras.saving.register_keras_serializable(package="catalog")
class SpatialTransformer(layers.Layer):
    """Affine grid generator and bilinear sampler of a spatial transformer (Jaderberg et al. 2015),
    called on ``[x, theta]``.

    ``theta`` (N, 6) is the row-major 2x3 affine map ``[[a, b, c], [d, e, f]]`` from the output grid to the
    input, in normalized coordinates where -1 and 1 are the outer edges of the image (PyTorch's
    ``affine_grid``/``grid_sample`` with ``align_corners=False``): output pixel (i, j) of an Ho x Wo grid
    sits at x_t = (2j + 1) / Wo - 1, y_t = (2i + 1) / Ho - 1 and reads the input at
    (x_s, y_s) = (a x_t + b y_t + c, d x_t + e y_t + f), i.e. pixel ((x_s + 1) W - 1) / 2 across and
    ((y_s + 1) H - 1) / 2 down, sampled bilinearly with zeros outside. ``theta = (1, 0, 0, 0, 1, 0)`` is the
    identity; ``c = 2 / W`` reads one pixel to the right (the content moves one pixel left).

    Args:
        output_size: (Ho, Wo) of the sampled grid; default the input's height and width.
    """

    def __init__(self, output_size=None, **kwargs):
        super().__init__(**kwargs)
        self.output_size = None if output_size is None else _pair(output_size, "output_size")

    def call(self, inputs):
        x, theta = inputs
        dtype = x.dtype
        height, width = _size(x, 1), _size(x, 2)
        out_h, out_w = self.output_size or (height, width)
        theta = ops.cast(theta, dtype)
        # x_t = u / Wo and y_t = v / Ho with u = 2j + 1 - Wo, v = 2i + 1 - Ho; the pixel positions
        # ((x_s + 1) W - 1) / 2 are expanded so that the identity map gives integers exactly.
        width_f, height_f = ops.cast(width, dtype), ops.cast(height, dtype)
        u = ops.reshape(2.0 * ops.cast(ops.arange(out_w), dtype) + 1.0 - ops.cast(out_w, dtype), (1, 1, -1))
        v = ops.reshape(2.0 * ops.cast(ops.arange(out_h), dtype) + 1.0 - ops.cast(out_h, dtype), (1, -1, 1))
        u_w, v_w = u * (width_f / ops.cast(out_w, dtype)), v * (width_f / ops.cast(out_h, dtype))
        u_h, v_h = u * (height_f / ops.cast(out_w, dtype)), v * (height_f / ops.cast(out_h, dtype))

        def coefficient(i):
            return ops.reshape(theta[:, i], (-1, 1, 1))

        xs = (coefficient(0) * u_w + coefficient(1) * v_w + coefficient(2) * width_f + width_f - 1.0) / 2.0
        ys = (coefficient(3) * u_h + coefficient(4) * v_h + coefficient(5) * height_f + height_f - 1.0) / 2.0
        rows = ops.reshape(x, (-1, x.shape[-1]))
        base = ops.reshape(ops.arange(ops.shape(x)[0]) * (height * width), (-1, 1, 1))
        return _bilinear_sample(rows, base, ys, xs, height, width)

    def compute_output_shape(self, input_shape):
        shape = input_shape[0]
        return (shape[0], *(self.output_size or shape[1:3]), shape[-1])

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size}


def spatial_transformer(x, *, name: str, localization=None, output_size=None, filters=(8, 16), units: int = 32):
    """Spatial transformer (Jaderberg et al. 2015): localization net -> theta -> :class:`SpatialTransformer`.

    The default localization net is, per entry of ``filters``, a 3x3 conv (bias, ReLU) and a 2x2 max pool,
    then flatten -> Dense(``units``, ReLU); it needs a static input size. Its last layer, ``{name}_theta``,
    is Dense(6) with a zero kernel and bias (1, 0, 0, 0, 1, 0), so the block starts as the identity.
    Parameters of the default: sum over convs of (9 * C_in + 1) * f, (flat + 1) * units, (units + 1) * 6.

    Args:
        x: input tensor (NHWC).
        name: layer name prefix.
        localization: a callable ``features = localization(x)`` giving (N, D) features, replacing the
            default net (the Dense(6) is still added).
        output_size: (Ho, Wo) of the output; default the input's.
        filters: conv widths of the default localization net.
        units: width of its hidden Dense layer.
    """
    if localization is not None:
        features = localization(x)
    else:
        if None in tuple(x.shape[1:3]):
            raise ValueError(f"spatial_transformer {name}: the default localization net needs a static input "
                             f"size; got {tuple(x.shape[1:])}. Pass localization=.")
        features = x
        for i, width in enumerate(filters, start=1):
            features = conv2d(width, 3, padding="same", activation="relu", name=f"{name}_loc_conv{i}")(features)
            features = layers.MaxPooling2D(2, name=f"{name}_loc_pool{i}")(features)
        features = layers.Flatten(name=f"{name}_loc_flatten")(features)
        features = layers.Dense(units, activation="relu", name=f"{name}_loc_fc")(features)
    theta = layers.Dense(6, kernel_initializer="zeros", name=f"{name}_theta",
                         bias_initializer=keras.initializers.Constant(IDENTITY_THETA))(features)
    return SpatialTransformer(output_size, name=name)([x, theta])


@keras.saving.register_keras_serializable(package="catalog")
class Maxout(layers.Layer):
    """Maxout (Goodfellow et al. 2013) over the channel axis: ``y_c = max_j x[..., c * pieces + j]``.

    The C input channels are C / pieces consecutive groups of ``pieces`` linear pieces (what a preceding
    Dense or conv to ``units * pieces`` computes, as :func:`maxout` builds); the output has C / pieces.
    """

    def __init__(self, pieces: int = 2, **kwargs):
        super().__init__(**kwargs)
        if isinstance(pieces, bool) or not isinstance(pieces, int) or pieces < 1:
            raise ValueError(f"pieces must be a positive integer; got {pieces!r}.")
        self.pieces = pieces

    def build(self, input_shape):
        if input_shape[-1] is None or input_shape[-1] % self.pieces:
            raise ValueError(f"Maxout {self.name}: the channels ({input_shape[-1]}) must be divisible by "
                             f"pieces ({self.pieces}).")

    def call(self, x):
        units = x.shape[-1] // self.pieces
        shape = tuple(_size(x, a) for a in range(len(x.shape) - 1))
        return ops.max(ops.reshape(x, (*shape, units, self.pieces)), axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] // self.pieces)

    def get_config(self):
        return {**super().get_config(), "pieces": self.pieces}


def maxout(x, units: int, pieces: int = 2, *, name: str, kernel_size: int | None = None):
    """A maxout unit (Goodfellow et al. 2013): ``units * pieces`` affine pieces, then the max of each group.

    ``kernel_size=None`` uses Dense (on a map: per pixel over channels), else a "same" conv of that size.
    Layers ``{name}_linear``, ``{name}``. Parameters: (fan_in + 1) * units * pieces, fan_in = C (Dense) or
    k * k * C (conv).
    """
    if kernel_size is None:
        linear = layers.Dense(units * pieces, name=f"{name}_linear")(x)
    else:
        linear = conv2d(units * pieces, kernel_size, padding="same", name=f"{name}_linear")(x)
    return Maxout(pieces, name=name)(linear)


@keras.saving.register_keras_serializable(package="catalog")
class CReLU(layers.Layer):
    """Concatenated ReLU (Shang et al. 2016): ``concat(relu(x), relu(-x))`` on the last axis (2C channels)."""

    def call(self, x):
        return ops.concatenate([ops.relu(x), ops.relu(-x)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], None if input_shape[-1] is None else 2 * input_shape[-1])


def _pool_arguments(pool_size, strides, padding):
    pool = _pair(pool_size, "pool_size")
    return pool, (pool if strides is None else _pair(strides, "strides")), padding


def _pooled_shape(input_shape, pool_size, strides, padding):
    """NHWC shape after pooling: ceil(n / s) for "same", (n - p) // s + 1 for "valid"."""
    sizes = [None if n is None else (-(-n // s) if padding == "same" else (n - p) // s + 1)
             for n, p, s in zip(input_shape[1:3], pool_size, strides)]
    return (input_shape[0], *sizes, input_shape[-1])


@keras.saving.register_keras_serializable(package="catalog")
class MixedPooling(layers.Layer):
    """Mixed pooling (Yu et al. 2014): ``y = lam * maxpool(x) + (1 - lam) * avgpool(x)``.

    ``learn=False`` keeps ``lam`` fixed (no weights); ``learn=True`` learns one ``lam`` in (0, 1) for the
    layer (Lee et al. 2016's "mixed max-average pooling"), stored as a logit initialized to
    log(lam / (1 - lam)). ``padding="same"`` averages over the in-image part of each window (as
    ``AveragePooling2D``).

    Args:
        pool_size: int or pair. strides: default ``pool_size``. padding: "valid" or "same".
        mix: the (initial) weight lam of the max, in [0, 1] ([0, 1) exclusive when learned).
        learn: learn lam.
    """

    def __init__(self, pool_size=2, strides=None, padding: str = "valid", mix: float = 0.5, learn: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        self.pool_size, self.strides, self.padding = _pool_arguments(pool_size, strides, padding)
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same'; got {padding!r}.")
        if not (0.0 < mix < 1.0 if learn else 0.0 <= mix <= 1.0):
            raise ValueError(f"mix must be in {'(0, 1)' if learn else '[0, 1]'}; got {mix!r}.")
        self.mix, self.learn = float(mix), bool(learn)

    def build(self, input_shape):
        if self.learn:
            logit = float(np.log(self.mix / (1.0 - self.mix)))
            self.mix_logit = self.add_weight(name="mix_logit", shape=(),
                                             initializer=keras.initializers.Constant(logit))

    def call(self, x):
        high = ops.max_pool(x, self.pool_size, self.strides, self.padding)
        mean = ops.average_pool(x, self.pool_size, self.strides, self.padding)
        lam = ops.cast(ops.sigmoid(self.mix_logit), x.dtype) if self.learn else self.mix
        return lam * high + (1.0 - lam) * mean

    def compute_output_shape(self, input_shape):
        return _pooled_shape(input_shape, self.pool_size, self.strides, self.padding)

    def count_macs(self, input_shapes, output_shapes):
        """0, as pooling counts by default (catalog.flops counts convolutions and FC layers)."""
        return 0

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides,
                "padding": self.padding, "mix": self.mix, "learn": self.learn}


@keras.saving.register_keras_serializable(package="catalog")
class StochasticPooling(layers.Layer):
    """Stochastic pooling (Zeiler & Fergus 2013) over "valid" windows of non-negative activations.

    In each window the probabilities are p_i = a_i / sum_j a_j. Training returns one a_i drawn with
    probability p_i (``keras.random`` with this layer's seed); inference returns the probability-weighted
    average sum_i p_i a_i = sum_i a_i^2 / sum_i a_i. Negative values get probability 0 (the paper pools
    ReLU outputs); a window without a positive value pools to 0 in both modes.

    Args:
        pool_size: int or pair. strides: default ``pool_size``. seed: seed of the sampling.
    """

    def __init__(self, pool_size=2, strides=None, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.pool_size, self.strides, _ = _pool_arguments(pool_size, strides, "valid")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _windows(self, x):
        """(N, Ho, Wo, ph * pw, C): every window's values, row-major."""
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        height, width = _size(x, 1), _size(x, 2)
        out_h, out_w = (height - ph) // sh + 1, (width - pw) // sw + 1
        taps = [x[:, i:i + (out_h - 1) * sh + 1:sh, j:j + (out_w - 1) * sw + 1:sw, :]
                for i in range(ph) for j in range(pw)]
        return ops.stack(taps, axis=3)

    def call(self, x, training=None):
        windows = self._windows(x)
        weights = ops.relu(windows)
        total = ops.sum(weights, axis=3)
        if not training:
            return ops.divide_no_nan(ops.sum(weights * windows, axis=3), total)
        # Draw u ~ U(0, total) and take the first tap whose running sum exceeds it.
        draw = keras.random.uniform(ops.shape(total), seed=self.seed_generator, dtype=x.dtype) * total
        running = ops.cumsum(weights, axis=3)
        index = ops.sum(ops.cast(running <= ops.expand_dims(draw, 3), "int32"), axis=3)
        index = ops.minimum(index, windows.shape[3] - 1)
        picked = ops.squeeze(ops.take_along_axis(windows, ops.expand_dims(index, 3), axis=3), 3)
        return ops.where(total > 0, picked, ops.zeros_like(picked))

    def compute_output_shape(self, input_shape):
        return _pooled_shape(input_shape, self.pool_size, self.strides, "valid")

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides, "seed": self.seed}


@keras.saving.register_keras_serializable(package="catalog")
class HighwayGate(layers.Layer):
    """Highway combination (Srivastava et al. 2015), called on ``[x, h, t]``: ``y = h * t + x * (1 - t)``."""

    def call(self, inputs):
        x, h, t = inputs
        return h * t + x * (1.0 - t)

    def compute_output_shape(self, input_shape):
        return input_shape[0]


def highway(x, *, name: str, kernel_size: int | None = None, activation: str = "relu", gate_bias: float = -1.0):
    """A highway layer (Srivastava et al. 2015): ``y = H(x) T(x) + x (1 - T(x))``, T = sigmoid(W_T x + b_T).

    H is Dense (``kernel_size=None``) or a "same" conv of ``kernel_size`` to the input's C channels, with
    ``activation``; T the same shape with a sigmoid and its bias initialized to ``gate_bias`` (the paper
    suggests a negative value such as -1 or -3, so the layer starts by carrying x). Layers ``{name}_h``,
    ``{name}_t``, ``{name}``. Parameters: 2 * (fan_in + 1) * C, fan_in = C (Dense) or k * k * C (conv).
    """
    channels = int(x.shape[-1])
    gate = dict(activation="sigmoid", bias_initializer=keras.initializers.Constant(gate_bias))
    if kernel_size is None:
        h = layers.Dense(channels, activation=activation, name=f"{name}_h")(x)
        t = layers.Dense(channels, name=f"{name}_t", **gate)(x)
    else:
        h = conv2d(channels, kernel_size, padding="same", activation=activation, name=f"{name}_h")(x)
        t = conv2d(channels, kernel_size, padding="same", name=f"{name}_t", **gate)(x)
    return HighwayGate(name=name)([x, h, t])
