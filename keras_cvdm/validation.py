"""Checks on user input that fail early with a message naming the problem and the fix."""

import json
from collections.abc import Mapping

import keras
import numpy as np


def check_condition_shape(x_shape, condition_channels: int | None = None, multiple: int = 1,
                          name: str = "x") -> None:
    """Validate a condition batch shape `(N, H, W, C)` (static dims may be None).

    Args:
        x_shape: the shape to check.
        condition_channels: the channel count the model was built for, if known.
        multiple: height and width must be multiples of this (1: any size).
        name: the argument's name, for messages.

    Returns:
        None; raises `ValueError` naming the problem and the fix.

    Examples:
        >>> check_condition_shape((8, 64, 64, 2), condition_channels=2, multiple=4)
        >>> check_condition_shape((64, 64, 2))
        Traceback (most recent call last):
        ...
        ValueError: x must be a channels-last batch of images (N, H, W, C); got rank 3 ...
    """
    x_shape = tuple(x_shape)
    if len(x_shape) != 4:
        raise ValueError(
            f"{name} must be a channels-last batch of images (N, H, W, C); got rank "
            f"{len(x_shape)} with shape {x_shape}. Add a batch axis (x[None]) or a channel "
            "axis (x[..., None]) as needed."
        )
    if condition_channels is not None and x_shape[-1] is not None:
        if x_shape[-1] != condition_channels:
            raise ValueError(
                f"{name} has {x_shape[-1]} channels but the model was built for "
                f"{condition_channels} condition channels. Pass images with "
                f"{condition_channels} channels, or build a new model for this data."
            )
    for axis, size in zip(("height", "width"), x_shape[1:3]):
        if size is not None and multiple > 1 and size % multiple:
            raise ValueError(
                f"{name} {axis} {size} is not a multiple of {multiple}, the denoiser's "
                f"down-sampling factor. Crop or pad the images to a multiple of {multiple} "
                f"(for example {max(multiple, size // multiple * multiple)})."
            )


def check_pair_shapes(x_shape, y_shape, target_channels: int,
                      condition_channels: int | None = None, multiple: int = 1) -> None:
    """Validate the shapes of a training pair `(x, y)`.

    Args:
        x_shape, y_shape: the condition's and the target's shapes, `(N, H, W, C)`.
        target_channels: the channels `y` must have.
        condition_channels: the channels `x` must have, if known.
        multiple: height and width must be multiples of this.

    Returns:
        None; raises `ValueError` naming the problem and the fix.

    Examples:
        >>> check_pair_shapes((4, 32, 32, 2), (4, 32, 32, 1), target_channels=1)
        >>> check_pair_shapes((4, 32, 32, 2), (4, 16, 16, 1), target_channels=1)
        Traceback (most recent call last):
        ...
        ValueError: x and y must share height and width; got x (32, 32) and y (16, 16). ...
    """
    check_condition_shape(x_shape, condition_channels, multiple, name="x")
    y_shape = tuple(y_shape)
    if len(y_shape) != 4:
        raise ValueError(
            f"y must be a channels-last batch of images (N, H, W, C); got rank {len(y_shape)} "
            f"with shape {y_shape}. Add a channel axis (y[..., None]) for single-channel targets."
        )
    x_hw, y_hw = tuple(x_shape[1:3]), tuple(y_shape[1:3])
    if None not in x_hw and None not in y_hw and x_hw != y_hw:
        raise ValueError(
            f"x and y must share height and width; got x {x_hw} and y {y_hw}. Resample x to "
            "the target grid first (for super-resolution, up-sample the low-resolution input)."
        )
    if y_shape[-1] is not None and y_shape[-1] != target_channels:
        raise ValueError(
            f"y has {y_shape[-1]} channels but the model has target_channels={target_channels}. "
            "Build the model with the target's channel count."
        )
    if None not in (x_shape[0], y_shape[0]) and x_shape[0] != y_shape[0]:
        raise ValueError(
            f"x and y hold different numbers of examples ({x_shape[0]} and {y_shape[0]})."
        )


def check_finite(array, name: str) -> None:
    """Raise if an array is not numeric or holds NaN or Inf.

    Args:
        array: a numpy array (or anything `np.asarray` accepts).
        name: the argument's name, for messages.

    Returns:
        None; raises `ValueError` with the count of bad values.

    Examples:
        >>> check_finite(np.ones(3), "x")
        >>> check_finite(np.array([1.0, np.nan]), "x")
        Traceback (most recent call last):
        ...
        ValueError: x contains 1 non-finite values (NaN or Inf). ...
    """
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must be numeric; got dtype {array.dtype}.")
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(
            f"{name} contains {bad} non-finite values (NaN or Inf). Replace or drop them "
            "before training or prediction (e.g. np.nan_to_num, or mask the affected images)."
        )


