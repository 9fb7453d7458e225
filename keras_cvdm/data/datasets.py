"""On-the-fly simulated training data for QPI and super-resolution, as `keras.utils.PyDataset`s.

Each batch is simulated from scratch with numpy from a random generator seeded by
`(seed, epoch_key, batch_index)`, so:

- the same `seed` and batch index always give the same batch, in any order, on any
  worker (threads or processes) — `workers` and `use_multiprocessing` change speed only;
- the epoch key is 0 unless `resample_each_epoch=True`, in which case it counts epochs
  (`on_epoch_end`) and every epoch sees fresh samples.

Batches are `(x, y)`, channels-last float32, normalised with the conventions of
`keras_cvdm.data.normalization` (roughly `[-1, 1]`):

- QPI: `x` `(B, H, W, 2)`: `I(-dz)`, `I(+dz)`; `y` `(B, H, W, 1)`: the phase.
- SR: `x` `(B, H, W, 1)`: the noisy low-resolution image interpolated back onto the
  target grid; `y` `(B, H, W, 1)`: the high-resolution target.

`qpi_test_set` builds the fixed, raw (un-normalised) QPI evaluation set shared by the
benchmarks (TIE baseline, model evaluation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np

from keras_cvdm.data import phantoms as _phantoms
from keras_cvdm.data.normalization import QPINormalization, SRNormalization
from keras_cvdm.physics import microscopy, qpi

QPI_TEST_SEED = 10_000
"""Seed reserved for the synthetic QPI test set; training data should use other seeds."""


def _range(value: float | Sequence[float], name: str) -> tuple[float, float]:
    """A scalar or a (low, high) pair → (low, high)."""
    if np.ndim(value) == 0:
        return float(value), float(value)
    low, high = (float(v) for v in value)
    if low > high:
        raise ValueError(f"`{name}` must be (low, high) with low <= high, got {value}.")
    return low, high


def _image_shape(image_size: int | Sequence[int]) -> tuple[int, int]:
    if np.ndim(image_size) == 0:
        return int(image_size), int(image_size)
    h, w = (int(s) for s in image_size)
    return h, w


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random dihedral transform of the last two axes: rot90 by k·90° and a flip.

    Non-square images only get 0°/180° rotations so their shape is kept. Always draws
    two integers from `rng`, so the random stream does not depend on the image.

    Args:
        image: array `(..., H, W)`.
        rng: numpy random generator.

    Returns:
        The transformed array (a copy).

    Examples:
        >>> import numpy as np
        >>> augment(np.zeros((8, 8)), np.random.default_rng(0)).shape
        (8, 8)
    """
    k, flip = int(rng.integers(4)), int(rng.integers(2))
    if image.shape[-1] != image.shape[-2]:
        k = 2 * (k % 2)
    image = np.rot90(image, k, axes=(-2, -1))
    if flip:
        image = image[..., :, ::-1]
    return np.ascontiguousarray(image)


class PhantomSource:
    """Draws target maps in `[0, 1]` from the synthetic phantom generators.

    Args:
        mix: phantom mix (name → weight, a name, or a list of names); see
            `keras_cvdm.data.phantoms.normalize_mix`.
        default_mix: mix used when `mix` is `None`.
    """

    def __init__(self, mix=None, default_mix: Mapping[str, float] | None = None):
        self.mix = _phantoms.normalize_mix(mix, default_mix or _phantoms.QPI_DEFAULT_MIX)

    def draw(self, rng: np.random.Generator, shape: tuple[int, int], sample_index: int):
        """One `(H, W)` float64 map in `[0, 1]`."""
        del sample_index
        img, _ = _phantoms.random_phantom(shape, rng, self.mix)
        return img.astype(np.float64)

    def __len__(self) -> int:
        return 0


