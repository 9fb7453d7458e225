"""Calibration of a trained model's output, fitted on validation data.

Two corrections, each fitted on data with known truth (validation fields, never the
test set they are scored on) and stored in the model's `metadata["calibration"]`, which
`keras_cvdm.qpi.reconstruct` applies:

- **The posterior std, one factor.** A diffusion model's sample spread can be off by a
  roughly constant factor (too few training steps, an EMA of the weights, a sampler with
  few steps). `fit_std_scale` finds the factor `c` for which `mean ± k·c·σ` covers the
  chosen fraction of the true values; `std_scale(model)` reads it (1 when absent).
  `keras_cvdm.metrics.calibration_curve` shows the result.
- **A blend of the estimate with a physics estimate, per band of spatial frequency.**
  Where a learned correction adds error at some scales that a physics solve does not
  have, `estimate + w_b·P_b(source − estimate)` (`P_b` keeps the Fourier coefficients in
  band `b`, `w_b` in [0, 1]) takes part of each band from the physics. `fit_band_blend`
  finds the least-squares `w_b`; `blend_bands` applies them; `band_blend(model)` reads
  them (None when absent), and `weights_at_fresnel_number` lowers them for optics whose
  TIE solve is noisier than on the fields they were fitted on. Bands are in cycles per
  pixel, so a blend applies to images of any size (the shipped one was fitted and scored
  on 128² fields; on larger ones the frequencies below its first edge stay the model's).
  The zero frequency (the free phase constant) is never touched.
"""

from __future__ import annotations

import numpy as np

from keras_cvdm import validation

#: Coverage of `mean ± 2σ` for a Gaussian error: the target of `fit_std_scale`.
GAUSSIAN_COVERAGE_2SIGMA = 0.9545


def fit_std_scale(estimate, std, truth, k=2.0, coverage=GAUSSIAN_COVERAGE_2SIGMA):
    """The factor `c` with which `estimate ± k·c·std` covers `coverage` of `truth`.

    The pooled `coverage`-quantile of `|estimate − truth| / std`, over `k`: the
    smallest `c` whose interval holds that fraction of the pixels.

    Args:
        estimate, std, truth: arrays of one shape (std > 0 where it counts).
        k: half-width of the interval in stds.
        coverage: the wanted fraction in (0, 1).

    Returns:
        float: `c > 0`.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> error = 3.0 * rng.standard_normal(200_000)   # true spread 3
        >>> round(fit_std_scale(error, np.ones_like(error), np.zeros_like(error)), 1)
        3.0
    """
    coverage = validation.check_number(coverage, "coverage", minimum=0, strict=True)
    if coverage >= 1:
        raise ValueError(f"`coverage` must be below 1, got {coverage}.")
    k = validation.check_number(k, "k", minimum=0, strict=True)
    estimate, std, truth = (np.asarray(a, np.float64) for a in (estimate, std, truth))
    if not estimate.shape == std.shape == truth.shape:
        raise ValueError(
            f"estimate, std and truth must share one shape, got {estimate.shape}, "
            f"{std.shape} and {truth.shape}."
        )
    ratio = np.abs(estimate - truth) / np.maximum(std, np.finfo(np.float64).tiny)
    return float(np.quantile(ratio, coverage) / k)


#: Edges of the blend's bands in cycles per pixel: 0.5, 1.5, 3, 6, 12 and 24 cycles across
#: a 128-pixel field, and everything finer (no FFT coefficient lies above √2/2 < 1).
BLEND_EDGES = (0.5 / 128, 1.5 / 128, 3 / 128, 6 / 128, 12 / 128, 24 / 128, 1.0)


def _check_edges(edges):
    edges = np.asarray(edges, np.float64)
    if (edges.ndim != 1 or edges.size < 2 or edges[0] <= 0
            or not np.all(edges[1:] > edges[:-1])):
        raise ValueError(
            "`edges` must be two or more increasing frequencies > 0 in cycles per pixel "
            f"(the last may be inf), got {edges.tolist()}."
        )
    return edges


