"""Quantitative phase imaging with a trained model: two defocused images → phase (rad)."""

import numpy as np

from keras_cvdm import tasks
from keras_cvdm.data.normalization import QPINormalization


def reconstruct(
    model, i_minus: np.ndarray, i_plus: np.ndarray, num_samples: int = 8,
    seed: int | None = None, num_steps: int | None = None, sampler: str | None = None,
    normalization: QPINormalization | None = None, verbose: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Phase (radians) and its per-pixel uncertainty from a two-shot defocus pair.

    Args:
        model: a QPI `CVDM`, e.g. `keras_cvdm.from_preset("qpi")`.
        i_minus: raw intensity at `-dz`, `(H, W)` or a stack `(N, H, W)`, any unit.
        i_plus: raw intensity at `+dz`, same shape.
        num_samples: posterior samples per image (≥ 2).
        seed: integer for reproducible samples.
        num_steps, sampler: sampling settings (default: the model's metadata, else DDIM-50).
        normalization: a `QPINormalization` (default: the one in `model.metadata`).
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
    norm = tasks.normalization(model, "qpi", normalization)
    if not isinstance(norm, QPINormalization):
        raise ValueError("qpi.reconstruct needs a QPINormalization.")
    single = np.ndim(i_minus) == 2
    i_minus, i_plus = tasks.as_stack(i_minus, "i_minus"), tasks.as_stack(i_plus, "i_plus")
    if i_minus.shape != i_plus.shape:
        raise ValueError(
            f"i_minus and i_plus differ in shape: {i_minus.shape} vs {i_plus.shape}."
        )
    x = norm.pair_to_model(i_minus, i_plus)
    num_steps, sampler = tasks.sampling_defaults(model, num_steps, sampler)
    mean, std = model.predict_uncertainty(
        x, num_samples=num_samples, num_steps=num_steps, sampler=sampler, seed=seed,
        verbose=verbose,
    )
    span = norm.phase_max - norm.phase_min
    phase = norm.denormalize_phase(mean[..., 0])
    std = (std[..., 0] * span / 2.0).astype(np.float32)
    return (phase[0], std[0]) if single else (phase, std)
