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


def test_band_gain_is_the_wiener_gain_and_leaves_the_wiener_error():
    # Truth of power P per pixel, seen through independent white noise of power N: in every
    # ring the least-squares gain tends to P / (P + N) and the band's error to P·N / (P + N).
    rng = np.random.default_rng(4)
    power, noise = 1.0, 0.5
    truth = rng.normal(scale=np.sqrt(power), size=(4000, 16, 16))
    source = truth + rng.normal(scale=np.sqrt(noise), size=truth.shape)
    band = (0.5, 2.5)
    gain = error_spectrum.band_gain(source, truth, band)
    inside = gain != 0
    # Rings |k|² = 1, 2, 4, 5 lie in the band; nothing outside it.
    assert inside.sum() == 4 + 4 + 4 + 8
    np.testing.assert_allclose(gain[inside], power / (power + noise), rtol=0.03)
    estimate = error_spectrum.with_band(truth, error_spectrum.apply_gain(source, gain), band)
    # White noise of power v per pixel puts v·(coefficients in band)/(H·W) in the band's MSE.
    expected = power * noise / (power + noise) * inside.sum() / 16**2
    measured = (band_errors(estimate, truth, [0.5, 2.5])[:, 0] ** 2).mean()
    np.testing.assert_allclose(measured, expected, rtol=0.03)


def test_band_gain_recovers_a_known_linear_filter():
    # A noiseless source that is the truth scaled differently per ring: gain = 1 / scale.
    rng = np.random.default_rng(5)
    truth = rng.normal(size=(8, 16, 16))
    k2 = np.round(np.add.outer(*(2 * [(np.fft.fftfreq(16) * 16) ** 2])), 6)
    scale = 1.0 + k2
    source = np.real(np.fft.ifft2(np.fft.fft2(truth) * scale))
    gain = error_spectrum.band_gain(source, truth, (0.5, 1.5))
    np.testing.assert_allclose(gain[(k2 >= 0.25) & (k2 < 2.25)],
                               1 / scale[(k2 >= 0.25) & (k2 < 2.25)], rtol=1e-9)
    assert np.all(gain[(k2 < 0.25) | (k2 >= 2.25)] == 0)
