"""Any image folder as simulation targets (e.g. ImageNet → phase maps).

`from_image_folder(path, task="qpi")` turns every image of a folder into targets for the
simulators of `keras_cvdm.data.qpi_data` (the reference implementation's "ImageNet
phase" task: grayscale image → phase in `[0, 3.5]` rad → defocus pair) or, with
`task="sr"`, of `keras_cvdm.data.sr_data` (image → fluorophore density → widefield
degradation). Measured or pre-simulated `(x, y)` pairs are served by
`keras_cvdm.data.paired`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from keras_cvdm import imaging
from keras_cvdm import io as _io
from keras_cvdm.data.qpi_data import QPIDataset
from keras_cvdm.data.sr_data import SRDataset

_TASKS = {"qpi": QPIDataset, "sr": SRDataset}


def _random_crop(image: np.ndarray, shape: tuple[int, int], rng: np.random.Generator):
    """Random `shape` crop; images smaller than `shape` are first enlarged (bilinear)."""
    h, w = image.shape
    if h < shape[0] or w < shape[1]:
        zoom = max(shape[0] / h, shape[1] / w)
        enlarged = (max(shape[0], math.ceil(h * zoom)), max(shape[1], math.ceil(w * zoom)))
        image = imaging.resize(image, enlarged, "linear")
        h, w = image.shape
    top = int(rng.integers(0, h - shape[0] + 1))
    left = int(rng.integers(0, w - shape[1] + 1))
    return image[top : top + shape[0], left : left + shape[1]]


class FolderSource:
    """Targets from image files: grayscale, random crop, min-max to `[0, 1]`.

    Args:
        files (Sequence[str | os.PathLike]): image paths.
        seed (int): fixes the (shuffled) order in which files are visited.

    Examples:
        >>> import numpy as np, tempfile, os
        >>> from keras_cvdm.io import write_image
        >>> path = write_image(os.path.join(tempfile.mkdtemp(), "a.png"), np.eye(20))
        >>> FolderSource([path]).draw(np.random.default_rng(0), (8, 8), 0).shape
        (8, 8)
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
    recursive: bool = True,
    **kwargs,
) -> QPIDataset | SRDataset:
    """Use every image of a folder as a simulation target (e.g. ImageNet → phase maps).

    Each sample reads one image (files visited in a seeded shuffled order, cycling), takes
    its luminance, crops a random `image_size` window (enlarging small images), min-max
    normalises it to `[0, 1]` and feeds it to the task's simulator:

    - `task="qpi"`: phase = `[0, 1]` map × 3.5 rad, then the noisy defocus pair
      (`QPIDataset`: keywords such as `noise_std`, `wavelength`, `pixel_size`,
      `defocus`, `normalization`);
    - `task="sr"`: the map is a fluorophore density, degraded by `SRDataset` (keywords
      `factor`, `psf`, `photons`, `read_noise_std`, …).

    Args:
        path (str | os.PathLike): folder with PNG / JPEG / BMP / TIFF images (sub-folders
            too if `recursive`).
        task (str): `"qpi"` or `"sr"`.
        batch_size (int): samples per batch.
        image_size (int | Sequence[int]): crop side length or `(H, W)`.
        num_batches (int | None): batches per epoch (default: enough to visit every
            image once).
        seed (int): non-negative integer fixing file order, crops and noise.
        recursive (bool): search sub-folders.
        **kwargs: passed to `QPIDataset` or `SRDataset`: the simulation keywords above
            and `augment`, `resample_each_epoch`, `workers`, `use_multiprocessing`,
            `max_queue_size`.

    Returns:
        QPIDataset | SRDataset: the task's dataset, yielding normalised `(x, y)` batches.

    Examples:
        >>> import numpy as np, tempfile, os
        >>> from keras_cvdm.io import write_image
        >>> folder = tempfile.mkdtemp()
        >>> _ = write_image(os.path.join(folder, "a.png"), np.random.rand(40, 40))
        >>> ds = from_image_folder(folder, batch_size=2, image_size=32)
        >>> ds[0][0].shape
        (2, 32, 32, 2)
    """
    if task not in _TASKS:
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
    return _TASKS[task](source, batch_size, image_size, num_batches, seed, **kwargs)


__all__ = ["FolderSource", "from_image_folder"]
