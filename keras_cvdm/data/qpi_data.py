"""Two-shot QPI data: phase maps → noisy defocused intensity pairs.

- `QPIDataset` / `qpi_dataset`: simulated training batches, `x` `(B, H, W, 2)` (the
  normalised `I(-dz)`, `I(+dz)`) and `y` `(B, H, W, 1)` (the normalised phase).
- `qpi_test_set`: the fixed, raw (un-normalised) evaluation set shared by the
  benchmarks (TIE baseline, model evaluation).
- `simulate_qpi_pair`: the noisy measurement both are built on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from keras_cvdm import imaging
from keras_cvdm.data import phantoms
from keras_cvdm.data.normalization import OPTICS_KEYS, QPINormalization
from keras_cvdm.data.simulated import SimulatedDataset, value_range
from keras_cvdm.physics.propagation import (
    PAPER_DEFOCUS,
    PAPER_PHASE_MAX,
    PAPER_PIXEL_SIZE,
    PAPER_WAVELENGTH,
    defocus_pair,
)

QPI_TEST_SEED = 10_000
"""Seed reserved for the synthetic QPI test set; training data should use other seeds."""


def simulate_qpi_pair(
    phase: np.ndarray,
    noise_std: float | np.ndarray,
    rng: np.random.Generator | int | None = None,
    wavelength: float = PAPER_WAVELENGTH,
    pixel_size: float = PAPER_PIXEL_SIZE,
    defocus: float = PAPER_DEFOCUS,
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy two-shot QPI measurement of a batch of pure phase objects.

    Each image gets independent zero-mean Gaussian noise with standard deviation
    `noise_std · Ī`, `Ī` the sample's mean intensity over both images (the reference
    implementation trains with std drawn up to 0.2; unlike it, the noise here has zero
    mean, so it does not also brighten the images).

    Args:
        phase (np.ndarray): phases in radians, `(N, H, W)`.
        noise_std (float | np.ndarray): relative noise level, a scalar or one per sample.
        rng (np.random.Generator | int | None): numpy generator or seed.
        wavelength (float): wavelength in µm.
        pixel_size (float): pixel size in µm.
        defocus (float): defocus distance in µm.

    Returns:
        tuple[np.ndarray, np.ndarray]: `(i_minus, i_plus)`, float32 `(N, H, W)` each.

    Examples:
        >>> import numpy as np
        >>> i_m, i_p = simulate_qpi_pair(np.zeros((2, 16, 16)), 0.1, rng=0)
        >>> round(float(np.std(i_m)), 1)
        0.1
    """
    rng = imaging.rng(rng)
    phase = np.asarray(phase, dtype=np.float64)
    i_minus, i_plus = defocus_pair(phase, wavelength, pixel_size, defocus)
    i_minus, i_plus = i_minus.astype(np.float64), i_plus.astype(np.float64)
    mean = 0.5 * (i_minus.mean(axis=(-2, -1)) + i_plus.mean(axis=(-2, -1)))
    std = (np.broadcast_to(np.asarray(noise_std, np.float64), mean.shape) * mean)[..., None, None]
    i_minus = i_minus + std * rng.standard_normal(i_minus.shape)
    i_plus = i_plus + std * rng.standard_normal(i_plus.shape)
    return i_minus.astype(np.float32), i_plus.astype(np.float32)


