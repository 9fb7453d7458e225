"""What a model knows of its task, read from `CVDM.metadata`; shared by `qpi` and `sr`.

A task's metadata (the schema of a preset's `metadata.json`, see docs/architecture.md)
travels inside the model's config, so these helpers work the same on a model from
`from_preset`, from `keras.saving.load_model`, or built and given its metadata by hand.
"""

from __future__ import annotations

import numpy as np

from keras_cvdm.data.normalization import normalization_from_dict

#: Used when a model's metadata names no sampler: deterministic DDIM, 50 steps.
DEFAULT_SAMPLING = {"sampler": "ddim", "num_steps": 50}


def sampling_defaults(model, num_steps=None, sampler=None):
    """`(num_steps, sampler)`: the caller's values, else the model's, else DDIM-50.

    Args:
        model: a `CVDM`.
        num_steps: the caller's number of steps, or None.
        sampler: the caller's sampler name, or None.

    Returns:
        A tuple `(num_steps, sampler)`.

    Examples:
        >>> from keras_cvdm import CVDM
        >>> model = CVDM(metadata={"sampling": {"sampler": "ddim", "num_steps": 20}})
        >>> sampling_defaults(model), sampling_defaults(model, 8, "ancestral")
        ((20, 'ddim'), (8, 'ancestral'))
    """
    stored = {**DEFAULT_SAMPLING, **model.metadata.get("sampling", {})}
    return (
        stored["num_steps"] if num_steps is None else num_steps,
        stored["sampler"] if sampler is None else sampler,
    )


def normalization(model, task, override=None):
    """The normalisation of `model` for `task` (`"qpi"` or `"sr"`), or the override.

    Args:
        model: a `CVDM`.
        task: the task the caller serves.
        override: a normalisation object that replaces the model's, or None.

    Returns:
        A `QPINormalization` or `SRNormalization`.

    Raises:
        ValueError: the model carries no normalisation, or one for another task.

    Examples:
        >>> from keras_cvdm import CVDM
        >>> model = CVDM(metadata={"task": "qpi", "normalization": {"type": "qpi"}})
        >>> normalization(model, "qpi").phase_max
        3.5
    """
    if override is not None:
        return override
    stored = model.metadata.get("normalization")
    if stored is None:
        raise ValueError(
            "The model carries no task metadata with a normalisation. Load a pretrained "
            "model with keras_cvdm.from_preset(...) (its metadata is kept by model.save and "
            "keras.saving.load_model), set model.metadata to a preset's metadata, or pass "
            "`normalization=` explicitly."
        )
    trained = stored.get("type", "qpi")
    if trained != task:
        raise ValueError(
            f"This model was trained for the task {trained!r}, not {task!r}; use "
            f"keras_cvdm.{trained}.reconstruct, or a model trained for {task!r}."
        )
    return normalization_from_dict(stored)


def as_stack(image, name):
    """A raw 2-D image or stack as a finite `(N, H, W)` array.

    Args:
        image: `(H, W)` or `(N, H, W)`, real-valued.
        name: the argument's name, for messages.

    Returns:
        `(N, H, W)` array (`N = 1` for a single image).

    Examples:
        >>> as_stack(np.ones((4, 5)), "image").shape
        (1, 4, 5)
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(
            f"`{name}` must be one image (H, W) or a stack (N, H, W); got shape {image.shape}."
        )
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise ValueError(
            f"`{name}` must hold real numbers (integers or floats), got dtype {image.dtype}."
        )
    if not np.all(np.isfinite(image)):
        raise ValueError(f"`{name}` contains NaN or Inf values; clean or mask them first.")
    return image if image.ndim == 3 else image[None]