def check_int(value, name: str, minimum: int | None = None) -> int:
    """`value` as a Python int; refuses bools, strings and non-whole numbers.

    Args:
        value: the argument to check (an int, a numpy integer, or a whole float).
        name: the argument's name, for the message.
        minimum: the smallest allowed value, if any.

    Returns:
        `int(value)`.

    Examples:
        >>> check_int(np.int64(20), "num_steps", minimum=1)
        20
        >>> check_int(2.7, "num_steps")
        Traceback (most recent call last):
        ...
        ValueError: num_steps must be a whole number, got 2.7.
    """
    whole = isinstance(value, int | np.integer) or (
        isinstance(value, float | np.floating) and float(value).is_integer()
    )
    if isinstance(value, bool) or not whole:
        raise ValueError(f"{name} must be a whole number, got {value!r}.")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}.")
    return value


def check_metadata(metadata) -> dict:
    """A model's task metadata as a plain JSON object (a fresh copy).

    Tuples become lists, as they would in a saved file; anything JSON cannot hold is
    refused here rather than when the model is saved.

    Args:
        metadata: a mapping of JSON-ready values, or None (no metadata).

    Returns:
        A new `dict`.

    Examples:
        >>> check_metadata({"task": "qpi", "range": (0, 3.5)})
        {'task': 'qpi', 'range': [0, 3.5]}
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        kind = "a list" if isinstance(metadata, list) else type(metadata).__name__
        raise ValueError(
            f"metadata must be a JSON object (a dict such as a preset's metadata.json), "
            f"got {kind}."
        )
    try:
        return json.loads(json.dumps(dict(metadata)))
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"metadata must hold only JSON values (str, numbers, bools, None, lists, dicts) "
            f"so that it can be saved with the model: {error}. Convert objects first, e.g. "
            "a normalisation with its .to_dict() and numpy numbers with float()."
        ) from error


def first_batch(x, y=None):
    """The first `(x, y)` batch of a `fit`/`evaluate` data source as numpy, to check it.

    Args:
        x: numpy arrays or tensors, a `keras.utils.PyDataset`, a `tf.data.Dataset` or a
            torch `DataLoader` (yielding `(x, y)` tuples).
        y: targets when `x` is an array, else None.

    Returns:
        `(bx, by)` numpy arrays (`by` None when the source yields no targets), or None
        for a source that cannot be looked into without consuming it (a generator).

    Examples:
        >>> bx, by = first_batch(np.zeros((4, 8, 8, 2)), np.ones((4, 8, 8, 1)))
        >>> bx.shape, by.shape
        ((4, 8, 8, 2), (4, 8, 8, 1))
        >>> first_batch(iter([]), None) is None
        True
    """
    if isinstance(x, np.ndarray) or (hasattr(x, "shape") and hasattr(x, "dtype")):
        return to_numpy(x), (None if y is None else to_numpy(y))
    module = type(x).__module__
    batch = None
    if isinstance(x, keras.utils.PyDataset):
        if len(x) == 0:
            raise ValueError("The PyDataset is empty (len() == 0).")
        batch = x[0]
    elif module.startswith("tensorflow") and hasattr(x, "take"):
        batch = next(iter(x.take(1)), None)
    elif module.startswith("torch.utils.data"):
        batch = next(iter(x), None)
    if batch is None:
        return None
    if isinstance(batch, dict) or not isinstance(batch, (tuple, list)):
        return to_numpy(batch), None
    bx = batch[0]
    by = batch[1] if len(batch) > 1 else None
    return to_numpy(bx), (None if by is None else to_numpy(by))


def to_numpy(value) -> np.ndarray:
    """numpy view of an array or a tensor of any framework (GPU tensors copied to host).

    Args:
        value: a numpy array, a TensorFlow / JAX / PyTorch tensor, or a nested list.

    Returns:
        A numpy array.

    Examples:
        >>> to_numpy([[1, 2]]).shape
        (1, 2)
    """
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch, on any device
        return value.detach().cpu().numpy()
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):  # tf.Tensor
        return np.asarray(value.numpy())
    return np.asarray(value)
