"""Defocus imaging of thin phase objects: Fresnel propagation and the paper's optics.

Conventions used throughout the QPI physics (`propagation` and `tie`):

- Lengths (wavelength, pixel size, defocus distance) are in micrometres.
- Fields and images are arrays whose **last two axes** are `(height, width)`; any
  leading axes are a batch and are processed independently.
- Monochromatic fields use the time dependence `exp(-i ω t)`, so a plane wave that
  travels towards `+z` is `exp(+i k z)`. A specimen that delays the wave (a cell is
  optically thicker than its medium) adds a **positive** phase `φ = k · OPD`, and a
  positive phase bump therefore acts as a converging lens: it focuses light at `+z`.
- The computation runs in numpy float64 / complex128; public functions return float32
  (intensities, phases) or complex64 (fields).

The paper's two-shot QPI optics (della Maggiora et al., ICLR 2024) are the defaults:
wavelength 0.521 µm, pixel 0.21 µm, defocus ±1 µm, phase maps in [0, 3.5] rad.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from keras_cvdm.imaging import check_positive

PAPER_WAVELENGTH = 0.521
"""Wavelength of the paper's QPI simulation, in µm."""
PAPER_PIXEL_SIZE = 0.21
"""Pixel size of the paper's QPI simulation, in µm."""
PAPER_DEFOCUS = 1.0
"""Defocus distance of the paper's two-shot QPI input (images at ±1 µm)."""
PAPER_PHASE_MAX = 3.5
"""Upper end of the paper's phase range, in radians (phase maps span [0, 3.5] rad)."""

REFERENCE_FRESNEL = PAPER_WAVELENGTH * PAPER_DEFOCUS / PAPER_PIXEL_SIZE**2
"""`s = λ·dz / p²` of the paper's optics (≈ 11.81), see `fresnel_number`."""


def fresnel_number(wavelength, pixel_size, defocus):
    """`s = λ·dz / p²`: the one number through which the optics enter a defocus pair.

    In pixel frequencies `f = f_pix / p` the Fresnel transfer function
    `exp(-iπ λ dz |f|²)` is `exp(-iπ s |f_pix|²)`: two microscopes with the same `s`
    give the same images of the same phase map (in radians, per pixel).

    Examples:
        >>> round(fresnel_number(0.521, 0.21, 1.0), 2)
        11.81
    """
    return wavelength * defocus / pixel_size**2


RGB_WAVELENGTHS = (0.630, 0.550, 0.450)
"""Centre wavelengths (µm) of a colour camera's red, green and blue channels, as in the
reference implementation's polychromatic brightfield model."""


