"""The training data of a run: simulated by the task's simulator, or read from stored pairs.

- `QPI_FORWARD_MODEL`, `SR_FORWARD_MODEL`: the simulators' settings for a new model;
- `_simulation_forward_model`, `_simulated_data`: the simulated dataset and preview batch;
- `task_normalizer`: raw pairs to model units, as `qpi.reconstruct` / `sr.reconstruct`;
- `PairedTrainingData`: seeded random crops of stored `(x, y)` pairs.
"""

from __future__ import annotations

import copy

import numpy as np

from keras_cvdm.data import qpi_data, sr_data
from keras_cvdm.data.augment import augment as _augment
from keras_cvdm.data.base import SeededDataset
from keras_cvdm.data.normalization import QPINormalization
from keras_cvdm.data.paired import paired_dataset
from keras_cvdm.physics import microscopy
from keras_cvdm.physics.propagation import (
    PAPER_DEFOCUS,
    PAPER_PHASE_MAX,
    PAPER_PIXEL_SIZE,
    PAPER_WAVELENGTH,
)

#: The simulated QPI data of a new model: the paper's optics (the `qpi` preset's).
QPI_FORWARD_MODEL = {
    "wavelength_um": PAPER_WAVELENGTH,
    "pixel_size_um": PAPER_PIXEL_SIZE,
    "defocus_um": PAPER_DEFOCUS,
    "phase_range_rad": [0.0, PAPER_PHASE_MAX],
    "noise_std_range": [0.0, 0.2],
    "noise": "Gaussian, std = s · mean intensity, s ~ U(0, 0.2)",
}
#: The simulated SR data of a new model (the `sr-microscopy` preset's).
SR_FORWARD_MODEL = {
    "factor": 2, "psf": "airy", "wavelength_um": 0.488, "na": 1.3, "pixel_size_um": 0.0313,
    "photons": [20.0, 1000.0], "read_noise_std": [0.0, 2.0], "background": [0.0, 0.1],
    "target_resolution_gain": 2.0, "upsample_method": "cubic",
}


def _simulation_forward_model(task, inherited):
    """The simulator's settings: a preset's recorded optics over the defaults."""
    defaults = QPI_FORWARD_MODEL if task == "qpi" else SR_FORWARD_MODEL
    inherited = {k: v for k, v in (inherited or {}).items() if k != "source"}
    return {**copy.deepcopy(defaults), **copy.deepcopy(inherited)}


def _simulated_data(task, forward, norm, batch_size, image_size, steps_per_epoch, seed):
    """The training dataset, a fixed held-out preview batch and a description."""
    if task == "qpi":
        optics = {"noise_std": tuple(forward["noise_std_range"]),
                  "wavelength": forward["wavelength_um"],
                  "pixel_size": forward["pixel_size_um"], "defocus": forward["defocus_um"],
                  "normalization": norm}
        if norm.optics_channel and forward.get("optics_range"):  # a physics preset's range
            optics["optics_range"] = forward["optics_range"]
        make, test_seed, function = qpi_data.qpi_dataset, qpi_data.QPI_TEST_SEED, "qpi_dataset"
    else:
        factor = int(forward["factor"])
        if image_size % factor:
            raise ValueError(
                f"`image_size` {image_size} must be a multiple of the SR factor {factor}."
            )
        optics = {"factor": factor, "psf": forward["psf"],
                  "wavelength": forward["wavelength_um"], "na": forward["na"],
                  "pixel_size": forward["pixel_size_um"], "photons": tuple(forward["photons"]),
                  "read_noise_std": tuple(forward["read_noise_std"]),
                  "background": tuple(forward["background"]),
                  "target_resolution_gain": forward["target_resolution_gain"],
                  "upsample_method": forward["upsample_method"], "normalization": norm}
        make, test_seed, function = sr_data.sr_dataset, sr_data.SR_TEST_SEED, "sr_dataset"
    dataset = make(batch_size=batch_size, image_size=image_size, num_batches=steps_per_epoch,
                   seed=seed, resample_each_epoch=True, **optics)
    preview = make(batch_size=2, image_size=image_size, num_batches=1, seed=test_seed,
                   augment=False, **optics)[0]
    description = {"function": f"keras_cvdm.data.{function}", "mix": "default",
                   "augment": True, "resample_each_epoch": True, "preview_seed": test_seed}
    return dataset, preview, description


