"""Fluorescence super-resolution data: a fine density → a blurred, binned, noisy image.

- `SRDataset` / `sr_dataset`: simulated training batches, `x` `(B, H, W, 1)` (the noisy
  low-resolution image interpolated back onto the target grid) and `y` `(B, H, W, 1)`
  (the high-resolution target), both percentile-normalised.
- `sr_test_set`: the fixed held-out pairs used to evaluate SR models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from keras_cvdm.data import phantoms
from keras_cvdm.data.normalization import SRNormalization
from keras_cvdm.data.simulated import SimulatedDataset, value_range
from keras_cvdm.physics import microscopy

SR_TEST_SEED = 20_000
"""Seed reserved for the synthetic SR test set; training data should use other seeds."""


def _fit_kernel(kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Centre-crop a kernel to odd sides no larger than `shape`, renormalised to sum 1."""
    size = min(kernel.shape[0], kernel.shape[1], *shape)
    size = size if size % 2 == 1 else size - 1
    cy, cx = kernel.shape[0] // 2, kernel.shape[1] // 2
    r = size // 2
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.shape[0] > size:
        kernel = kernel[cy - r : cy + r + 1]
    if kernel.shape[1] > size:
        kernel = kernel[:, cx - r : cx + r + 1]
    return (kernel / kernel.sum()).astype(np.float32)


def _psf_pair(psf, wavelength, na, pixel_size, gain):
    """The input PSF and the target's `gain`× sharper PSF (`None` without a gain)."""
    if isinstance(psf, str):
        blurred = microscopy.make_psf(psf, wavelength, na, pixel_size)
        if gain is None:
            return blurred, None
        return blurred, microscopy.make_psf(psf, wavelength / gain, na, pixel_size)
    psf = np.asarray(psf, dtype=np.float32)
    if gain is None:
        return psf, None
    # A measured PSF: the target is the Gaussian of its RMS width divided by the gain.
    r = np.arange(psf.shape[0]) - psf.shape[0] // 2
    sigma = np.sqrt(np.sum(psf * r[:, None] ** 2) / np.sum(psf))
    return psf, microscopy.gaussian_psf(max(sigma / gain, 0.3))


