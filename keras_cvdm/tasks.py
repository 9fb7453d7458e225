"""What a model knows of its task, read from `CVDM.metadata`; shared by `qpi` and `sr`.

A task's metadata (the schema of a preset's `metadata.json`, see docs/architecture.md)
travels inside the model's config, so these helpers work the same on a model from
`from_preset`, from `keras.saving.load_model`, or built and given its metadata by hand.
"""

from __future__ import annotations

from keras_cvdm import sampling, validation
from keras_cvdm.data.normalization import normalization_from_dict

#: Used when a model's metadata names no sampler: the recommended 20-step sampler.
DEFAULT_SAMPLING = dict(sampling.RECOMMENDED)


def sampling_defaults(model, num_steps=None, sampler=None):
    """`(num_steps, sampler)`: the caller's values, else the model's, else the
    recommended `sampling.RECOMMENDED` (DPM-Solver++(2M) SDE, 20 steps).

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
    """A raw 2-D image or stack as a finite, real `(N, H, W)` array.

    Refused with a `ValueError` naming the fix: a rank other than 2 or 3, a colour
    image `(H, W, 3)` / `(H, W, 4)` (`validation.check_planes`), an empty array, booleans
    or complex numbers (`validation.check_real`), NaN or Inf, and magnitudes beyond
    float32 (the results are float32).

    Args:
        image: `(H, W)` or `(N, H, W)`, real-valued.
        name: the argument's name, for messages.

    Returns:
        `(N, H, W)` array (`N = 1` for a single image).

    Examples:
        >>> import numpy as np
        >>> as_stack(np.ones((4, 5)), "image").shape
        (1, 4, 5)
    """
    image = validation.check_real(image, f"`{name}`")
    if image.ndim not in (2, 3):
        raise ValueError(
            f"`{name}` must be one image (H, W) or a stack (N, H, W); got shape {image.shape}."
        )
    validation.check_planes(image.shape, f"`{name}`")
    validation.check_not_empty(image.shape, f"`{name}`")
    validation.check_finite(image, f"`{name}`")
    validation.check_magnitude(
        image, f"`{name}`", validation.FLOAT32_MAX,
        "The results are float32, which cannot hold such values: rescale the images "
        "(their unit is free: the normalisation is per image).",
    )
    return image if image.ndim == 3 else image[None]


def posterior(model, x, num_samples, seed=None, num_steps=None, sampler=None,
              batch_size=None, tile=None, overlap=None, align_offsets=False,
              keep_samples=False, verbose=0):
    """Posterior mean, std (and samples) of a normalised condition, whole or in tiles.

    The one sampling path of `qpi.reconstruct`, `sr.reconstruct` and `keras-cvdm
    predict`. With `tile` set, the image is cut into overlapping `tile`×`tile` windows
    (`keras_cvdm.tiling`): memory is bounded by the tile and `batch_size`, and an
    image that fits in one tile gives exactly the whole-image result.

    Args:
        model: a `CVDM`.
        x: model-space conditions `(N, H, W, C)`.
        num_samples: posterior samples per image (≥ 2).
        seed: integer seed (None: a fresh one).
        num_steps, sampler: sampling settings (default: the model's metadata).
        batch_size: (image or tile, sample) pairs per compiled call (default 16).
        tile: tile side in pixels, or None for the whole image.
        overlap: tile overlap in pixels (default: a quarter of `tile`).
        align_offsets: remove a free constant per tile before blending (QPI phase).
        keep_samples: also return the samples.
        verbose: progress bar (0: silent).

    Returns:
        `(mean, std, samples)` in model units: `(N, H, W, Cy)` twice and
        `(N, K, H, W, Cy)` (None unless `keep_samples`).

    Examples:
        >>> import numpy as np
        >>> from keras_cvdm import CVDM
        >>> from keras_cvdm.layers import UNetDenoiser
        >>> model = CVDM(denoiser=UNetDenoiser(1, widths=(8, 16)))
        >>> model.build((None, 8, 8, 2))
        >>> x = np.zeros((1, 12, 12, 2), "float32")
        >>> mean, std, _ = posterior(model, x, 2, seed=0, num_steps=2, tile=8, overlap=2)
        >>> mean.shape, bool(np.all(std >= 0))
        ((1, 12, 12, 1), True)
    """
    from keras_cvdm import metrics, sampling, tiling, validation

    num_steps, sampler = sampling_defaults(model, num_steps, sampler)
    seed = sampling.resolve_seed(seed)
    batch_size = validation.check_int(16 if batch_size is None else batch_size,
                                      "batch_size", minimum=1)
    if validation.check_int(num_samples, "num_samples") < 2:
        raise ValueError("A standard deviation needs num_samples >= 2.")

    def sample_fn(batch, batch_seed):
        return model.predict_samples(
            batch, num_samples=num_samples, num_steps=num_steps, sampler=sampler,
            batch_size=batch_size, seed=batch_seed, verbose=0 if tile else verbose,
        )

    if tile is None:
        if overlap is not None:
            raise ValueError("`overlap` applies to tiled prediction only; pass `tile=` too.")
        samples = sample_fn(x, seed)
        mean, std = metrics.mean_and_std(samples, axis=1)
        return mean, std, samples if keep_samples else None
    tile = validation.check_int(tile, "tile", minimum=1)
    overlap = default_overlap(tile) if overlap is None else validation.check_int(overlap,
                                                                                 "overlap")
    result = tiling.predict_tiled(
        sample_fn, x, tile, overlap, num_samples, seed, align_offsets=align_offsets,
        keep_samples=keep_samples, tiles_per_call=max(1, batch_size // num_samples),
        verbose=verbose,
    )
    return result["mean"], result["std"], result["samples"]


def default_overlap(tile):
    """The tile overlap used when none is given: a quarter of the tile.

    Examples:
        >>> default_overlap(256)
        64
    """
    return tile // 4


#: The optics keywords of `qpi.reconstruct` and their metadata keys (micrometres).
OPTICS = {"wavelength": "wavelength_um", "pixel_size": "pixel_size_um", "defocus": "defocus_um"}


def check_optics(model, **optics):
    """The optics a QPI reconstruction uses: the caller's values, checked against the model.

    A model's metadata records the optics it was trained with (`forward_model`) and,
    when it was trained over a range of optics, that range (`forward_model["optics_range"]`,
    `{"wavelength_um": [low, high], ...}`). A value outside what the model knows is
    refused: the network cannot tell the optics from the images.

    Args:
        model: a QPI `CVDM`.
        **optics: `wavelength`, `pixel_size`, `defocus` in micrometres, each a number or
            None (None: the model's).

    Returns:
        dict `{"wavelength_um": ..., "pixel_size_um": ..., "defocus_um": ...}`.

    Raises:
        ValueError: a value outside the model's range (the message names the range).

    Examples:
        >>> from keras_cvdm import CVDM
        >>> model = CVDM(metadata={"forward_model": {"wavelength_um": 0.5,
        ...     "pixel_size_um": 0.2, "defocus_um": 1.0}})
        >>> check_optics(model, defocus=1.0)["wavelength_um"]
        0.5
    """
    trained = model.metadata.get("forward_model", {})
    ranges = trained.get("optics_range", {})
    used = {}
    for name, key in OPTICS.items():
        value = optics.get(name)
        if value is None:
            if key in trained:
                used[key] = trained[key]
            continue
        value = validation.check_number(value, f"`{name}` (micrometres)", minimum=0,
                                        strict=True)
        low, high = ranges.get(key, (trained.get(key), trained.get(key)))
        if low is None:
            raise ValueError(
                f"The model's metadata records no {key}; it cannot check `{name}={value}`. "
                "Leave the optics unset or use a model whose metadata records them."
            )
        if not low * (1 - 1e-3) <= value <= high * (1 + 1e-3):
            known = f"only {key} = {low}" if low == high else f"{key} {low}–{high}"
            raise ValueError(
                f"`{name}={value}` µm is outside the optics this model was trained for: it "
                f"knows {known} µm. Its phase would be wrong by an unknown factor; use a "
                "model trained for your optics (keras-cvdm train)."
            )
        used[key] = value
    return used
