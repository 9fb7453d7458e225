"""`keras_cvdm.evaluation.evaluate` and the Richardson–Lucy baseline it scores SR against.

The RL tests check mathematics (deconvolution sharpens, a delta PSF is the identity, flux
is conserved, tuning picks the best candidate). The `evaluate` tests recompute every
reported number from the public reconstructions and the `keras_cvdm.metrics` functions,
with the same seed, for simulated data, a TIFF folder and a `.npz` file.
"""

import json
import sys

import keras
import numpy as np
import pytest

import keras_cvdm
from keras_cvdm import metrics, qpi, sr
from keras_cvdm.data import SRDataset, SRNormalization, phantoms, qpi_test_set, sr_test_set
from keras_cvdm.evaluation import _simulated_sr, evaluate, format_table
from keras_cvdm.physics import (
    convolve,
    gaussian_psf,
    tie_phase,
    tune_tie_regularization,
    upsample,
)
from keras_cvdm.physics.deconvolution import richardson_lucy, sr_psf, tune_richardson_lucy

pytest.importorskip("scipy")
pytest.importorskip("skimage")

SAMPLING = {"num_samples": 2, "seed": 3, "num_steps": 2, "sampler": "ddim"}


@pytest.fixture(scope="module")
def qpi_model():
    return keras_cvdm.from_preset("qpi")


@pytest.fixture(scope="module")
def sr_model():
    return keras_cvdm.from_preset("sr-microscopy")


def _truths(size=48):
    return np.stack([
        phantoms.PHANTOMS[kind]((size, size), np.random.default_rng(i))
        for i, kind in enumerate(("puncta", "filaments", "rings"))
    ])


# ---------------------------------------------------------------------------- Richardson-Lucy


@pytest.mark.parametrize("psf", [gaussian_psf(2.0), sr_psf(48)], ids=["gaussian", "airy"])
def test_rl_moves_a_blurred_noise_free_image_towards_the_truth(psf):
    truth = _truths()
    blurred = convolve(truth, psf)
    for offset in ("zero", "min"):
        deconvolved = richardson_lucy(blurred, psf, 30, offset=offset, boundary="periodic")
        before = np.mean((blurred - truth) ** 2, axis=(1, 2))
        after = np.mean((deconvolved - truth) ** 2, axis=(1, 2))
        assert np.all(after < 0.6 * before)


def test_rl_with_a_delta_psf_returns_the_input():
    image = np.random.default_rng(0).normal(size=(2, 20, 24))  # negative values too
    for boundary in ("symmetric", "periodic", "zero"):
        out = richardson_lucy(image, np.ones((1, 1)), 4, boundary=boundary)
        np.testing.assert_allclose(out, image, atol=1e-5)
    positive = image - image.min() + 0.5
    np.testing.assert_allclose(richardson_lucy(positive, np.ones((1, 1)), 2, offset="zero"),
                               positive, rtol=1e-5)


def test_rl_conserves_flux_and_works_in_the_input_units():
    truth = _truths()
    psf = gaussian_psf(1.5)
    blurred = convolve(truth, psf)
    # With scikit-image's own (zero) boundary RL conserves the flux exactly; the padded
    # boundaries conserve it up to what leaves through the image border.
    exact = richardson_lucy(blurred, psf, 20, offset="zero", boundary="zero")
    np.testing.assert_allclose(exact.sum((1, 2)), blurred.sum((1, 2)), rtol=1e-4)
    padded = richardson_lucy(blurred, psf, 20, offset="zero", boundary="periodic")
    np.testing.assert_allclose(padded.sum((1, 2)), blurred.sum((1, 2)), rtol=0.03)
    # An affine change of units (positive slope) passes through unchanged.
    scaled = richardson_lucy(3.0 * blurred + 100.0, psf, 20, boundary="periodic")
    reference = richardson_lucy(blurred, psf, 20, boundary="periodic")
    np.testing.assert_allclose(scaled, 3.0 * reference + 100.0, rtol=1e-4, atol=1e-3)
    assert padded.shape == blurred.shape and padded.dtype == np.float32


