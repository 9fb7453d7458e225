"""The transport-of-intensity (TIE) baseline: phase from a defocused intensity pair.

Same conventions as `keras_cvdm.physics.propagation` (lengths in µm, last two axes
`(H, W)`, float64 inside, float32 out). Intensity fixes the phase only up to an additive
constant, so every estimate here has zero mean; `keras_cvdm.metrics.phase_mae` compares
it with a reference after aligning the constant.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from keras_cvdm.imaging import check_positive
from keras_cvdm.physics.propagation import (
    PAPER_DEFOCUS,
    PAPER_PIXEL_SIZE,
    PAPER_WAVELENGTH,
    frequency_grid,
)


def _inverse_laplacian(source: np.ndarray, pixel_size: float, regularization: float) -> np.ndarray:
    """Tikhonov-regularised solution of ∇²u = source (periodic), with zero mean.

    In Fourier space ∇² is `-ω²` (`ω = 2π|f|`, rad/µm); its inverse is replaced by
    `-ω² / (ω⁴ + ε)`, which equals `-1/ω²` where `ω⁴ ≫ ε` and suppresses the lowest
    frequencies (where TIE amplifies noise most) below `ε^{1/4}`.
    """
    fy, fx = frequency_grid(source.shape[-2:], pixel_size)
    omega2 = (2 * np.pi) ** 2 * (fx**2 + fy**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        kernel = -omega2 / (omega2**2 + regularization)
    kernel[0, 0] = 0.0
    return np.real(np.fft.ifft2(np.fft.fft2(source, axes=(-2, -1)) * kernel, axes=(-2, -1)))


def _gradient(u: np.ndarray, pixel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Spectral gradient (∂y, ∂x) on the last two axes, periodic."""
    fy, fx = frequency_grid(u.shape[-2:], pixel_size)
    u_hat = np.fft.fft2(u, axes=(-2, -1))
    gy = np.real(np.fft.ifft2(2j * np.pi * fy * u_hat, axes=(-2, -1)))
    gx = np.real(np.fft.ifft2(2j * np.pi * fx * u_hat, axes=(-2, -1)))
    return gy, gx


def _symmetric_extend(a: np.ndarray) -> np.ndarray:
    """Mirror an image into a (2H, 2W) even extension (Neumann boundaries for the FFT)."""
    a = np.concatenate([a, a[..., ::-1, :]], axis=-2)
    return np.concatenate([a, a[..., :, ::-1]], axis=-1)


def tie_phase(
    i_minus: np.ndarray,
    i_plus: np.ndarray,
    wavelength: float = PAPER_WAVELENGTH,
    pixel_size: float = PAPER_PIXEL_SIZE,
    defocus: float = PAPER_DEFOCUS,
    regularization: float = 1e-3,
    *,
    method: str = "uniform",
    boundary: str = "periodic",
) -> np.ndarray:
    """Phase from two defocused intensities with the transport-of-intensity equation.

    The TIE, `-k ∂I/∂z = ∇·(I ∇φ)` with `k = 2π/λ`, is solved with the axial derivative
    estimated by the central difference `(I(+dz) - I(-dz)) / (2 dz)` and a regularised
    FFT Poisson solver (`∇⁻²` replaced by `-ω²/(ω⁴ + ε)`, see `regularization`).

    - `method="uniform"`: assumes the in-focus intensity is uniform, `I ≈ Ī` (its mean,
      estimated as the mean of the two images): `φ = -k ∇⁻²(∂I/∂z) / Ī`. Exact in the
      weak-defocus limit for pure phase objects.
    - `method="teague"`: Teague's two-Poisson solution for a non-uniform in-focus
      intensity `I₀ ≈ (I(-dz) + I(+dz)) / 2`: `ψ = -k ∇⁻²(∂I/∂z)`,
      `φ = ∇⁻² ∇·(∇ψ / I₀)`.

    Intensity determines the phase only up to an additive constant: the returned phase
    has zero mean. Compare it with a reference after aligning means
    (`keras_cvdm.metrics.phase_mae`).

    Args:
        i_minus (np.ndarray): intensity at `-defocus`, `(..., H, W)`.
        i_plus (np.ndarray): intensity at `+defocus`, same shape.
        wavelength (float): wavelength in µm.
        pixel_size (float): pixel size in µm.
        defocus (float): defocus distance `dz` in µm (> 0; the images are at ∓dz).
        regularization (float): Tikhonov parameter ε ≥ 0 of the inverse Laplacian, in
            (rad/µm)⁴. Spatial frequencies `ω` (rad/µm) below about `ε^{1/4}` are
            suppressed; larger values trade low-frequency detail for noise robustness
            (`tune_tie_regularization` picks it on data with known phase). On the
            128×128 synthetic test set with the paper's optics the best values were
            0, 3e-5, 3e-4, 1e-3 and 1e-2 for relative noise std 0, 0.02, 0.05, 0.1 and
            0.2 (`benchmarks/tie_baseline.py`); the default suits noise std ≈ 0.1.
        method (str): `"uniform"` or `"teague"` (see above).
        boundary (str): `"periodic"` (FFT as is; right for simulated, periodic data) or
            `"symmetric"` (mirror-extend the images first: Neumann boundaries, better
            for real, non-periodic images).

    Returns:
        np.ndarray: float32 phase in radians, `(..., H, W)`, zero mean.

    Examples:
        >>> import numpy as np
        >>> from keras_cvdm.metrics import phase_mae
        >>> from keras_cvdm.physics import defocus_pair
        >>> yy, xx = np.mgrid[-64:64, -64:64] * 0.21
        >>> phase = 0.5 * np.exp(-(xx**2 + yy**2) / 8.0)
        >>> i_minus, i_plus = defocus_pair(phase)
        >>> estimate = tie_phase(i_minus, i_plus, regularization=1e-6)
        >>> float(phase_mae(estimate, phase)) < 0.01
        True
    """
    check_positive(wavelength=wavelength, pixel_size=pixel_size, defocus=defocus)
    if regularization < 0:
        raise ValueError(f"`regularization` must be >= 0, got {regularization}.")
    i_minus = np.asarray(i_minus, dtype=np.float64)
    i_plus = np.asarray(i_plus, dtype=np.float64)
    if i_minus.shape != i_plus.shape:
        raise ValueError(
            f"`i_minus` and `i_plus` must have the same shape, got {i_minus.shape} "
            f"and {i_plus.shape}."
        )
    if boundary not in ("periodic", "symmetric"):
        raise ValueError(f"`boundary` must be 'periodic' or 'symmetric', got {boundary!r}.")
    height, width = i_minus.shape[-2:]
    if boundary == "symmetric":
        i_minus, i_plus = _symmetric_extend(i_minus), _symmetric_extend(i_plus)

    k = 2 * np.pi / wavelength
    didz = (i_plus - i_minus) / (2 * defocus)
    in_focus = 0.5 * (i_plus + i_minus)
    if method == "uniform":
        mean_intensity = np.mean(in_focus, axis=(-2, -1), keepdims=True)
        phase = -k * _inverse_laplacian(didz, pixel_size, regularization) / mean_intensity
    elif method == "teague":
        floor = 1e-3 * np.mean(in_focus, axis=(-2, -1), keepdims=True)
        in_focus = np.maximum(in_focus, floor)
        psi = -k * _inverse_laplacian(didz, pixel_size, regularization)
        gy, gx = _gradient(psi, pixel_size)
        div_y, _ = _gradient(gy / in_focus, pixel_size)
        _, div_x = _gradient(gx / in_focus, pixel_size)
        phase = _inverse_laplacian(div_y + div_x, pixel_size, regularization)
    else:
        raise ValueError(f"`method` must be 'uniform' or 'teague', got {method!r}.")
    phase = phase[..., :height, :width]
    phase = phase - np.mean(phase, axis=(-2, -1), keepdims=True)
    return phase.astype(np.float32)


