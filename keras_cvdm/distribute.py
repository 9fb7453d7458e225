"""Training and sampling on several devices or processes, on each backend's own engine.

- JAX: `keras.distribution` (`DataParallel`; `ModelParallel` through `model_parallel`),
  one compiled program over all devices, several processes through
  `jax.distributed` (`initialize`).
- TensorFlow: `tf.distribute` (`MirroredStrategy` on one machine,
  `MultiWorkerMirroredStrategy` across processes, set up by `initialize`).
- PyTorch: Keras 3 has no distribution for this backend; these functions raise
  `NotImplementedError` naming the alternatives (a model trained on JAX or TensorFlow
  loads on torch).

Build, compile and fit the model inside the scope; `predict_samples` (and so
`qpi.reconstruct` / `sr.reconstruct`) inside it splits each call's (image, sample) pairs
over the devices and gives the same samples as one device for the same seed.

For example (README "Scaling")::

    with keras_cvdm.distribute.data_parallel():
        model = keras_cvdm.CVDM.build_default((64, 64, 2))
        model.compile(optimizer="adam")
        model.fit(x, y, batch_size=16)
"""

import keras
import numpy as np

from keras_cvdm.backend import distribution as _engine


def data_parallel(devices=None):
    """A context in which training and sampling are split over devices by batch.

    Args:
        devices: device names (JAX: e.g. `["cpu:0", "cpu:1"]` or `jax.devices()`;
            TensorFlow: e.g. `["/gpu:0", "/gpu:1"]`); default: all of this machine's
            accelerators (JAX: of every process), else the CPU.

    Returns:
        A context manager: JAX `keras.distribution.DataParallel(...).scope()`, TensorFlow
        a `tf.distribute` strategy's scope (`MultiWorkerMirroredStrategy` when
        `TF_CONFIG` names several workers, see `initialize`).

    Raises:
        NotImplementedError: on the torch backend.
    """
    return _engine.data_parallel(devices)


def num_batch_shards() -> int:
    """How many parts the active distribution splits a global batch into (1 without one).

    A global batch size must be a multiple of it.
    """
    return _engine.training_shards()


class ChannelParallel(keras.distribution.ModelParallel):
    """Model parallelism for convolutional networks: output channels split over devices.

    Every weight of rank ≥ 2 (convolution and dense kernels) whose last axis divides by
    the size of the mesh's `"model"` axis is split along that axis; the rest (biases,
    norms, the 1-channel output convolutions) is replicated. The batch is split along
    the `"batch"` axis. It needs no layout map, so it fits any denoiser.
    """

    def get_variable_layout(self, variable):
        mesh = self.device_mesh
        parts = mesh.shape[mesh.axis_names.index("model")]
        shape = tuple(variable.shape)
        if len(shape) >= 2 and shape[-1] % parts == 0:
            return keras.distribution.TensorLayout((None,) * (len(shape) - 1) + ("model",), mesh)
        return super().get_variable_layout(variable)


