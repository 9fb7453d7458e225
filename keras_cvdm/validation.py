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
    array = check_real(array, name)
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(
            f"{name} contains {bad} non-finite values (NaN or Inf). Replace or drop them "
            "before training or prediction (e.g. np.nan_to_num, or mask the affected images)."
        )


def check_real(array, name: str) -> np.ndarray:
    """`array` as numpy if it holds real numbers (integers or floats), else a `ValueError`.

    Booleans, complex numbers, strings and objects are refused rather than cast: a cast
    would silently turn a mask into 0/1 images or drop an imaginary part.

    Args:
        array: a numpy array, a tensor of any framework, or a nested list.
        name: the argument's name, for messages.

    Returns:
        The numpy array (not copied when it already is one).

    Examples:
        >>> check_real([1, 2.5], "x").dtype
        dtype('float64')
        >>> check_real(np.ones(2, complex), "x")
        Traceback (most recent call last):
        ...
        ValueError: x holds complex numbers (dtype complex128); the model needs real ...
    """
    array = to_numpy(array)
    dtype = array.dtype
    if np.issubdtype(dtype, np.complexfloating):
        raise ValueError(
            f"{name} holds complex numbers (dtype {dtype}); the model needs real values. "
            "Pass the measured real quantity: the intensity np.abs(field) ** 2 of a complex "
            "field, or x.real if the imaginary part is only numerical noise."
        )
    if dtype == np.bool_ or not (np.issubdtype(dtype, np.integer)
                                 or np.issubdtype(dtype, np.floating)):
        raise ValueError(
            f"{name} must hold real numbers (integers or floats), got dtype {dtype}. "
            "Pass the measured values, not a mask or labels (convert a mask yourself with "
            "x.astype('float32') if 0/1 images are really meant)."
        )
    return array


#: The largest |value| accepted in model units (the normalised `x` a model is given).
#: The normalisations map a measurement to values of order 1 (QPI: `I / Ī - 1`, at most
#: about 3 on caustics; SR: the 0.1–99.9 percentile range onto [-1, 1]) and a model has
#: only seen such values; 1e4 is far above any of them, yet squares (in normalisation
#: layers) stay far from float32's overflow at 3.4e38, so every backend computes the
#: same finite numbers below it.
MAX_MODEL_MAGNITUDE = 1e4

#: The largest |value| the tasks accept in the user's units: results are float32.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_magnitude(array, name: str, bound: float = MAX_MODEL_MAGNITUDE,
                    fix: str | None = None) -> None:
    """Raise if a (finite, real) array holds a value whose magnitude exceeds `bound`.

    Args:
        array: a numpy array.
        name: the argument's name, for messages.
        bound: the largest accepted `|value|` (default `MAX_MODEL_MAGNITUDE`, in model
            units).
        fix: the remedy named in the message (default: normalise the raw data first).

    Returns:
        None; raises `ValueError` with the count and the largest magnitude.

    Examples:
        >>> check_magnitude(np.array([0.5, -3.0]), "x")
        >>> check_magnitude(np.array([1e30]), "x")
        Traceback (most recent call last):
        ...
        ValueError: x holds 1 values larger than 1e+04 in magnitude (largest 1e+30). ...
    """
    array = np.asarray(array)
    if not array.size:
        return
    largest = max(abs(float(np.max(array))), abs(float(np.min(array))))  # no int overflow
    if largest > bound:
        count = int(np.count_nonzero((array > bound) | (array < -bound)))
        if fix is None:
            fix = (
                "A model's inputs are normalised measurements of order 1 (its "
                "normalisation, model.metadata['normalization']), so these values cannot "
                "come from one: pass raw images to keras_cvdm.qpi.reconstruct or "
                "keras_cvdm.sr.reconstruct, which normalise them, or normalise x the way "
                "the model's training data was."
            )
        raise ValueError(
            f"{name} holds {count} values larger than {bound:.3g} in magnitude (largest "
            f"{largest:.3g}). {fix}"
        )


