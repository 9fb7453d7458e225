import sys
from statistics import NormalDist

import numpy as np
import pytest

from keras_cvdm import metrics


def pair(n=3, size=64, channels=None, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n, size, size) + ((channels,) if channels else ())
    clean = rng.uniform(size=shape)
    # Smooth the images a little so SSIM is not dominated by white noise.
    clean = (clean + np.roll(clean, 1, 1) + np.roll(clean, 1, 2)) / 3.0
    noisy = clean + noise * rng.normal(size=shape)
    return noisy.astype("float32"), clean.astype("float32")


def test_mae_and_psnr_against_closed_forms_and_scikit_image():
    skm = pytest.importorskip("skimage.metrics")
    a, b = pair()
    np.testing.assert_allclose(metrics.mae(a, b), np.mean(np.abs(a - b), axis=(1, 2)), rtol=1e-5)
    expected = [skm.peak_signal_noise_ratio(y, x, data_range=1.0) for x, y in zip(a, b)]
    np.testing.assert_allclose(metrics.psnr(a, b, data_range=1.0), expected, rtol=1e-5)
    assert np.all(np.isinf(metrics.psnr(b, b, data_range=1.0)))


def test_ssim_matches_scikit_image_gaussian_settings():
    skm = pytest.importorskip("skimage.metrics")
    a, b = pair(channels=None)
    expected = [
        skm.structural_similarity(
            x, y, data_range=2.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        for x, y in zip(a, b)
    ]
    np.testing.assert_allclose(metrics.ssim(a, b, data_range=2.0), expected, atol=1e-4)


@pytest.mark.parametrize("size, scales", [(192, 5), (64, 3), (75, 3)])
def test_ms_ssim_matches_tensorflow(size, scales):
    tf = pytest.importorskip("tensorflow")
    a, b = pair(n=2, size=size, channels=1, noise=0.2, seed=size)
    assert metrics.ms_ssim_scales(size, size) == scales
    weights = np.asarray(metrics.MS_SSIM_WEIGHTS[:scales])
    weights = (weights / weights.sum()).tolist()
    expected = tf.image.ssim_multiscale(
        tf.constant(a), tf.constant(b), max_val=1.0, power_factors=weights
    ).numpy()
    np.testing.assert_allclose(metrics.ms_ssim(a, b, data_range=1.0), expected, atol=1e-4)


def test_ms_ssim_is_one_for_identical_images_and_falls_with_noise():
    _, clean = pair(size=96)
    assert np.allclose(metrics.ms_ssim(clean, clean, data_range=1.0), 1.0, atol=1e-5)
    scores = [
        float(np.mean(metrics.ms_ssim(pair(size=96, noise=s)[0], clean, data_range=1.0)))
        for s in (0.02, 0.1, 0.3)
    ]
    assert scores[0] > scores[1] > scores[2]


def test_metric_errors_name_the_fix():
    a, b = pair(size=32)
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.mae(a, b[:, :16])
    with pytest.raises(ValueError, match="leading batch axis"):
        metrics.mae(a[0, 0], b[0, 0])
    with pytest.raises(ValueError, match="scales <= 2"):
        metrics.ms_ssim(a, b, data_range=1.0, scales=4)


# ---------------------------------------------------------------------------- SSIM window


def test_single_scale_ms_ssim_is_the_keras_ssim():
    # MS-SSIM's own window (imaging.gaussian_kernel) and Keras's SSIM are the same SSIM.
    a, b = pair(size=48, noise=0.05)
    np.testing.assert_allclose(
        metrics.ms_ssim(a, b, data_range=1.0, scales=1),
        np.maximum(metrics.ssim(a, b, data_range=1.0), 0.0), atol=1e-5,
    )


# ---------------------------------------------------------------------------- phase error


def test_phase_mae_ignores_a_constant_offset_only_when_aligning():
    rng = np.random.default_rng(3)
    truth = rng.uniform(0.0, 3.0, size=(4, 16, 16))
    truth -= truth.min(axis=(1, 2), keepdims=True)  # minimum at 0 rad, the convention
    error = 0.05 * rng.standard_normal(truth.shape)
    base = metrics.phase_mae(truth + error, truth)
    for offset in (-2.0, 0.3, 7.5):
        np.testing.assert_allclose(metrics.phase_mae(truth + error + offset, truth), base,
                                   atol=1e-6)
        np.testing.assert_allclose(metrics.phase_mae(truth + offset, truth, "none"),
                                   abs(offset), atol=1e-6)
        np.testing.assert_allclose(metrics.phase_mae(truth + offset, truth, "min"), 0.0,
                                   atol=1e-6)
    # Per image over the last two axes, float32, any leading shape.
    assert metrics.phase_mae(truth.reshape(2, 2, 16, 16), truth.reshape(2, 2, 16, 16)).shape \
        == (2, 2)
    assert base.dtype == np.float32
    with pytest.raises(ValueError, match="'mean', 'min' or 'none'"):
        metrics.phase_mae(truth, truth, "median")


# ---------------------------------------------------------------------------- affine fit


def test_affine_fit_recovers_a_known_map_and_satisfies_the_normal_equations():
    rng = np.random.default_rng(4)
    image = rng.normal(size=(24, 24))
    fitted, slope = metrics.affine_fit(image, -1.75 * image + 0.4)
    assert slope == pytest.approx(-1.75, abs=1e-12)
    np.testing.assert_allclose(fitted, -1.75 * image + 0.4, atol=1e-12)
    # With noise, the residual is orthogonal to the image and to the constant.
    target = 2.0 * image + 1.0 + rng.normal(size=image.shape)
    fitted, _ = metrics.affine_fit(image, target)
    residual = target - fitted
    assert abs(np.sum(residual)) < 1e-8 and abs(np.sum(residual * image)) < 1e-8
    with pytest.raises(ValueError, match="same shape"):
        metrics.affine_fit(image, target[:4])


# ---------------------------------------------------------------------------- uncertainty


def gaussian_errors(std_scale=1.0, seed=5):
    """Truth, an estimate with N(0, std²) errors, and `std_scale × std` as the reported std."""
    rng = np.random.default_rng(seed)
    std = rng.uniform(0.1, 2.0, size=(8, 64, 64))
    truth = rng.normal(size=std.shape)
    return truth + std * rng.standard_normal(std.shape), std_scale * std, truth


def test_coverage_of_gaussian_errors_matches_the_normal_probabilities():
    estimate, std, truth = gaussian_errors()
    assert metrics.coverage(estimate, std, truth) == pytest.approx(0.9545, abs=0.005)
    assert metrics.coverage(estimate, std, truth, k=1) == pytest.approx(0.6827, abs=0.008)
    # An over-confident std (half the true one): ±2σ covers only ±1 true σ.
    estimate, std, truth = gaussian_errors(std_scale=0.5)
    assert metrics.coverage(estimate, std, truth) == pytest.approx(0.6827, abs=0.008)
    with pytest.raises(ValueError, match="same shape"):
        metrics.coverage(estimate, std[:2], truth)


def test_calibration_curve_is_the_diagonal_for_calibrated_errors_and_below_it_otherwise():
    estimate, std, truth = gaussian_errors()
    levels = metrics.CALIBRATION_LEVELS
    np.testing.assert_allclose(metrics.calibration_curve(estimate, std, truth), levels,
                               atol=0.01)
    # Reported std = c × true std: coverage at level p is 2Φ(c·z_p) − 1, z_p = Φ⁻¹((1+p)/2).
    normal = NormalDist()
    scale = 0.6
    expected = [2 * normal.cdf(scale * normal.inv_cdf((1 + p) / 2)) - 1 for p in levels]
    estimate, std, truth = gaussian_errors(std_scale=scale)
    np.testing.assert_allclose(metrics.calibration_curve(estimate, std, truth), expected,
                               atol=0.01)


def test_mean_and_std_use_the_unbiased_sample_std():
    samples = np.random.default_rng(6).normal(size=(3, 4, 5, 5))
    mean, std = metrics.mean_and_std(samples, axis=1)
    by_hand = np.sqrt(np.sum((samples - samples.mean(axis=1, keepdims=True)) ** 2, axis=1) / 3)
    np.testing.assert_allclose(mean, samples.mean(axis=1))
    np.testing.assert_allclose(std, by_hand)
    assert metrics.UNCERTAINTY_DDOF == 1
    with pytest.raises(ValueError, match="at least 2 samples"):
        metrics.mean_and_std(samples[:, :1], axis=1)


def test_spearman_matches_scipy_and_ranks_and_is_invariant_to_monotone_maps():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(7)
    a = rng.normal(size=(4, 16, 16))
    b = a + rng.normal(size=a.shape)
    rho = metrics.spearman(a, b)
    assert rho == pytest.approx(stats.spearmanr(a.ravel(), b.ravel()).statistic, abs=1e-12)
    # Without ties, Spearman's ρ is Pearson's correlation of the ranks.
    ranks = [np.argsort(np.argsort(v.ravel())) for v in (a, b)]
    assert rho == pytest.approx(np.corrcoef(*ranks)[0, 1], abs=1e-12)
    assert metrics.spearman(np.exp(a), b**3) == pytest.approx(rho, abs=1e-12)
    assert metrics.spearman(a, -b) == pytest.approx(-rho, abs=1e-12)
    with pytest.raises(ValueError, match="differ in size"):
        metrics.spearman(a, b[:2])


def test_spearman_without_scipy_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy", None)
    with pytest.raises(ImportError, match=r"keras-cvdm\[metrics\]"):
        metrics.spearman(np.arange(3.0), np.arange(3.0))


def test_band_errors_add_up_to_the_mean_squared_error_parseval():
    rng = np.random.default_rng(0)
    estimate, target = rng.normal(size=(2, 3, 24, 40))
    bands = metrics.band_errors(estimate, target, [0, 1.5, 4, 9.5, np.inf])
    assert bands.shape == (3, 4)
    mse = ((estimate - target) ** 2).mean(axis=(1, 2))
    np.testing.assert_allclose((bands**2).sum(axis=-1), mse, rtol=1e-10)
    # The k = 0 band is the mean error, which phase alignment removes.
    aligned = metrics.align_phase(estimate, target)
    np.testing.assert_allclose(metrics.band_errors(aligned, target, [0, 0.5])[:, 0], 0, atol=1e-12)


def test_band_errors_put_a_single_mode_in_its_band_with_its_rms():
    yy, xx = np.mgrid[:48, :64]
    # 3 periods down, 4 across: radial frequency 5 cycles per field, RMS a / sqrt(2).
    mode = 0.7 * np.sin(2 * np.pi * (3 * yy / 48 + 4 * xx / 64) + 0.4)
    bands = metrics.band_errors(mode, np.zeros_like(mode), [0.5, 4.9, 5.1, np.inf])
    np.testing.assert_allclose(bands, [0.0, 0.7 / np.sqrt(2), 0.0], atol=1e-12)
    assert metrics.radial_frequency(48, 64)[3, 4] == pytest.approx(5.0)
    assert metrics.radial_frequency(48, 64)[-3, -4] == pytest.approx(5.0)


def test_frequency_bands_partition_the_spectrum_by_radial_frequency():
    bands = metrics.frequency_bands(12, 20, [0, 1, 4.5, np.inf])
    assert bands.shape == (3, 12, 20) and bands.dtype == bool
    np.testing.assert_array_equal(bands.sum(axis=0), 1)  # every coefficient in one band
    k = metrics.radial_frequency(12, 20)
    np.testing.assert_array_equal(bands[1], (k >= 1) & (k < 4.5))


def test_band_errors_bands_include_their_lower_edge_only():
    mode = np.cos(2 * np.pi * 3 * np.arange(16) / 16)[None, :] * np.ones((16, 1))  # k = 3
    bands = metrics.band_errors(mode, np.zeros_like(mode), [0, 3, 6])
    np.testing.assert_allclose(bands, [0.0, np.sqrt(0.5)], atol=1e-12)


@pytest.mark.parametrize("edges", [[1.0], [2.0, 1.0], [-1.0, 2.0], [[0.0, 1.0]],
                                   [0.0, np.inf, np.inf], [0.0, np.nan, 2.0]])
def test_band_errors_refuse_edges_that_are_not_increasing(edges):
    with pytest.raises(ValueError, match="increasing"):
        metrics.band_errors(np.zeros((8, 8)), np.zeros((8, 8)), edges)
    with pytest.raises(ValueError, match=r"\(\.\.\., H, W\)"):
        metrics.band_errors(np.zeros(8), np.zeros(8), [0, 1])
