"""Checks on user input that fail early with a message naming the problem and the fix."""

import numpy as np


def check_condition_shape(x_shape, condition_channels=None, multiple=1, name="x"):
    """Validate a condition batch shape `(N, H, W, C)` (static dims may be None)."""
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


def check_pair_shapes(x_shape, y_shape, target_channels, condition_channels=None, multiple=1):
    """Validate the shapes of a training pair `(x, y)`."""
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


def check_finite(array, name):
    """Raise if a numpy array holds NaN or Inf."""
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must be numeric; got dtype {array.dtype}.")
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(
            f"{name} contains {bad} non-finite values (NaN or Inf). Replace or drop them "
            "before training or prediction (e.g. np.nan_to_num, or mask the affected images)."
        )
