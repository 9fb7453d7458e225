"""The uncertainty scoring of `benchmarks/quality.py`, against Gaussian closed forms."""

import importlib.util
import os
from statistics import NormalDist

import numpy as np
import pytest

pytest.importorskip("scipy")

_PATH = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "quality.py")
_SPEC = importlib.util.spec_from_file_location("quality_benchmark", _PATH)
quality = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(quality)


def test_calibrated_gaussian_errors_give_the_nominal_coverage():
    rng = np.random.default_rng(0)
    std = rng.uniform(0.1, 2.0, size=(8, 64, 64))
    truth = rng.normal(size=std.shape)
    estimate = truth + std * rng.standard_normal(std.shape)
    scores = quality.uncertainty_metrics(estimate, std, truth)
    # P(|Z| <= 2) for a standard normal.
    assert scores["coverage_2std"] == pytest.approx(2 * NormalDist().cdf(2) - 1, abs=0.005)
    np.testing.assert_allclose(scores["calibration"], quality.CALIBRATION_LEVELS, atol=0.01)
    # Larger std, larger errors: rank correlation of std with |error| is clearly positive.
    assert scores["spearman"] > 0.3


def test_overconfident_std_undercovers_and_uninformative_std_does_not_rank():
    rng = np.random.default_rng(1)
    truth = np.zeros((4, 64, 64))
    estimate = rng.normal(size=truth.shape)  # unit errors everywhere
    half = quality.uncertainty_metrics(estimate, np.full(truth.shape, 0.5), truth)
    # With std = 0.5 the ±2σ interval is ±1σ of the true errors.
    assert half["coverage_2std"] == pytest.approx(2 * NormalDist().cdf(1) - 1, abs=0.015)
    noise = quality.uncertainty_metrics(estimate, rng.uniform(0.5, 1.5, truth.shape), truth)
    assert abs(noise["spearman"]) < 0.05
