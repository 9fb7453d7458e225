"""The Richardson–Lucy (RL) baseline for super-resolution, and its iteration tuning.

RL deconvolution (`skimage.restoration.richardson_lucy`, the `metrics` extra) of a
wide-field image interpolated onto the fine grid, with the simulator's PSF on that grid
(`sr_psf`): the classical counterpart of an SR model, as TIE (`keras_cvdm.physics.tie`) is
for QPI. The iteration count is its regularisation; `tune_richardson_lucy` picks it on a
set with known targets (the strongest version of the baseline).

RL needs non-negative data: each image is shifted (by default by its minimum) and scaled
to `[0, 1]`, deconvolved, and mapped back with the same affine map, so the result is in
the input's units. Same conventions as the rest of `physics` (last two axes `(H, W)`,
float64 inside, float32 out).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from keras_cvdm.imaging import image_shape as _image_shape
from keras_cvdm.physics.microscopy import make_psf

#: Default candidate iteration counts of `tune_richardson_lucy`.
RL_ITERATIONS = (1, 2, 3, 5, 8, 12, 20, 30, 50)

_BOUNDARY_PAD = {"symmetric": "symmetric", "periodic": "wrap", "zero": None}


def _skimage_richardson_lucy():
    try:
        from skimage.restoration import richardson_lucy as skimage_richardson_lucy
    except ImportError as error:
        raise ImportError(
            "The Richardson-Lucy baseline needs scikit-image: pip install 'keras-cvdm[metrics]' "
            "(or pip install scikit-image)."
        ) from error
    return skimage_richardson_lucy


def sr_psf(
    image_shape: int | Sequence[int],
    psf: str | np.ndarray = "airy",
    wavelength: float = 0.488,
    na: float = 1.3,
    pixel_size: float = 0.0313,
) -> np.ndarray:
    """The PSF the SR simulator blurs its fine grid with (`keras_cvdm.data.SRDataset`).

    A named PSF (`microscopy.make_psf`) or an array, centre-cropped to odd sides no larger
    than the image and renormalised to sum 1, exactly as the simulator does. The defaults
    are the simulator's (and the `sr-microscopy` preset's `forward_model`).

    Args:
        image_shape (int | Sequence[int]): side or `(H, W)` of the fine (up-sampled) grid.
        psf (str | np.ndarray): `"airy"`, `"gaussian"`, or a PSF array on the fine grid.
        wavelength (float): emission wavelength in µm.
        na (float): numerical aperture.
        pixel_size (float): fine-grid pixel size in µm.

    Returns:
        np.ndarray: float32 kernel with odd sides and sum 1.

    Examples:
        >>> kernel = sr_psf(32)
        >>> kernel.shape, round(float(kernel.sum()), 6)
        ((31, 31), 1.0)
    """
    height, width = _image_shape(image_shape)
    if isinstance(psf, str):
        psf = make_psf(psf, wavelength, na, pixel_size)
    kernel = np.asarray(psf, dtype=np.float64)
    if kernel.ndim != 2 or np.any(kernel < 0) or kernel.sum() <= 0:
        raise ValueError(f"`psf` must be a non-negative 2-D kernel, got shape {kernel.shape}.")
    size = min(kernel.shape[0], kernel.shape[1], height, width)
    size = size if size % 2 == 1 else size - 1
    r = size // 2
    cy, cx = kernel.shape[0] // 2, kernel.shape[1] // 2
    if kernel.shape[0] > size:
        kernel = kernel[cy - r : cy + r + 1]
    if kernel.shape[1] > size:
        kernel = kernel[:, cx - r : cx + r + 1]
    return (kernel / kernel.sum()).astype(np.float32)


def richardson_lucy(
    image: np.ndarray,
    psf: np.ndarray,
    num_iter: int = 20,
    *,
    offset: str = "min",
    boundary: str = "symmetric",
) -> np.ndarray:
    """Richardson–Lucy deconvolution of each image of a stack, in the input's units.

    Each image is shifted and scaled to `[0, 1]` (RL needs non-negative data), deconvolved
    with `skimage.restoration.richardson_lucy` (`clip=False`), and mapped back with the
    inverse affine map. The PSF is normalised to sum 1, so the flux above the offset is
    conserved (up to the boundary).

    Args:
        image (np.ndarray): blurred image(s) `(..., H, W)` on the PSF's grid.
        psf (np.ndarray): 2-D kernel with odd sides, centred on its middle pixel.
        num_iter (int): RL iterations (>= 1): the regularisation (fewer: smoother).
        offset (str): `"min"` subtracts each image's minimum first (handles normalised,
            negative-valued images and camera offsets); `"zero"` uses the values as they
            are (they must be >= 0).
        boundary (str): how the image is extended by the PSF radius before deconvolving:
            `"symmetric"` (mirror; real, non-periodic images), `"periodic"` (wrap; data
            simulated with periodic blur) or `"zero"` (no extension: scikit-image's zero
            padding).

    Returns:
        np.ndarray: float32 array shaped like `image`.

    Examples:
        >>> import numpy as np
        >>> image = np.random.default_rng(0).uniform(1.0, 2.0, (16, 16))
        >>> delta = np.ones((1, 1))
        >>> bool(np.allclose(richardson_lucy(image, delta, 3), image, atol=1e-5))
        True
    """
    deconvolve = _skimage_richardson_lucy()
    image = np.asarray(image, dtype=np.float64)
    psf = np.asarray(psf, dtype=np.float64)
    if image.ndim < 2:
        raise ValueError(f"`image` must be (..., H, W), got shape {image.shape}.")
    if not np.all(np.isfinite(image)):
        raise ValueError("`image` contains NaN or Inf values; clean or mask them first.")
    if psf.ndim != 2 or psf.shape[0] % 2 == 0 or psf.shape[1] % 2 == 0:
        raise ValueError(f"`psf` must be 2-D with odd sides, got shape {psf.shape}.")
    if np.any(psf < 0) or psf.sum() <= 0:
        raise ValueError("`psf` must be non-negative with a positive sum.")
    if int(num_iter) != num_iter or num_iter < 1:
        raise ValueError(f"`num_iter` must be a positive integer, got {num_iter}.")
    if offset not in ("min", "zero"):
        raise ValueError(f"`offset` must be 'min' or 'zero', got {offset!r}.")
    if boundary not in _BOUNDARY_PAD:
        raise ValueError(
            f"`boundary` must be 'symmetric', 'periodic' or 'zero', got {boundary!r}."
        )
    psf = psf / psf.sum()
    shape = image.shape
    height, width = shape[-2:]
    stack = image.reshape(-1, height, width)
    if offset == "min":
        low = stack.min(axis=(1, 2), keepdims=True)
    else:
        if np.any(stack < 0):
            raise ValueError(
                "Richardson-Lucy needs non-negative data; these images have negative values. "
                "Use offset='min' or shift them first."
            )
        low = np.zeros((len(stack), 1, 1))
    shifted = stack - low
    scale = shifted.max(axis=(1, 2), keepdims=True)
    scale = np.where(scale > 0, scale, 1.0)
    scaled = shifted / scale
    ry, rx = psf.shape[0] // 2, psf.shape[1] // 2
    mode = _BOUNDARY_PAD[boundary]
    if mode is not None:
        scaled = np.pad(scaled, [(0, 0), (ry, ry), (rx, rx)], mode=mode)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = deconvolve(scaled, psf[None], num_iter=int(num_iter), clip=False)
    if mode is not None:
        out = out[:, ry : ry + height, rx : rx + width]
    return (low + out * scale).reshape(shape).astype(np.float32)


def tune_richardson_lucy(
    images: np.ndarray,
    targets: np.ndarray,
    psf: np.ndarray,
    grid: Sequence[int] | None = None,
    *,
    offset: str = "min",
    boundary: str = "symmetric",
    data_range: float = 2.0,
) -> tuple[int, dict[int, float]]:
    """Oracle-tune the RL iteration count on a set with known targets (the strongest baseline).

    Every count of `grid` is tried on the whole set; each result gets the per-image
    least-squares affine fit to its target (`keras_cvdm.metrics.affine_fit`, as the SR
    evaluation scores every method) and the count with the highest mean PSNR
    (`keras_cvdm.metrics.psnr`) is returned. Tuning on the evaluation set itself gives RL
    an advantage a deployed method would not have: comparisons with it are conservative.

    Args:
        images (np.ndarray): blurred images on the fine grid, `(N, H, W)`.
        targets (np.ndarray): the targets, `(N, H, W)`.
        psf (np.ndarray): the PSF on that grid (odd sides).
        grid (Sequence[int] | None): candidate iteration counts (default `RL_ITERATIONS`).
        offset (str): see `richardson_lucy`.
        boundary (str): see `richardson_lucy`.
        data_range (float): data range of the targets for PSNR (2 for `[-1, 1]`); it
            shifts every score equally, so the choice does not depend on it.

    Returns:
        tuple[int, dict[int, float]]: `(best_num_iter, scores)` where `scores` maps each
        candidate to its mean PSNR in dB.

    Examples:
        >>> import numpy as np
        >>> from keras_cvdm.physics import convolve, gaussian_psf
        >>> truth = np.zeros((1, 32, 32)); truth[0, 8:24:4, 8:24:4] = 1.0
        >>> psf = gaussian_psf(1.5)
        >>> best, scores = tune_richardson_lucy(convolve(truth, psf), truth, psf, (1, 10))
        >>> best, scores[best] == max(scores.values())
        (10, True)
    """
    # Imported here: the metrics module pulls in Keras, which the physics does not need.
    from keras_cvdm.metrics import affine_fit, psnr

    images = np.asarray(images, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    if images.ndim != 3 or images.shape != targets.shape:
        raise ValueError(
            f"`images` and `targets` must both be (N, H, W) of one shape, got {images.shape} "
            f"and {targets.shape}."
        )
    grid = RL_ITERATIONS if grid is None else grid
    if len(grid) == 0:
        raise ValueError("`grid` must hold at least one iteration count.")
    scores: dict[int, float] = {}
    for num_iter in grid:
        estimate = richardson_lucy(images, psf, num_iter, offset=offset, boundary=boundary)
        fitted = np.stack([affine_fit(e, t)[0] for e, t in zip(estimate, targets)])
        scores[int(num_iter)] = float(np.mean(psnr(fitted, targets, data_range)))
    best = max(scores, key=scores.get)
    return best, scores