class SRDataset(SimulatedDataset):
    """Simulated fluorescence super-resolution data (BioSR-like widefield → 2× finer).

    For each sample: a fluorophore density in `[0, 1]` from the source plus a uniform
    background (fraction drawn from `background`) is blurred by the widefield PSF on the
    fine grid, binned by `factor`, and given Poisson–Gaussian noise (peak photons drawn
    log-uniformly from `photons`, read noise from `read_noise_std`); `x` is that image
    interpolated back onto the fine grid (`upsample_method`), so `x` and `y` share the
    grid. `y` is the density seen with `target_resolution_gain`× better resolution (a
    SIM-like target: the same PSF kind at `wavelength / gain`), or the density itself
    if `None`. Both are percentile-normalised per image (`SRNormalization`). A PSF wider
    than the image (the default Airy pattern spans 89 px) is centre-cropped to the image
    and renormalised: Airy rings beyond the window carry little energy and would only
    wrap around.

    Args:
        *args: the leading `SimulatedDataset` arguments, `source` (default: phantoms of
            `mix`, by default `phantoms.SR_DEFAULT_MIX`: filaments, puncta, rings, …),
            `batch_size`, `image_size` (divisible by `factor`), `num_batches`, `seed`.
        factor (int): down-sampling factor; `image_size` must be divisible by it.
        psf (str | np.ndarray): `"airy"`, `"gaussian"`, or a PSF array on the fine grid
            (sum 1).
        wavelength (float): emission wavelength in µm.
        na (float): numerical aperture.
        pixel_size (float): fine-grid pixel size in µm.
        photons (float | Sequence[float]): expected photo-electrons of a unit-density
            pixel, fixed or `(low, high)`.
        read_noise_std (float | Sequence[float]): read noise (electrons), fixed or
            `(low, high)`.
        background (float | Sequence[float]): uniform background (fraction of unit
            density), fixed or `(low, high)`.
        target_resolution_gain (float | None): resolution gain of the target over the
            input, or `None` for the density itself.
        upsample_method (str): `"nearest"`, `"linear"` or `"cubic"`.
        normalization (SRNormalization | None): percentile normalisation of `x` and `y`.
        **kwargs: the other `SimulatedDataset` keywords (`mix`, `augment`,
            `resample_each_epoch`, `workers`, `use_multiprocessing`, `max_queue_size`).

    Examples:
        >>> ds = SRDataset(psf="gaussian", batch_size=1, image_size=16, num_batches=1)
        >>> [a.shape for a in ds[0]]
        [(1, 16, 16, 1), (1, 16, 16, 1)]
    """

    default_mix = phantoms.SR_DEFAULT_MIX

    def __init__(
        self,
        *args,
        factor: int = 2,
        psf: str | np.ndarray = "airy",
        wavelength: float = 0.488,
        na: float = 1.3,
        pixel_size: float = 0.0313,
        photons: float | Sequence[float] = (20.0, 1000.0),
        read_noise_std: float | Sequence[float] = (0.0, 2.0),
        background: float | Sequence[float] = (0.0, 0.1),
        target_resolution_gain: float | None = 2.0,
        upsample_method: str = "cubic",
        normalization: SRNormalization | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.factor = int(factor)
        h, w = self.image_shape
        if self.factor < 1 or h % self.factor or w % self.factor:
            raise ValueError(
                f"`image_size` {self.image_shape} must be divisible by `factor` {factor}."
            )
        psf, target = _psf_pair(psf, wavelength, na, pixel_size, target_resolution_gain)
        self.psf = _fit_kernel(psf, self.image_shape)
        self.target_psf = None if target is None else _fit_kernel(target, self.image_shape)
        self.photons = value_range(photons, "photons")
        self.read_noise_std = value_range(read_noise_std, "read_noise_std")
        self.background = value_range(background, "background")
        if self.photons[0] <= 0:
            raise ValueError(f"`photons` must be positive, got {photons}.")
        self.upsample_method = upsample_method
        self.normalization = normalization or SRNormalization()

    def _simulate(self, targets, rng):
        xs, ys = [], []
        log_lo, log_hi = np.log(self.photons[0]), np.log(self.photons[1])
        for target in targets:
            photons = float(np.exp(rng.uniform(log_lo, log_hi)))
            density = target + rng.uniform(*self.background)
            low = microscopy.degrade(
                density, self.factor, self.psf, photons, rng.uniform(*self.read_noise_std), rng
            )
            x = microscopy.upsample(low, self.factor, self.upsample_method)
            y = target if self.target_psf is None else microscopy.convolve(target, self.target_psf)
            xs.append(self.normalization.normalize_input(x)[0])
            ys.append(self.normalization.normalize_target(y)[0])
        return np.stack(xs)[..., None], np.stack(ys)[..., None]


def sr_dataset(
    batch_size: int = 16,
    image_size: int | Sequence[int] = 64,
    num_batches: int = 100,
    seed: int | None = 0,
    factor: int = 2,
    mix: Mapping[str, float] | str | Sequence[str] | None = None,
    **kwargs,
) -> SRDataset:
    """Simulated fluorescence super-resolution data from phantoms (see `SRDataset`).

    Args:
        batch_size (int): samples per batch.
        image_size (int | Sequence[int]): side length or `(H, W)` of the fine grid
            (divisible by `factor`).
        num_batches (int): batches per epoch.
        seed (int | None): non-negative integer that, with the batch index, fixes each
            batch.
        factor (int): down-sampling factor (default 2).
        mix (Mapping[str, float] | str | Sequence[str] | None): phantom mix (default
            `phantoms.SR_DEFAULT_MIX`).
        **kwargs: any other `SRDataset` keyword: `psf`, `wavelength`, `na`,
            `pixel_size`, `photons`, `read_noise_std`, `background`,
            `target_resolution_gain`, `upsample_method`, `normalization`, `augment`,
            `resample_each_epoch`, `workers`, `use_multiprocessing`, `max_queue_size`.

    Returns:
        SRDataset: batches `x` and `y`, both `(B, H, W, 1)` float32.

    Examples:
        >>> ds = sr_dataset(batch_size=2, image_size=32, num_batches=1, psf="gaussian")
        >>> [a.shape for a in ds[0]]
        [(2, 32, 32, 1), (2, 32, 32, 1)]
    """
    return SRDataset(
        None, batch_size, image_size, num_batches, seed, mix=mix, factor=factor, **kwargs
    )


def sr_test_set(
    num_images: int = 16,
    image_size: int | Sequence[int] = 128,
    seed: int = SR_TEST_SEED,
    **kwargs,
) -> tuple[np.ndarray, np.ndarray]:
    """Held-out SR pairs: one un-augmented batch of `sr_dataset` at a reserved seed.

    Args:
        num_images (int): number of pairs.
        image_size (int | Sequence[int]): side length or `(H, W)` of the fine grid.
        seed (int): test-set seed (default `SR_TEST_SEED`, away from training seeds).
        **kwargs: further `sr_dataset` / `SRDataset` keywords (e.g. `factor`, `psf`);
            `augment` is always off.

    Returns:
        tuple[np.ndarray, np.ndarray]: `(x, y)`, float32 `(N, H, W)` each: the normalised
        up-sampled inputs and the normalised targets.

    Examples:
        >>> x, y = sr_test_set(2, 32, psf="gaussian")
        >>> x.shape, y.shape
        ((2, 32, 32), (2, 32, 32))
    """
    ds = sr_dataset(
        batch_size=num_images,
        image_size=image_size,
        num_batches=1,
        seed=seed,
        augment=False,
        **kwargs,
    )
    x, y = ds[0]
    return x[..., 0], y[..., 0]
