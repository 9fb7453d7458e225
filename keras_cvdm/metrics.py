"""Image-quality metrics, one value per image: MAE, PSNR, SSIM and MS-SSIM.

Every function takes two batches with the same shape, `(N, H, W)` or `(N, H, W, C)`
(numpy or backend tensors), and returns a float64 numpy array of `N` values.

- SSIM is Keras's own `keras.ops.image.ssim` (11×11 Gaussian window, σ = 1.5; it matches
  scikit-image's Gaussian-weighted SSIM).
- MS-SSIM (Wang, Simoncelli & Bovik, 2003) is not in Keras; it is built here on
  `keras.ops` with the conventions of TensorFlow's `tf.image.ssim_multiscale` ("valid"
  Gaussian filtering, 2×2 average pooling between scales, negative terms clipped to 0
  before the powers, the five published scale weights), and a test checks it against
  TensorFlow. Images too small for five scales of an 11-pixel window use the scales that
  fit, with the first weights renormalised to sum to one (`ms_ssim_scales` says how many).
"""

import numpy as np
from keras import ops

#: The published MS-SSIM scale weights (finest first).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

_FILTER_SIZE = 11
_FILTER_SIGMA = 1.5


def _as_batch(a, b):
    a = ops.convert_to_tensor(a, "float32")
    b = ops.convert_to_tensor(b, "float32")
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"The two batches differ in shape: {a.shape} vs {b.shape}.")
    if len(a.shape) == 3:
        a, b = a[..., None], b[..., None]
    if len(a.shape) != 4:
        raise ValueError(
            f"Expected batches (N, H, W) or (N, H, W, C); got shape {tuple(a.shape)}. "
            "Add a leading batch axis for a single image."
        )
    return a, b


def _numpy(values):
    return np.asarray(ops.convert_to_numpy(values), dtype=np.float64)


def mae(estimate, target):
    """Mean absolute error per image."""
    a, b = _as_batch(estimate, target)
    return _numpy(ops.mean(ops.abs(a - b), axis=(1, 2, 3)))


def psnr(estimate, target, data_range):
    """Peak signal-to-noise ratio (dB) per image: `10 log10(data_range² / MSE)`."""
    a, b = _as_batch(estimate, target)
    mse = _numpy(ops.mean(ops.square(a - b), axis=(1, 2, 3)))
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(float(data_range) ** 2 / mse)


def ssim(estimate, target, data_range):
    """Structural similarity per image (`keras.ops.image.ssim`, Gaussian window)."""
    a, b = _as_batch(estimate, target)
    return _numpy(ops.image.ssim(a, b, max_val=float(data_range)))


def ms_ssim_scales(height, width, filter_size=_FILTER_SIZE):
    """How many MS-SSIM scales (at most 5) fit an image of `height × width`."""
    side = min(int(height), int(width))
    scales = 0
    while scales < len(MS_SSIM_WEIGHTS) and side >= filter_size:
        scales += 1
        side //= 2
    return scales


def _gaussian_kernel(channels):
    r = np.arange(_FILTER_SIZE, dtype=np.float64) - (_FILTER_SIZE - 1) / 2.0
    g = np.exp(-0.5 * (r / _FILTER_SIGMA) ** 2)
    g /= g.sum()
    kernel = np.outer(g, g)[:, :, None, None] * np.ones((1, 1, channels, 1))
    return ops.convert_to_tensor(kernel.astype("float32"))


def _ssim_and_cs(a, b, kernel, data_range):
    """Mean SSIM and mean contrast-structure term per image at one scale."""
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2

    def blur(image):
        return ops.depthwise_conv(image, kernel, strides=1, padding="valid")

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    luminance = (2.0 * mu_a * mu_b + c1) / (mu_a * mu_a + mu_b * mu_b + c1)
    cs = (2.0 * cov + c2) / (var_a + var_b + c2)
    return ops.mean(luminance * cs, axis=(1, 2, 3)), ops.mean(cs, axis=(1, 2, 3))


def _halve(image):
    """2×2 average pooling; an odd side is first padded by mirroring its last row/column."""
    height, width = image.shape[1], image.shape[2]
    pad = [[0, 0], [0, height % 2], [0, width % 2], [0, 0]]
    if height % 2 or width % 2:
        image = ops.pad(image, pad, mode="symmetric")
    return ops.average_pool(image, pool_size=2, strides=2, padding="valid")


def ms_ssim(estimate, target, data_range, scales=None):
    """Multi-scale SSIM per image.

    Args:
        estimate, target: batches `(N, H, W)` or `(N, H, W, C)`.
        data_range: the dynamic range of the images (e.g. 2 for `[-1, 1]`).
        scales: number of scales (default: as many as fit, at most 5; see
            `ms_ssim_scales`). With fewer than 5, the first `scales` published weights
            are renormalised to sum to one.
    """
    a, b = _as_batch(estimate, target)
    fit = ms_ssim_scales(a.shape[1], a.shape[2])
    scales = fit if scales is None else int(scales)
    if not 1 <= scales <= fit:
        raise ValueError(
            f"MS-SSIM with {scales} scales needs images of at least "
            f"{_FILTER_SIZE * 2 ** (max(scales, 1) - 1)} pixels a side; these are "
            f"{a.shape[1]}×{a.shape[2]}, which allow {fit}. Pass scales <= {fit}."
        )
    weights = np.asarray(MS_SSIM_WEIGHTS[:scales])
    weights = weights / weights.sum()
    kernel = _gaussian_kernel(a.shape[-1])
    result = np.ones(a.shape[0])
    for level, weight in enumerate(weights):
        ssim_value, cs = _ssim_and_cs(a, b, kernel, float(data_range))
        last = level == scales - 1
        term = np.maximum(_numpy(ssim_value if last else cs), 0.0)
        result *= term**weight
        if not last:
            a, b = _halve(a), _halve(b)
    return result
