"""Widefield fluorescence degradation for super-resolution: PSF blur, binning, noise.

The forward model of a diffraction-limited, camera-sampled fluorescence image:

    low_res = PoissonGaussian( downsample( psf ⊛ (photons · image), factor ) ) / photons

- `psf ⊛` is a convolution with a point-spread function normalised to sum 1 (so blurring
  conserves the total signal): an Airy pattern from the numerical aperture and the
  emission wavelength, or its Gaussian approximation.
- `downsample` averages `factor × factor` blocks (camera pixels integrate light; the mean
  is conserved).
- Poisson–Gaussian noise: shot noise on the expected photo-electron counts plus Gaussian
  read noise; mean = counts, variance = counts + read_noise_std².

Lengths are in micrometres; images are arrays whose last two axes are `(H, W)`. The
computation runs in float64 and returns float32.
"""

from __future__ import annotations

import numpy as np

from keras_cvdm import imaging
from keras_cvdm.imaging import SeedLike, check_positive


def gaussian_sigma(wavelength: float, na: float, pixel_size: float) -> float:
    """Standard deviation (pixels) of the Gaussian that best fits a widefield Airy PSF.

    Uses `σ ≈ 0.21 λ / NA` (Zhang, Zerubia & Olivo-Marin, Applied Optics 2007, paraxial
    widefield fit).

    Args:
        wavelength (float): emission wavelength in µm.
        na (float): numerical aperture of the objective.
        pixel_size (float): pixel size in µm (in the sample plane).

    Returns:
        float: σ in pixels.

    Examples:
        >>> round(gaussian_sigma(0.5, 1.0, 0.105), 3)
        1.0
    """
    check_positive(wavelength=wavelength, na=na, pixel_size=pixel_size)
    return 0.21 * wavelength / na / pixel_size


def _odd(n: float) -> int:
    n = int(np.ceil(n))
    return n if n % 2 == 1 else n + 1


def gaussian_psf(
    sigma: float | None = None,
    size: int | None = None,
    *,
    wavelength: float | None = None,
    na: float | None = None,
    pixel_size: float | None = None,
) -> np.ndarray:
    """A Gaussian PSF, normalised to sum 1, centred on the middle pixel.

    Args:
        sigma (float | None): standard deviation in pixels; or give `wavelength`, `na`, `pixel_size`
            to use the widefield fit `σ = 0.21 λ / NA` (see `gaussian_sigma`).
        size (int | None): side length (odd); default the smallest odd size covering ±4σ.
        wavelength (float | None): emission wavelength in µm (with `na`, `pixel_size`).
        na (float | None): numerical aperture.
        pixel_size (float | None): pixel size in µm.

    Returns:
        np.ndarray: float32 `(size, size)` kernel with sum 1.

    Examples:
        >>> psf = gaussian_psf(1.5)
        >>> psf.shape, round(float(psf.sum()), 6)
        ((13, 13), 1.0)
    """
    if sigma is None:
        if None in (wavelength, na, pixel_size):
            raise ValueError("Give `sigma` (pixels) or all of `wavelength`, `na`, `pixel_size`.")
        sigma = gaussian_sigma(wavelength, na, pixel_size)
    check_positive(sigma=sigma)
    size = _odd(8 * sigma + 1) if size is None else size
    return imaging.gaussian_kernel(size, sigma).astype(np.float32)


def _bessel_j1(x: np.ndarray) -> np.ndarray:
    """J1 from Bessel's integral J1(x) = (1/π) ∫₀^π cos(τ - x sin τ) dτ.

    The integrand is smooth and periodic, so the midpoint rule converges exponentially
    once the number of nodes exceeds about |x|/2 + 20.
    """
    x = np.asarray(x, dtype=np.float64)
    n = int(np.max(np.abs(x), initial=0.0) / 2) + 48
    tau = (np.arange(n) + 0.5) * np.pi / n
    return np.mean(np.cos(tau - x[..., None] * np.sin(tau)), axis=-1)


