"""Small numpy image primitives shared by `physics`, `data` and `metrics`.

One definition of each: the seed helper every simulator draws from and the sampled
Gaussian kernel (the microscope's Gaussian PSF and the SSIM window are the same kernel).
"""

from __future__ import annotations

import numpy as np

SeedLike = int | np.random.Generator | None


def rng(seed: SeedLike) -> np.random.Generator:
    """A numpy `Generator` from an integer seed, `None` (fresh entropy) or a Generator.

    A Generator passes through unchanged, so a caller can thread one stream through
    several simulators.

    Args:
        seed: an integer, `None`, or a `np.random.Generator`.

    Returns:
        A `np.random.Generator`.

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


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """A `size × size` sampled Gaussian, centred on the middle pixel, summing to 1.

    Args:
        size: side length in pixels (odd, so the kernel has a centre pixel).
        sigma: standard deviation in pixels (> 0).

    Returns:
        float64 array `(size, size)`.

    Examples:
        >>> k = gaussian_kernel(11, 1.5)
        >>> k.shape, round(float(k.sum()), 12), bool(k[5, 5] == k.max())
        ((11, 11), 1.0, True)
    """
    size = int(size)
    if size < 1 or size % 2 == 0:
        raise ValueError(f"`size` must be a positive odd integer, got {size}.")
    if not sigma > 0:
        raise ValueError(f"`sigma` must be positive, got {sigma}.")
    r = np.arange(size) - size // 2
    g = np.exp(-0.5 * (r / float(sigma)) ** 2)
    g /= g.sum()
    return np.outer(g, g)
