"""`tf.data` adapter for the package's `PyDataset`s (TensorFlow imported only when called)."""

from __future__ import annotations

import numpy as np


def to_tf_dataset(dataset, *, num_parallel_calls: int | None = None, prefetch: bool = True):
    """Wrap an index-addressable dataset (`ds[i] -> (x, y)`) as a `tf.data.Dataset`.

    Batches are produced by calling `dataset[i]` for `i = 0 … len(dataset) - 1` inside
    `tf.numpy_function`, in parallel but in order (`deterministic=True`), so the result
    yields exactly the batches of `dataset`. Use it with the TensorFlow backend or to feed
    a `tf.distribute` strategy; with other backends `model.fit(dataset)` takes the
    `PyDataset` directly. Repeat, cache or shard the result with the usual `tf.data` API.

    Args:
        dataset (keras.utils.PyDataset): a dataset of this package (or anything with
            `__len__` and `__getitem__` returning an `(x, y)` tuple of numpy arrays).
        num_parallel_calls (int | None): parallel batch builders (default `tf.data.AUTOTUNE`).
        prefetch (bool): append `.prefetch(tf.data.AUTOTUNE)`.

    Returns:
        tf.data.Dataset: `(x, y)` float32 batches, `len(dataset)` of them.

    Examples:
        >>> from keras_cvdm.data import qpi_dataset
        >>> tf_ds = to_tf_dataset(qpi_dataset(batch_size=2, image_size=32, num_batches=2))
        >>> [tuple(t.shape) for t in next(iter(tf_ds))]
        [(2, 32, 32, 2), (2, 32, 32, 1)]
    """
    try:
        import tensorflow as tf
    except ImportError as err:
        raise ImportError(
            "`to_tf_dataset` needs TensorFlow: pip install keras-cvdm[tensorflow] "
            "(or pass the PyDataset to model.fit directly)."
        ) from err
    x0, y0 = dataset[0]
    x0, y0 = np.asarray(x0), np.asarray(y0)

    def fetch(index):
        x, y = dataset[int(index)]
        return np.asarray(x, np.float32), np.asarray(y, np.float32)

    def load(index):
        x, y = tf.numpy_function(fetch, [index], (tf.float32, tf.float32))
        x.set_shape((None, *x0.shape[1:]))
        y.set_shape((None, *y0.shape[1:]))
        return x, y

    ds = tf.data.Dataset.range(len(dataset)).map(
        load,
        num_parallel_calls=tf.data.AUTOTUNE if num_parallel_calls is None else num_parallel_calls,
        deterministic=True,
    )
    ds = ds.apply(tf.data.experimental.assert_cardinality(len(dataset)))
    return ds.prefetch(tf.data.AUTOTUNE) if prefetch else ds
