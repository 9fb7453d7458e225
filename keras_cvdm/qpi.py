"""Quantitative phase imaging with a trained model: two defocused images → phase (rad)."""

import numpy as np

from keras_cvdm.data.normalization import QPINormalization, normalization_from_dict


def _sampling_defaults(model, num_steps, sampler):
    sampling = (getattr(model, "metadata", None) or {}).get("sampling", {})
    return (
        num_steps if num_steps is not None else sampling.get("num_steps", 50),
        sampler if sampler is not None else sampling.get("sampler", "ddim"),
    )


def _normalization(model, expected_type, normalization):
    if normalization is not None:
        return normalization
    metadata = getattr(model, "metadata", None) or {}
    if "normalization" not in metadata:
        raise ValueError(
            "The model carries no preset metadata with a normalisation; load it with "
            "keras_cvdm.from_preset(...) or pass `normalization=` explicitly."
        )
    norm = normalization_from_dict(metadata["normalization"])
    if metadata["normalization"].get("type") != expected_type:
        raise ValueError(
            f"This model was trained for the task {metadata.get('task')!r}, not "
            f"{expected_type!r}; use the matching preset."
        )
    return norm


def _as_stack(image, name):
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(
            f"`{name}` must be one image (H, W) or a stack (N, H, W); got shape {image.shape}."
        )
    if not np.all(np.isfinite(image)):
        raise ValueError(f"`{name}` contains NaN or Inf values; clean or mask them first.")
    return image if image.ndim == 3 else image[None]


def reconstruct(
    model,
    i_minus,
    i_plus,
    num_samples=8,
    seed=None,
    num_steps=None,
    sampler=None,
    normalization=None,
    verbose=0,
):
    """Phase (radians) and its per-pixel uncertainty from a two-shot defocus pair.

    Args:
        model: a QPI `CVDM`, e.g. `keras_cvdm.from_preset("qpi")`.
        i_minus: raw intensity at `-dz`, `(H, W)` or a stack `(N, H, W)`, any unit.
        i_plus: raw intensity at `+dz`, same shape.
        num_samples: posterior samples per image (≥ 2).
        seed: integer for reproducible samples.
        num_steps, sampler: sampling settings (default: the preset metadata's, else DDIM-50).
        normalization: a `QPINormalization` (default: the preset's metadata).
        verbose: progress bar (0: silent).

    Returns:
        `(phase, std)`: the posterior mean phase and its standard deviation in radians,
        each with the shape of `i_minus`. Phase follows the training convention (a
        phase map whose background is near 0 rad).

    Examples:
        >>> import keras_cvdm
        >>> model = keras_cvdm.from_preset("qpi")
        >>> i_minus, i_plus, truth = keras_cvdm.data.qpi_test_set(1, 32, noise_std=0.05)
        >>> phase, std = keras_cvdm.qpi.reconstruct(model, i_minus[0], i_plus[0], seed=0)
        >>> phase.shape, std.shape
        ((32, 32), (32, 32))
    """
    norm = _normalization(model, "qpi", normalization)
    if not isinstance(norm, QPINormalization):
        raise ValueError("qpi.reconstruct needs a QPINormalization.")
    single = np.ndim(i_minus) == 2
    i_minus, i_plus = _as_stack(i_minus, "i_minus"), _as_stack(i_plus, "i_plus")
    if i_minus.shape != i_plus.shape:
        raise ValueError(
            f"i_minus and i_plus differ in shape: {i_minus.shape} vs {i_plus.shape}."
        )
    x = norm.pair_to_model(i_minus, i_plus)
    num_steps, sampler = _sampling_defaults(model, num_steps, sampler)
    mean, std = model.predict_uncertainty(
        x, num_samples=num_samples, num_steps=num_steps, sampler=sampler, seed=seed,
        verbose=verbose,
    )
    span = norm.phase_max - norm.phase_min
    phase = norm.denormalize_phase(mean[..., 0])
    std = (std[..., 0] * span / 2.0).astype(np.float32)
    return (phase[0], std[0]) if single else (phase, std)