def check_not_empty(shape, name: str = "x") -> None:
    """Raise if a batch or image shape has an axis of length 0.

    Args:
        shape: the array's shape.
        name: the argument's name, for messages.

    Returns:
        None; raises `ValueError` naming the empty axis.

    Examples:
        >>> check_not_empty((2, 8, 8, 1))
        >>> check_not_empty((0, 8, 8, 1))
        Traceback (most recent call last):
        ...
        ValueError: x is empty (shape (0, 8, 8, 1)): ...
    """
    shape = tuple(shape)
    if any(size == 0 for size in shape):
        raise ValueError(
            f"{name} is empty (shape {shape}): there is nothing to compute. Pass at least "
            "one image with at least one pixel (check the selection or file that produced it)."
        )


def check_planes(shape, name: str) -> None:
    """Raise if a 2-D image or 3-D stack of single planes looks like a colour image.

    `(H, W, 3)` and `(H, W, 4)` (with `H, W > 4`) are read as RGB / RGBA images, not as
    stacks of images three or four pixels wide.

    Args:
        shape: the shape of an `(H, W)` image or an `(N, H, W)` stack.
        name: the argument's name, for messages.

    Returns:
        None; raises `ValueError` naming the fix.

    Examples:
        >>> check_planes((3, 64, 64), "image")
        >>> check_planes((64, 64, 3), "image")
        Traceback (most recent call last):
        ...
        ValueError: image has shape (64, 64, 3), a colour (RGB/RGBA) image, ...
    """
    shape = tuple(shape)
    if len(shape) == 3 and shape[-1] in (3, 4) and min(shape[:2]) > 4:
        raise ValueError(
            f"{name} has shape {shape}, a colour (RGB/RGBA) image, not a stack of "
            f"{shape[0]} images {shape[1]}x{shape[2]} pixels: a measurement is one grey "
            "plane per image. Pass the camera's grey frames, or convert with "
            "keras_cvdm.io.to_grayscale(image) if the colour is only a display choice."
        )


