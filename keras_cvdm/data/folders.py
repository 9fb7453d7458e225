"""Datasets from files: any image folder as simulation targets, and paired `(x, y)` data.

- `from_image_folder(path, task="qpi")` turns every image of a folder into targets for
  the simulators of `keras_cvdm.data.datasets` (the reference implementation's
  "ImageNet phase" task: grayscale image → phase in `[0, 3.5]` rad → defocus pair;
  `task="sr"`: image → fluorophore density → widefield degradation).
- `paired_dataset(...)` serves measured or pre-simulated pairs from arrays, `.npz` /
  `.npy` files, or a folder with `x/` and `y/` sub-folders of same-named images.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np

from keras_cvdm import io as _io
from keras_cvdm.data.datasets import QPIDataset, SRDataset
from keras_cvdm.physics import microscopy


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Linear interpolation matrix (n_out, n_in), pixel centres aligned, edges clamped."""
    pos = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    base = np.floor(pos).astype(int)
    t = pos - base
    mat = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(mat, (rows, np.clip(base, 0, n_in - 1)), 1 - t)
    np.add.at(mat, (rows, np.clip(base + 1, 0, n_in - 1)), t)
    return mat


def _resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D image."""
    return (
        _resize_matrix(image.shape[0], shape[0])
        @ image
        @ _resize_matrix(image.shape[1], shape[1]).T
    )


def _random_crop(image: np.ndarray, shape: tuple[int, int], rng: np.random.Generator):
    """Random `shape` crop; images smaller than `shape` are first enlarged (bilinear)."""
    h, w = image.shape
    if h < shape[0] or w < shape[1]:
        zoom = max(shape[0] / h, shape[1] / w)
        image = _resize(
            image, (max(shape[0], math.ceil(h * zoom)), max(shape[1], math.ceil(w * zoom)))
        )
        h, w = image.shape
    top = int(rng.integers(0, h - shape[0] + 1))
    left = int(rng.integers(0, w - shape[1] + 1))
    return image[top : top + shape[0], left : left + shape[1]]


class FolderSource:
    """Targets from image files: grayscale, random crop, min-max to `[0, 1]`.

    Args:
        files: image paths.
        seed: fixes the (shuffled) order in which files are visited.
    """

    def __init__(self, files: Sequence[str | os.PathLike], seed: int = 0):
        self.files = [str(f) for f in files]
        self.order = np.random.default_rng([seed, 1]).permutation(len(self.files))

    def __len__(self) -> int:
        return len(self.files)

    def draw(self, rng: np.random.Generator, shape: tuple[int, int], sample_index: int):
        """The `(H, W)` float64 target for the `sample_index`-th sample, in `[0, 1]`."""
        path = self.files[self.order[sample_index % len(self.files)]]
        try:
            image = _io.read_image(path, as_gray=True)
        except (OSError, ValueError) as err:
            raise ValueError(f"Could not read image {path}: {err}") from err
        crop = _random_crop(np.asarray(image, dtype=np.float64), shape, rng)
        lo, hi = crop.min(), crop.max()
        return (crop - lo) / (hi - lo) if hi > lo else np.zeros(shape)


def from_image_folder(
    path: str | os.PathLike,
    task: str = "qpi",
    batch_size: int = 16,
    image_size: int | Sequence[int] = 64,
    num_batches: int | None = None,
    seed: int = 0,
    *,
    augment: bool = True,
    recursive: bool = True,
    resample_each_epoch: bool = False,
    workers: int = 1,
    use_multiprocessing: bool = False,
    max_queue_size: int = 10,
    **simulation_kwargs,
) -> QPIDataset | SRDataset:
    """Use every image of a folder as a simulation target (e.g. ImageNet → phase maps).

    Each sample reads one image (files visited in a seeded shuffled order, cycling), takes
    its luminance, crops a random `image_size` window (enlarging small images), min-max
    normalises it to `[0, 1]` and feeds it to the task's simulator:

    - `task="qpi"`: phase = `[0, 1]` map × 3.5 rad, then the noisy defocus pair
      (`QPIDataset`; keyword arguments such as `noise_std`, `wavelength`, `pixel_size`,
      `defocus`, `normalization` are passed on);
    - `task="sr"`: the map is a fluorophore density, degraded by `SRDataset` (keywords
      `factor`, `psf`, `photons`, `read_noise_std`, …).

    Args:
        path: folder with PNG / JPEG / BMP / TIFF images (sub-folders too if `recursive`).
        task: `"qpi"` or `"sr"`.
        batch_size: samples per batch.
        image_size: crop side length or `(H, W)`.
        num_batches: batches per epoch (default: enough to visit every image once).
        seed: non-negative integer fixing file order, crops and noise.
        augment: random flips and 90° rotations.
        recursive: search sub-folders.
        resample_each_epoch: new crops and noise every epoch.
        workers: `PyDataset` workers.
        use_multiprocessing: use processes instead of threads.
        max_queue_size: `PyDataset` queue size.
        **simulation_kwargs: passed to `QPIDataset` or `SRDataset`.

    Returns:
        A `QPIDataset` or `SRDataset` yielding normalised `(x, y)` batches.

    Examples:
        >>> import numpy as np, tempfile, os
        >>> from keras_cvdm.io import write_image
        >>> folder = tempfile.mkdtemp()
        >>> _ = write_image(os.path.join(folder, "a.png"), np.random.rand(40, 40))
        >>> ds = from_image_folder(folder, batch_size=2, image_size=32)
        >>> ds[0][0].shape
        (2, 32, 32, 2)
    """
    if task not in ("qpi", "sr"):
        raise ValueError(f"`task` must be 'qpi' or 'sr', got {task!r}.")
    folder = Path(path)
    if not folder.exists():
        raise FileNotFoundError(
            f"Image folder {folder} does not exist; pass the folder that holds your images."
        )
    files = _io.list_images(folder, recursive=recursive)
    if not files:
        raise ValueError(
            f"No images found in {folder} (looked for {', '.join(_io.IMAGE_EXTENSIONS)}"
            f"{', including sub-folders' if recursive else ''}); add images or pass "
            + ("recursive=True." if not recursive else "the right folder.")
        )
    if num_batches is None:
        num_batches = math.ceil(len(files) / batch_size)
    source = FolderSource(files, seed)
    common = dict(
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
    if task == "qpi":
        return QPIDataset(source, **simulation_kwargs, **common)
    return SRDataset(source, **simulation_kwargs, **common)


# --------------------------------------------------------------------------- paired data


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


class PairedDataset(keras.utils.PyDataset):
    """Batches of stored `(x, y)` pairs (see `paired_dataset`)."""

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
        resample_each_epoch: bool = False,
        workers: int = 1,
        use_multiprocessing: bool = False,
        max_queue_size: int = 10,
    ):
        super().__init__(
            workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size
        )
        if normalize not in (None, "minmax") and not callable(normalize):
            raise ValueError(
                f"`normalize` must be None, 'minmax' or a callable, got {normalize!r}."
            )
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
        self.pairs = pairs
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.augment = bool(augment)
        self.normalize = normalize
        self.upsample = upsample
        self.drop_remainder = bool(drop_remainder)
        self.resample_each_epoch = bool(resample_each_epoch)
        self.epoch = 0
        if len(self) == 0:
            raise ValueError(
                f"{len(pairs)} pairs make no full batch of {batch_size}; lower `batch_size` "
                "or set drop_remainder=False."
            )

    def __len__(self) -> int:
        n = len(self.pairs)
        return n // self.batch_size if self.drop_remainder else math.ceil(n / self.batch_size)

    def on_epoch_end(self) -> None:
        """Advance the epoch key when `resample_each_epoch` is set (new order, new flips)."""
        if self.resample_each_epoch:
            self.epoch += 1

    def _order(self) -> np.ndarray:
        n = len(self.pairs)
        if not self.shuffle:
            return np.arange(n)
        epoch_key = self.epoch if self.resample_each_epoch else 0
        return np.random.default_rng([self.seed, epoch_key]).permutation(n)

    def _sample(self, i: int, rng: np.random.Generator):
        x, y = self.pairs.get(int(i))
        if x.shape[:2] != y.shape[:2]:
            (hx, wx), (hy, wy) = x.shape[:2], y.shape[:2]
            factor = hy // hx if hx else 0
            if self.upsample and factor > 1 and hy == factor * hx and wy == factor * wx:
                x = np.moveaxis(
                    microscopy.upsample(np.moveaxis(x, -1, 0), factor, self.upsample), 0, -1
                )
            else:
                raise ValueError(
                    f"Pair {i}: x is {x.shape[:2]} but y is {y.shape[:2]}; the model needs both "
                    "on one grid (an integer ratio is interpolated when `upsample` is set)."
                )
        if self.augment:
            k, flip = int(rng.integers(4)), int(rng.integers(2))
            if x.shape[0] != x.shape[1]:
                k = 2 * (k % 2)
            x, y = np.rot90(x, k), np.rot90(y, k)
            if flip:
                x, y = x[:, ::-1], y[:, ::-1]
        if self.normalize == "minmax":
            x, y = _minmax(x), _minmax(y)
        elif callable(self.normalize):
            x, y = self.normalize(x, y)
        return np.asarray(x, np.float32), np.asarray(y, np.float32)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"Batch index {index} out of range for {len(self)} batches.")
        epoch_key = self.epoch if self.resample_each_epoch else 0
        rng = np.random.default_rng([self.seed, epoch_key, index, 7])
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


def paired_dataset(
    x,
    y=None,
    batch_size: int = 16,
    *,
    shuffle: bool = True,
    seed: int = 0,
    augment: bool = False,
    normalize: str | Callable | None = None,
    upsample: str | None = "cubic",
    drop_remainder: bool = False,
    resample_each_epoch: bool = False,
    workers: int = 1,
    use_multiprocessing: bool = False,
    max_queue_size: int = 10,
) -> PairedDataset:
    """A `PyDataset` over stored `(x, y)` pairs: arrays, `.npz`/`.npy`, or image folders.

    Accepted sources:

    - arrays: `paired_dataset(x_array, y_array)`, `(N, H, W)` or `(N, H, W, C)`;
    - a `.npz` file with arrays `x` and `y`: `paired_dataset("pairs.npz")`;
    - two `.npy` files: `paired_dataset("x.npy", "y.npy")` (memory-mapped);
    - a folder with `x.npy` and `y.npy`, or with sub-folders `x/` and `y/` holding images
      with the same file names (extensions may differ): `paired_dataset("data/")`;
    - two image folders: `paired_dataset("inputs/", "targets/")`.

    Images are read with `keras_cvdm.io.read_image` (uint8/uint16 scaled to `[0, 1]`).
    If `x` is smaller than `y` by an integer factor (a low-resolution input), it is
    interpolated onto `y`'s grid with `upsample`.

    Args:
        x: input array or path (see above).
        y: target array or path, or `None` when `x` names a file/folder holding both.
        batch_size: samples per batch (the last batch may be smaller).
        shuffle: visit samples in a seeded random order.
        seed: fixes order and augmentation.
        augment: the same random flip/rotation for `x` and `y`.
        normalize: `None` (data used as stored), `"minmax"` (each sample and channel to
            `[-1, 1]`, the reference implementation's convention), or a callable
            `(x, y) -> (x, y)` applied per sample (channels-last arrays).
        upsample: `"nearest"`, `"linear"`, `"cubic"` or `None` (then sizes must match).
        drop_remainder: drop the last, incomplete batch.
        resample_each_epoch: new order and augmentation every epoch.
        workers: `PyDataset` workers.
        use_multiprocessing: use processes instead of threads.
        max_queue_size: `PyDataset` queue size.

    Returns:
        A `PairedDataset` yielding float32 channels-last `(x, y)` batches.

    Examples:
        >>> import numpy as np
        >>> ds = paired_dataset(np.zeros((5, 8, 8)), np.ones((5, 8, 8)), batch_size=2)
        >>> len(ds), ds[2][0].shape
        (3, (1, 8, 8, 1))
    """
    return PairedDataset(
        _load_pairs(x, y),
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        augment=augment,
        normalize=normalize,
        upsample=upsample,
        drop_remainder=drop_remainder,
        resample_each_epoch=resample_each_epoch,
        workers=workers,
        use_multiprocessing=use_multiprocessing,
        max_queue_size=max_queue_size,
    )


__all__ = ["FolderSource", "PairedDataset", "from_image_folder", "paired_dataset"]
