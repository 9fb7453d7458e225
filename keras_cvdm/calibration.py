"""Calibration of a model's posterior std: one factor, fitted on validation data.

A diffusion model's sample spread can be off by a roughly constant factor (too few
training steps, an EMA of the weights, a sampler with few steps). `fit_std_scale`
finds the factor `c` for which the interval `mean ± k·c·σ` covers the chosen fraction
of the true values on data with known truth, and `std_scale(model)` reads the factor
stored in a model's metadata (`metadata["calibration"]["std_scale"]`, 1 when absent),
which `keras_cvdm.qpi.reconstruct` applies. Fit it on validation data, never on the
test set it is scored on; `keras_cvdm.metrics.calibration_curve` shows the result.
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
