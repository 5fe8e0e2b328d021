"""Image quality: PSNR, SSIM (Wang et al. 2004) and MS-SSIM (Wang, Simoncelli and Bovik 2003).

Inputs are HxW (gray), HxWxC (channels last) or NxHxWxC (a batch); ``data_range`` is explicit (255 for
8-bit images, 1.0 for floats in [0, 1]); PSNR's peak is ``data_range``, not 256. SSIM uses an 11x11
Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, population (co)variances, and the mean of the SSIM
map over the positions where the whole window lies inside the image (so it equals scikit-image's
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`` and
``tf.image.ssim``); a colour image's SSIM is the mean over its channels.
"""

from __future__ import annotations

import numpy as np

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _as_batch(a, b, data_range):
    x = np.asarray(a, np.float64)
    y = np.asarray(b, np.float64)
    if x.shape != y.shape:
        raise ValueError(f"the two images must have the same shape; got {x.shape} and {y.shape}.")
    if x.ndim not in (2, 3, 4):
        raise ValueError(f"images must be HxW, HxWxC or NxHxWxC; got shape {x.shape}.")
    if data_range is None or not np.isscalar(data_range) or not data_range > 0:
        raise ValueError(f"data_range must be a positive number (255 for uint8 images); got {data_range!r}.")
    single = x.ndim < 4
    if x.ndim == 2:
        x, y = x[..., None], y[..., None]
    if single:
        x, y = x[None], y[None]
    return x, y, single


def _reduce(values: np.ndarray, single: bool, reduction: str):
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none'; got {reduction!r}.")
    if single:
        return float(values[0])
    return float(np.mean(values)) if reduction == "mean" else values


def psnr(a, b, data_range: float, reduction: str = "mean"):
    """Peak signal-to-noise ratio 10 log10(data_range^2 / MSE) in dB, MSE over all pixels and channels.

    A single image gives a float; a batch its mean (``reduction="mean"``) or the per-image array ("none").
    Identical images give ``inf``.
    """
    x, y, single = _as_batch(a, b, data_range)
    mse = np.mean((x - y) ** 2, axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        values = 10.0 * np.log10(float(data_range) ** 2 / mse)
    return _reduce(values, single, reduction)


def _gaussian_kernel(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _filter_valid(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation over axes 1 and 2 of an NxHxWxC array."""
    n = len(kernel)
    h, w = x.shape[1] - n + 1, x.shape[2] - n + 1
    rows = sum(kernel[i] * x[:, i:i + h] for i in range(n))
    return sum(kernel[i] * rows[:, :, i:i + w] for i in range(n))


def _ssim_parts(x, y, data_range, kernel, k1=0.01, k2=0.03):
    """Per image and channel: (mean SSIM, mean contrast-structure term), each (N, C)."""
    if min(x.shape[1:3]) < len(kernel):
        raise ValueError(f"images must be at least {len(kernel)}x{len(kernel)} pixels for SSIM; "
                         f"got {x.shape[1]}x{x.shape[2]}.")
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mx, my = _filter_valid(x, kernel), _filter_valid(y, kernel)
    vx = _filter_valid(x * x, kernel) - mx * mx
    vy = _filter_valid(y * y, kernel) - my * my
    cov = _filter_valid(x * y, kernel) - mx * my
    luminance = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    cs = (2 * cov + c2) / (vx + vy + c2)
    return np.mean(luminance * cs, axis=(1, 2)), np.mean(cs, axis=(1, 2))


def ssim(a, b, data_range: float, reduction: str = "mean"):
    """Structural similarity (Wang et al. 2004), 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03.

    A single image gives a float; a batch its mean (``reduction="mean"``) or the per-image array ("none").
    """
    x, y, single = _as_batch(a, b, data_range)
    values, _ = _ssim_parts(x, y, float(data_range), _gaussian_kernel())
    return _reduce(values.mean(axis=-1), single, reduction)


def _downsample(x: np.ndarray) -> np.ndarray:
    """2x2 average pooling after padding odd sizes by one reflected row/column (tf.image's MS-SSIM)."""
    pad_h, pad_w = x.shape[1] % 2, x.shape[2] % 2
    if pad_h or pad_w:
        x = np.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")
    return 0.25 * (x[:, 0::2, 0::2] + x[:, 1::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 1::2])


def ms_ssim(a, b, data_range: float, weights=MS_SSIM_WEIGHTS, reduction: str = "mean"):
    """Multi-scale SSIM (Wang, Simoncelli and Bovik 2003) with the paper's five scale weights.

    The contrast-structure term at each coarser scale and the full SSIM at the last, each clipped at zero,
    raised to its weight and multiplied, per channel, then averaged over channels (as
    ``tf.image.ssim_multiscale``). Images need at least 11 * 2^(scales-1) pixels per side (176 for 5).
    """
    x, y, single = _as_batch(a, b, data_range)
    weights = np.asarray(weights, np.float64)
    need = 11 * 2 ** (len(weights) - 1)
    if min(x.shape[1:3]) < need:
        raise ValueError(f"images must be at least {need}x{need} pixels for {len(weights)}-scale MS-SSIM; "
                         f"got {x.shape[1]}x{x.shape[2]}.")
    kernel, terms = _gaussian_kernel(), []
    for scale in range(len(weights)):
        full, cs = _ssim_parts(x, y, float(data_range), kernel)
        terms.append(full if scale == len(weights) - 1 else cs)
        if scale < len(weights) - 1:
            x, y = _downsample(x), _downsample(y)
    stacked = np.maximum(np.stack(terms, axis=-1), 0.0)               # (N, C, scales)
    values = np.prod(stacked ** weights, axis=-1).mean(axis=-1)
    return _reduce(values, single, reduction)


__all__ = ["psnr", "ssim", "ms_ssim"]
