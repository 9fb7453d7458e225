"""Stored `(x, y)` pairs as a `PyDataset`: arrays, `.npz` / `.npy` files, or image folders.

Measured data, or data simulated elsewhere, served in seeded (optionally shuffled and
augmented) batches; see `paired_dataset` for the accepted sources.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from keras_cvdm import io as _io
from keras_cvdm.data.augment import augment as _augment
from keras_cvdm.data.base import SeededDataset
from keras_cvdm.physics.microscopy import upsample as _upsample


class _ArrayPairs:
    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def get(self, i: int):
        return _channels_last(self.x[i]), _channels_last(self.y[i])


class _FilePairs:
    def __init__(self, x_files: list[str], y_files: list[str]):
        self.x_files, self.y_files = x_files, y_files

    def __len__(self) -> int:
        return len(self.x_files)

    def get(self, i: int):
        return (
            _channels_last(_io.read_image(self.x_files[i])),
            _channels_last(_io.read_image(self.y_files[i])),
        )


def _channels_last(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a[..., None] if a.ndim == 2 else a


def _check_arrays(x: np.ndarray, y: np.ndarray) -> None:
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}; pairs must match one to one.")
    for name, a in (("x", x), ("y", y)):
        if a.ndim not in (3, 4):
            raise ValueError(f"`{name}` must be (N, H, W) or (N, H, W, C), got shape {a.shape}.")
    if len(x) == 0:
        raise ValueError("The paired data set is empty (0 samples).")


def _load_npz(path: Path):
    with np.load(path) as data:
        keys = list(data.keys())
        if "x" not in keys or "y" not in keys:
            raise ValueError(
                f"{path} holds arrays {keys}; expected 'x' and 'y' "
                "(save with np.savez(path, x=inputs, y=targets))."
            )
        return data["x"], data["y"]


def _match_folders(x_dir: Path, y_dir: Path):
    x_files = {p.relative_to(x_dir).with_suffix("").as_posix(): p for p in _io.list_images(x_dir)}
    y_files = {p.relative_to(y_dir).with_suffix("").as_posix(): p for p in _io.list_images(y_dir)}
    if not x_files or not y_files:
        empty = x_dir if not x_files else y_dir
        raise ValueError(f"No images found in {empty}; it must hold the paired images.")
    only_x = sorted(set(x_files) - set(y_files))
    only_y = sorted(set(y_files) - set(x_files))
    if only_x or only_y:
        raise ValueError(
            f"Mismatched pairs between {x_dir} and {y_dir}: "
            f"{len(only_x)} name(s) only in x/ (e.g. {only_x[:5]}), "
            f"{len(only_y)} only in y/ (e.g. {only_y[:5]}). Each input needs a target with "
            "the same file name (extension may differ)."
        )
    names = sorted(x_files)
    return _FilePairs([str(x_files[n]) for n in names], [str(y_files[n]) for n in names])


def _load_pairs(x, y):
    if not isinstance(x, str | os.PathLike):
        if y is None:
            raise ValueError("Pass targets `y` with input arrays `x`.")
        x, y = np.asarray(x), np.asarray(y)
        _check_arrays(x, y)
        return _ArrayPairs(x, y)
    path = Path(x)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; check the path to the paired data.")
    if path.is_file():
        if path.suffix == ".npz":
            arrays = _load_npz(path)
        elif path.suffix == ".npy":
            if y is None or Path(y).suffix != ".npy":
                raise ValueError(f"With x={path} (.npy) also pass y as the targets' .npy file.")
            if not Path(y).is_file():
                raise FileNotFoundError(f"Targets file {y} does not exist.")
            arrays = np.load(path, mmap_mode="r"), np.load(y, mmap_mode="r")
        else:
            raise ValueError(
                f"Unsupported paired-data file {path}; use .npz (arrays 'x', 'y'), two .npy "
                "files, or a folder with x/ and y/ sub-folders."
            )
        _check_arrays(*arrays)
        return _ArrayPairs(*arrays)
    if y is not None:
        if not Path(y).is_dir():
            raise NotADirectoryError(f"With x={path} (a folder), y must be a folder too: {y}.")
        return _match_folders(path, Path(y))
    if (path / "x").is_dir() and (path / "y").is_dir():
        return _match_folders(path / "x", path / "y")
    if (path / "x.npy").is_file() and (path / "y.npy").is_file():
        arrays = np.load(path / "x.npy", mmap_mode="r"), np.load(path / "y.npy", mmap_mode="r")
        _check_arrays(*arrays)
        return _ArrayPairs(*arrays)
    raise ValueError(
        f"{path} is not a paired-data folder: expected sub-folders x/ and y/ with same-named "
        "images, or files x.npy and y.npy."
    )


def _minmax(a: np.ndarray) -> np.ndarray:
    lo = a.min(axis=(0, 1), keepdims=True)
    hi = a.max(axis=(0, 1), keepdims=True)
    return 2.0 * (a - lo) / np.maximum(hi - lo, 1e-12) - 1.0


class PairedDataset(SeededDataset):
    """Batches of stored `(x, y)` pairs, channels last (see `paired_dataset`).

    If `x` is smaller than `y` by an integer factor (a low-resolution input), it is
    interpolated onto `y`'s grid with `upsample`.

    Args:
        pairs (object): the loaded pairs (`len(pairs)` and `pairs.get(i) -> (x, y)`), as
            built by `paired_dataset`.
        batch_size (int): samples per batch (the last batch may be smaller).
        shuffle (bool): visit samples in a seeded random order.
        seed (int): fixes order and augmentation.
        augment (bool): the same random flip/rotation for `x` and `y`.
        normalize (str | Callable | None): `None` (data used as stored), `"minmax"`
            (each sample and channel to `[-1, 1]`, the reference implementation's
            convention), or a callable `(x, y) -> (x, y)` applied per sample
            (channels-last arrays).
        upsample (str | None): `"nearest"`, `"linear"`, `"cubic"` or `None` (then sizes
            must match).
        drop_remainder (bool): drop the last, incomplete batch.
        **kwargs: `resample_each_epoch` (new order and augmentation every epoch) and the
            `keras.utils.PyDataset` options `workers`, `use_multiprocessing`,
            `max_queue_size`.

    Examples:
        >>> import numpy as np
        >>> ds = PairedDataset(_ArrayPairs(np.zeros((3, 4, 4)), np.ones((3, 4, 4))), 2)
        >>> len(ds), ds[1][1].shape
        (2, (1, 4, 4, 1))
    """

    def __init__(
        self,
        pairs,
        batch_size: int = 16,
        shuffle: bool = True,
        seed: int = 0,
        augment: bool = False,
        normalize: str | Callable | None = None,
        upsample: str | None = "cubic",
        drop_remainder: bool = False,
        **kwargs,
    ):
        super().__init__(seed, **kwargs)
        if normalize not in (None, "minmax") and not callable(normalize):
            raise ValueError(
                f"`normalize` must be None, 'minmax' or a callable, got {normalize!r}."
            )
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
        self.pairs = pairs
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.augment = bool(augment)
        self.normalize = normalize
        self.upsample = upsample
        self.drop_remainder = bool(drop_remainder)
        if len(self) == 0:
            raise ValueError(
                f"{len(pairs)} pairs make no full batch of {batch_size}; lower `batch_size` "
                "or set drop_remainder=False."
            )

    def __len__(self) -> int:
        n = len(self.pairs)
        return n // self.batch_size if self.drop_remainder else math.ceil(n / self.batch_size)

    def _order(self) -> np.ndarray:
        n = len(self.pairs)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, self.epoch_key]).permutation(n)

    def _sample(self, i: int, rng: np.random.Generator):
        x, y = self.pairs.get(int(i))
        if x.shape[:2] != y.shape[:2]:
            (hx, wx), (hy, wy) = x.shape[:2], y.shape[:2]
            factor = hy // hx if hx else 0
            if self.upsample and factor > 1 and hy == factor * hx and wy == factor * wx:
                x = np.moveaxis(_upsample(np.moveaxis(x, -1, 0), factor, self.upsample), 0, -1)
            else:
                raise ValueError(
                    f"Pair {i}: x is {x.shape[:2]} but y is {y.shape[:2]}; the model needs both "
                    "on one grid (an integer ratio is interpolated when `upsample` is set)."
                )
        if self.augment:
            x, y = _augment((x, y), rng, axes=(0, 1))
        if self.normalize == "minmax":
            x, y = _minmax(x), _minmax(y)
        elif callable(self.normalize):
            x, y = self.normalize(x, y)
        return np.asarray(x, np.float32), np.asarray(y, np.float32)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        index = self._check_index(index)
        rng = np.random.default_rng([self.seed, self.epoch_key, index, 7])
        ids = self._order()[index * self.batch_size : (index + 1) * self.batch_size]
        samples = [self._sample(i, rng) for i in ids]
        try:
            x = np.stack([s[0] for s in samples])
            y = np.stack([s[1] for s in samples])
        except ValueError as err:
            raise ValueError(
                f"Samples of batch {index} differ in shape ({[s[0].shape for s in samples]}); "
                "crop or resize the images to one size, or use batch_size=1."
            ) from err
        return x, y


def paired_dataset(x, y=None, batch_size: int = 16, **kwargs) -> PairedDataset:
    """A `PyDataset` over stored `(x, y)` pairs: arrays, `.npz`/`.npy`, or image folders.

    Accepted sources:

    - arrays: `paired_dataset(x_array, y_array)`, `(N, H, W)` or `(N, H, W, C)`;
    - a `.npz` file with arrays `x` and `y`: `paired_dataset("pairs.npz")`;
    - two `.npy` files: `paired_dataset("x.npy", "y.npy")` (memory-mapped);
    - a folder with `x.npy` and `y.npy`, or with sub-folders `x/` and `y/` holding images
      with the same file names (extensions may differ): `paired_dataset("data/")`;
    - two image folders: `paired_dataset("inputs/", "targets/")`.

    Images are read with `keras_cvdm.io.read_image` (uint8/uint16 scaled to `[0, 1]`).

    Args:
        x (np.ndarray | str | os.PathLike): input array or path (see above).
        y (np.ndarray | str | os.PathLike | None): target array or path, or `None` when
            `x` names a file/folder holding both.
        batch_size (int): samples per batch (the last batch may be smaller).
        **kwargs: the other `PairedDataset` keywords: `shuffle`, `seed`, `augment`,
            `normalize`, `upsample`, `drop_remainder`, `resample_each_epoch`,
            `workers`, `use_multiprocessing`, `max_queue_size`.

    Returns:
        PairedDataset: float32 channels-last `(x, y)` batches.

    Examples:
        >>> import numpy as np
        >>> ds = paired_dataset(np.zeros((5, 8, 8)), np.ones((5, 8, 8)), batch_size=2)
        >>> len(ds), ds[2][0].shape
        (3, (1, 8, 8, 1))
    """
    return PairedDataset(_load_pairs(x, y), batch_size=batch_size, **kwargs)


__all__ = ["PairedDataset", "paired_dataset"]
