"""Every score the package reports: image quality, phase error, and uncertainty.

Image quality (one value per image): `mae`, `phase_mae`, `psnr`, `ssim`, `ms_ssim`. They
take two batches of the same shape, `(N, H, W)` or `(N, H, W, C)` (numpy or backend
tensors); `phase_mae` takes any `(..., H, W)` and returns float32, the others float64.

- SSIM is Keras's `keras.ops.image.ssim` with an 11×11 Gaussian window, σ = 1.5 (the
  same quantity as scikit-image's `structural_similarity(gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False)`). It is the only SSIM the package reports.
- MS-SSIM (Wang, Simoncelli & Bovik, 2003) is not in Keras; it is built here on
  `keras.ops` with the conventions of TensorFlow's `tf.image.ssim_multiscale` ("valid"
  filtering with the same Gaussian window, 2×2 average pooling between scales, negative
  terms clipped to 0 before the powers, the five published scale weights). Images too
  small for five scales of the window use the scales that fit, with the first weights
  renormalised to sum to one (`ms_ssim_scales` says how many).

Fitting: `affine_fit`, the least-squares affine map of an estimate onto a target (so a
method is not penalised for its intensity scale).

Uncertainty (pooled over every pixel given): `mean_and_std` (the posterior mean and the
sample std with `ddof=1`, the convention of `CVDM.predict_uncertainty`), `coverage`,
`calibration_curve` and `spearman` (SciPy, the `metrics` extra).

Scale of an error: `band_errors`, the error's RMS in bands of spatial frequency
(`frequency_bands`, `radial_frequency`).
"""

from statistics import NormalDist

import numpy as np
from keras import ops

from keras_cvdm.imaging import gaussian_kernel

#: The published MS-SSIM scale weights (finest first).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
#: Side (pixels) and σ of the Gaussian window of SSIM and MS-SSIM.
SSIM_FILTER_SIZE = 11
SSIM_FILTER_SIGMA = 1.5
#: Delta degrees of freedom of every reported sample std (as `CVDM.predict_uncertainty`).
UNCERTAINTY_DDOF = 1
#: Nominal coverages at which `calibration_curve` is read by default.
CALIBRATION_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


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


def radial_frequency(height, width):
    """Spatial frequency of each FFT coefficient of an `(H, W)` image, in cycles per field.

    Along each axis a coefficient's frequency is its number of periods across the image
    (`numpy.fft.fftfreq(n) * n`); the radial frequency is the length of that pair. The
    zero frequency (the image mean) is 0, the slowest non-constant modes 1. On a
    non-square image the axes are counted in periods across their own length, so a band
    of radial frequency is an ellipse in cycles per pixel.

    Args:
        height (int): image height `H`.
        width (int): image width `W`.

    Returns:
        np.ndarray: float64, `(H, W)`, in `numpy.fft.fft2`'s coefficient order.
    """
    fy = np.fft.fftfreq(height) * height
    fx = np.fft.fftfreq(width) * width
    return np.hypot(fy[:, None], fx[None, :])


def frequency_bands(height, width, edges):
    """Masks of the bands `edges[i] ≤ k < edges[i+1]` of radial frequency (cycles per field).

    Args:
        height (int): image height `H`.
        width (int): image width `W`.
        edges (Sequence[float]): increasing band edges in cycles per field, finite but
            for the last, which may be `inf`.

    Returns:
        np.ndarray: bool, `(len(edges) − 1, H, W)`, in `numpy.fft.fft2`'s coefficient
        order (`radial_frequency`).
    """
    edges = np.asarray(edges, dtype=np.float64)
    if (edges.ndim != 1 or edges.size < 2 or not np.all(edges[1:] > edges[:-1])
            or edges[0] < 0 or not np.all(np.isfinite(edges[:-1]))):
        raise ValueError(
            "`edges` must be two or more increasing frequencies >= 0 (only the last may be "
            f"inf), got {edges.tolist()}."
        )
    k = radial_frequency(height, width)
    return np.stack([(k >= lo) & (k < hi) for lo, hi in zip(edges[:-1], edges[1:])])