class SimulatedDataset(keras.utils.PyDataset):
    """Base class: a seeded, index-addressable stream of simulated `(x, y)` batches.

    Subclasses implement `_simulate(targets, rng) -> (x, y)` for a batch of target maps.

    Args:
        source: where target maps come from (`PhantomSource` or an image folder source).
        batch_size: samples per batch.
        image_size: side length or `(H, W)` of every sample.
        num_batches: batches per epoch (`len(dataset)`).
        seed: non-negative integer; `None` draws one (kept in `self.seed`).
        augment: random flips and 90° rotations of the targets.
        resample_each_epoch: fresh samples every epoch (see the module docstring).
        workers, use_multiprocessing, max_queue_size: `keras.utils.PyDataset` options.
    """

    def __init__(
        self,
        source,
        batch_size: int = 16,
        image_size: int | Sequence[int] = 64,
        num_batches: int = 100,
        seed: int | None = 0,
        augment: bool = True,
        resample_each_epoch: bool = False,
        workers: int = 1,
        use_multiprocessing: bool = False,
        max_queue_size: int = 10,
    ):
        super().__init__(
            workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size
        )
        if batch_size < 1 or num_batches < 1:
            raise ValueError(
                f"`batch_size` and `num_batches` must be >= 1, got {batch_size}, {num_batches}."
            )
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2**63))
        if seed < 0:
            raise ValueError(f"`seed` must be a non-negative integer, got {seed}.")
        self.source = source
        self.batch_size = int(batch_size)
        self.image_shape = _image_shape(image_size)
        self._num_batches = int(num_batches)
        self.seed = int(seed)
        self.augment = bool(augment)
        self.resample_each_epoch = bool(resample_each_epoch)
        self.epoch = 0

    def __len__(self) -> int:
        return self._num_batches

    def on_epoch_end(self) -> None:
        """Advance the epoch key when `resample_each_epoch` is set."""
        if self.resample_each_epoch:
            self.epoch += 1

    def batch_rng(self, index: int) -> np.random.Generator:
        """The random generator that fully determines batch `index`."""
        epoch_key = self.epoch if self.resample_each_epoch else 0
        return np.random.default_rng([self.seed, epoch_key, int(index)])

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"Batch index {index} out of range for {len(self)} batches.")
        rng = self.batch_rng(index)
        targets = []
        for j in range(self.batch_size):
            target = self.source.draw(rng, self.image_shape, index * self.batch_size + j)
            if self.augment:
                target = augment(target, rng)
            targets.append(target)
        return self._simulate(np.stack(targets), rng)

    def _simulate(self, targets: np.ndarray, rng: np.random.Generator):
        raise NotImplementedError


class QPIDataset(SimulatedDataset):
    """Two-shot QPI batches: defocused intensity pairs → phase (see `qpi_dataset`)."""

    def __init__(
        self,
        source=None,
        *,
        noise_std: float | Sequence[float] = (0.0, 0.2),
        wavelength: float = qpi.PAPER_WAVELENGTH,
        pixel_size: float = qpi.PAPER_PIXEL_SIZE,
        defocus: float = qpi.PAPER_DEFOCUS,
        normalization: QPINormalization | None = None,
        **kwargs,
    ):
        super().__init__(source if source is not None else PhantomSource(), **kwargs)
        self.noise_std = _range(noise_std, "noise_std")
        if self.noise_std[0] < 0:
            raise ValueError(f"`noise_std` must be >= 0, got {noise_std}.")
        self.wavelength = float(wavelength)
        self.pixel_size = float(pixel_size)
        self.defocus = float(defocus)
        self.normalization = normalization or QPINormalization()

    def _simulate(self, targets, rng):
        norm = self.normalization
        phase = norm.phase_min + targets * (norm.phase_max - norm.phase_min)
        i_minus, i_plus = simulate_qpi_pair(
            phase,
            rng.uniform(*self.noise_std, size=len(phase)),
            rng,
            self.wavelength,
            self.pixel_size,
            self.defocus,
        )
        x = norm.pair_to_model(i_minus, i_plus)
        y = norm.normalize_phase(phase)[..., None]
        return x, y