def frequency_grid(shape: tuple[int, int], pixel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Spatial frequencies (cycles/µm) of an FFT grid, as broadcastable `(H, 1)`, `(1, W)`.

    Args:
        shape (tuple[int, int]): `(H, W)` of the grid.
        pixel_size (float): sampling interval in µm.

    Returns:
        tuple[np.ndarray, np.ndarray]: `(fy, fx)` in `np.fft.fftfreq` order.

    Examples:
        >>> fy, fx = frequency_grid((4, 8), 0.5)
        >>> fy.shape, fx.shape, float(fx[0, 1])
        ((4, 1), (1, 8), 0.25)
    """
    fy = np.fft.fftfreq(shape[0], d=pixel_size)[:, None]
    fx = np.fft.fftfreq(shape[1], d=pixel_size)[None, :]
    return fy, fx


def _propagate(field: np.ndarray, wavelength, pixel_size: float, distance) -> np.ndarray:
    """complex128 Fresnel propagation of a complex128 field (see `fresnel_propagate`)."""
    fy, fx = frequency_grid(field.shape[-2:], pixel_size)
    wavelength = np.asarray(wavelength, dtype=np.float64)[..., None, None]
    distance = np.asarray(distance, dtype=np.float64)[..., None, None]
    transfer = np.exp(-1j * np.pi * wavelength * distance * (fx**2 + fy**2))
    return np.fft.ifft2(np.fft.fft2(field, axes=(-2, -1)) * transfer, axes=(-2, -1))


def fresnel_propagate(
    field: np.ndarray,
    wavelength: float | np.ndarray,
    pixel_size: float,
    distance: float | np.ndarray,
) -> np.ndarray:
    """Propagate a complex field by `distance` with the paraxial (Fresnel) transfer function.

    The field is multiplied in Fourier space by

        H(fx, fy) = exp(-i π λ z (fx² + fy²))

    which is Goodman's Fresnel transfer function (time dependence `exp(-i ω t)`, waves
    travelling towards `+z` as `exp(+i k z)`) without its constant factor `exp(i k z)`,
    which changes no intensity. `distance > 0` propagates downstream (away from the
    source), `distance < 0` back-propagates; `H(z) H(-z) = 1`, so the two invert each
    other exactly. `|H| = 1`, so the total energy `Σ|U|²` is conserved (Parseval).

    Boundaries are periodic (FFT). The transfer function is well sampled for
    `|distance| ≲ N · pixel_size² / wavelength`; beyond that the field wraps around.

    Args:
        field (np.ndarray): complex array `(..., H, W)`; leading axes are a batch.
        wavelength (float | np.ndarray): wavelength in µm (a scalar, or an array
            broadcastable to the leading axes of `field`).
        pixel_size (float): sampling interval in µm (square pixels).
        distance (float | np.ndarray): propagation distance in µm (scalar or
            broadcastable array).

    Returns:
        np.ndarray: the propagated field, complex64, shaped like `field` (broadcast with
        the leading shapes of `wavelength` and `distance`).

    Examples:
        >>> import numpy as np
        >>> u0 = np.exp(1j * np.random.default_rng(0).uniform(0, 1, (64, 64)))
        >>> u1 = fresnel_propagate(u0, 0.521, 0.21, 2.0)
        >>> bool(np.allclose(np.sum(abs(u1) ** 2), np.sum(abs(u0) ** 2), rtol=1e-5))
        True
    """
    check_positive(wavelength=wavelength, pixel_size=pixel_size)
    field = np.asarray(field, dtype=np.complex128)
    return _propagate(field, wavelength, pixel_size, distance).astype(np.complex64)


def _field_from_phase(phase: np.ndarray, amplitude: np.ndarray | None) -> np.ndarray:
    phase = np.asarray(phase, dtype=np.float64)
    if phase.ndim < 2:
        raise ValueError(f"`phase` must have at least 2 dimensions (H, W), got {phase.shape}.")
    field = np.exp(1j * phase)
    if amplitude is not None:
        field = field * np.asarray(amplitude, dtype=np.float64)
    return field


def defocus_stack(
    phase: np.ndarray,
    wavelength: float = PAPER_WAVELENGTH,
    pixel_size: float = PAPER_PIXEL_SIZE,
    distances: Sequence[float] = (-PAPER_DEFOCUS, PAPER_DEFOCUS),
    amplitude: np.ndarray | None = None,
) -> np.ndarray:
    """Intensities of a thin specimen `amplitude · exp(i·phase)` at several defocus planes.

    Args:
        phase (np.ndarray): phase map in radians, `(..., H, W)`.
        wavelength (float): wavelength in µm.
        pixel_size (float): pixel size in µm.
        distances (Sequence[float]): defocus distances in µm (negative: before focus).
        amplitude (np.ndarray | None): amplitude transmission `(..., H, W)` (default 1,
            a pure phase object).

    Returns:
        np.ndarray: float32 `(len(distances), ..., H, W)` intensities
        `|propagate(field, z)|²`; a unit-amplitude object has mean intensity 1.

    Examples:
        >>> import numpy as np
        >>> stack = defocus_stack(np.zeros((32, 32)), distances=(-2.0, 0.0, 2.0))
        >>> stack.shape
        (3, 32, 32)
    """
    check_positive(wavelength=wavelength, pixel_size=pixel_size)
    field = _field_from_phase(phase, amplitude)
    out = [np.abs(_propagate(field, wavelength, pixel_size, z)) ** 2 for z in distances]
    return np.stack(out).astype(np.float32)


def defocus_pair(
    phase: np.ndarray,
    wavelength: float = PAPER_WAVELENGTH,
    pixel_size: float = PAPER_PIXEL_SIZE,
    defocus: float = PAPER_DEFOCUS,
    amplitude: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The paper's two-shot QPI measurement: intensities at `-defocus` and `+defocus`.

    The specimen is the thin transmission `amplitude · exp(i·phase)` at `z = 0`,
    illuminated by a unit plane wave; see `fresnel_propagate` for the sign convention
    (a positive phase bump brightens at `+defocus`).

    Args:
        phase (np.ndarray): phase map in radians, `(..., H, W)`.
        wavelength (float): wavelength in µm (paper: 0.521).
        pixel_size (float): pixel size in µm (paper: 0.21).
        defocus (float): defocus distance `dz` in µm (paper: 1).
        amplitude (np.ndarray | None): amplitude transmission (default: a pure phase
            object).

    Returns:
        tuple[np.ndarray, np.ndarray]: `(i_minus, i_plus)`, float32 intensities `I(-dz)`
        and `I(+dz)`, each shaped like `phase`. Without noise and with unit amplitude,
        each has mean exactly 1.

    Examples:
        >>> import numpy as np
        >>> yy, xx = np.mgrid[-32:32, -32:32]
        >>> phase = 1.0 * np.exp(-(xx**2 + yy**2) / 100.0)
        >>> i_minus, i_plus = defocus_pair(phase)
        >>> bool(i_plus[32, 32] > 1.0 > i_minus[32, 32])
        True
    """
    i_minus, i_plus = defocus_stack(phase, wavelength, pixel_size, (-defocus, defocus), amplitude)
    return i_minus, i_plus