def _band_index(height, width, edges, real=False):
    """Band of each FFT coefficient (`rfft2`'s half plane when `real`); `B` outside all."""
    edges = _check_edges(edges)
    fx = np.fft.rfftfreq(width) if real else np.fft.fftfreq(width)
    f = np.hypot(np.fft.fftfreq(height)[:, None], fx[None, :])
    band = np.searchsorted(edges, f, side="right") - 1
    return np.where((band >= 0) & (band < len(edges) - 1), band, len(edges) - 1)


def band_masks(height, width, edges=BLEND_EDGES):
    """`(B, H, W)` bool: the FFT coefficients with `edges[b] ≤ |f| < edges[b+1]` (cycles/pixel).

    Examples:
        >>> band_masks(8, 8, (0.1, 0.3, float("inf"))).sum(axis=(1, 2)).tolist()
        [20, 43]
    """
    band = _band_index(height, width, edges)
    return np.stack([band == b for b in range(len(edges) - 1)])


def fit_band_blend(estimate, source, truth, edges=BLEND_EDGES):
    """The weights `w_b` in [0, 1] with which `blend_bands` brings `estimate` closest to `truth`.

    In each band, the least-squares weight of the step `source − estimate` towards the
    residual `truth − estimate`, pooled over every image's Fourier coefficients in the
    band, `Re Σ conj(s − e)·(t − e) / Σ |s − e|²`, clipped to [0, 1]. For two estimates
    with independent errors of powers `A` (estimate) and `B` (source) it is `A / (A + B)`.

    Args:
        estimate, source, truth: arrays of one shape `(..., H, W)`.
        edges: band edges in cycles per pixel (`BLEND_EDGES`).

    Returns:
        list of floats, one per band.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> truth = rng.standard_normal((64, 32, 32))
        >>> estimate = truth + 1.0 * rng.standard_normal(truth.shape)   # error power 1
        >>> source = truth + 2.0 * rng.standard_normal(truth.shape)     # error power 4
        >>> [round(w, 1) for w in fit_band_blend(estimate, source, truth, (0.01, 1.0))]
        [0.2]
    """
    estimate, source, truth = (np.asarray(a, np.float64) for a in (estimate, source, truth))
    if not estimate.shape == source.shape == truth.shape or estimate.ndim < 2:
        raise ValueError(
            "estimate, source and truth must share one shape (..., H, W), got "
            f"{estimate.shape}, {source.shape} and {truth.shape}."
        )
    e, s, t = (np.fft.fft2(a) for a in (estimate, source, truth))
    weights = []
    for inside in band_masks(*estimate.shape[-2:], edges):
        step, wanted = (s - e)[..., inside], (t - e)[..., inside]
        power = np.sum(np.abs(step) ** 2)
        w = np.real(np.sum(np.conj(step) * wanted)) / power if power > 0 else 0.0
        weights.append(float(np.clip(w, 0.0, 1.0)))
    return weights


def _check_weights(weights, edges, name="`weights`"):
    weights = np.asarray(weights, np.float64)
    bands = len(edges) - 1
    if weights.shape != (bands,) or not np.all((weights >= 0) & (weights <= 1)):
        raise ValueError(
            f"{name} must be {bands} numbers in [0, 1] (one per band), got "
            f"{weights.tolist()}."
        )
    return weights


def blend_bands(estimate, source, weights, edges=BLEND_EDGES):
    """`estimate + Σ_b w_b·P_b(source − estimate)`: band `b` of `source` at weight `w_b`.

    Computed one image at a time in float32 (real FFTs), so a large field costs a few
    copies of one image, not of the stack.

    Args:
        estimate, source: arrays of one shape `(..., H, W)`.
        weights: one weight in [0, 1] per band (`fit_band_blend`).
        edges: band edges in cycles per pixel.

    Returns:
        float32 array of `estimate`'s shape.

    Examples:
        >>> import numpy as np
        >>> e, s = np.zeros((8, 8)), np.random.default_rng(0).standard_normal((8, 8))
        >>> bool(np.allclose(blend_bands(e, s, [1.0], (1e-9, 1.0)), s - s.mean(), atol=1e-6))
        True
    """
    estimate, source = np.asarray(estimate), np.asarray(source)
    if estimate.shape != source.shape or estimate.ndim < 2:
        raise ValueError(
            "estimate and source must share one shape (..., H, W), got "
            f"{estimate.shape} and {source.shape}."
        )
    weights = _check_weights(weights, _check_edges(edges))
    height, width = estimate.shape[-2:]
    # Each coefficient's weight; 0 for those outside every band (the image mean among them).
    gain = np.append(weights, 0.0).astype(np.float32)[_band_index(height, width, edges,
                                                                  real=True)]
    out = np.empty(estimate.shape, np.float32)
    for at in np.ndindex(estimate.shape[:-2]):
        e = estimate[at].astype(np.float32)
        step = np.fft.rfft2(source[at].astype(np.float32) - e)
        out[at] = e + np.fft.irfft2(gain * step, s=(height, width))
    return out