def test_tuned_iteration_count_is_the_best_candidate():
    truth = _truths(32)
    psf = gaussian_psf(1.5)
    rng = np.random.default_rng(1)
    blurred = convolve(truth, psf) + 0.02 * rng.standard_normal(truth.shape)
    grid = (1, 3, 10, 30, 100)
    best, scores = tune_richardson_lucy(blurred, truth, psf, grid, boundary="periodic")
    assert sorted(scores) == list(grid)
    assert scores[best] == max(scores.values())
    assert 1 < best < 100  # too few iterations blur, too many amplify the noise
    # Each score is the mean PSNR of the affine-fitted result, recomputed here.
    for num_iter in (best, 1):
        out = richardson_lucy(blurred, psf, num_iter, boundary="periodic")
        fitted = np.stack([metrics.affine_fit(o, t)[0] for o, t in zip(out, truth)])
        assert scores[num_iter] == pytest.approx(np.mean(metrics.psnr(fitted, truth, 2.0)))


def test_sr_psf_is_the_simulators_psf():
    for size, kind in ((32, "airy"), (128, "airy"), (16, "gaussian")):
        simulator = SRDataset(psf=kind, batch_size=1, image_size=size, num_batches=1)
        np.testing.assert_array_equal(sr_psf(size, kind), simulator.psf)
    measured = gaussian_psf(3.0, size=41)
    np.testing.assert_array_equal(
        sr_psf(24, measured),
        SRDataset(psf=measured, batch_size=1, image_size=24, num_batches=1).psf,
    )


def test_rl_errors_name_the_problem(monkeypatch):
    image = np.ones((8, 8))
    with pytest.raises(ValueError, match="odd sides"):
        richardson_lucy(image, np.ones((2, 2)))
    with pytest.raises(ValueError, match="non-negative"):
        richardson_lucy(-image, np.ones((1, 1)), offset="zero")
    with pytest.raises(ValueError, match="num_iter"):
        richardson_lucy(image, np.ones((1, 1)), 0)
    monkeypatch.setitem(sys.modules, "skimage.restoration", None)
    with pytest.raises(ImportError, match=r"keras-cvdm\[metrics\]"):
        richardson_lucy(image, np.ones((1, 1)))


# ---------------------------------------------------------------------------- evaluate


def _expected(estimate, std, truth, mae, data_range, ms_ssim=True):
    """The scores `evaluate` should report for one method, from `keras_cvdm.metrics`."""
    out = {
        "mae": float(np.mean(mae)),
        "psnr": float(np.mean(metrics.psnr(estimate, truth, data_range))),
        "ssim": float(np.mean(metrics.ssim(estimate, truth, data_range))),
        "ms_ssim": float(np.mean(metrics.ms_ssim(estimate, truth, data_range)))
        if ms_ssim else None,
    }
    if std is not None:
        out["coverage_2sigma"] = metrics.coverage(estimate, std, truth, k=2.0)
        out["std_error_spearman"] = metrics.spearman(std, np.abs(estimate - truth))
        out["mean_std"] = float(np.mean(std))
        out["calibration_curve"] = dict(zip(
            [f"{level:g}" for level in metrics.CALIBRATION_LEVELS],
            metrics.calibration_curve(estimate, std, truth), strict=True))
    return out


