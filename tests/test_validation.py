"""Bad input to the public entry points: refused before any sampling, with the fix named."""

import keras
import numpy as np
import pytest

import keras_cvdm
from keras_cvdm import validation
from keras_cvdm.data import QPINormalization, SRNormalization
from keras_cvdm.evaluation import evaluate_qpi
from tests.conftest import tiny_model

SAMPLING = {"sampler": "ddim", "num_steps": 1}


@pytest.fixture(scope="module")
def qpi_model():
    model = tiny_model()
    model.build((None, 8, 8, 2))
    model.metadata = {"task": "qpi", "normalization": QPINormalization().to_dict(),
                      "sampling": SAMPLING}
    return model


@pytest.fixture(scope="module")
def sr_model():
    """Unbuilt: every call below is refused before the model computes anything."""
    model = tiny_model(residual=True)
    model.metadata = {"task": "sr", "normalization": SRNormalization().to_dict(),
                      "sampling": SAMPLING, "forward_model": {"factor": 2}}
    return model


def _pair(n=1, size=8, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(1.0 + 0.2 * rng.random((n, size, size)) for _ in range(2))


def _x(n=1, value=0.0, dtype="float32"):
    return np.full((n, 8, 8, 2), value, dtype)


def test_a_colour_image_is_not_read_as_a_stack(qpi_model, sr_model):
    rgb = 1.0 + np.random.default_rng(0).random((16, 16, 3))
    with pytest.raises(ValueError, match=r"colour \(RGB/RGBA\) image.*to_grayscale"):
        keras_cvdm.qpi.reconstruct(qpi_model, rgb, rgb, 2, seed=0)
    with pytest.raises(ValueError, match="colour"):
        keras_cvdm.sr.reconstruct(sr_model, np.concatenate([rgb, rgb[..., :1]], -1), 2)


def test_complex_input_is_refused_not_truncated(qpi_model):
    x = _x() + 0.5j
    for call in (lambda: qpi_model.predict_samples(x, num_steps=1, verbose=0),
                 lambda: qpi_model.schedule_map(x),
                 lambda: qpi_model.predict_uncertainty(x, 2, num_steps=1, verbose=0)):
        with pytest.raises(ValueError, match=r"complex numbers.*np\.abs\(field\) \*\* 2"):
            call()
    i_minus, i_plus = _pair()
    with pytest.raises(ValueError, match="`i_plus` holds complex numbers"):
        keras_cvdm.qpi.reconstruct(qpi_model, i_minus, i_plus + 0j, 2)
    with pytest.raises(ValueError, match="real numbers.*not a mask"):
        qpi_model.predict_samples(_x(dtype=bool), num_steps=1, verbose=0)


def test_values_no_normalisation_gives_are_refused_alike_on_every_backend(qpi_model):
    """1e30 gave NaN on PyTorch only, float64 beyond float32 NaN everywhere: now refused."""
    for value, dtype in ((1e30, "float32"), (1e39, "float64"), (-2e4, "float32")):
        x = _x(value=value, dtype=dtype)
        x[0, 0, 0, 0] = 0.0
        with pytest.raises(ValueError, match=r"holds 127 values larger than 1e\+04 in magnitude"):
            qpi_model.predict_samples(x, num_steps=1, seed=0, verbose=0)
        with pytest.raises(ValueError, match="normalise"):
            qpi_model.schedule_map(x)
    # At the bound itself the model still computes, to finite samples.
    x = _x(value=-validation.MAX_MODEL_MAGNITUDE)
    samples = qpi_model.predict_samples(x, 2, seed=0, verbose=0, **SAMPLING)
    assert samples.shape == (1, 2, 8, 8, 1) and np.all(np.isfinite(samples))


def test_an_empty_batch_gets_a_clear_error(qpi_model, sr_model):
    for shape in ((0, 8, 8, 2), (1, 0, 8, 2)):
        with pytest.raises(ValueError, match=r"x is empty \(shape"):
            qpi_model.predict_samples(np.zeros(shape), num_steps=1, verbose=0)
    with pytest.raises(ValueError, match="x is empty"):
        qpi_model.schedule_map(np.zeros((0, 8, 8, 2)))
    empty = np.zeros((0, 8, 8))
    with pytest.raises(ValueError, match="`i_minus` is empty"):
        keras_cvdm.qpi.reconstruct(qpi_model, empty, empty, 2)
    with pytest.raises(ValueError, match="`image` is empty"):
        keras_cvdm.sr.reconstruct(sr_model, empty, 2)


def test_gamma_refuses_times_outside_the_diffusion(qpi_model):
    for t in (1.5, -0.1):
        with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
            qpi_model.gamma(t, _x())
    with pytest.raises(ValueError, match="non-finite"):
        qpi_model.gamma(np.nan, _x())
    with pytest.raises(ValueError, match="one time per input"):
        qpi_model.gamma(np.full(3, 0.5), _x(n=2))


def test_a_model_with_non_finite_weights_refuses_to_sample(qpi_model):
    weight = qpi_model.denoiser.weights[0]
    kept = keras.ops.convert_to_numpy(weight)
    weight.assign(keras.ops.full(weight.shape, np.inf))
    try:
        with pytest.raises(ValueError,
                           match=r"1 of \d+ weight tensors hold NaN or Inf.*reload.*retrain"):
            qpi_model.predict_samples(_x(), num_steps=1, verbose=0)
        i_minus, i_plus = _pair()
        with pytest.raises(ValueError, match="weights are not all finite"):
            keras_cvdm.qpi.reconstruct(qpi_model, i_minus, i_plus, 2, seed=0)
    finally:
        weight.assign(kept)


def test_sr_factor_must_be_the_trained_whole_number(sr_model):
    image = np.ones((4, 4))
    for factor in ("2", 2.5, True):
        with pytest.raises(ValueError, match="factor must be a whole number"):
            keras_cvdm.sr.reconstruct(sr_model, image, 2, factor=factor)
    assert keras_cvdm.sr.trained_factor(sr_model, 2.0) == 2


def test_evaluation_counts_and_noise_levels_are_checked(qpi_model):
    with pytest.raises(ValueError, match="num_images must be a whole number"):
        evaluate_qpi(qpi_model, num_images=2.5, image_size=8, noise_levels=(0.05,))
    with pytest.raises(ValueError, match="image_size must be a whole number"):
        evaluate_qpi(qpi_model, num_images=1, image_size=8.5, noise_levels=(0.05,))
    for noise in (-1.0, np.nan, "0.1"):
        with pytest.raises(ValueError, match="noise level must be"):
            evaluate_qpi(qpi_model, num_images=1, image_size=8, noise_levels=(noise,))


# ------------------------------------------------------- physically impossible QPI input


def test_an_offset_subtracted_below_zero_is_refused(qpi_model):
    """Dark subtraction of too high a level: pixels far below zero are not noise."""
    rng = np.random.default_rng(1)
    i_minus, i_plus = (1.0 + 0.8 * (2 * rng.random((1, 8, 8)) - 1) for _ in range(2))
    dark = 0.9  # the mean drops to about 0.1, pixels reach -0.7: -7x the mean
    with pytest.raises(ValueError, match=r"i_minus has \d+ negative pixels in image 0, \d+ "
                                         r"of them below -1x.*np\.clip\(frame, 0, None\)"):
        keras_cvdm.qpi.reconstruct(qpi_model, i_minus - dark, i_plus - dark, 2, seed=0)
    # A pixel a little below zero (noise on a dark pixel) is still a measurement: here
    # 0.5x the mean intensity, 2.5 std of the noisiest (0.2) training noise.
    i_minus[0, 0, 0] = -0.5
    phase, std = keras_cvdm.qpi.reconstruct(qpi_model, i_minus, i_plus, 2, seed=0)
    assert phase.shape == std.shape == i_minus.shape and np.all(np.isfinite(phase))


def test_one_blank_defocus_plane_is_refused(qpi_model):
    i_minus, i_plus = _pair(n=2)
    i_plus[1] = 0.0  # a dark frame as the second image's +dz plane
    with pytest.raises(ValueError, match=r"i_plus image 1 is constant \(every pixel 0\).*"
                                         "Check the frames"):
        keras_cvdm.qpi.reconstruct(qpi_model, i_minus, i_plus, 2, seed=0)


def test_intensity_pair_rules_against_hand_made_cases():
    """Both planes constant is a uniform field; a non-positive mean is never light."""
    flat = np.ones((1, 4, 4))
    validation.check_intensity_pair(flat, 2 * flat)
    with pytest.raises(ValueError, match="mean intensity is 0, not positive"):
        validation.check_intensity_pair(0 * flat, 0 * flat)
    low, high = flat.copy(), flat.copy()
    high[0, 1, 1] = 1.5
    low[0, 0, 0] = -1.05  # the pair's mean is (15 - 1.05 + 15 + 1.5) / 32 = 0.952
    with pytest.raises(ValueError, match="1 negative pixels in image 0, 1 of them"):
        validation.check_intensity_pair(low, high)
    low[0, 0, 0] = -0.9  # above -0.952: accepted as noise
    validation.check_intensity_pair(low, high)
    with pytest.raises(ValueError, match="i_minus image 0 is constant"):
        validation.check_intensity_pair(flat, high)


def test_simulator_sizes_and_noise_levels_are_checked():
    from keras_cvdm import imaging
    from keras_cvdm.data import qpi_test_set

    for bad in (16.5, 0, True):
        with pytest.raises(ValueError, match="image_size"):
            imaging.image_shape(bad)
    assert imaging.image_shape(16.0) == (16, 16)
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="noise_std"):
            qpi_test_set(2, 8, noise_std=bad)
    with pytest.raises(ValueError, match="num_images"):
        qpi_test_set(2.5, 8)
