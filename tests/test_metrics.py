import numpy as np
import pytest
from skimage import metrics as skm

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
    a, b = pair()
    np.testing.assert_allclose(metrics.mae(a, b), np.mean(np.abs(a - b), axis=(1, 2)), rtol=1e-5)
    expected = [skm.peak_signal_noise_ratio(y, x, data_range=1.0) for x, y in zip(a, b)]
    np.testing.assert_allclose(metrics.psnr(a, b, data_range=1.0), expected, rtol=1e-5)
    assert np.all(np.isinf(metrics.psnr(b, b, data_range=1.0)))


def test_ssim_matches_scikit_image_gaussian_settings():
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
