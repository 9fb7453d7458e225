"""Quantitative phase imaging with a trained model: two defocused images → phase (rad)."""

import numpy as np

from keras_cvdm import calibration, physics, tasks, validation
from keras_cvdm.data.normalization import QPINormalization
from keras_cvdm.physics.propagation import fresnel_number


def reconstruct(
    model, i_minus: np.ndarray, i_plus: np.ndarray, num_samples: int = 8,
    seed: int | None = None, num_steps: int | None = None, sampler: str | None = None,
    normalization: QPINormalization | None = None, verbose: int = 0, *,
    wavelength: float | None = None, pixel_size: float | None = None,
    defocus: float | None = None, tile: int | None = None, overlap: int | None = None,
    batch_size: int | None = None, return_samples: bool = False,
) -> tuple[np.ndarray, ...]:
    """Phase (radians) and its per-pixel uncertainty from a two-shot defocus pair.

    Args:
        model: a QPI `CVDM`, e.g. `keras_cvdm.from_preset("qpi")`.
        i_minus: raw intensity at `-dz`, `(H, W)` or a stack `(N, H, W)`, any unit
            (one grey plane per image: a colour `(H, W, 3)` array is refused).
        i_plus: raw intensity at `+dz`, same shape.
        num_samples: posterior samples per image (≥ 2).
        seed: integer for reproducible samples.
        num_steps, sampler: sampling settings (default: the model's metadata, else
            `sampling.RECOMMENDED`).
        normalization: a `QPINormalization` (default: the one in `model.metadata`).
        verbose: progress bar (0: silent).
        wavelength, pixel_size, defocus: the optics of the images in micrometres (default:
            the model's, `model.metadata["forward_model"]`); values outside the range the
            model was trained for are refused with the range named. A model trained over
            a range of optics is told them through its input (the optics channel of
            `QPINormalization`) and solves the TIE with them inside its mean network.
        tile: reconstruct in overlapping `tile`×`tile` windows (`keras_cvdm.tiling`) so
            the network's memory does not grow with the image; each window's free phase constant is
            aligned to its neighbours' before blending, so no step appears at tile borders.
            (A preset's band blend with TIE, `keras_cvdm.calibration`, then takes a few
            whole-image FFTs per image, computed one image at a time.)
            An image that fits in one tile gives exactly the untiled result.
        overlap: tile overlap in pixels (default `tile // 4`).
        batch_size: (image or tile, sample) pairs per model call (default 16).
        return_samples: also return the posterior samples.

    Raises:
        ValueError: input that cannot be a measured defocus pair, with the fix named:
            booleans, complex numbers, NaN/Inf, an empty or colour array, pixels far below
            zero (an offset subtracted; `validation.check_intensity_pair`), one blank
            plane next to a varying one, or a contrast no normalised measurement has
            (`validation.MAX_MODEL_MAGNITUDE`).

    Returns:
        `(phase, std)`: the posterior mean phase and its standard deviation in radians,
        each with the shape of `i_minus`. A model whose metadata holds a calibration
        (`keras_cvdm.calibration`) has its std, and the samples' spread about the
        mean, multiplied by the stored factor, and, when it stores a band blend, its mean
        blended per band of spatial frequency with the TIE solve of the same pair
        (periodic boundaries, the optics used; less of it where the optics make the TIE
        noisier than on the fields the blend was fitted on), the samples moved with it.
        Phase follows the training convention (a phase map whose background is near 0
        rad). With `return_samples`, a third array of samples in radians,
        `(num_samples, H, W)` (or `(N, num_samples, H, W)`).

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
    if np.shape(i_minus) != np.shape(i_plus):
        raise ValueError(
            f"i_minus and i_plus differ in shape: {np.shape(i_minus)} and {np.shape(i_plus)}. "
            "Pass one plane at -dz and one at +dz of the same size for each image."
        )
    single = np.ndim(i_minus) == 2
    i_minus, i_plus = tasks.as_stack(i_minus, "i_minus"), tasks.as_stack(i_plus, "i_plus")
    if i_minus.shape != i_plus.shape:
        raise ValueError(
            f"i_minus and i_plus differ in shape: {i_minus.shape} vs {i_plus.shape}."
        )
    validation.check_intensity_pair(i_minus, i_plus)
    blend = calibration.band_blend(model)  # checked before any sampling
    x = condition(model, i_minus, i_plus, norm, wavelength=wavelength,
                  pixel_size=pixel_size, defocus=defocus)
    mean, std, samples = tasks.posterior(
        model, x, num_samples, seed=seed, num_steps=num_steps, sampler=sampler,
        batch_size=batch_size, tile=tile, overlap=overlap, align_offsets=True,
        keep_samples=return_samples, verbose=verbose,
    )
    scale = calibration.std_scale(model)
    span = norm.phase_max - norm.phase_min
    phase = norm.denormalize_phase(mean[..., 0])
    blended = phase if blend is None else _blend_with_tie(
        model, blend, phase, i_minus, i_plus, wavelength=wavelength, pixel_size=pixel_size,
        defocus=defocus)
    out = [blended, (scale * std[..., 0] * span / 2.0).astype(np.float32)]
    if return_samples:
        deviation = norm.denormalize_phase(samples[..., 0]) - phase[:, None]
        out.append((blended[:, None] + scale * deviation).astype(np.float32))
    return tuple(a[0] for a in out) if single else tuple(out)


def _blend_with_tie(model, blend, phase, i_minus, i_plus, **optics):
    """`phase` blended per frequency band with the TIE solve (`calibration.band_blend`)."""
    used = tasks.check_optics(model, **optics)
    if len(used) < len(tasks.OPTICS):
        raise ValueError(
            "The model's calibration blends its phase with a TIE solve, which needs the "
            "optics, but its metadata['forward_model'] records only "
            f"{sorted(used)}: pass wavelength, pixel_size and defocus (micrometres)."
        )
    wavelength, pixel, defocus = (used[k] for k in ("wavelength_um", "pixel_size_um",
                                                    "defocus_um"))
    weights = calibration.weights_at_fresnel_number(
        blend["weights"], blend["fresnel_number"], fresnel_number(wavelength, pixel, defocus))
    regularization = blend["tie_regularization_pixel"] / pixel ** 4
    out = np.empty_like(phase)
    for n in range(len(phase)):  # one image at a time: the FFTs are whole-image
        tie = physics.tie_phase(i_minus[n], i_plus[n], wavelength=wavelength,
                                pixel_size=pixel, defocus=defocus,
                                regularization=regularization)
        out[n] = calibration.blend_bands(phase[n], tie, weights,
                                         blend["edges_cycles_per_pixel"])
    return out


def condition(model, i_minus, i_plus, normalization=None, **optics):
    """The model input `x` of a defocus pair (what `reconstruct` hands the model).

    Args:
        model: a QPI `CVDM`.
        i_minus, i_plus: raw intensities `(N, H, W)`.
        normalization: a `QPINormalization` (default: the model's).
        **optics: `wavelength`, `pixel_size`, `defocus` in micrometres (default: the
            model's), checked as in `reconstruct`.

    Returns:
        `(N, H, W, C)` float32: the normalised pair, and the optics channel when the
        model's normalisation carries one.
    """
    norm = tasks.normalization(model, "qpi", normalization)
    return norm.pair_to_model(i_minus, i_plus, tasks.check_optics(model, **optics))