def polychromatic_defocus(
    phase: np.ndarray,
    pixel_size: float = PAPER_PIXEL_SIZE,
    defocus: float | Sequence[float] = (1.0, 1.0, 1.0),
    center_wavelengths: Sequence[float] = RGB_WAVELENGTHS,
    bandwidths: float | Sequence[float] = (0.03, 0.03, 0.03),
    amplitude: np.ndarray | None = None,
    reference_wavelength: float | None = PAPER_WAVELENGTH,
    num_wavelengths: int = 9,
) -> np.ndarray:
    """Colour (RGB) brightfield image of a defocused phase object, with chromatic aberration.

    Each colour channel `c` integrates the intensity over a Gaussian spectral band
    (centre `center_wavelengths[c]`, standard deviation `bandwidths[c]`, sampled at
    `num_wavelengths` wavelengths within ±2.5 standard deviations and weighted by the
    Gaussian), each at its own defocus `defocus[c]` — a lens with axial chromatic
    aberration focuses the colours at different planes. This is the reference
    implementation's model of a real brightfield microscope (its training draws the
    per-channel defocus from U(0.01, 3) µm and the band widths from U(0.01, 0.1) µm).

    A thin specimen has a fixed optical path difference, so its phase scales as `1/λ`:
    `phase` is taken at `reference_wavelength` and rescaled to `phase · λ_ref / λ` for
    each wavelength. Pass `reference_wavelength=None` to use the same phase at every
    wavelength (what the reference implementation does).

    Args:
        phase (np.ndarray): phase map in radians at `reference_wavelength`, `(..., H, W)`.
        pixel_size (float): pixel size in µm.
        defocus (float | Sequence[float]): one defocus (µm) for all channels, or one per
            channel.
        center_wavelengths (Sequence[float]): centre wavelength (µm) of each channel
            (default R, G, B: 0.630, 0.550, 0.450).
        bandwidths (float | Sequence[float]): spectral standard deviation (µm), one for
            all or one per channel; 0 gives a monochromatic channel.
        amplitude (np.ndarray | None): amplitude transmission (default: pure phase object).
        reference_wavelength (float | None): wavelength (µm) at which `phase` is given,
            or `None`.
        num_wavelengths (int): spectral samples per channel (odd, so the centre is
            sampled).

    Returns:
        np.ndarray: float32 `(..., H, W, C)`, channels last, one channel per centre
        wavelength; each channel of a unit-amplitude object has mean 1.

    Examples:
        >>> import numpy as np
        >>> rgb = polychromatic_defocus(np.zeros((32, 32)), defocus=(0.5, 1.0, 1.5))
        >>> rgb.shape
        (32, 32, 3)
    """
    check_positive(pixel_size=pixel_size)
    centers = [float(c) for c in center_wavelengths]
    n_ch = len(centers)
    defocus = np.broadcast_to(np.asarray(defocus, dtype=np.float64), (n_ch,))
    bandwidths = np.broadcast_to(np.asarray(bandwidths, dtype=np.float64), (n_ch,))
    if num_wavelengths < 1:
        raise ValueError(f"`num_wavelengths` must be >= 1, got {num_wavelengths}.")
    phase = np.asarray(phase, dtype=np.float64)
    channels = []
    for center, sigma, dz in zip(centers, bandwidths, defocus, strict=True):
        if sigma > 0 and num_wavelengths > 1:
            wavelengths = center + sigma * np.linspace(-2.5, 2.5, num_wavelengths)
            weights = np.exp(-0.5 * ((wavelengths - center) / sigma) ** 2)
        else:
            wavelengths, weights = np.array([center]), np.array([1.0])
        check_positive(wavelength=wavelengths)
        weights = weights / weights.sum()
        intensity = 0.0
        for wl, w in zip(wavelengths, weights, strict=True):
            scale = 1.0 if reference_wavelength is None else reference_wavelength / wl
            field = _field_from_phase(phase * scale, amplitude)
            intensity = intensity + w * np.abs(_propagate(field, wl, pixel_size, dz)) ** 2
        channels.append(intensity)
    return np.stack(channels, axis=-1).astype(np.float32)