def _assert_scores(reported, expected):
    assert set(reported) == set(expected)
    for key, value in expected.items():
        if value is None:
            assert reported[key] is None, key
        else:
            assert reported[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key


def _expected_qpi(model, i_minus, i_plus, phase, boundaries=("periodic",)):
    mean, std = qpi.reconstruct(model, i_minus, i_plus, **SAMPLING)
    tuned = []
    for boundary in boundaries:
        eps, errors = tune_tie_regularization(i_minus, i_plus, phase, boundary=boundary)
        tuned.append((errors[eps], eps, boundary))
    _, eps, boundary = min(tuned)
    tie = tie_phase(i_minus, i_plus, regularization=eps, boundary=boundary)
    return {
        name: (metrics.align_phase(estimate, phase), spread, metrics.phase_mae(estimate, phase))
        for name, estimate, spread in (("cvdm", mean, std), ("tie", tie, None))
    }, eps, boundary


def test_evaluate_qpi_reports_the_metrics_of_the_reconstructions(qpi_model):
    results = evaluate(qpi_model, num_images=4, image_size=32, noise_levels=[0.05],
                       **SAMPLING)
    assert results["task"] == "qpi" and list(results["levels"]) == ["0.05"]
    assert results["settings"] == {
        "data": "simulated", "num_images": 4, "image_size": [32, 32], "noise_levels": [0.05],
        "num_samples": 2, "num_steps": 2, "sampler": "ddim", "seed": 3, "tile": None,
        "overlap": None, "backend": keras.backend.backend(),
        "optics": {"wavelength": 0.521, "pixel_size": 0.21, "defocus": 1.0},
    }
    level = results["levels"]["0.05"]
    i_minus, i_plus, phase, kinds = qpi_test_set(4, 32, 0.05, return_kinds=True)
    methods, eps, _ = _expected_qpi(qpi_model, i_minus, i_plus, phase)
    assert level["tie_regularization"] == pytest.approx(eps)
    assert level["num_images"] == 4 and results["data_range"] == pytest.approx(3.5)
    for name, (estimate, spread, mae) in methods.items():
        _assert_scores(level["methods"][name], _expected(estimate, spread, phase, mae, 3.5))
    kinds = np.asarray(kinds)
    assert {k: v["num_images"] for k, v in level["by_kind"].items()} == {
        k: int(np.sum(kinds == k)) for k in set(kinds.tolist())
    }
    kind = sorted(level["by_kind"])[0]
    index = kinds == kind
    for name, (estimate, spread, mae) in methods.items():
        _assert_scores(
            level["by_kind"][kind]["methods"][name],
            _expected(estimate[index], None if spread is None else spread[index],
                      phase[index], mae[index], 3.5),
        )
    table = format_table(results)
    assert "cvdm" in table and "tie" in table and f"0.05 {kind}" in table


def test_evaluate_sr_reports_the_metrics_of_the_reconstructions(sr_model):
    results = evaluate(sr_model, num_images=2, image_size=32, **SAMPLING)
    level = results["levels"]["simulated"]
    # The raw wide-field images are those of the SR test set.
    low, target, psf = _simulated_sr(sr_model, 2, 32)
    x, y = sr_test_set(2, 32)
    norm = SRNormalization()
    np.testing.assert_array_equal(
        np.stack([norm.normalize_input(upsample(image, 2))[0] for image in low]), x
    )
    np.testing.assert_array_equal(target, y)
    np.testing.assert_array_equal(psf, sr_psf(32))
    _check_sr_level(sr_model, level, low, y, psf, ("periodic",))
    assert results["settings"]["num_images"] == 2 and results["skipped"] == {}


def _check_sr_level(model, level, low, target, psf, boundaries):
    mean, std = sr.reconstruct(model, low, **SAMPLING)
    upsampled = upsample(low, 2)
    tuned = []
    for boundary in boundaries:
        num_iter, scores = tune_richardson_lucy(upsampled, target, psf, boundary=boundary)
        tuned.append((-scores[num_iter], num_iter, boundary))
    _, num_iter, boundary = min(tuned)
    assert (level["rl_iterations"], level["rl_boundary"]) == (num_iter, boundary)
    deconvolved = richardson_lucy(upsampled, psf, num_iter, boundary=boundary)
    for name, estimate, spread in (("cvdm", mean, std), ("richardson_lucy", deconvolved, None),
                                   ("upsampled", upsampled, None)):
        fits = [metrics.affine_fit(e, t) for e, t in zip(estimate, target)]
        fitted = np.stack([f for f, _ in fits])
        if spread is not None:
            spread = spread * np.abs([s for _, s in fits])[:, None, None]
        _assert_scores(level["methods"][name],
                       _expected(fitted, spread, target, metrics.mae(fitted, target), 2.0))


def test_evaluate_qpi_on_a_tiff_folder(qpi_model, tmp_path):
    from keras_cvdm import io

    i_minus, i_plus, phase = qpi_test_set(5, 32, 0.05)
    for i in range(5):
        io.write_stack(tmp_path / "x" / f"p{i}.tif", np.stack([i_minus[i], i_plus[i]]))
        io.write_image(tmp_path / "y" / f"p{i}.tif", phase[i])
    # Only the first `num_images` pairs (in file-name order) are used.
    results = evaluate(qpi_model, data=str(tmp_path), num_images=4, **SAMPLING)
    assert results["settings"]["num_available"] == 5
    assert results["settings"]["num_images"] == 4
    assert results["settings"]["noise_levels"] is None
    level = results["levels"]["data"]
    assert "by_kind" not in level and level["num_images"] == 4
    i_minus, i_plus, phase = i_minus[:4], i_plus[:4], phase[:4]
    methods, eps, boundary = _expected_qpi(qpi_model, i_minus, i_plus, phase,
                                           ("periodic", "symmetric"))
    assert (level["tie_regularization"], level["tie_boundary"]) == (pytest.approx(eps), boundary)
    for name, (estimate, spread, mae) in methods.items():
        _assert_scores(level["methods"][name], _expected(estimate, spread, phase, mae, 3.5))


def test_evaluate_sr_on_an_npz_in_any_units(sr_model, tmp_path):
    low, target, _ = _simulated_sr(sr_model, 2, 32)
    path = tmp_path / "pairs.npz"
    np.savez(path, x=500.0 * low + 100.0, y=7.0 * target[..., None])
    results = evaluate(sr_model, data=path, **SAMPLING)
    level = results["levels"]["data"]
    norm = SRNormalization()
    target = np.stack([norm.normalize_target(7.0 * t)[0] for t in target])
    _check_sr_level(sr_model, level, 500.0 * low + 100.0, target, sr_psf(32),
                    ("symmetric", "periodic"))


def test_small_images_skip_ms_ssim_with_a_reason(qpi_model):
    results = evaluate(qpi_model, num_images=2, image_size=16, noise_levels=0.1, **SAMPLING)
    assert results["ms_ssim_scales"] == 0 and "16×16" in results["skipped"]["ms_ssim"]
    methods = results["levels"]["0.1"]["methods"]
    assert methods["cvdm"]["ms_ssim"] is None and methods["tie"]["ssim"] is not None
    table = format_table({"model": {"preset": "qpi", "weights_sha256": "0" * 64}, **results})
    assert "n/a" in table and "ms_ssim not computed" in table and "model qpi ·" in table
    json.dumps(results, allow_nan=False)  # plain floats, lists and dicts


def test_bad_data_and_wrong_task_raise_clear_errors(qpi_model, sr_model, tmp_path):
    with pytest.raises(ValueError, match="not a paired-data folder"):
        evaluate(qpi_model, data=str(tmp_path), **SAMPLING)
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    with pytest.raises(ValueError, match="No images"):
        evaluate(qpi_model, data=str(tmp_path), **SAMPLING)
    i_minus, i_plus, phase = qpi_test_set(2, 16, 0.05)
    qpi_pairs = tmp_path / "qpi.npz"
    np.savez(qpi_pairs, x=np.stack([i_minus, i_plus], -1), y=phase)
    with pytest.raises(ValueError, match="QPI model"):
        evaluate(sr_model, data=qpi_pairs, **SAMPLING)
    sr_pairs = tmp_path / "sr.npz"
    np.savez(sr_pairs, x=np.ones((2, 8, 8)), y=np.ones((2, 16, 16)))
    with pytest.raises(ValueError, match="super-resolution model"):
        evaluate(qpi_model, data=sr_pairs, **SAMPLING)
    same_grid = tmp_path / "same.npz"
    np.savez(same_grid, x=np.ones((2, 16, 16)), y=np.ones((2, 16, 16)))
    with pytest.raises(ValueError, match="2× x's size"):
        evaluate(sr_model, data=same_grid, **SAMPLING)
    with pytest.raises(ValueError, match="task"):
        evaluate(keras_cvdm.CVDM(), **SAMPLING)


def test_evaluate_command_prints_the_table_and_writes_the_same_numbers(tmp_path, capsys):
    from keras_cvdm import cli

    path = tmp_path / "scores.json"
    cli.main(["evaluate", "--preset", "sr-microscopy", "--num-images", "2", "--image-size",
              "32", "--samples", "2", "--steps", "2", "--json", str(path)])
    written = json.loads(path.read_text())
    direct = evaluate(keras_cvdm.from_preset("sr-microscopy"), num_images=2, image_size=32,
                      num_samples=2, num_steps=2, seed=0)
    assert written["levels"] == json.loads(json.dumps(direct["levels"]))
    assert written["model"]["preset"] == "sr-microscopy"
    assert "cvdm" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--overwrite"):
        cli.main(["evaluate", "--preset", "sr-microscopy", "--json", str(path)])