def band_errors(estimate, target, edges):
    """Root-mean-square error in bands of spatial frequency, per image.

    The error `estimate − target` is split by its Fourier coefficients' radial frequency
    `k` (cycles per field, `radial_frequency`) into the bands `edges[i] ≤ k < edges[i+1]`.
    By Parseval's theorem the squared band errors of bands that cover every frequency
    add up to the mean squared error, so they say at which scales an estimate is wrong:
    the lowest bands are large-scale shape (for phase from intensities, what the
    transport-of-intensity equation measures worst), the highest are edges and texture.
    Compare phase after `align_phase` (the mean, `k = 0`, is then equal).

    Args:
        estimate (array-like): `(..., H, W)`.
        target (array-like): same shape.
        edges (Sequence[float]): increasing band edges in cycles per field, finite but
            for the last, which may be `inf`.

    Returns:
        np.ndarray: float64, `(..., len(edges) − 1)`, the error's RMS in each band.

    Examples:
        >>> import numpy as np
        >>> x = np.arange(32) / 32
        >>> error = 0.3 * np.cos(2 * np.pi * 3 * x)[None, :] * np.ones((32, 1))
        >>> np.round(band_errors(error, np.zeros((32, 32)), [0.5, 2, 4, np.inf]), 6).tolist()
        [0.0, 0.212132, 0.0]
    """
    estimate, target = _same_shape(estimate=estimate, target=target)
    if estimate.ndim < 2:
        raise ValueError(
            f"band_errors takes images `(..., H, W)`; got shape {estimate.shape}. Pass a "
            "2-D image or a stack of them."
        )
    height, width = estimate.shape[-2:]
    bands = frequency_bands(height, width, edges)
    power = np.abs(np.fft.fft2(estimate - target)) ** 2 / float(height * width) ** 2
    return np.sqrt(np.stack([power[..., band].sum(axis=-1) for band in bands], axis=-1))


def _numpy(values):
    return np.asarray(ops.convert_to_numpy(values), dtype=np.float64)


def _same_shape(**arrays):
    arrays = {name: np.asarray(value, dtype=np.float64) for name, value in arrays.items()}
    shapes = {name: a.shape for name, a in arrays.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"The arrays must have the same shape; got {shapes}.")
    return arrays.values()


# ---------------------------------------------------------------------------- image quality


def mae(estimate, target):
    """Mean absolute error per image.

    Args:
        estimate (array-like): batch `(N, H, W)` or `(N, H, W, C)`.
        target (array-like): batch of the same shape.

    Returns:
        np.ndarray: float64, shape `(N,)`.

    Examples:
        >>> import numpy as np
        >>> mae(np.full((2, 8, 8), 0.5), np.zeros((2, 8, 8))).tolist()
        [0.5, 0.5]
    """
    a, b = _as_batch(estimate, target)
    return _numpy(ops.mean(ops.abs(a - b), axis=(1, 2, 3)))


def align_phase(estimate, target=None, alignment="mean"):
    """Remove the constant that intensities cannot fix from a phase estimate.

    Args:
        estimate (array-like): phase estimate in radians, `(..., H, W)`.
        target (array-like): true phase, same shape (needed for `"mean"` only).
        alignment (str): `"mean"` shifts each image to the target's mean, `"min"` shifts
            each image so its minimum is 0, `"none"` leaves it as is.

    Returns:
        np.ndarray: float64, the shifted estimate.

    Examples:
        >>> import numpy as np
        >>> align_phase(np.full((2, 2), 5.0), np.zeros((2, 2))).tolist()
        [[0.0, 0.0], [0.0, 0.0]]
    """
    estimate = np.asarray(estimate, dtype=np.float64)
    if alignment == "mean":
        target = np.asarray(target, dtype=np.float64)
        return estimate - np.mean(estimate - target, axis=(-2, -1), keepdims=True)
    if alignment == "min":
        return estimate - np.min(estimate, axis=(-2, -1), keepdims=True)
    if alignment != "none":
        raise ValueError(f"`alignment` must be 'mean', 'min' or 'none', got {alignment!r}.")
    return estimate