def airy_psf(
    wavelength: float,
    na: float,
    pixel_size: float,
    size: int | None = None,
    oversample: int = 3,
) -> np.ndarray:
    """Widefield (Airy) PSF `(2 J1(v) / v)²`, `v = 2π NA r / λ`, normalised to sum 1.

    Each pixel integrates the pattern over its area (`oversample × oversample` sub-pixel
    samples); the first dark ring is at `r = 0.61 λ / NA`.

    Args:
        wavelength (float): emission wavelength in µm.
        na (float): numerical aperture.
        pixel_size (float): pixel size in µm (sample plane).
        size (int | None): side length (odd); default covers six dark rings.
        oversample (int): sub-pixel samples per axis (1: point sampling at pixel centres).

    Returns:
        np.ndarray: float32 `(size, size)` kernel with sum 1.

    Examples:
        >>> psf = airy_psf(0.5, 1.0, 0.05)
        >>> round(float(psf.sum()), 6), psf.shape[0] % 2
        (1.0, 1)
    """
    check_positive(wavelength=wavelength, na=na, pixel_size=pixel_size)
    first_zero = 0.61 * wavelength / na / pixel_size
    size = _odd(2 * 6 * first_zero + 1) if size is None else int(size)
    if size % 2 == 0:
        raise ValueError(f"`size` must be odd so the PSF has a centre pixel, got {size}.")
    if oversample < 1:
        raise ValueError(f"`oversample` must be >= 1, got {oversample}.")
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5
    coords = (np.arange(size) - size // 2)[:, None] + sub[None, :]
    coords = coords.reshape(-1) * pixel_size
    r = np.hypot(coords[:, None], coords[None, :])
    v = 2 * np.pi * na * r / wavelength
    with np.errstate(divide="ignore", invalid="ignore"):
        pattern = np.where(v > 1e-8, (2 * _bessel_j1(v) / np.where(v > 1e-8, v, 1.0)) ** 2, 1.0)
    pattern = pattern.reshape(size, oversample, size, oversample).mean(axis=(1, 3))
    return (pattern / pattern.sum()).astype(np.float32)


def make_psf(
    kind: str = "airy",
    wavelength: float = 0.488,
    na: float = 1.3,
    pixel_size: float = 0.0313,
    size: int | None = None,
) -> np.ndarray:
    """A PSF by name: `"airy"` or `"gaussian"` (its `0.21 λ/NA` fit), sum 1.

    Defaults are a BioSR-like setting: 488 nm excitation band, NA 1.3, and the
    super-resolved (target) grid's 31.3 nm pixels.

    Args:
        kind (str): `"airy"` or `"gaussian"`.
        wavelength (float): emission wavelength in µm.
        na (float): numerical aperture.
        pixel_size (float): pixel size in µm of the grid the PSF is applied on.
        size (int | None): side length (odd), or `None` for a default that covers the PSF.

    Returns:
        np.ndarray: float32 kernel with sum 1.

    Examples:
        >>> make_psf("gaussian", 0.5, 1.0, 0.105).shape
        (9, 9)
    """
    if kind == "airy":
        return airy_psf(wavelength, na, pixel_size, size)
    if kind == "gaussian":
        return gaussian_psf(size=size, wavelength=wavelength, na=na, pixel_size=pixel_size)
    raise ValueError(f"Unknown PSF kind {kind!r}; use 'airy', 'gaussian' or pass an array.")


def convolve(image: np.ndarray, psf: np.ndarray, boundary: str = "periodic") -> np.ndarray:
    """Convolve the last two axes of `image` with a centred `psf` (FFT).

    Args:
        image (np.ndarray): array `(..., H, W)`.
        psf (np.ndarray): 2-D kernel with odd sides, centred on its middle pixel.
        boundary (str): `"periodic"` (wrap around; exact conservation of the sum) or
            `"reflect"` (mirror-pad by the kernel radius first: no wrap-around artefacts
            for real, non-periodic images).

    Returns:
        np.ndarray: float32 array shaped like `image`.

    Examples:
        >>> import numpy as np
        >>> img = np.zeros((9, 9)); img[4, 4] = 1.0
        >>> psf = gaussian_psf(1.0, size=5)
        >>> bool(np.allclose(convolve(img, psf)[2:7, 2:7], psf, atol=1e-7))
        True
    """
    image = np.asarray(image, dtype=np.float64)
    psf = np.asarray(psf, dtype=np.float64)
    if psf.ndim != 2 or psf.shape[0] % 2 == 0 or psf.shape[1] % 2 == 0:
        raise ValueError(f"`psf` must be 2-D with odd sides, got shape {psf.shape}.")
    if boundary not in ("periodic", "reflect"):
        raise ValueError(f"`boundary` must be 'periodic' or 'reflect', got {boundary!r}.")
    h, w = image.shape[-2:]
    ry, rx = psf.shape[0] // 2, psf.shape[1] // 2
    if boundary == "reflect":
        pad = [(0, 0)] * (image.ndim - 2) + [(ry, ry), (rx, rx)]
        image = np.pad(image, pad, mode="symmetric" if min(h, w) > max(ry, rx) else "wrap")
    ph, pw = image.shape[-2:]
    if psf.shape[0] > ph or psf.shape[1] > pw:
        raise ValueError(f"`psf` {psf.shape} is larger than the image {(h, w)}; crop the PSF.")
    kernel = np.zeros((ph, pw))
    kernel[: psf.shape[0], : psf.shape[1]] = psf
    kernel = np.roll(kernel, (-ry, -rx), axis=(0, 1))
    out = np.fft.irfft2(
        np.fft.rfft2(image, axes=(-2, -1)) * np.fft.rfft2(kernel), s=(ph, pw), axes=(-2, -1)
    )
    if boundary == "reflect":
        out = out[..., ry : ry + h, rx : rx + w]
    return out.astype(np.float32)


def downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Average `factor × factor` blocks of the last two axes (camera binning).

    The mean of the image is conserved exactly.

    Args:
        image (np.ndarray): array `(..., H, W)`, `H` and `W` divisible by `factor`.
        factor (int): integer down-sampling factor (>= 1).

    Returns:
        np.ndarray: float32 array `(..., H / factor, W / factor)`.

    Examples:
        >>> import numpy as np
        >>> downsample(np.arange(16.0).reshape(4, 4), 2)
        array([[ 2.5,  4.5],
               [10.5, 12.5]], dtype=float32)
    """
    factor = int(factor)
    if factor < 1:
        raise ValueError(f"`factor` must be a positive integer, got {factor}.")
    image = np.asarray(image, dtype=np.float64)
    h, w = image.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(
            f"Image size {(h, w)} is not divisible by factor {factor}; crop it to "
            f"{(h - h % factor, w - w % factor)} first."
        )
    blocks = image.reshape(*image.shape[:-2], h // factor, factor, w // factor, factor)
    return blocks.mean(axis=(-3, -1)).astype(np.float32)


def upsample(image: np.ndarray, factor: int, method: str = "cubic") -> np.ndarray:
    """Interpolate the last two axes onto a grid `factor` times finer.

    Pixel centres are aligned the way `downsample` groups them (the centre of each
    `factor × factor` block is the centre of its low-resolution pixel), so
    `downsample(upsample(x, f), f)` stays close to `x` (exact for `"nearest"`).

    Args:
        image (np.ndarray): array `(..., h, w)`.
        factor (int): integer up-sampling factor (>= 1).
        method (str): `"nearest"`, `"linear"` or `"cubic"` (Keys, a = -0.5; default).

    Returns:
        np.ndarray: float32 array `(..., h·factor, w·factor)`.

    Examples:
        >>> import numpy as np
        >>> upsample(np.ones((4, 4)), 2).shape
        (8, 8)
    """
    factor = int(factor)
    if factor < 1:
        raise ValueError(f"`factor` must be a positive integer, got {factor}.")
    h, w = np.shape(image)[-2:]
    return imaging.resize(image, (h * factor, w * factor), method).astype(np.float32)


def poisson_gaussian_noise(
    expected_counts: np.ndarray,
    read_noise_std: float = 0.0,
    seed: SeedLike = None,
) -> np.ndarray:
    """Shot noise plus read noise: `Poisson(counts) + N(0, read_noise_std²)`.

    Args:
        expected_counts (np.ndarray): expected photo-electrons per pixel (>= 0).
        read_noise_std (float): standard deviation of the Gaussian read noise, in electrons.
        seed (int | np.random.Generator | None): integer seed, `numpy.random.Generator`, or `None`.

    Returns:
        np.ndarray: float32 noisy counts; mean `expected_counts`, variance
        `expected_counts + read_noise_std²`.

    Examples:
        >>> import numpy as np
        >>> noisy = poisson_gaussian_noise(np.full((256, 256), 100.0), 2.0, seed=0)
        >>> abs(float(noisy.mean()) - 100.0) < 0.5
        True
    """
    counts = np.asarray(expected_counts, dtype=np.float64)
    if np.any(counts < 0) or not np.all(np.isfinite(counts)):
        raise ValueError("`expected_counts` must be finite and >= 0 (photo-electrons).")
    if read_noise_std < 0:
        raise ValueError(f"`read_noise_std` must be >= 0, got {read_noise_std}.")
    rng = imaging.rng(seed)
    noisy = rng.poisson(counts).astype(np.float64)
    if read_noise_std > 0:
        noisy += rng.normal(0.0, read_noise_std, size=counts.shape)
    return noisy.astype(np.float32)


def degrade(
    image: np.ndarray,
    factor: int = 2,
    psf: np.ndarray | None = None,
    photons: float | None = None,
    read_noise_std: float = 0.0,
    seed: SeedLike = None,
    boundary: str = "periodic",
) -> np.ndarray:
    """Simulate a diffraction-limited, binned, noisy acquisition of `image`.

    Args:
        image (np.ndarray): non-negative fluorophore density `(..., H, W)` on the fine grid.
        factor (int): binning factor (`H`, `W` divisible by it).
        psf (np.ndarray | None): PSF on the fine grid (sum 1), or `None` for no blur.
        photons (float | None): expected photo-electrons of a low-resolution pixel whose mean image
            value is 1; `None` for no noise.
        read_noise_std (float): read noise in electrons (used with `photons`).
        seed (int | np.random.Generator | None): integer seed, `numpy.random.Generator`, or `None`.
        boundary (str): convolution boundary, see `convolve`.

    Returns:
        np.ndarray: float32 low-resolution image `(..., H / factor, W / factor)` in the units of
        `image` (counts divided by `photons`).

    Examples:
        >>> import numpy as np
        >>> low = degrade(np.ones((32, 32)), 2, gaussian_psf(1.0), photons=100.0, seed=0)
        >>> low.shape
        (16, 16)
    """
    out = np.asarray(image, dtype=np.float64)
    if psf is not None:
        out = convolve(out, psf, boundary)
    out = downsample(out, factor).astype(np.float64)
    if photons is not None:
        if photons <= 0:
            raise ValueError(f"`photons` must be positive, got {photons}.")
        counts = np.clip(out, 0.0, None) * photons
        out = poisson_gaussian_noise(counts, read_noise_std, seed) / photons
    return out.astype(np.float32)