def weights_at_fresnel_number(weights, fitted, fresnel):
    """Blend weights fitted at Fresnel number `fitted`, for images taken at `fresnel`.

    A least-squares weight is `A / (A + B)`, `A` the estimate's error power in the band,
    `B` the TIE solve's. The TIE's phase noise grows as `1/s` (`φ = (π/s)·∇⁻²(ΔI/Ī)` in
    pixel units), so below the fitted `s` its power is `B·(fitted/s)²` and the weight
    falls accordingly; above it the weights are kept (the TIE's linearisation error grows
    with `s`, which the noise model does not cover).

    Examples:
        >>> weights_at_fresnel_number([0.0, 0.5, 1.0], fitted=10.0, fresnel=5.0)
        [0.0, 0.2, 1.0]
        >>> weights_at_fresnel_number([0.5], fitted=10.0, fresnel=20.0)
        [0.5]
    """
    # Within the optics check's tolerance of the fitted s the weights are the fitted ones.
    grow = (fitted / fresnel) ** 2 if fresnel < fitted * (1 - 1e-3) else 1.0
    return [w / (w + (1.0 - w) * grow) for w in weights]


#: What `metadata["calibration"]["band_blend"]` holds.
BAND_BLEND_KEYS = ("weights", "edges_cycles_per_pixel", "tie_regularization_pixel",
                   "fresnel_number")


def band_blend(model):
    """The blend stored in `model.metadata["calibration"]["band_blend"]`, checked, or None.

    A dict `{"weights": [...], "edges_cycles_per_pixel": [...], "tie_regularization_pixel":
    ε, "fresnel_number": s}`: `keras_cvdm.qpi.reconstruct` blends its posterior mean with
    the TIE solve at regularisation `ε` (per pixel⁴, as `keras_cvdm.layers.tie_mean`) with
    these weights, fitted on images of Fresnel number `s` (`weights_at_fresnel_number`
    adapts them to other optics).

    Raises:
        ValueError: an entry that is incomplete or out of range, named.
    """
    stored = (getattr(model, "metadata", None) or {}).get("calibration") or {}
    blend = stored.get("band_blend")
    if blend is None:
        return None
    where = "metadata['calibration']['band_blend']"
    missing = [k for k in BAND_BLEND_KEYS if k not in blend]
    if missing:
        raise ValueError(
            f"{where} lacks {missing}; it needs {list(BAND_BLEND_KEYS)} (weights from "
            "keras_cvdm.calibration.fit_band_blend), or remove it to reconstruct without "
            "the blend."
        )
    edges = _check_edges(blend["edges_cycles_per_pixel"])
    _check_weights(blend["weights"], edges, f"{where}['weights']")
    validation.check_number(blend["fresnel_number"], f"{where}['fresnel_number']",
                            minimum=0, strict=True)
    validation.check_number(blend["tie_regularization_pixel"],
                            f"{where}['tie_regularization_pixel']", minimum=0)
    return blend


def std_scale(model):
    """The std factor stored in `model.metadata["calibration"]`, or 1.0.

    Examples:
        >>> from keras_cvdm import CVDM
        >>> std_scale(CVDM(metadata={"calibration": {"std_scale": 1.8}}))
        1.8
    """
    stored = (getattr(model, "metadata", None) or {}).get("calibration") or {}
    scale = stored.get("std_scale", 1.0)
    return validation.check_number(scale, "metadata['calibration']['std_scale']", minimum=0,
                                   strict=True)