def phase_mae(estimate, target, alignment="mean"):
    """Mean absolute phase error per image, after removing the undetermined constant.

    Phase recovered from intensities is defined only up to an additive constant, so the
    estimate is shifted before it is compared.

    Args:
        estimate (array-like): phase estimate in radians, `(..., H, W)`.
        target (array-like): true phase in radians, same shape.
        alignment (str): how the constant is fixed: `"mean"` shifts the estimate to the
            target's mean (fair to any method that determines phase only up to a
            constant); `"min"` shifts the estimate so its minimum is 0 (the convention
            that phase maps start at 0 rad; needs no target); `"none"` compares as is.

    Returns:
        np.ndarray: float32, shape `(...)`, one MAE (radians) per image.

    Examples:
        >>> import numpy as np
        >>> float(phase_mae(np.ones((4, 4)), np.zeros((4, 4))))
        0.0
        >>> float(phase_mae(np.ones((4, 4)), np.zeros((4, 4)), alignment="none"))
        1.0
    """
    target = np.asarray(target, dtype=np.float64)
    estimate = align_phase(estimate, target, alignment)
    return np.mean(np.abs(estimate - target), axis=(-2, -1)).astype(np.float32)


def psnr(estimate, target, data_range):
    """Peak signal-to-noise ratio (dB) per image: `10 log10(data_range² / MSE)`.

    Args:
        estimate (array-like): batch `(N, H, W)` or `(N, H, W, C)`.
        target (array-like): batch of the same shape.
        data_range (float): the dynamic range of the images (e.g. 2 for `[-1, 1]`).

    Returns:
        np.ndarray: float64, shape `(N,)`; `inf` for identical images.

    Examples:
        >>> import numpy as np
        >>> np.round(psnr(np.full((1, 8, 8), 0.1), np.zeros((1, 8, 8)), 1.0), 6).tolist()
        [20.0]
    """
    a, b = _as_batch(estimate, target)
    mse = _numpy(ops.mean(ops.square(a - b), axis=(1, 2, 3)))
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(float(data_range) ** 2 / mse)


def ssim(estimate, target, data_range):
    """Structural similarity per image (11×11 Gaussian window, σ = 1.5).

    `keras.ops.image.ssim`, averaged over the valid window positions and the channels.

    Args:
        estimate (array-like): batch `(N, H, W)` or `(N, H, W, C)`, at least 11 pixels a
            side.
        target (array-like): batch of the same shape.
        data_range (float): the dynamic range of the images (e.g. 2 for `[-1, 1]`).

    Returns:
        np.ndarray: float64, shape `(N,)`, each in `[-1, 1]` (1 for identical images).

    Examples:
        >>> import numpy as np
        >>> image = np.random.default_rng(0).uniform(size=(2, 32, 32))
        >>> np.round(ssim(image, image, data_range=1.0), 5).tolist()
        [1.0, 1.0]
    """
    a, b = _as_batch(estimate, target)
    return _numpy(ops.image.ssim(
        a, b, max_val=float(data_range), filter_size=SSIM_FILTER_SIZE,
        filter_sigma=SSIM_FILTER_SIGMA, data_format="channels_last",
    ))


def ms_ssim_scales(height, width, filter_size=SSIM_FILTER_SIZE):
    """How many MS-SSIM scales (at most 5) fit an image of `height × width`.

    Args:
        height (int): image height in pixels.
        width (int): image width in pixels.
        filter_size (int): side of the SSIM window.

    Returns:
        int: the number of scales (0 when even the finest does not fit).

    Examples:
        >>> ms_ssim_scales(192, 192), ms_ssim_scales(64, 64), ms_ssim_scales(8, 8)
        (5, 3, 0)
    """
    side = min(int(height), int(width))
    scales = 0
    while scales < len(MS_SSIM_WEIGHTS) and side >= filter_size:
        scales += 1
        side //= 2
    return scales