class SRDataset(SimulatedDataset):
    """Fluorescence super-resolution batches (see `sr_dataset`)."""

    def __init__(
        self,
        source=None,
        *,
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
        if source is None:
            source = PhantomSource(None, _phantoms.SR_DEFAULT_MIX)
        super().__init__(source, **kwargs)
        self.factor = int(factor)
        h, w = self.image_shape
        if self.factor < 1 or h % self.factor or w % self.factor:
            raise ValueError(
                f"`image_size` {self.image_shape} must be divisible by `factor` {factor}."
            )
        if isinstance(psf, str):
            self.psf = microscopy.make_psf(psf, wavelength, na, pixel_size)
            target = (
                None
                if target_resolution_gain is None
                else microscopy.make_psf(psf, wavelength / target_resolution_gain, na, pixel_size)
            )
        else:
            self.psf = np.asarray(psf, dtype=np.float32)
            target = None
            if target_resolution_gain is not None:
                r = np.arange(self.psf.shape[0]) - self.psf.shape[0] // 2
                sigma = np.sqrt(np.sum(self.psf * r[:, None] ** 2) / np.sum(self.psf))
                target = microscopy.gaussian_psf(max(sigma / target_resolution_gain, 0.3))
        # A PSF wider than the image is cropped to it (and renormalised): Airy rings beyond
        # the window carry little energy and would only wrap around.
        self.psf = _fit_kernel(self.psf, self.image_shape)
        target = None if target is None else _fit_kernel(target, self.image_shape)
        self.target_psf = target
        self.photons = _range(photons, "photons")
        self.read_noise_std = _range(read_noise_std, "read_noise_std")
        self.background = _range(background, "background")
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


def simulate_qpi_pair(
    phase: np.ndarray,
    noise_std: float | np.ndarray,
    rng: np.random.Generator | int | None = None,
    wavelength: float = qpi.PAPER_WAVELENGTH,
    pixel_size: float = qpi.PAPER_PIXEL_SIZE,
    defocus: float = qpi.PAPER_DEFOCUS,
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy two-shot QPI measurement of a batch of pure phase objects.

    Each image gets independent zero-mean Gaussian noise with standard deviation
    `noise_std · Ī`, `Ī` the sample's mean intensity over both images (the reference
    implementation trains with std drawn up to 0.2; unlike it, the noise here has zero
    mean, so it does not also brighten the images).

    Args:
        phase: phases in radians, `(N, H, W)`.
        noise_std: relative noise level, a scalar or one per sample.
        rng: numpy generator or seed.
        wavelength: wavelength in µm.
        pixel_size: pixel size in µm.
        defocus: defocus distance in µm.

    Returns:
        `(i_minus, i_plus)`, float32 `(N, H, W)` each.

    Examples:
        >>> import numpy as np
        >>> i_m, i_p = simulate_qpi_pair(np.zeros((2, 16, 16)), 0.1, rng=0)
        >>> round(float(np.std(i_m)), 1)
        0.1
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    phase = np.asarray(phase, dtype=np.float64)
    i_minus, i_plus = qpi.defocus_pair(phase, wavelength, pixel_size, defocus)
    i_minus, i_plus = i_minus.astype(np.float64), i_plus.astype(np.float64)
    mean = 0.5 * (i_minus.mean(axis=(-2, -1)) + i_plus.mean(axis=(-2, -1)))
    std = (np.broadcast_to(np.asarray(noise_std, np.float64), mean.shape) * mean)[..., None, None]
    i_minus = i_minus + std * rng.standard_normal(i_minus.shape)
    i_plus = i_plus + std * rng.standard_normal(i_plus.shape)
    return i_minus.astype(np.float32), i_plus.astype(np.float32)


def qpi_dataset(
    batch_size: int = 16,
    image_size: int | Sequence[int] = 64,
    num_batches: int = 100,
    seed: int | None = 0,
    noise_std: float | Sequence[float] = (0.0, 0.2),
    mix: Mapping[str, float] | str | Sequence[str] | None = None,
    *,
    wavelength: float = qpi.PAPER_WAVELENGTH,
    pixel_size: float = qpi.PAPER_PIXEL_SIZE,
    defocus: float = qpi.PAPER_DEFOCUS,
    normalization: QPINormalization | None = None,
    augment: bool = True,
    resample_each_epoch: bool = False,
    workers: int = 1,
    use_multiprocessing: bool = False,
    max_queue_size: int = 10,
) -> QPIDataset:
    """Simulated two-shot QPI training data: phantom phase → noisy defocus pair.

    For each sample: a phantom in `[0, 1]` is drawn from `mix`, flipped/rotated,
    mapped to a phase in `[phase_min, phase_max]` (default `[0, 3.5]` rad, the
    reference convention), imaged at `∓defocus` (`physics.defocus_pair`), and both
    images get Gaussian noise of std `s · Ī` with `s ~ U(noise_std)` drawn per sample.

    Args:
        batch_size: samples per batch.
        image_size: side length or `(H, W)`.
        num_batches: batches per epoch.
        seed: non-negative integer that, with the batch index, fixes each batch.
        noise_std: relative intensity noise: a fixed value or a `(low, high)` range.
        mix: phantom mix (default `phantoms.QPI_DEFAULT_MIX`, a broad mix).
        wavelength: wavelength in µm (paper: 0.521).
        pixel_size: pixel size in µm (paper: 0.21).
        defocus: defocus distance in µm (paper: 1).
        normalization: `QPINormalization` (default phase `[0, 3.5]` rad ↦ `[-1, 1]`).
        augment: random flips and 90° rotations.
        resample_each_epoch: new samples every epoch (the epoch joins the seed).
        workers: `PyDataset` workers.
        use_multiprocessing: use processes instead of threads.
        max_queue_size: `PyDataset` queue size.

    Returns:
        A `QPIDataset` yielding `x` `(B, H, W, 2)` and `y` `(B, H, W, 1)`, float32.

    Examples:
        >>> ds = qpi_dataset(batch_size=2, image_size=32, num_batches=3, seed=1)
        >>> x, y = ds[0]
        >>> x.shape, y.shape
        ((2, 32, 32, 2), (2, 32, 32, 1))
    """
    return QPIDataset(
        PhantomSource(mix, _phantoms.QPI_DEFAULT_MIX),
        noise_std=noise_std,
        wavelength=wavelength,
        pixel_size=pixel_size,
        defocus=defocus,
        normalization=normalization,
        batch_size=batch_size,
        image_size=image_size,
        num_batches=num_batches,
        seed=seed,
        augment=augment,
        resample_each_epoch=resample_each_epoch,
        workers=workers,
        use_multiprocessing=use_multiprocessing,
        max_queue_size=max_queue_size,
    )


def sr_dataset(
    batch_size: int = 16,
    image_size: int | Sequence[int] = 64,
    num_batches: int = 100,
    seed: int | None = 0,
    factor: int = 2,
    mix: Mapping[str, float] | str | Sequence[str] | None = None,
    *,
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
    augment: bool = True,
    resample_each_epoch: bool = False,
    workers: int = 1,
    use_multiprocessing: bool = False,
    max_queue_size: int = 10,
) -> SRDataset:
    """Simulated fluorescence super-resolution data (BioSR-like widefield → 2× finer).

    For each sample: a phantom fluorophore density in `[0, 1]` (default
    `phantoms.SR_DEFAULT_MIX`: filaments, puncta, rings, …) plus a uniform background
    (fraction drawn from `background`) is blurred by the widefield PSF on the fine grid,
    binned by `factor`, and given Poisson–Gaussian noise (peak photons drawn
    log-uniformly from `photons`, read noise from `read_noise_std`); `x` is that image
    interpolated back onto the fine grid (`upsample_method`), so `x` and `y` share the
    grid. `y` is the density seen with `target_resolution_gain`× better resolution (a
    SIM-like target: the same PSF kind at `wavelength / gain`), or the density itself
    if `None`. Both are percentile-normalised per image (`SRNormalization`). A PSF wider
    than the image (the default Airy pattern spans 89 px) is centre-cropped to the image
    and renormalised.

    Args:
        batch_size: samples per batch.
        image_size: side length or `(H, W)` of the fine grid (divisible by `factor`).
        num_batches: batches per epoch.
        seed: non-negative integer that, with the batch index, fixes each batch.
        factor: down-sampling factor (default 2).
        mix: phantom mix.
        psf: `"airy"`, `"gaussian"`, or a PSF array on the fine grid (sum 1).
        wavelength: emission wavelength in µm.
        na: numerical aperture.
        pixel_size: fine-grid pixel size in µm.
        photons: expected photo-electrons of a unit-density pixel, fixed or `(low, high)`.
        read_noise_std: read noise (electrons), fixed or `(low, high)`.
        background: uniform background (fraction of unit density), fixed or range.
        target_resolution_gain: resolution gain of the target over the input, or `None`.
        upsample_method: `"nearest"`, `"linear"` or `"cubic"`.
        normalization: `SRNormalization`.
        augment: random flips and 90° rotations.
        resample_each_epoch: new samples every epoch.
        workers: `PyDataset` workers.
        use_multiprocessing: use processes instead of threads.
        max_queue_size: `PyDataset` queue size.

    Returns:
        An `SRDataset` yielding `x` and `y`, both `(B, H, W, 1)` float32.

    Examples:
        >>> ds = sr_dataset(batch_size=2, image_size=32, num_batches=1, psf="gaussian")
        >>> [a.shape for a in ds[0]]
        [(2, 32, 32, 1), (2, 32, 32, 1)]
    """
    return SRDataset(
        PhantomSource(mix, _phantoms.SR_DEFAULT_MIX),
        factor=factor,
        psf=psf,
        wavelength=wavelength,
        na=na,
        pixel_size=pixel_size,
        photons=photons,
        read_noise_std=read_noise_std,
        background=background,
        target_resolution_gain=target_resolution_gain,
        upsample_method=upsample_method,
        normalization=normalization,
        batch_size=batch_size,
        image_size=image_size,
        num_batches=num_batches,
        seed=seed,
        augment=augment,
        resample_each_epoch=resample_each_epoch,
        workers=workers,
        use_multiprocessing=use_multiprocessing,
        max_queue_size=max_queue_size,
    )


def _stratified_kinds(num_images: int, mix: Mapping[str, float], seed: int) -> list[str]:
    """Exactly proportional kinds (largest remainder), in a seeded random order."""
    names = list(mix)
    quotas = np.array([mix[n] * num_images for n in names])
    counts = np.floor(quotas).astype(int)
    for i in np.argsort(-(quotas - counts), kind="stable")[: num_images - counts.sum()]:
        counts[i] += 1
    kinds = [n for n, c in zip(names, counts, strict=True) for _ in range(c)]
    order = np.random.default_rng([seed, 2**31]).permutation(num_images)
    return [kinds[i] for i in order]


def qpi_test_set(
    num_images: int = 64,
    image_size: int | Sequence[int] = 128,
    noise_std: float = 0.0,
    seed: int = QPI_TEST_SEED,
    mix: Mapping[str, float] | str | Sequence[str] | None = None,
    *,
    wavelength: float = qpi.PAPER_WAVELENGTH,
    pixel_size: float = qpi.PAPER_PIXEL_SIZE,
    defocus: float = qpi.PAPER_DEFOCUS,
    phase_max: float = qpi.PAPER_PHASE_MAX,
    return_kinds: bool = False,
):
    """The fixed synthetic QPI evaluation set, as raw arrays (no normalisation).

    Phantom kinds are allotted in exact proportion to `mix` (default
    `phantoms.QPI_DEFAULT_MIX`). Image `i`'s phantom depends only on `(seed, i)` and its
    noise only on `(seed, i)` and a separate stream, so every noise level sees the same
    phase maps (errors at different noise levels are directly comparable). Phases span
    `[0, phase_max]` rad. Keep `seed` away from training seeds (default 10 000).

    Args:
        num_images: number of test images.
        image_size: side length or `(H, W)` (default 128).
        noise_std: relative intensity noise std (fraction of the mean intensity).
        seed: test-set seed.
        mix: phantom mix.
        wavelength: wavelength in µm.
        pixel_size: pixel size in µm.
        defocus: defocus distance in µm.
        phase_max: phase of a phantom value 1, in radians.
        return_kinds: also return the list of phantom kinds.

    Returns:
        `(i_minus, i_plus, phase)`, float32 `(N, H, W)` each (plus `kinds` if asked).

    Examples:
        >>> i_m, i_p, phase = qpi_test_set(4, 32, noise_std=0.05)
        >>> i_m.shape, float(phase.min()) >= 0.0
        ((4, 32, 32), True)
    """
    probs = _phantoms.normalize_mix(mix, _phantoms.QPI_DEFAULT_MIX)
    kinds = _stratified_kinds(int(num_images), probs, seed)
    shape = _image_shape(image_size)
    phase = np.stack(
        [
            _phantoms.PHANTOMS[kind](shape, np.random.default_rng([seed, i, 0])) * phase_max
            for i, kind in enumerate(kinds)
        ]
    ).astype(np.float64)
    i_minus, i_plus = qpi.defocus_pair(phase, wavelength, pixel_size, defocus)
    if noise_std > 0:
        noisy_m, noisy_p = [], []
        for i in range(len(kinds)):
            rng = np.random.default_rng([seed, i, 1])
            mean = 0.5 * (i_minus[i].mean(dtype=np.float64) + i_plus[i].mean(dtype=np.float64))
            noisy_m.append(i_minus[i] + noise_std * mean * rng.standard_normal(shape))
            noisy_p.append(i_plus[i] + noise_std * mean * rng.standard_normal(shape))
        i_minus, i_plus = np.stack(noisy_m), np.stack(noisy_p)
    out = (i_minus.astype(np.float32), i_plus.astype(np.float32), phase.astype(np.float32))
    return (*out, kinds) if return_kinds else out
