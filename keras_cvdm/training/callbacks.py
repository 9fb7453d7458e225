"""The Keras callbacks of a training run, beyond Keras's own.

- `EpochData`: keys the data and the model's noise to the epoch, and times the epochs;
- `PreviewCallback` / `preview_grid`: a PNG of the posterior on a fixed batch;
- `_check_tensorboard`: whether Keras's TensorBoard callback can write its logs.
"""

from __future__ import annotations

import os
import time

import keras
import numpy as np

from keras_cvdm import io as _io


class EpochData(keras.callbacks.Callback):
    """Keys the data and the model's noise to the epoch Keras runs, and times the epochs.

    At each epoch's start it sets `dataset.epoch` to Keras's epoch index, so a run resumed
    by `BackupAndRestore` at epoch `e` sees the batches an uninterrupted run sees at `e`
    (and not those of the dataset's own `on_epoch_end` count, which restarts at 0 in a new
    process). It also sets the model's `seed_generator` (the diffusion times and noise of
    training, which a weights backup does not hold) to a state given by `seed` and the
    epoch. Fit with `shuffle=False` (the datasets draw their own random order), so the
    batch order is fixed too. At the epoch's end it adds `seconds` to the logs (a
    `history.csv` column): place it before the callbacks that write the logs.

    Args:
        dataset (SeededDataset | None): the training dataset; None for data that is not
            keyed by epoch (then only the noise is keyed and the epochs timed).
        seed (int): seeds the model's noise of each epoch.

    Examples:
        >>> from keras_cvdm.data import qpi_dataset
        >>> ds = qpi_dataset(2, 16, 1, resample_each_epoch=True)
        >>> EpochData(ds).on_epoch_begin(3)
        >>> ds.epoch_key
        3
    """

    def __init__(self, dataset, seed: int = 0):
        super().__init__()
        self.dataset = dataset
        self.seed = int(seed)
        self._start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        if self.dataset is not None:
            self.dataset.epoch = int(epoch)
        generator = getattr(self._model_or_none(), "seed_generator", None)
        if generator is not None:
            key = np.random.default_rng([self.seed, int(epoch), 11]).integers(2**31 - 1)
            state = generator.state
            state.assign(keras.ops.convert_to_tensor(np.array([key, 0]), dtype=state.dtype))
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["seconds"] = round(time.perf_counter() - self._start, 3)

    def _model_or_none(self):
        try:
            return self.model
        except AttributeError:
            return None


class PreviewCallback(keras.callbacks.Callback):
    """Writes a PNG of the model's posterior on a fixed batch every `every` epochs.

    Rows are the examples; columns are the input channels, the target, the posterior mean
    and the posterior standard deviation, each panel scaled to `[0, 1]` on its own. The
    posterior comes from `model.predict_uncertainty` (DDIM, fixed seed), so previews of
    different epochs are comparable. Files are `folder/epoch_0003.png` (after 3 epochs).

    Args:
        x (np.ndarray): model-space conditions `(N, H, W, C)`.
        y (np.ndarray): model-space targets `(N, H, W, 1)`.
        folder (str | os.PathLike): where the PNGs go.
        every (int): epochs between previews (the last epoch always gets one).
        num_samples (int): posterior samples per example.
        num_steps (int): DDIM steps.
        seed (int): sampling seed.

    Examples:
        >>> import numpy as np, tempfile
        >>> from keras_cvdm.training import build_model, default_architecture
        >>> model = build_model(default_architecture("sr", (8, 16)), seed=0)
        >>> x, y = np.zeros((2, 16, 16, 1), "float32"), np.ones((2, 16, 16, 1), "float32")
        >>> folder = tempfile.mkdtemp()
        >>> preview = PreviewCallback(x, y, folder, num_steps=2)
        >>> preview.set_model(model)
        >>> preview.write(0).name
        'epoch_0001.png'
    """

    def __init__(self, x, y, folder, every=1, num_samples=4, num_steps=10, seed=0):
        super().__init__()
        self.x = np.asarray(x, np.float32)
        self.y = np.asarray(y, np.float32)
        self.folder = os.fspath(folder)
        self.every = max(1, int(every))
        self.num_samples = int(num_samples)
        self.num_steps = int(num_steps)
        self.seed = int(seed)

    def on_epoch_end(self, epoch, logs=None):
        last = self.params.get("epochs") if self.params else None
        if (epoch + 1) % self.every == 0 or epoch + 1 == last:
            self.write(epoch)

    def write(self, epoch):
        """Sample the posterior and write the preview of (0-based) `epoch`; its path."""
        mean, std = self.model.predict_uncertainty(
            self.x, num_samples=self.num_samples, num_steps=self.num_steps, sampler="ddim",
            seed=self.seed, verbose=0,
        )
        grid = preview_grid(self.x, self.y, mean, std)
        path = os.path.join(self.folder, f"epoch_{epoch + 1:04d}.png")
        return _io.write_image(path, grid, overwrite=True, dtype="uint8")


def preview_grid(x, y, mean, std, gap: int = 2) -> np.ndarray:
    """Panels of `x`'s channels, `y`, `mean` and `std` in a grid, each scaled to `[0, 1]`.

    Args:
        x (np.ndarray): `(N, H, W, C)`.
        y, mean, std (np.ndarray): `(N, H, W, 1)` (or `(N, H, W)`).
        gap (int): white pixels between panels.

    Returns:
        np.ndarray: float32 `(N·H + (N−1)·gap, (C+3)·W + (C+2)·gap)` in `[0, 1]`.

    Examples:
        >>> import numpy as np
        >>> preview_grid(np.zeros((2, 8, 8, 2)), *[np.ones((2, 8, 8, 1))] * 3).shape
        (18, 48)
    """
    x = np.asarray(x, np.float64)
    columns = [x[..., c] for c in range(x.shape[-1])]
    columns += [np.asarray(a, np.float64).reshape(x.shape[:3]) for a in (y, mean, std)]
    n, h, w = x.shape[:3]
    grid = np.ones((n * h + (n - 1) * gap, len(columns) * w + (len(columns) - 1) * gap))
    for j, column in enumerate(columns):
        for i in range(n):
            panel = np.nan_to_num(column[i])
            lo, hi = panel.min(), panel.max()
            panel = (panel - lo) / (hi - lo) if hi > lo else np.zeros_like(panel)
            grid[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = panel
    return grid.astype(np.float32)


def _check_tensorboard():
    """Keras's TensorBoard callback writes with `tf.summary`: TensorFlow and TensorBoard."""
    import importlib.util

    missing = [name for name in ("tensorflow", "tensorboard")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(
            f"tensorboard=True (--tensorboard) needs the package(s) {', '.join(missing)} "
            f"(Keras writes TensorBoard logs with tf.summary, whatever the backend); "
            f"pip install {' '.join(missing)}, or drop the option."
        )
