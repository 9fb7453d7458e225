"""The `keras-cvdm demo` command on the built-in qpi preset (small, fast settings)."""

import json

import numpy as np
import pytest

import keras_cvdm
from keras_cvdm import cli
from keras_cvdm.data import qpi_test_set

# The optics of the `qpi` preset (µm): wavelength, pixel size, defocus.
WAVELENGTH, PIXEL, DEFOCUS = 0.521, 0.21, 1.0


def reference_tie(i_minus, i_plus, regularization):
    """TIE written from the equation, independently of `keras_cvdm.physics`.

    -k ∂I/∂z = ∇·(I ∇φ) with a uniform in-focus intensity Ī gives ∇²φ = -(k/Ī) ∂I/∂z.
    In Fourier space ∇² is -ω² (ω = 2π|f|); its inverse is regularised as
    -ω²/(ω⁴ + ε), so φ̂ = (k/Ī) · ω²/(ω⁴ + ε) · (∂I/∂z)^, with the DC term set to 0.
    """
    k = 2 * np.pi / WAVELENGTH
    didz = (i_plus.astype(np.float64) - i_minus) / (2 * DEFOCUS)
    mean_intensity = 0.5 * (i_plus.astype(np.float64) + i_minus).mean(axis=(1, 2), keepdims=True)
    fy = np.fft.fftfreq(i_minus.shape[1], d=PIXEL)[:, None]
    fx = np.fft.fftfreq(i_minus.shape[2], d=PIXEL)[None, :]
    omega2 = (2 * np.pi) ** 2 * (fx**2 + fy**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = omega2 / (omega2**2 + regularization)
    inverse[0, 0] = 0.0
    phase = np.real(np.fft.ifft2(np.fft.fft2(didz) * inverse)) * k / mean_intensity
    return phase


def aligned_abs_error(estimate, truth):
    """Per-image mean |error| after matching the estimate's mean to the truth's."""
    shifted = estimate - (estimate - truth).mean(axis=(1, 2), keepdims=True)
    return np.abs(shifted - truth).mean(axis=(1, 2))


def _run(tmp_path, *extra):
    cli.main(["demo", "--output", str(tmp_path), "--num-images", "2", "--image-size", "32",
              "--samples", "2", *extra])


def test_reference_tie_recovers_a_smooth_phase_object():
    # Sanity check of the test's own solver on a noise-free, weakly defocused object.
    yy, xx = np.mgrid[-32:32, -32:32] * PIXEL
    phase = 0.5 * np.exp(-(xx**2 + yy**2) / 2.0)[None]
    i_minus, i_plus = keras_cvdm.physics.defocus_pair(phase)
    error = aligned_abs_error(reference_tie(i_minus, i_plus, 1e-6), phase)
    assert error[0] < 0.02 * phase.max()


def test_demo_reports_each_image_and_refuses_to_overwrite(tmp_path, capsys):
    pytest.importorskip("scipy")
    optics = keras_cvdm.from_preset("qpi").metadata["forward_model"]
    assert (optics["wavelength_um"], optics["pixel_size_um"], optics["defocus_um"]) == (
        WAVELENGTH, PIXEL, DEFOCUS)
    _run(tmp_path)
    out = capsys.readouterr().out
    metrics = json.loads((tmp_path / "qpi_demo_metrics.json").read_text())
    rows = metrics["per_image"]
    assert len(rows) == 2
    assert np.mean([r["cvdm_mae_rad"] for r in rows]) == pytest.approx(
        metrics["cvdm_mae_rad_mean_aligned"])
    # The TIE column: the best regularisation on a half-decade grid 1e-6 … 1e3 (lowest
    # mean error over these images), from the test's own solver.
    i_minus, i_plus, phase, kinds = qpi_test_set(2, 32, 0.05, return_kinds=True)
    errors = [aligned_abs_error(reference_tie(i_minus, i_plus, 10.0**e), phase)
              for e in np.arange(-6.0, 3.01, 0.5)]
    best = min(errors, key=np.mean)
    np.testing.assert_allclose([r["tie_tuned_mae_rad"] for r in rows], best, rtol=1e-4)
    assert [r["kind"] for r in rows] == [str(k) for k in kinds]
    assert "held-out evaluation" in out and "on 64 images" in out
    # A second run must not replace what the first wrote unless asked.
    before = (tmp_path / "qpi_demo_metrics.json").read_text()
    with pytest.raises(SystemExit, match="--overwrite"):
        _run(tmp_path)
    assert (tmp_path / "qpi_demo_metrics.json").read_text() == before


@pytest.mark.parametrize("argv, message", [
    (["demo", "--noise", "-1"], "argument --noise: expected a finite number at least 0, got '-1'"),
    (["demo", "--noise", "nan"], "argument --noise: expected a finite number at least 0"),
    (["evaluate", "--preset", "qpi", "--noise", "0.05", "inf"], "argument --noise"),
    (["evaluate", "--preset", "qpi", "--samples", "1"], "argument --samples: expected a whole"),
    (["predict", "--preset", "qpi", "--input", "a.tif", "--output", "out", "--steps", "2.7"],
     "argument --steps: expected a whole number of at least 1, got '2.7'"),
    (["predict", "--preset", "qpi", "--input", "a.tif", "--output", "out", "--seed", "-3"],
     "argument --seed"),
    (["predict", "--preset", "qpi", "--input", "a.tif", "--output", "out", "--defocus", "0"],
     "argument --defocus: expected a finite number greater than 0"),
    (["train", "--output", "run", "--learning-rate", "nan"], "argument --learning-rate"),
    (["train", "--output", "run", "--batch-size", "0"], "argument --batch-size"),
])
def test_numbers_no_run_can_use_are_argument_errors(tmp_path, monkeypatch, capsys, argv,
                                                    message):
    """Refused by the parser (exit status 2), before a model loads or a file is written."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv + ["--output", str(tmp_path / "o")] if argv[0] == "demo" else argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