def check_number(value, name: str, minimum: float | None = None,
                 strict: bool = False) -> float:
    """`value` as a finite Python float; refuses bools, strings, NaN and Inf.

    Args:
        value: the argument to check (an int, a float or a numpy number).
        name: the argument's name, for the message.
        minimum: the smallest allowed value, if any.
        strict: the value must be greater than `minimum`, not equal to it.

    Returns:
        `float(value)`.

    Examples:
        >>> check_number(0.05, "noise", minimum=0)
        0.05
        >>> check_number(float("nan"), "noise", minimum=0)
        Traceback (most recent call last):
        ...
        ValueError: noise must be a finite number, got nan.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a number, got {value!r}.")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}.")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        relation = "greater than" if strict else "at least"
        raise ValueError(f"{name} must be {relation} {minimum:g}, got {value:g}.")
    return value


def check_finite_weights(model) -> None:
    """Raise if any floating-point weight of `model` holds NaN or Inf.

    A model whose training diverged (or whose weights file is damaged) would otherwise
    return NaN images without a word. Checked on host copies with numpy: no per-shape
    compilation (as eager reductions would need on JAX), a few milliseconds for the
    presets' 2.8 M weights.

    Args:
        model: a built Keras model.

    Returns:
        None; raises `ValueError` naming the bad weights and the fix.

    Examples:
        >>> layer = keras.layers.Dense(2)
        >>> layer.build((None, 3))
        >>> check_finite_weights(layer)
    """
    weights = [w for w in model.weights if "float" in str(w.dtype)]
    bad = [w.path for w in weights if not np.isfinite(keras.ops.convert_to_numpy(w)).all()]
    if bad:
        shown = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
        raise ValueError(
            f"The model's weights are not all finite: {len(bad)} of {len(weights)} weight "
            f"tensors hold NaN or Inf ({shown}), so every sample would be NaN. Training "
            "diverged or the weights were damaged: reload them (keras_cvdm.from_preset, "
            "keras.saving.load_model, model.load_weights) or retrain (a lower learning "
            "rate, gradient clipping)."
        )


#: How far below zero an intensity may lie, as a multiple of the pair's mean intensity
#: `Ī`, and still count as noise: 5 standard deviations of the noisiest intensity noise
#: the QPI models are trained with (0.2 Ī). Deeper values are not noise but an offset.
NEGATIVE_INTENSITY_TOLERANCE = 1.0


def check_intensity_pair(i_minus, i_plus, tolerance: float = NEGATIVE_INTENSITY_TOLERANCE):
    """Raise if a QPI defocus pair `(N, H, W)` twice cannot be a measured intensity.

    - Intensity is not negative. Noise can push a dark pixel a little below zero, but
      a pixel below `-tolerance · Ī` (`Ī` the mean of the pair) means an offset was
      subtracted (dark subtraction of too high a level, a background removal): the
      normalised contrast `I / Ī - 1` and with it the phase would be scaled wrongly.
    - A pair's mean intensity is positive.
    - One constant (blank) plane next to one that varies is not a defocus pair: for a
      phase object the two planes vary together (`I₊ + I₋ ≈ 2 I₀`). Both constant is a
      uniform field (a flat phase) and accepted.

    Args:
        i_minus, i_plus: the intensities at `-dz` and `+dz`, real `(N, H, W)` arrays.
        tolerance: the accepted depth below zero, in units of `Ī`.

    Returns:
        None; raises `ValueError` naming the image, the plane, the count and the fix.

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> i_minus, i_plus = 1 + 0.1 * rng.random((2, 1, 8, 8))
        >>> check_intensity_pair(i_minus, i_plus)
        >>> i_minus[0, :2, :2] = -5.0
        >>> check_intensity_pair(i_minus, i_plus)
        Traceback (most recent call last):
        ...
        ValueError: i_minus has 4 negative pixels in image 0, 4 of them below -1x the ...
    """
    planes = {"i_minus": np.asarray(i_minus, np.float64), "i_plus": np.asarray(i_plus, np.float64)}
    for n in range(len(planes["i_minus"])):
        pair = {name: stack[n] for name, stack in planes.items()}
        mean = 0.5 * (pair["i_minus"].mean() + pair["i_plus"].mean())
        if not mean > 0:
            raise ValueError(
                f"Image {n}: the defocus pair's mean intensity is {mean:.3g}, not positive; "
                "intensity is light collected, never negative on average. Check the frames "
                "(a dark or background frame, a sign flip, a subtracted offset)."
            )
        for name, plane in pair.items():
            negative = int(np.count_nonzero(plane < 0))
            deep = int(np.count_nonzero(plane < -tolerance * mean))
            if deep:
                raise ValueError(
                    f"{name} has {negative} negative pixels in image {n}, {deep} of them below "
                    f"-{tolerance:g}x the pair's mean intensity (lowest "
                    f"{plane.min() / mean:.3g}x): intensity cannot be negative, and noise does "
                    "not reach this deep, so an offset was subtracted (for example dark "
                    "subtraction of too high a level). Add the offset back, or clip the frames "
                    "at 0 (np.clip(frame, 0, None)) if the negatives are only noise."
                )
        blank = [name for name, plane in pair.items() if np.ptp(plane) <= 1e-7 * abs(mean)]
        if len(blank) == 1:
            value = float(pair[blank[0]].flat[0])
            raise ValueError(
                f"{blank[0]} image {n} is constant (every pixel {value:.6g}) while the other "
                "defocus plane varies: a blank frame (shutter closed, saturated, a wrong "
                "file or page), not a defocused image of the sample. Check the frames."
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
        if batch is None:
            raise ValueError("The tf.data.Dataset is empty: it yields no batch.")
    elif module.startswith("torch.utils.data"):
        batch = next(iter(x), None)
        if batch is None:
            raise ValueError("The torch DataLoader is empty: it yields no batch.")
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