def model_parallel(model_devices=2, devices=None):
    """A context that splits each layer's output channels over `model_devices` devices.

    JAX only (Keras's `ModelParallel`); the remaining devices split the batch.

    Args:
        model_devices: devices per model copy (must divide the device count).
        devices: the devices to use (default: `keras.distribution.list_devices()`).

    Returns:
        The `ChannelParallel` distribution's scope.

    Raises:
        NotImplementedError: on TensorFlow and torch (Keras implements ModelParallel for
            JAX only).
        ValueError: `model_devices` does not divide the device count.
    """
    if keras.backend.backend() != "jax":
        raise NotImplementedError(
            "model_parallel needs KERAS_BACKEND=jax: Keras implements ModelParallel for "
            "JAX only. Use data_parallel() on TensorFlow."
        )
    devices = list(devices or keras.distribution.list_devices())
    if model_devices < 1 or len(devices) % model_devices:
        raise ValueError(
            f"model_devices={model_devices} must divide the {len(devices)} device(s); "
            f"choose one of {[d for d in range(1, len(devices) + 1) if len(devices) % d == 0]}."
        )
    mesh = keras.distribution.DeviceMesh(
        (len(devices) // model_devices, model_devices), ("batch", "model"), devices
    )
    layout = keras.distribution.LayoutMap(mesh)
    return _engine.scope(ChannelParallel(layout_map=layout, batch_dim_name="batch"))


def initialize(job_addresses, num_processes, process_id):
    """Join a multi-process run; call it first, in every process, before anything else.

    Args:
        job_addresses: `"host:port"` addresses, a list or one comma-separated string.
            JAX uses the first as the coordinator (one address is enough); TensorFlow
            needs one address per process, the same list everywhere (it writes
            `TF_CONFIG`).
        num_processes: how many processes take part.
        process_id: this process's index, 0 to `num_processes − 1`.

    Then use `data_parallel()` as on one machine. On JAX each process feeds its own
    rows of every global batch (`process_rows`); on TensorFlow every process passes the
    whole data and `tf.distribute` shards it.

    Raises:
        ValueError: the addresses, count or index do not fit together.
        NotImplementedError: on the torch backend.
    """
    if isinstance(job_addresses, str):
        job_addresses = [a.strip() for a in job_addresses.split(",") if a.strip()]
    job_addresses = list(job_addresses)
    if not job_addresses:
        raise ValueError("job_addresses is empty; pass 'host:port' (e.g. 127.0.0.1:12345).")
    if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
        raise ValueError(f"num_processes must be a positive integer, got {num_processes!r}.")
    if (isinstance(process_id, bool) or not isinstance(process_id, int)
            or not 0 <= process_id < num_processes):
        raise ValueError(
            f"process_id must be an integer from 0 to {num_processes - 1}, got {process_id!r}."
        )
    _engine.initialize(job_addresses, num_processes, process_id)


def process_rows(x, y, batch_size):
    """This process's part of data for `model.fit(x, y, batch_size=...)` in a multi-process run.

    Every process passes the same `x`, `y` and global `batch_size`; it gets back the rows
    it must feed and its local batch size, so that the run trains on the same global
    batches as one process would. On JAX with several processes that is the
    `process_index`-th contiguous part of every global batch; elsewhere (TensorFlow
    shards the data itself, or one process) the data come back unchanged.

    Args:
        x, y: numpy arrays with the same first dimension, a multiple of `batch_size`.
        batch_size: the global batch size, a multiple of the number of processes.

    Returns:
        `(x_local, y_local, local_batch_size)`; fit with `shuffle=False` (a shuffle would
        differ between processes).

    Examples:
        >>> x, y = np.arange(8)[:, None], np.arange(8)[:, None]
        >>> process_rows(x, y, 4)[2]  # one process: unchanged
        4
    """
    _, count = _engine.feed_share()
    if count == 1:
        return x, y, batch_size
    if len(x) % batch_size or len(x) != len(y):
        raise ValueError(
            f"In a run of {count} processes the number of examples ({len(x)}, {len(y)}) "
            "must be the same for x and y and a multiple of the batch size "
            f"({batch_size})."
        )
    own = _own_rows(batch_size)
    rows = np.concatenate(
        [np.arange(start, start + batch_size)[own] for start in range(0, len(x), batch_size)]
    )
    return x[rows], y[rows], own.stop - own.start


def _own_rows(batch_size):
    """The slice of a global batch of `batch_size` rows that this process feeds."""
    part, count = _engine.feed_share()
    if batch_size % count:
        raise ValueError(
            f"A global batch of {batch_size} cannot be split over {count} processes; use a "
            f"batch size that is a multiple of {count}."
        )
    local = batch_size // count
    return slice(part * local, (part + 1) * local)


class ProcessPart(keras.utils.PyDataset):
    """A dataset of global batches, as this process must feed it in a multi-process run.

    Item `i` is this process's contiguous rows of the wrapped dataset's batch `i` (JAX
    with several processes); elsewhere the whole batch. Epoch hooks go to the wrapped
    dataset, so its per-epoch resampling is unchanged.

    Args:
        dataset: a `keras.utils.PyDataset` yielding `(x, y)` global batches whose size is
            a multiple of the number of processes.
    """

    def __init__(self, dataset):
        super().__init__()
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        x, y = self.dataset[index][:2]
        rows = _own_rows(len(x))
        return x[rows], y[rows]

    def on_epoch_begin(self):
        self.dataset.on_epoch_begin()

    def on_epoch_end(self):
        self.dataset.on_epoch_end()
