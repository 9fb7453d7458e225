"""Physics inside the QPI model: the keras.ops TIE, the optics channel, calibration."""

import keras
import numpy as np
import pytest

import keras_cvdm
from keras_cvdm import calibration, evaluation
from keras_cvdm.data import QPINormalization, qpi_dataset
from keras_cvdm.data.normalization import optics_code
from keras_cvdm.layers import TIEMeanNetwork, UNetDenoiser
from keras_cvdm.layers.tie_mean import tie_estimates
from keras_cvdm.physics import defocus_pair, tie_phase
from keras_cvdm.physics.propagation import REFERENCE_FRESNEL, fresnel_number

RANGE = {"wavelength_um": (0.45, 0.65), "pixel_size_um": (0.15, 0.35), "defocus_um": (0.5, 2.0)}
OPTICS = {"wavelength_um": 0.521, "pixel_size_um": 0.21, "defocus_um": 1.0,
          "optics_range": {k: list(v) for k, v in RANGE.items()}}


def _smooth_phase(size=48, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - size / 2
    blobs = [rng.uniform(-1, 1, 2) * size / 4 for _ in range(3)]
    return sum(0.6 * np.exp(-((xx - a) ** 2 + (yy - b) ** 2) / 40.0) for a, b in blobs)


@pytest.mark.parametrize("wavelength, pixel_size, defocus", [(0.521, 0.21, 1.0),
                                                             (0.45, 0.35, 0.5),
                                                             (0.65, 0.15, 2.0)])
def test_keras_tie_equals_the_numpy_solver_at_any_optics(wavelength, pixel_size, defocus):
    # Same equation, same periodic boundaries: the keras.ops solve in pixel units with
    # ε_pix equals physics.tie_phase in µm with ε = ε_pix / p⁴ (float32 vs float64).
    phase = _smooth_phase()
    i_minus, i_plus = defocus_pair(phase, wavelength, pixel_size, defocus)
    mean = 0.5 * (i_minus + i_plus).mean()
    difference = ((i_plus - i_minus) / mean)[None].astype("float32")
    s = np.array([fresnel_number(wavelength, pixel_size, defocus)], "float32")
    ours = keras.ops.convert_to_numpy(tie_estimates(difference, s, (1e-6, 1e-3)))[0]
    for k, eps in enumerate((1e-6, 1e-3)):
        theirs = tie_phase(i_minus, i_plus, wavelength, pixel_size, defocus,
                           eps / pixel_size**4)
        np.testing.assert_allclose(ours[..., k], theirs, atol=2e-4 * np.abs(theirs).max())


def test_the_optics_enter_the_measurement_only_through_the_fresnel_number():
    # exp(-iπ λ dz |f|²) with f = f_pix / p: the same s = λ dz / p² gives the same images.
    phase = _smooth_phase(32, seed=1)
    a = defocus_pair(phase, 0.5, 0.2, 1.2)
    b = defocus_pair(phase, 0.6, 0.3, 1.2 * (0.5 / 0.6) * (0.3 / 0.2) ** 2)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert not np.allclose(a, defocus_pair(phase, 0.6, 0.3, 1.2), atol=1e-3)


def test_the_network_starts_from_tie_and_reads_the_optics_from_its_input():
    phase = _smooth_phase(32, seed=2)
    norm = QPINormalization(optics_channel=True)
    net = TIEMeanNetwork(widths=(8, 16), regularizations=(1e-7, 1e-6, 1e-4))
    for optics in ({"wavelength_um": 0.521, "pixel_size_um": 0.21, "defocus_um": 1.0},
                   {"wavelength_um": 0.6, "pixel_size_um": 0.3, "defocus_um": 1.8}):
        i_minus, i_plus = defocus_pair(phase, *optics.values())
        x = norm.pair_to_model(i_minus[None], i_plus[None], optics)
        tie = keras.ops.convert_to_numpy(net.physics(x))[0, ..., 1] * 3.5 / 2
        expected = tie_phase(i_minus, i_plus, *optics.values(),
                             1e-6 / optics["pixel_size_um"] ** 4)
        np.testing.assert_allclose(tie, expected, atol=2e-3)
        # A new network is the middle TIE estimate (the correction's output starts at 0) ...
        np.testing.assert_allclose(keras.ops.convert_to_numpy(net(x))[0, ..., 0],
                                   tie * 2 / 3.5, atol=1e-5)
    # ... and then adds the correction, which sees the measurement and the estimates: its
    # first channel less its image mean, and the image mean of its second (the one free
    # phase constant), so the offset is the same at every pixel.
    last = net.correction.unet.weights[-2]
    last.assign(np.random.default_rng(0).normal(0, 0.01, last.shape).astype("float32"))
    correction = keras.ops.convert_to_numpy(net.correction(keras.ops.concatenate(
        [x, net.physics(x)], axis=-1)))[0]
    shape, offset = correction[..., 0], correction[..., 1]
    assert np.abs(shape - shape.mean()).max() > 1e-3 and abs(offset.mean()) > 1e-4
    assert np.abs(offset - offset.mean()).max() > 1e-4  # the offset channel varies ...
    mean = keras.ops.convert_to_numpy(net(x))[0, ..., 0]
    np.testing.assert_allclose(mean, tie * 2 / 3.5 + shape - shape.mean() + offset.mean(),
                               atol=1e-5)  # ... its mean alone enters μ
    np.testing.assert_allclose(mean.mean(), offset.mean(), atol=1e-5)  # TIE has zero mean
    with pytest.raises(ValueError, match="3 condition channels"):
        TIEMeanNetwork(widths=(8, 16)).build((None, 16, 16, 2))


def test_optics_channel_codes_the_fresnel_number_and_needs_the_optics():
    norm = QPINormalization(optics_channel=True)
    assert QPINormalization.from_dict(norm.to_dict()) == norm
    ones = np.ones((2, 8, 8))
    x = norm.pair_to_model(ones, ones, {"wavelength_um": np.array([0.521, 0.6]),
                                        "pixel_size_um": 0.21, "defocus_um": 1.0})
    assert x.shape == (2, 8, 8, 3)
    np.testing.assert_allclose(x[1, ..., 2], np.log(0.6 * 1.0 / 0.21**2 / REFERENCE_FRESNEL),
                               rtol=1e-6)
    assert np.all(x[0, ..., 2] == 0)
    with pytest.raises(ValueError, match="pass optics"):
        norm.pair_to_model(ones, ones)
    assert QPINormalization().pair_to_model(ones, ones).shape == (2, 8, 8, 2)


def test_dataset_draws_each_samples_optics_within_the_range():
    norm = QPINormalization(optics_channel=True)
    ds = qpi_dataset(batch_size=6, image_size=16, num_batches=1, seed=3, normalization=norm,
                     optics_range=RANGE)
    x, y = ds[0]
    codes = x[:, 0, 0, 2]
    assert np.all(x[..., 2] == codes[:, None, None])  # constant over each image
    low, high = optics_code(0.45, 0.35, 0.5), optics_code(0.65, 0.15, 2.0)
    assert np.all((codes >= low) & (codes <= high)) and np.ptp(codes) > 0.1
    np.testing.assert_array_equal(ds[0][0], x)  # reproducible from the seed
    fixed = qpi_dataset(batch_size=2, image_size=16, num_batches=1, normalization=norm)[0][0]
    assert np.all(fixed[..., 2] == 0)
    with pytest.raises(ValueError, match="optics_channel=True"):
        qpi_dataset(batch_size=2, image_size=16, optics_range=RANGE)
    with pytest.raises(ValueError, match="Unknown optics_range"):
        qpi_dataset(batch_size=2, image_size=16, normalization=norm,
                    optics_range={"focal_um": (1, 2)})


def test_fit_std_scale_finds_the_known_spread():
    rng = np.random.default_rng(0)
    truth = rng.standard_normal(100_000)
    estimate = truth + 0.3 * rng.standard_normal(truth.shape)
    std = np.full(truth.shape, 0.1)  # three times too small
    scale = calibration.fit_std_scale(estimate, std, truth)
    assert scale == pytest.approx(3.0, rel=0.02)
    from keras_cvdm.metrics import coverage
    assert coverage(estimate, scale * std, truth) == pytest.approx(0.9545, abs=2e-3)
    with pytest.raises(ValueError, match="one shape"):
        calibration.fit_std_scale(estimate, std[:5], truth)


def _lowpass(a, cutoff):
    """`a` with only its FFT coefficients below `cutoff` cycles per pixel."""
    inside = calibration.band_masks(*a.shape[-2:], (1e-9, cutoff))[0]
    return np.real(np.fft.ifft2(np.where(inside, np.fft.fft2(a), 0)))


def test_fit_band_blend_finds_the_least_squares_weight_of_each_band():
    # The estimate's error sits below 0.1 cycles per pixel (power A there), the source's
    # is white (power B): in the low band the best weight is A / (A + B); above it the
    # estimate is exact and the weight 0; a source equal to the truth gets weight 1.
    rng = np.random.default_rng(3)
    truth = rng.standard_normal((200, 32, 32))
    error = _lowpass(rng.standard_normal(truth.shape), 0.1)
    estimate = truth + error
    source = truth + 0.5 * rng.standard_normal(truth.shape)
    edges = (1e-9, 0.1, 1.0)
    low = calibration.band_masks(32, 32, edges)[0]
    power_a = np.mean(np.abs(np.fft.fft2(error)[..., low]) ** 2)
    power_b = 0.25 * 32 * 32  # white noise of variance 0.25, numpy's unnormalised FFT
    w_low, w_high = calibration.fit_band_blend(estimate, source, truth, edges)
    assert w_low == pytest.approx(power_a / (power_a + power_b), abs=0.02)
    assert w_high == pytest.approx(0.0, abs=0.01)
    assert calibration.fit_band_blend(estimate, truth, truth, edges) == pytest.approx([1, 1])
    # The blend with the fitted weights beats either input in the low band.
    blended = calibration.blend_bands(estimate, source, [w_low, w_high], edges)
    for other in (estimate, source):
        assert np.mean(_lowpass(blended - truth, 0.1) ** 2) < np.mean(
            _lowpass(other - truth, 0.1) ** 2)


def test_tie_noise_grows_as_one_over_the_fresnel_number_as_the_blend_assumes():
    # φ = (π/s)·∇⁻²_pix(ΔI/Ī): the same intensity noise at half the Fresnel number gives
    # twice the phase noise (ε per pixel⁴ fixed), four times its power, so a band whose
    # least-squares weight was A / (A + B) at s has A / (A + 4B) at s/2.
    rng = np.random.default_rng(7)
    i_minus, i_plus = 1.0 + 0.05 * rng.standard_normal((2, 4, 64, 64))
    noise = [np.std(tie_phase(i_minus, i_plus, 0.5, 0.2, defocus, 1e-4 / 0.2**4))
             for defocus in (1.0, 0.5)]
    assert noise[1] / noise[0] == pytest.approx(2.0, rel=1e-6)
    power_a, power_b = 0.4, 0.6
    w = calibration.weights_at_fresnel_number([power_a / (power_a + power_b)], 12.5, 6.25)
    assert w == pytest.approx([power_a / (power_a + 4 * power_b)])
    assert calibration.weights_at_fresnel_number([0.3, 0.0], 12.5, 25.0) == [0.3, 0.0]


def test_blend_bands_takes_each_band_from_where_its_weight_says():
    rng = np.random.default_rng(4)
    estimate, source = rng.standard_normal((2, 3, 24, 24))
    edges = (1e-9, 0.2, 1.0)
    np.testing.assert_allclose(calibration.blend_bands(estimate, source, [0, 0], edges),
                               estimate, atol=1e-5)
    low = calibration.blend_bands(estimate, source, [1, 0], edges)
    # The low band (but the image mean, which no band holds) is the source's, the rest
    # the estimate's.
    np.testing.assert_allclose(low, estimate - _lowpass(estimate, 0.2) + _lowpass(source, 0.2),
                               atol=1e-5)
    half = calibration.blend_bands(estimate, source, [0.5, 0.5], edges)
    np.testing.assert_allclose(half - half.mean(axis=(-2, -1), keepdims=True),
                               0.5 * (estimate + source)
                               - 0.5 * (estimate + source).mean(axis=(-2, -1), keepdims=True),
                               atol=1e-5)
    np.testing.assert_allclose(half.mean(axis=(-2, -1)), estimate.mean(axis=(-2, -1)),
                               atol=1e-5)
    with pytest.raises(ValueError, match="one per band"):
        calibration.blend_bands(estimate, source, [0.5], edges)
    with pytest.raises(ValueError, match="one per band"):
        calibration.blend_bands(estimate, source, [1.5, 0], edges)
    with pytest.raises(ValueError, match="one shape"):
        calibration.blend_bands(estimate, source[:2], [0, 0], edges)
    with pytest.raises(ValueError, match="increasing frequencies"):
        calibration.band_masks(8, 8, (0.0, 0.5))


@pytest.fixture(scope="module")
def physics_model(tmp_path_factory):
    model = keras_cvdm.CVDM(
        denoiser=UNetDenoiser(1, widths=(8, 16)), zero_mean=True, target_scale=0.1,
        mean_network=TIEMeanNetwork(widths=(8, 16)), seed=0,
    )
    model.build((None, 16, 16, 3))
    metadata = {"task": "qpi", "forward_model": OPTICS,
                "normalization": QPINormalization(optics_channel=True).to_dict(),
                "sampling": {"sampler": "ddim", "num_steps": 2}}
    folder = str(tmp_path_factory.mktemp("physics") / "preset")
    keras_cvdm.save_preset(model, folder, metadata)
    return keras_cvdm.from_preset(folder)


def test_reconstruct_uses_the_users_optics_and_refuses_outside_the_range(physics_model):
    phase = _smooth_phase(16, seed=4)[None]
    i_minus, i_plus = defocus_pair(phase, 0.6, 0.3, 1.5)
    ref = keras_cvdm.qpi.reconstruct(physics_model, i_minus, i_plus, 2, seed=0)[0]
    theirs = keras_cvdm.qpi.reconstruct(physics_model, i_minus, i_plus, 2, seed=0,
                                        wavelength=0.6, pixel_size=0.3, defocus=1.5)[0]
    assert not np.allclose(ref, theirs)  # the optics reach the model
    x = keras_cvdm.qpi.condition(physics_model, i_minus, i_plus, wavelength=0.6,
                                 pixel_size=0.3, defocus=1.5)
    np.testing.assert_allclose(x[..., 2], optics_code(0.6, 0.3, 1.5), rtol=1e-6)
    for bad in ({"wavelength": 0.7}, {"pixel_size": 0.1}, {"defocus": 2.5}):
        with pytest.raises(ValueError, match="outside the optics"):
            keras_cvdm.qpi.reconstruct(physics_model, i_minus, i_plus, 2, **bad)
    with pytest.raises(ValueError, match="outside the optics"):
        evaluation.evaluate(physics_model, num_images=1, image_size=16,
                            optics={"defocus": 3.0})


def test_stored_calibration_scales_std_and_the_samples_spread(physics_model):
    i_minus, i_plus = defocus_pair(_smooth_phase(16, seed=5)[None])
    mean, std, samples = keras_cvdm.qpi.reconstruct(physics_model, i_minus, i_plus, 3, seed=1,
                                                    return_samples=True)
    scaled = keras_cvdm.CVDM.from_config(physics_model.get_config())
    scaled.set_weights(physics_model.get_weights())
    scaled.metadata = dict(physics_model.metadata, calibration={"std_scale": 2.5})
    mean2, std2, samples2 = keras_cvdm.qpi.reconstruct(scaled, i_minus, i_plus, 3, seed=1,
                                                       return_samples=True)
    np.testing.assert_allclose(mean2, mean, atol=1e-5)
    np.testing.assert_allclose(std2, 2.5 * std, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(samples2 - mean2[:, None], 2.5 * (samples - mean[:, None]),
                               atol=1e-4)
    np.testing.assert_allclose(np.std(samples2, axis=1, ddof=1), std2, rtol=1e-3, atol=1e-6)


def test_a_stored_band_blend_moves_the_mean_and_samples_not_the_std(physics_model):
    # A non-square field, with every band of the blend populated.
    phase = np.pad(_smooth_phase(32, seed=6), ((0, 0), (8, 8)))
    i_minus, i_plus = defocus_pair(phase[None], 0.6, 0.3, 1.5)
    optics = {"wavelength": 0.6, "pixel_size": 0.3, "defocus": 1.5}
    mean, std, samples = keras_cvdm.qpi.reconstruct(physics_model, i_minus, i_plus, 3, seed=1,
                                                    return_samples=True, **optics)
    blend = {"weights": [0.6, 0.5, 0.2], "edges_cycles_per_pixel": [0.02, 0.06, 0.15, 1.0],
             "tie_regularization_pixel": 1e-7, "fresnel_number": 11.81}
    blended = keras_cvdm.CVDM.from_config(physics_model.get_config())
    blended.set_weights(physics_model.get_weights())
    blended.metadata = dict(physics_model.metadata,
                            calibration={"band_blend": blend, "std_scale": 2.0})
    mean2, std2, samples2 = keras_cvdm.qpi.reconstruct(blended, i_minus, i_plus, 3, seed=1,
                                                       return_samples=True, **optics)
    # The TIE of the optics passed, not the model's own; s = 0.6 · 1.5 / 0.3² = 10, below
    # the 11.81 the weights were fitted at: they fall.
    weights = calibration.weights_at_fresnel_number(blend["weights"], 11.81, 10.0)
    assert weights[1] == pytest.approx(0.5 / (0.5 + 0.5 * (11.81 / 10) ** 2))
    tie = tie_phase(i_minus, i_plus, 0.6, 0.3, 1.5, regularization=1e-7 / 0.3**4)
    expected = calibration.blend_bands(mean, tie, weights, blend["edges_cycles_per_pixel"])
    np.testing.assert_allclose(mean2, expected, atol=1e-4)
    for edges in ([0.02, 0.06], [0.06, 0.15], [0.15, 1.0]):  # each band moved
        assert np.abs(calibration.blend_bands(mean2 - mean, 0 * mean, [1.0], edges)).max() > 1e-3
    np.testing.assert_allclose(mean2.mean(), mean.mean(), atol=1e-5)  # not the constant
    np.testing.assert_allclose(std2, 2.0 * std, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(samples2.mean(axis=1), mean2, atol=1e-4)
    np.testing.assert_allclose(samples2 - mean2[:, None], 2.0 * (samples - mean[:, None]),
                               atol=1e-4)
    # A broken entry is refused, named, before any sampling.
    for broken, message in (({"weights": [0.6, 0.5]}, r"\['weights'\] must be 3 numbers"),
                            ({"weights": [1.5, 0, 0]}, r"in \[0, 1\]"),
                            ({"fresnel_number": 0}, "fresnel_number")):
        blended.metadata = dict(physics_model.metadata,
                                calibration={"band_blend": dict(blend, **broken)})
        with pytest.raises(ValueError, match=message):
            keras_cvdm.qpi.reconstruct(blended, i_minus, i_plus, 2)
    incomplete = {k: v for k, v in blend.items() if k != "tie_regularization_pixel"}
    blended.metadata = dict(physics_model.metadata, calibration={"band_blend": incomplete})
    with pytest.raises(ValueError, match="lacks.*tie_regularization_pixel"):
        keras_cvdm.qpi.reconstruct(blended, i_minus, i_plus, 2)


def test_a_physics_model_trains_over_a_range_of_optics():
    norm = QPINormalization(optics_channel=True)
    data = qpi_dataset(batch_size=4, image_size=16, num_batches=2, seed=1, normalization=norm,
                       optics_range=RANGE)
    model = keras_cvdm.CVDM(
        denoiser=UNetDenoiser(1, widths=(8, 16)), zero_mean=True, target_scale=0.1,
        mean_network=TIEMeanNetwork(widths=(8, 16)), seed=0,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(data, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert history.history["skipped_updates"][-1] == 0
    x, _ = data[0]
    assert keras.ops.convert_to_numpy(model.mean_network(x)).shape == (4, 16, 16, 1)


def test_fine_tuning_an_optics_channel_preset_on_stored_pairs_is_refused(physics_model,
                                                                         tmp_path):
    from keras_cvdm import training

    folder = str(tmp_path / "preset")
    keras_cvdm.save_preset(physics_model, folder)
    pairs = str(tmp_path / "pairs.npz")
    np.savez(pairs, x=np.ones((2, 16, 16, 2), "float32"), y=np.zeros((2, 16, 16), "float32"))
    with pytest.raises(ValueError, match="do not record them"):
        training.train(str(tmp_path / "run"), data=pairs, from_preset=folder, epochs=1)
    assert not (tmp_path / "run").exists()


def test_optics_table_scores_each_row_at_its_own_optics(physics_model):
    rows = evaluation.optics_table(physics_model, num_images=1, image_size=16, num_samples=2)
    assert [row["changed"] for row in rows] == list(evaluation.QPI_OPTICS_ROWS)
    for row in rows:
        assert {k: row["optics"][k] for k in row["changed"]} == row["changed"]
        level = row["levels"]["0.05"]
        assert level["num_images"] == 1 and "by_kind" not in level
        assert np.isfinite(level["cvdm_mae_aligned"]) and level["tie_mae_aligned"] >= 0
