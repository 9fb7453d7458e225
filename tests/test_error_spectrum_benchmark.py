"""The band substitution of `benchmarks/error_spectrum.py`."""

import numpy as np

from keras_cvdm.metrics import band_errors

from .benchmark_module import load_benchmark

error_spectrum = load_benchmark("error_spectrum")


def test_with_band_takes_the_band_from_the_source_and_keeps_the_rest():
    rng = np.random.default_rng(1)
    estimate, source = rng.normal(size=(2, 3, 32, 32))
    mixed = error_spectrum.with_band(estimate, source, (1.5, 6.0))
    assert mixed.shape == estimate.shape and np.isrealobj(mixed)
    edges = [0, 1.5, 6.0, np.inf]
    inside = band_errors(mixed, source, edges)
    outside = band_errors(mixed, estimate, edges)
    np.testing.assert_allclose(inside[:, 1], 0, atol=1e-12)
    np.testing.assert_allclose(outside[:, [0, 2]], 0, atol=1e-12)


def test_best_blend_is_no_worse_than_either_end_in_any_band():
    rng = np.random.default_rng(2)
    truth = rng.normal(size=(3, 32, 32))
    estimate = truth + rng.normal(scale=0.5, size=truth.shape)
    source = truth + rng.normal(scale=0.8, size=truth.shape)
    edges = error_spectrum.EDGES
    blended = band_errors(error_spectrum.best_blend(estimate, source, truth), truth, edges)
    ends = np.minimum(band_errors(estimate, truth, edges), band_errors(source, truth, edges))
    assert np.all(blended <= ends + 1e-12)
    # Independent errors: the blend beats both ends.
    assert np.all(blended.sum(axis=-1) < ends.sum(axis=-1))
    # A source equal to the truth is taken whole in every band (the mean, k = 0, in none).
    exact = error_spectrum.best_blend(estimate, truth, truth)
    np.testing.assert_allclose(band_errors(exact, truth, edges), 0, atol=1e-12)
    np.testing.assert_allclose(exact.mean(axis=(1, 2)), estimate.mean(axis=(1, 2)))
    # A source that errs the other way (best w < 0) is not taken at all: w is clipped at 0.
    away = error_spectrum.best_blend(estimate, 2 * estimate - truth, truth)
    np.testing.assert_allclose(away, estimate, atol=1e-12)


def test_best_blend_weight_is_the_grid_optimum():
    rng = np.random.default_rng(3)
    truth, estimate, source = rng.normal(size=(3, 1, 16, 16))
    edges = (0.5, 3.0, np.inf)
    blended = band_errors(error_spectrum.best_blend(estimate, source, truth, edges), truth, edges)
    grid = np.linspace(0, 1, 2001)
    best = np.min([band_errors(estimate + w * (source - estimate), truth, edges)
                   for w in grid], axis=0)
    np.testing.assert_allclose(blended, best, rtol=1e-5)
