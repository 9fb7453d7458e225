"""Simulated training data: target maps from a source, turned into `(x, y)` by a simulator.

`SimulatedDataset` draws one target map per sample from its source (`PhantomSource`, or
`keras_cvdm.data.folders.FolderSource` for image files), optionally flips/rotates it
(`keras_cvdm.data.augment`), and hands the stack to the task's `_simulate` (QPI:
`keras_cvdm.data.qpi_data`, super-resolution: `keras_cvdm.data.sr_data`). Each batch is
simulated from scratch with numpy from a generator seeded by `(seed, epoch key, batch
index)` (see `keras_cvdm.data.base`).

Batches are `(x, y)`, channels-last float32, normalised with the conventions of
`keras_cvdm.data.normalization` (roughly `[-1, 1]`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from keras_cvdm.data import phantoms
from keras_cvdm.data.augment import augment as _augment
from keras_cvdm.data.base import SeededDataset
from keras_cvdm.imaging import image_shape


def value_range(value: float | Sequence[float], name: str) -> tuple[float, float]:
    """A fixed value or a `(low, high)` range, as `(low, high)`.

    Args:
        value (float | Sequence[float]): a scalar or a `(low, high)` pair.
        name (str): the argument's name, for the error message.

    Returns:
        tuple[float, float]: `(low, high)` (equal for a scalar).

    Examples:
        >>> value_range(0.1, "noise_std"), value_range((0, 2), "photons")
        ((0.1, 0.1), (0.0, 2.0))
    """
    if np.ndim(value) == 0:
        return float(value), float(value)
    low, high = (float(v) for v in value)
    if low > high:
        raise ValueError(f"`{name}` must be (low, high) with low <= high, got {value}.")
    return low, high


class PhantomSource:
    """Draws target maps in `[0, 1]` from the synthetic phantom generators.

    Args:
        mix (Mapping[str, float] | str | Sequence[str] | None): phantom mix (name →
            weight, a name, or a list of names); see `phantoms.normalize_mix`.
        default_mix (Mapping[str, float] | None): mix used when `mix` is `None`
            (default `phantoms.QPI_DEFAULT_MIX`).

    Examples:
        >>> import numpy as np
        >>> source = PhantomSource("cells")
        >>> source.draw(np.random.default_rng(0), (16, 16), 0).shape
        (16, 16)
    """

    def __init__(self, mix=None, default_mix: Mapping[str, float] | None = None):
        self.mix = phantoms.normalize_mix(mix, default_mix or phantoms.QPI_DEFAULT_MIX)

    def draw(self, rng: np.random.Generator, shape: tuple[int, int], sample_index: int):
        """One `(H, W)` float64 map in `[0, 1]` (`sample_index` is not needed here)."""
        del sample_index
        img, _ = phantoms.random_phantom(shape, rng, self.mix)
        return img.astype(np.float64)

    def __len__(self) -> int:
        return 0


class SimulatedDataset(SeededDataset):
    """A seeded, index-addressable stream of simulated `(x, y)` batches.

    Subclasses implement `_simulate(targets, rng) -> (x, y)` for a stack of target maps
    `(B, H, W)` in `[0, 1]`.

    Args:
        source (PhantomSource | FolderSource | None): where target maps come from
            (anything with `draw(rng, shape, sample_index)`); default: phantoms of `mix`.
        batch_size (int): samples per batch.
        image_size (int | Sequence[int]): side length or `(H, W)` of every sample.
        num_batches (int): batches per epoch (`len(dataset)`).
        seed (int | None): non-negative integer that, with the batch index, fixes each
            batch; `None` draws one (kept in `self.seed`).
        augment (bool): random flips and 90° rotations of the targets.
        mix (Mapping[str, float] | str | Sequence[str] | None): phantom mix when there is
            no `source` (default: the class's `default_mix`).
        **kwargs: `resample_each_epoch` and the `keras.utils.PyDataset` options
            (`workers`, `use_multiprocessing`, `max_queue_size`); see
            `keras_cvdm.data.base.SeededDataset`.

    Examples:
        >>> class Identity(SimulatedDataset):
        ...     def _simulate(self, targets, rng):
        ...         return targets[..., None], targets[..., None]
        >>> ds = Identity(batch_size=2, image_size=16, num_batches=3, mix=["rings"])
        >>> len(ds), ds[0][0].shape
        (3, (2, 16, 16, 1))
    """

    default_mix: Mapping[str, float] = phantoms.QPI_DEFAULT_MIX
    """The phantom mix used when neither `source` nor `mix` is given."""

    def __init__(
        self,
        source=None,
        batch_size: int = 16,
        image_size: int | Sequence[int] = 64,
        num_batches: int = 100,
        seed: int | None = 0,
        augment: bool = True,
        *,
        mix: Mapping[str, float] | str | Sequence[str] | None = None,
        **kwargs,
    ):
        super().__init__(seed, **kwargs)
        if batch_size < 1 or num_batches < 1:
            raise ValueError(
                f"`batch_size` and `num_batches` must be >= 1, got {batch_size}, {num_batches}."
            )
        if source is not None and mix is not None:
            raise ValueError("`mix` chooses phantom targets; pass either `source` or `mix`.")
        self.source = source if source is not None else PhantomSource(mix, self.default_mix)
        self.batch_size = int(batch_size)
        self.image_shape = image_shape(image_size)
        self._num_batches = int(num_batches)
        self.augment = bool(augment)

    def __len__(self) -> int:
        return self._num_batches

    def batch_rng(self, index: int) -> np.random.Generator:
        """The random generator that fully determines batch `index`."""
        return np.random.default_rng([self.seed, self.epoch_key, int(index)])

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        index = self._check_index(index)
        rng = self.batch_rng(index)
        targets = []
        for j in range(self.batch_size):
            target = self.source.draw(rng, self.image_shape, index * self.batch_size + j)
            targets.append(_augment(target, rng) if self.augment else target)
        return self._simulate(np.stack(targets), rng)

    def _simulate(self, targets: np.ndarray, rng: np.random.Generator):
        raise NotImplementedError
