"""The base of every dataset of the package: seeded, index-addressable `PyDataset` batches.

Batch `i` depends only on `(seed, epoch key, i)`, so the same seed gives the same batches
in any order and on any worker (threads or processes): `workers` and
`use_multiprocessing` change speed only. The epoch key is 0 unless
`resample_each_epoch=True`, in which case it counts epochs (`on_epoch_end`) and every
epoch sees fresh samples.
"""

from __future__ import annotations

import keras
import numpy as np


class SeededDataset(keras.utils.PyDataset):
    """Seed and epoch bookkeeping shared by the simulated and the stored-pair datasets.

    Subclasses define `__len__` and `__getitem__`; they read `self.seed` and
    `self.epoch_key` to seed each batch and call `self._check_index(index)`.

    Args:
        seed (int | None): non-negative integer; `None` draws one (kept in `self.seed`).
        resample_each_epoch (bool): change the epoch key every epoch (fresh samples).
        **kwargs: `keras.utils.PyDataset` options (`workers`, `use_multiprocessing`,
            `max_queue_size`).

    Examples:
        >>> class Constant(SeededDataset):
        ...     def __len__(self):
        ...         return 2
        ...     def __getitem__(self, index):
        ...         return self._check_index(index), self.epoch_key
        >>> ds = Constant(seed=3, resample_each_epoch=True)
        >>> ds.on_epoch_end()
        >>> ds[1], ds.seed
        ((1, 1), 3)
    """

    def __init__(self, seed: int | None = 0, resample_each_epoch: bool = False, **kwargs):
        super().__init__(**kwargs)
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2**63))
        if seed < 0:
            raise ValueError(f"`seed` must be a non-negative integer, got {seed}.")
        self.seed = int(seed)
        self.resample_each_epoch = bool(resample_each_epoch)
        self.epoch = 0

    @property
    def epoch_key(self) -> int:
        """The epoch number if `resample_each_epoch` is set, else 0."""
        return self.epoch if self.resample_each_epoch else 0

    def on_epoch_end(self) -> None:
        """Advance the epoch key when `resample_each_epoch` is set."""
        if self.resample_each_epoch:
            self.epoch += 1

    def _check_index(self, index: int) -> int:
        """`index` as an int, or an `IndexError` if there is no such batch."""
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"Batch index {index} out of range for {len(self)} batches.")
        return index