class QPIDataset(SimulatedDataset):
    """Simulated two-shot QPI batches: target map → phase → noisy defocus pair.

    For each sample: a target map in `[0, 1]` is drawn from the source, flipped/rotated,
    mapped to a phase in `[phase_min, phase_max]` of `normalization` (default
    `[0, 3.5]` rad, the reference convention), imaged at `∓defocus`
    (`physics.defocus_pair`), and both images get Gaussian noise of std `s · Ī` with
    `s ~ U(noise_std)` drawn per sample (`simulate_qpi_pair`).

    Args:
        *args: the leading `SimulatedDataset` arguments, `source` (default: phantoms of
            `mix`, by default `phantoms.QPI_DEFAULT_MIX`), `batch_size`, `image_size`,
            `num_batches`, `seed`.
        noise_std (float | Sequence[float]): relative intensity noise, a fixed value or a
            `(low, high)` range.
        wavelength (float): wavelength in µm (paper: 0.521).
        pixel_size (float): pixel size in µm (paper: 0.21).
        defocus (float): defocus distance in µm (paper: 1).
        normalization (QPINormalization | None): phase and intensity scaling (default
            phase `[0, 3.5]` rad ↦ `[-1, 1]`). With `optics_channel=True`, `x` has a
            third channel, the optics code of each sample.
        optics_range (Mapping[str, Sequence[float]] | None): draw each sample's optics
            uniformly from `{"wavelength_um": (low, high), "pixel_size_um": ...,
            "defocus_um": ...}` instead of the fixed `wavelength`, `pixel_size`,
            `defocus` (keys left out keep the fixed value); needs a normalisation with
            `optics_channel=True`, since the model must be told each sample's optics.
        **kwargs: the other `SimulatedDataset` keywords (`mix`, `augment`,
            `resample_each_epoch`, `workers`, `use_multiprocessing`, `max_queue_size`).

    Examples:
        >>> ds = QPIDataset(None, 2, 16, 1, noise_std=0.05, mix="cells")
        >>> [a.shape for a in ds[0]]
        [(2, 16, 16, 2), (2, 16, 16, 1)]
    """

    default_mix = phantoms.QPI_DEFAULT_MIX

    def __init__(
        self,
        *args,
        noise_std: float | Sequence[float] = (0.0, 0.2),
        wavelength: float = PAPER_WAVELENGTH,
        pixel_size: float = PAPER_PIXEL_SIZE,
        defocus: float = PAPER_DEFOCUS,
        normalization: QPINormalization | None = None,
        optics_range: Mapping[str, Sequence[float]] | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.noise_std = value_range(noise_std, "noise_std")
        if self.noise_std[0] < 0:
            raise ValueError(f"`noise_std` must be >= 0, got {noise_std}.")
        self.wavelength = float(wavelength)
        self.pixel_size = float(pixel_size)
        self.defocus = float(defocus)
        self.normalization = normalization or QPINormalization()
        fixed = dict(zip(OPTICS_KEYS, (self.wavelength, self.pixel_size, self.defocus),
                         strict=True))
        unknown = sorted(set(optics_range or {}) - set(OPTICS_KEYS))
        if unknown:
            raise ValueError(f"Unknown optics_range keys {unknown}; use {OPTICS_KEYS}.")
        if optics_range and not self.normalization.optics_channel:
            raise ValueError(
                "optics_range draws each sample's optics, which the model must be told: "
                "pass normalization=QPINormalization(optics_channel=True)."
            )
        self.optics_range = {
            key: value_range((optics_range or {}).get(key, fixed[key]), key)
            for key in OPTICS_KEYS
        }
        for key, (low, _) in self.optics_range.items():
            if not low > 0:
                raise ValueError(f"optics_range[{key!r}] must be positive, got {low}.")

    def _simulate(self, targets, rng):
        norm = self.normalization
        phase = norm.phase_min + targets * (norm.phase_max - norm.phase_min)
        noise = rng.uniform(*self.noise_std, size=len(phase))
        if all(low == high for low, high in self.optics_range.values()):
            optics = {key: low for key, (low, _) in self.optics_range.items()}
            i_minus, i_plus = simulate_qpi_pair(
                phase, noise, rng, *(optics[k] for k in OPTICS_KEYS)
            )
        else:
            optics = {key: rng.uniform(*span, size=len(phase))
                      for key, span in self.optics_range.items()}
            pairs = [
                simulate_qpi_pair(p[None], n, rng, *(optics[k][i] for k in OPTICS_KEYS))
                for i, (p, n) in enumerate(zip(phase, noise, strict=True))
            ]
            i_minus, i_plus = (np.concatenate(im) for im in zip(*pairs, strict=True))
        x = norm.pair_to_model(i_minus, i_plus, optics)
        y = norm.normalize_phase(phase)[..., None]
        return x, y


def qpi_dataset(
    batch_size: int = 16,
    image_size: int | Sequence[int] = 64,
    num_batches: int = 100,
    seed: int | None = 0,
    noise_std: float | Sequence[float] = (0.0, 0.2),
    mix: Mapping[str, float] | str | Sequence[str] | None = None,
    **kwargs,
) -> QPIDataset:
    """Simulated two-shot QPI training data from phantoms (see `QPIDataset`).

    Args:
        batch_size (int): samples per batch.
        image_size (int | Sequence[int]): side length or `(H, W)`.
        num_batches (int): batches per epoch.
        seed (int | None): non-negative integer that, with the batch index, fixes each
            batch.
        noise_std (float | Sequence[float]): relative intensity noise, a fixed value or a
            `(low, high)` range.
        mix (Mapping[str, float] | str | Sequence[str] | None): phantom mix (default
            `phantoms.QPI_DEFAULT_MIX`, a broad mix).
        **kwargs: any other `QPIDataset` keyword: `wavelength`, `pixel_size`, `defocus`,
            `normalization`, `augment`, `resample_each_epoch`, `workers`,
            `use_multiprocessing`, `max_queue_size`.

    Returns:
        QPIDataset: batches `x` `(B, H, W, 2)` and `y` `(B, H, W, 1)`, float32.

    Examples:
        >>> ds = qpi_dataset(batch_size=2, image_size=32, num_batches=3, seed=1)
        >>> x, y = ds[0]
        >>> x.shape, y.shape
        ((2, 32, 32, 2), (2, 32, 32, 1))
    """
    return QPIDataset(
        None, batch_size, image_size, num_batches, seed, mix=mix, noise_std=noise_std, **kwargs
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
    wavelength: float = PAPER_WAVELENGTH,
    pixel_size: float = PAPER_PIXEL_SIZE,
    defocus: float = PAPER_DEFOCUS,
    phase_max: float = PAPER_PHASE_MAX,
    return_kinds: bool = False,
):
    """The fixed synthetic QPI evaluation set, as raw arrays (no normalisation).

    Phantom kinds are allotted in exact proportion to `mix` (default
    `phantoms.QPI_DEFAULT_MIX`). Image `i`'s phantom depends only on `(seed, i)` and its
    noise only on `(seed, i)` and a separate stream, so every noise level sees the same
    phase maps (errors at different noise levels are directly comparable). Phases span
    `[0, phase_max]` rad. Keep `seed` away from training seeds (default 10 000).

    Args:
        num_images (int): number of test images.
        image_size (int | Sequence[int]): side length or `(H, W)` (default 128).
        noise_std (float): relative intensity noise std (fraction of the mean intensity).
        seed (int): test-set seed.
        mix (Mapping[str, float] | str | Sequence[str] | None): phantom mix.
        wavelength (float): wavelength in µm.
        pixel_size (float): pixel size in µm.
        defocus (float): defocus distance in µm.
        phase_max (float): phase of a phantom value 1, in radians.
        return_kinds (bool): also return the list of phantom kinds.

    Returns:
        tuple: `(i_minus, i_plus, phase)`, float32 `(N, H, W)` each, plus the list of
        phantom kinds if `return_kinds`.

    Examples:
        >>> i_m, i_p, phase = qpi_test_set(4, 32, noise_std=0.05)
        >>> i_m.shape, float(phase.min()) >= 0.0
        ((4, 32, 32), True)
    """
    from keras_cvdm.validation import check_int, check_number

    noise_std = check_number(noise_std, "noise_std", minimum=0.0)
    probs = phantoms.normalize_mix(mix, phantoms.QPI_DEFAULT_MIX)
    kinds = _stratified_kinds(check_int(num_images, "num_images", minimum=1), probs, seed)
    shape = imaging.image_shape(image_size)
    phase = np.stack(
        [
            phantoms.PHANTOMS[kind](shape, np.random.default_rng([seed, i, 0])) * phase_max
            for i, kind in enumerate(kinds)
        ]
    ).astype(np.float64)
    optics = (wavelength, pixel_size, defocus)
    if noise_std > 0:
        pairs = [
            simulate_qpi_pair(p[None], noise_std, np.random.default_rng([seed, i, 1]), *optics)
            for i, p in enumerate(phase)
        ]
        i_minus, i_plus = (np.concatenate(images) for images in zip(*pairs, strict=True))
    else:
        i_minus, i_plus = defocus_pair(phase, *optics)
    out = (i_minus.astype(np.float32), i_plus.astype(np.float32), phase.astype(np.float32))
    return (*out, kinds) if return_kinds else out
