"""Small numpy image primitives shared by `physics`, `data` and `metrics`.

One definition of each: the seed helper every simulator draws from, the positivity check
of physical parameters, the `(H, W)` reading of an image-size argument, the sampled
Gaussian kernel (the microscope's Gaussian PSF and the SSIM window are the same kernel),
and the separable resampler behind every resize and up-sampling of the package.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SeedLike = int | np.random.Generator | None

RESAMPLING_METHODS = ("nearest", "linear", "cubic")
"""Interpolation kernels `resize` understands."""


def rng(seed: SeedLike) -> np.random.Generator:
    """A numpy `Generator` from an integer seed, `None` (fresh entropy) or a Generator.

    A Generator passes through unchanged, so a caller can thread one stream through
    several simulators.

    Args:
        seed (int | np.random.Generator | None): the seed, or a generator to reuse.

    Returns:
        np.random.Generator: the generator.

    Examples:
        >>> float(rng(0).random()) == float(rng(0).random())
        True
        >>> g = np.random.default_rng(1)
        >>> rng(g) is g
        True
    """
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def check_positive(**values: float | np.ndarray) -> None:
    """Raise a `ValueError` naming the first argument that is not strictly positive.

    Args:
        **values (float | np.ndarray): physical parameters by name (every element of an
            array must be positive).

    Returns:
        None: it returns only when every value is positive.

    Examples:
        >>> check_positive(wavelength=0.5, na=1.2)
        >>> check_positive(pixel_size=-0.1)
        Traceback (most recent call last):
        ...
        ValueError: `pixel_size` must be positive, got -0.1.
    """
    for name, value in values.items():
        if np.any(np.asarray(value) <= 0):
            raise ValueError(f"`{name}` must be positive, got {value!r}.")


def image_shape(image_size: int | Sequence[int]) -> tuple[int, int]:
    """`(H, W)` from a side length (square image) or an `(H, W)` pair.

    Args:
        image_size (int | Sequence[int]): side length, or `(H, W)`.

    Returns:
        tuple[int, int]: `(H, W)`.

    Examples:
        >>> image_shape(32), image_shape((16, 24))
        ((32, 32), (16, 24))
    """
    from keras_cvdm.validation import check_int

    if np.ndim(image_size) == 0:
        side = check_int(image_size, "image_size", minimum=1)
        return side, side
    if len(image_size) != 2:
        raise ValueError(f"`image_size` must be an int or (H, W), got {image_size}.")
    return tuple(check_int(s, "image_size", minimum=1) for s in image_size)


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """A `size × size` sampled Gaussian, centred on the middle pixel, summing to 1.

    Args:
        size (int): side length in pixels (odd, so the kernel has a centre pixel).
        sigma (float): standard deviation in pixels (> 0).

    Returns:
        np.ndarray: float64 array `(size, size)`.

    Examples:
        >>> k = gaussian_kernel(11, 1.5)
        >>> k.shape, round(float(k.sum()), 12), bool(k[5, 5] == k.max())
        ((11, 11), 1.0, True)
    """
    if not sigma > 0:
        raise ValueError(f"`sigma` must be positive, got {sigma}.")
    size = int(size)
    if size < 1 or size % 2 == 0:
        raise ValueError(f"`size` must be a positive odd integer, got {size}.")
    r = np.arange(size) - size // 2
    g = np.exp(-0.5 * (r / float(sigma)) ** 2)
    g /= g.sum()
    return np.outer(g, g)


def _keys_cubic(s: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys (1981) cubic convolution kernel, the usual "bicubic" (`a = -0.5`)."""
    s = np.abs(s)
    return np.where(
        s <= 1,
        (a + 2) * s**3 - (a + 3) * s**2 + 1,
        np.where(s < 2, a * s**3 - 5 * a * s**2 + 8 * a * s - 4 * a, 0.0),
    )


def _resampling_matrix(n_in: int, n_out: int, method: str) -> np.ndarray:
    """`(n_out, n_in)` matrix resampling a 1-D signal, pixel centres aligned, edges clamped.

    Output pixel `j` sits at input coordinate `(j + 0.5) · n_in / n_out - 0.5`: both grids
    span the same extent, so for `n_out = f · n_in` the centre of each block of `f` output
    pixels is the centre of its input pixel.
    """
    pos = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    mat = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    if method == "nearest":
        np.add.at(mat, (rows, np.clip(np.floor(pos + 0.5).astype(int), 0, n_in - 1)), 1.0)
        return mat
    base = np.floor(pos).astype(int)
    t = pos - base
    if method == "linear":
        taps = {0: 1 - t, 1: t}
    elif method == "cubic":
        taps = {k: _keys_cubic(t - k) for k in (-1, 0, 1, 2)}
    else:
        raise ValueError(f"`method` must be one of {RESAMPLING_METHODS}, got {method!r}.")
    for k, weight in taps.items():
        np.add.at(mat, (rows, np.clip(base + k, 0, n_in - 1)), weight)
    return mat


def resize(image: np.ndarray, shape: int | Sequence[int], method: str = "cubic") -> np.ndarray:
    """Resample the last two axes onto an `(H, W)` grid covering the same extent.

    Separable interpolation with pixel centres aligned (see `physics.upsample` for the
    integer-factor case); samples beyond the border repeat the edge pixel.

    Args:
        image (np.ndarray): array `(..., h, w)`.
        shape (int | Sequence[int]): output side length or `(H, W)`.
        method (str): `"nearest"`, `"linear"` or `"cubic"` (Keys, `a = -0.5`).

    Returns:
        np.ndarray: float64 array `(..., H, W)`.

    Examples:
        >>> resize(np.ones((2, 4, 6)), (8, 3), "linear").shape
        (2, 8, 3)
        >>> resize(np.array([[0.0, 1.0]]), (1, 4), "linear").round(2).tolist()
        [[0.0, 0.25, 0.75, 1.0]]
    """
    image = np.asarray(image, dtype=np.float64)
    out_h, out_w = image_shape(shape)
    rows = _resampling_matrix(image.shape[-2], out_h, method)
    cols = _resampling_matrix(image.shape[-1], out_w, method)
    return rows @ image @ cols.T