def tune_tie_regularization(
    i_minus: np.ndarray,
    i_plus: np.ndarray,
    phase: np.ndarray,
    wavelength: float = PAPER_WAVELENGTH,
    pixel_size: float = PAPER_PIXEL_SIZE,
    defocus: float = PAPER_DEFOCUS,
    grid: Sequence[float] | None = None,
    *,
    method: str = "uniform",
    boundary: str = "periodic",
) -> tuple[float, dict[float, float]]:
    """Oracle-tune the TIE regularisation on a set with known phase (the strongest baseline).

    Every value of `grid` is tried on the whole set and the one with the lowest
    mean-aligned MAE (`keras_cvdm.metrics.phase_mae`, averaged over images) is returned.
    Tuning on the evaluation set itself gives TIE an advantage a deployed method would
    not have: comparisons with it are conservative.

    Args:
        i_minus (np.ndarray): intensities at `-defocus`, `(N, H, W)`.
        i_plus (np.ndarray): intensities at `+defocus`, `(N, H, W)`.
        phase (np.ndarray): true phases in radians, `(N, H, W)`.
        wavelength (float): wavelength in µm.
        pixel_size (float): pixel size in µm.
        defocus (float): defocus distance in µm.
        grid (Sequence[float] | None): candidate values of ε (default: a log grid
            `10**k`, k = -6 … 3 in half-decades).
        method (str): TIE solver, see `tie_phase`.
        boundary (str): boundary handling, see `tie_phase`.

    Returns:
        tuple[float, dict[float, float]]: `(best_regularization, errors)` where `errors`
        maps each candidate to its mean mean-aligned MAE in radians.

    Examples:
        >>> import numpy as np
        >>> from keras_cvdm.physics import defocus_pair
        >>> yy, xx = np.mgrid[-32:32, -32:32] * 0.21
        >>> phase = np.exp(-(xx**2 + yy**2) / 4.0)[None]
        >>> i_minus, i_plus = defocus_pair(phase)
        >>> best, errors = tune_tie_regularization(i_minus, i_plus, phase)
        >>> errors[best] == min(errors.values())
        True
    """
    # Imported here: the metrics module pulls in Keras, which the physics does not need.
    from keras_cvdm.metrics import phase_mae

    if grid is None:
        grid = [float(10.0**e) for e in np.arange(-6.0, 3.01, 0.5)]
    errors: dict[float, float] = {}
    for reg in grid:
        estimate = tie_phase(
            i_minus, i_plus, wavelength, pixel_size, defocus, reg, method=method, boundary=boundary
        )
        errors[float(reg)] = float(np.mean(phase_mae(estimate, phase, "mean")))
    best = min(errors, key=errors.get)
    return best, errors