def _window(channels):
    kernel = gaussian_kernel(SSIM_FILTER_SIZE, SSIM_FILTER_SIGMA)
    kernel = kernel[:, :, None, None] * np.ones((1, 1, channels, 1))
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
        estimate (array-like): batch `(N, H, W)` or `(N, H, W, C)`.
        target (array-like): batch of the same shape.
        data_range (float): the dynamic range of the images (e.g. 2 for `[-1, 1]`).
        scales (int | None): number of scales (default: as many as fit, at most 5; see
            `ms_ssim_scales`). With fewer than 5, the first `scales` published weights
            are renormalised to sum to one.

    Returns:
        np.ndarray: float64, shape `(N,)`, each in `[0, 1]` (1 for identical images).

    Examples:
        >>> import numpy as np
        >>> image = np.random.default_rng(0).uniform(size=(1, 64, 64))
        >>> np.round(ms_ssim(image, image, data_range=1.0), 5).tolist()
        [1.0]
    """
    a, b = _as_batch(estimate, target)
    fit = ms_ssim_scales(a.shape[1], a.shape[2])
    scales = fit if scales is None else int(scales)
    if not 1 <= scales <= fit:
        raise ValueError(
            f"MS-SSIM with {scales} scales needs images of at least "
            f"{SSIM_FILTER_SIZE * 2 ** (max(scales, 1) - 1)} pixels a side; these are "
            f"{a.shape[1]}×{a.shape[2]}, which allow {fit}. Pass scales <= {fit}."
        )
    weights = np.asarray(MS_SSIM_WEIGHTS[:scales])
    weights = weights / weights.sum()
    kernel = _window(a.shape[-1])
    result = np.ones(a.shape[0])
    for level, weight in enumerate(weights):
        ssim_value, cs = _ssim_and_cs(a, b, kernel, float(data_range))
        last = level == scales - 1
        term = np.maximum(_numpy(ssim_value if last else cs), 0.0)
        result *= term**weight
        if not last:
            a, b = _halve(a), _halve(b)
    return result


# ---------------------------------------------------------------------------- fitting


def affine_fit(image, target):
    """The affine map `a·image + b` of `image` closest to `target` in least squares.

    Scoring the fitted image is fair to a method whose output has another intensity
    scale or offset; the slope rescales that method's uncertainty to the same units.

    Args:
        image (array-like): an estimate, any shape.
        target (array-like): the reference, same shape.

    Returns:
        tuple[np.ndarray, float]: `(fitted, slope)`: `a·image + b` (float64, the shape of
        `image`) and `a`.

    Examples:
        >>> import numpy as np
        >>> image = np.arange(16.0).reshape(4, 4)
        >>> fitted, slope = affine_fit(image, 3.0 * image - 2.0)
        >>> round(slope, 9), bool(np.allclose(fitted, 3.0 * image - 2.0))
        (3.0, True)
    """
    image, target = _same_shape(image=image, target=target)
    design = np.stack([np.ravel(image), np.ones(image.size)], axis=1)
    coef, *_ = np.linalg.lstsq(design, np.ravel(target), rcond=None)
    return coef[0] * image + coef[1], float(coef[0])


# ---------------------------------------------------------------------------- uncertainty


def mean_and_std(samples, axis=1):
    """Posterior mean and per-pixel std of samples, with the package's `ddof=1`.

    The same convention as `CVDM.predict_uncertainty`, so scores computed from raw
    samples (`CVDM.predict_samples`) use the std that users get.

    Args:
        samples (array-like): posterior samples, e.g. `(N, S, H, W, C)`.
        axis (int): the sample axis (at least 2 samples along it).

    Returns:
        tuple[np.ndarray, np.ndarray]: `(mean, std)`, the sample axis removed.

    Examples:
        >>> import numpy as np
        >>> mean, std = mean_and_std(np.array([[1.0, 3.0]]), axis=1)
        >>> mean.tolist(), std.tolist()
        ([2.0], [1.4142135623730951])
    """
    samples = np.asarray(samples)
    if samples.shape[axis] < 2:
        raise ValueError(
            f"A sample std needs at least 2 samples along axis {axis}; got "
            f"{samples.shape[axis]} (shape {samples.shape})."
        )
    return samples.mean(axis=axis), samples.std(axis=axis, ddof=UNCERTAINTY_DDOF)


def coverage(mean, std, truth, k=2.0):
    """Fraction of pixels whose truth lies within `mean ± k·std`.

    For exact Gaussian uncertainty it is `P(|Z| ≤ k)`: 0.683 for `k = 1`, 0.954 for
    `k = 2`. Lower means over-confident, higher under-confident.

    Args:
        mean (array-like): the estimate, any shape.
        std (array-like): its per-pixel std, same shape.
        truth (array-like): the reference, same shape.
        k (float): half-width of the interval in stds.

    Returns:
        float: the fraction in `[0, 1]`, pooled over every element.

    Examples:
        >>> import numpy as np
        >>> coverage(np.zeros(4), np.ones(4), np.array([0.5, -1.5, 2.5, -3.0]))
        0.5
    """
    mean, std, truth = _same_shape(mean=mean, std=std, truth=truth)
    return float(np.mean(np.abs(truth - mean) <= k * std))


def calibration_curve(mean, std, truth, levels=CALIBRATION_LEVELS):
    """Observed coverage of the central Gaussian interval at each nominal level.

    For level `p`, the interval is `mean ± z·std` with `z` the `(1 + p) / 2` standard
    normal quantile; a calibrated Gaussian uncertainty gives an observed coverage of `p`
    (the curve lies on the diagonal).

    Args:
        mean (array-like): the estimate, any shape.
        std (array-like): its per-pixel std, same shape.
        truth (array-like): the reference, same shape.
        levels (Sequence[float]): nominal coverages in `(0, 1)`.

    Returns:
        list[float]: the observed coverage at each level.

    Examples:
        >>> import numpy as np
        >>> z = np.random.default_rng(0).standard_normal(100_000)
        >>> [round(c, 2) for c in calibration_curve(np.zeros_like(z), np.ones_like(z), z,
        ...                                         levels=(0.5, 0.9))]
        [0.5, 0.9]
    """
    mean, std, truth = _same_shape(mean=mean, std=std, truth=truth)
    error = np.abs(truth - mean)
    normal = NormalDist()
    return [
        float(np.mean(error <= normal.inv_cdf(0.5 + float(level) / 2.0) * std))
        for level in levels
    ]


def spearman(a, b):
    """Spearman rank correlation of two arrays, flattened (ties get average ranks).

    Used for `ρ(std, |error|)`: whether larger predicted uncertainty goes with larger
    error. Needs SciPy (`pip install 'keras-cvdm[metrics]'`).

    Args:
        a (array-like): any shape.
        b (array-like): same number of elements.

    Returns:
        float: the correlation in `[-1, 1]` (NaN if either array is constant).

    Examples:
        >>> import numpy as np
        >>> x = np.arange(10.0)
        >>> round(spearman(x, np.exp(x)), 12), round(spearman(x, -x), 12)
        (1.0, -1.0)
    """
    try:
        from scipy import stats
    except ImportError as error:
        raise ImportError(
            "keras_cvdm.metrics.spearman needs SciPy: pip install 'keras-cvdm[metrics]'."
        ) from error
    a, b = np.ravel(a), np.ravel(b)
    if a.size != b.size:
        raise ValueError(f"The arrays differ in size: {a.size} vs {b.size}.")
    return float(stats.spearmanr(a, b).statistic)
