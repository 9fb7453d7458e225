"""The band substitution of `benchmarks/error_spectrum.py`."""

import importlib.util
import os

import numpy as np

from keras_cvdm.metrics import band_errors

_PATH = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "error_spectrum.py")
_SPEC = importlib.util.spec_from_file_location("error_spectrum_benchmark", _PATH)
error_spectrum = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(error_spectrum)


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
    # The band's error is the estimate's own there; the rest is untouched.
    np.testing.assert_allclose(outside[:, 1], band_errors(source, estimate, edges)[:, 1])