def task_normalizer(norm):
    """The per-sample `(x, y) -> (x, y)` map from raw pairs to model units.

    It is what `qpi.reconstruct` and `sr.reconstruct` apply to their input at inference:
    QPI `normalize_intensities(x)` and `normalize_phase(y)`; SR `normalize_input(x)` and
    `normalize_target(y)` (`x` already on `y`'s grid).

    Args:
        norm (QPINormalization | SRNormalization): the task's normalisation.

    Returns:
        Callable: `fn(x, y) -> (x, y)` on channels-last float arrays of one sample.

    Examples:
        >>> import numpy as np
        >>> fn = task_normalizer(QPINormalization())
        >>> x, y = fn(np.ones((4, 4, 2)), np.full((4, 4, 1), 3.5))
        >>> float(x.max()), float(y.min())
        (0.0, 1.0)
    """
    if isinstance(norm, QPINormalization):
        def normalize(x, y):
            return norm.normalize_intensities(x), norm.normalize_phase(y)
    else:
        def normalize(x, y):
            return norm.normalize_input(x)[0], norm.normalize_target(y)[0]
    return normalize


class PairedTrainingData(SeededDataset):
    """Random crops of stored `(x, y)` pairs, normalised, `steps_per_epoch` batches an epoch.

    The pairs are read by `keras_cvdm.data.paired_dataset` (a folder with `x/` and `y/`,
    or an `.npz` with arrays `x` and `y`). Batch `i` of epoch `e` depends only on
    `(seed, e, i)`: the pairs are visited in seeded random order (each pair once before
    any repeats), each cropped at a random window of `image_size` on `y`'s grid (the
    matching window of a coarser `x`, then cubic up-sampling), flipped/rotated at random
    and normalised by `task_normalizer(norm)`.

    Args:
        source (str | os.PathLike): the paired data.
        task (str): `"qpi"` (x: 2 channels; y: phase, 1 channel, same grid) or `"sr"`
            (x and y: 1 channel; y an integer factor finer or on the same grid).
        norm (QPINormalization | SRNormalization): the task's normalisation.
        batch_size (int): examples per batch.
        image_size (int): crop side on `y`'s grid.
        num_batches (int): batches per epoch.
        seed (int): seed of the order, crops and flips.

    Examples:
        >>> import numpy as np, os, tempfile
        >>> from keras_cvdm.data import SRNormalization
        >>> path = os.path.join(tempfile.mkdtemp(), "pairs.npz")
        >>> rng = np.random.default_rng(0)
        >>> np.savez(path, x=rng.random((3, 8, 8)), y=rng.random((3, 16, 16)))
        >>> ds = PairedTrainingData(path, "sr", SRNormalization(), 2, 8, num_batches=4)
        >>> len(ds), ds.factor, ds[3][0].shape
        (4, 2, (2, 8, 8, 1))
    """

    def __init__(self, source, task, norm, batch_size, image_size, num_batches, seed=0):
        super().__init__(seed, resample_each_epoch=True)
        self.pairs = paired_dataset(source, batch_size=1, shuffle=False).pairs
        self.task = task
        self.normalize = task_normalizer(norm)
        self.batch_size = int(batch_size)
        self.image_size = int(image_size)
        self._num_batches = int(num_batches)
        x, y = self._pair(0)
        self.factor = self._factor(0, x, y)
        if task == "sr" and self.image_size % self.factor:
            raise ValueError(
                f"`image_size` {self.image_size} must be a multiple of the data's SR factor "
                f"{self.factor} (y is {self.factor}x finer than x)."
            )

    def __len__(self) -> int:
        return self._num_batches

    def _pair(self, i):
        """Pair `i`, channels last, checked against the task."""
        x, y = self.pairs.get(int(i))
        want_x = 2 if self.task == "qpi" else 1
        # A stack of pages (C, H, W) read from a multi-page TIFF: channels to the end.
        if x.ndim == 3 and x.shape[0] == want_x and x.shape[-1] != want_x:
            x = np.moveaxis(x, 0, -1)
        if y.ndim == 3 and y.shape[0] == 1 and y.shape[-1] != 1:
            y = np.moveaxis(y, 0, -1)
        if x.shape[-1] != want_x or y.shape[-1] != 1:
            what = ("x: the two intensities I(-dz), I(+dz) as 2 channels; y: the phase, "
                    "1 channel" if self.task == "qpi"
                    else "x: one low-resolution image (1 channel); y: its target (1 channel)")
            raise ValueError(
                f"Pair {i} of the {self.task.upper()} data has x with {x.shape[-1]} and y with "
                f"{y.shape[-1]} channel(s) (shapes {x.shape}, {y.shape}); {self.task} needs "
                f"{what}. Check --task or the data."
            )
        return x, y

    def _factor(self, i, x, y):
        (hx, wx), (hy, wy) = x.shape[:2], y.shape[:2]
        factor = hy // hx if hx else 0
        if factor < 1 or (hy, wy) != (factor * hx, factor * wx):
            raise ValueError(
                f"Pair {i}: x is {hx}x{wx} but y is {hy}x{wy}; y must be on x's grid or an "
                "integer factor finer in both directions."
            )
        if self.task == "qpi" and factor != 1:
            raise ValueError(
                f"Pair {i}: QPI intensities x ({hx}x{wx}) and phase y ({hy}x{wy}) must have "
                "the same size."
            )
        if hasattr(self, "factor") and factor != self.factor:
            raise ValueError(
                f"Pair {i}: y is {factor}x finer than x, but pair 0's is {self.factor}x; all "
                "pairs need one factor."
            )
        if min(hy, wy) < self.image_size:
            raise ValueError(
                f"Pair {i} is {hy}x{wy} (on y's grid), smaller than image_size "
                f"{self.image_size}; lower --image-size to at most {min(hy, wy)} or remove "
                "the small images."
            )
        return factor

    def _crop(self, i, rng, centre=False):
        x, y = self._pair(i)
        f = self._factor(i, x, y)
        size, (hy, wy) = self.image_size, y.shape[:2]
        if centre:
            r, c = (hy - size) // (2 * f), (wy - size) // (2 * f)
        else:
            r = int(rng.integers(0, (hy - size) // f + 1))
            c = int(rng.integers(0, (wy - size) // f + 1))
        y = y[r * f:r * f + size, c * f:c * f + size]
        x = x[r:r + size // f, c:c + size // f]
        if f > 1:
            x = np.moveaxis(microscopy.upsample(np.moveaxis(x, -1, 0), f), 0, -1)
        return x, y

    def _sample(self, i, rng, centre=False):
        x, y = self._crop(i, rng, centre)
        if not centre:
            x, y = _augment((x, y), rng, axes=(0, 1))
        x, y = self.normalize(x, y)
        return np.asarray(x, np.float32), np.asarray(y, np.float32)

    def sample_ids(self, index: int) -> list[int]:
        """The pairs of batch `index` of the current epoch (each pair once per cycle)."""
        n = len(self.pairs)
        start = (self.epoch_key * len(self) + int(index)) * self.batch_size
        orders = {}
        ids = []
        for position in range(start, start + self.batch_size):
            cycle, k = divmod(position, n)
            if cycle not in orders:
                orders[cycle] = np.random.default_rng([self.seed, cycle, 5]).permutation(n)
            ids.append(int(orders[cycle][k]))
        return ids

    def __getitem__(self, index):
        index = self._check_index(index)
        rng = np.random.default_rng([self.seed, self.epoch_key, index, 7])
        samples = [self._sample(i, rng) for i in self.sample_ids(index)]
        return np.stack([s[0] for s in samples]), np.stack([s[1] for s in samples])

    def fixed_batch(self, n: int = 2):
        """Centre crops of the first `n` pairs, not augmented (the preview batch)."""
        samples = [self._sample(i, None, centre=True) for i in range(min(n, len(self.pairs)))]
        return np.stack([s[0] for s in samples]), np.stack([s[1] for s in samples])
