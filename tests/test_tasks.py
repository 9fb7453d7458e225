"""Task-level calls: `keras_cvdm.qpi.reconstruct` and `keras_cvdm.sr.reconstruct`."""

import numpy as np
import pytest

import keras_cvdm
from keras_cvdm.data import QPINormalization, SRNormalization
from tests.conftest import tiny_model

SAMPLING = {"sampler": "ddim", "num_steps": 3}


@pytest.fixture(scope="module")
def qpi_model(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("qpi") / "preset")
    model = tiny_model()
    model.build((None, 16, 16, 2))
    metadata = {"task": "qpi", "normalization": QPINormalization().to_dict(), "sampling": SAMPLING}
    keras_cvdm.save_preset(model, folder, metadata)
    return keras_cvdm.from_preset(folder)


@pytest.fixture(scope="module")
def sr_model(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("sr") / "preset")
    model = tiny_model(residual=True)
    model.build((None, 16, 16, 1))
    metadata = {
        "task": "sr",
        "normalization": SRNormalization().to_dict(),
        "sampling": SAMPLING,
        "forward_model": {"factor": 2},
    }
    keras_cvdm.save_preset(model, folder, metadata)
    return keras_cvdm.from_preset(folder)


def _pair(n=2, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(1.0 + 0.2 * rng.random((n, size, size)) for _ in range(2))


def test_qpi_reconstruct_is_the_posterior_in_radians(qpi_model):
    i_minus, i_plus = _pair()
    phase, std = keras_cvdm.qpi.reconstruct(qpi_model, i_minus, i_plus, num_samples=3, seed=5)
    assert phase.shape == std.shape == i_minus.shape
    # The same posterior samples, each mapped to radians on its own: the returned phase
    # and std are their per-pixel mean and (ddof=1) standard deviation.
    norm = QPINormalization()
    samples = qpi_model.predict_samples(
        norm.pair_to_model(i_minus, i_plus), num_samples=3, seed=5, verbose=0, **SAMPLING
    )
    radians = np.stack([[norm.denormalize_phase(s[..., 0]) for s in per] for per in samples])
    np.testing.assert_allclose(phase, radians.mean(axis=1), atol=1e-5)
    np.testing.assert_allclose(std, radians.std(axis=1, ddof=1), rtol=1e-4, atol=1e-6)
    assert np.all(std >= 0) and np.any(std > 0)


def test_qpi_reconstruct_follows_the_models_phase_convention(qpi_model):
    """Doubling the phase range doubles phase and std; shifting it shifts the phase only."""
    i_minus, i_plus = _pair()
    base, base_std = keras_cvdm.qpi.reconstruct(qpi_model, i_minus, i_plus, 2, seed=4)
    for phase_min, phase_max, scale in ((0.0, 7.0, 2.0), (1.0, 4.5, 1.0)):
        norm = QPINormalization(phase_min=phase_min, phase_max=phase_max)
        phase, std = keras_cvdm.qpi.reconstruct(
            qpi_model, i_minus, i_plus, 2, seed=4, normalization=norm
        )
        np.testing.assert_allclose(phase, scale * base + phase_min, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(std, scale * base_std, rtol=1e-5, atol=1e-6)


def test_qpi_reconstruct_ignores_the_intensity_unit_and_keeps_2d_shape(qpi_model):
    i_minus, i_plus = _pair(n=1, size=18)  # 18 is not a multiple of the U-Net's 2
    phase, std = keras_cvdm.qpi.reconstruct(qpi_model, i_minus[0], i_plus[0], 2, seed=1)
    scaled = keras_cvdm.qpi.reconstruct(qpi_model, 900 * i_minus[0], 900 * i_plus[0], 2, seed=1)
    assert phase.shape == (18, 18)
    np.testing.assert_allclose(scaled[0], phase, atol=1e-4)
    np.testing.assert_allclose(scaled[1], std, atol=1e-4)


def test_qpi_reconstruct_errors(qpi_model):
    i_minus, i_plus = _pair()
    with pytest.raises(ValueError, match="differ in shape"):
        keras_cvdm.qpi.reconstruct(qpi_model, i_minus, i_plus[:, :8])
    bad = i_minus.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        keras_cvdm.qpi.reconstruct(qpi_model, bad, i_plus)
    with pytest.raises(ValueError, match=r"\(H, W\) or a stack"):
        keras_cvdm.qpi.reconstruct(qpi_model, i_minus[..., None], i_plus[..., None])
    bare = tiny_model()
    with pytest.raises(ValueError, match="from_preset"):
        keras_cvdm.qpi.reconstruct(bare, i_minus, i_plus)
    with pytest.raises(ValueError, match="task"):
        keras_cvdm.sr.reconstruct(qpi_model, i_minus[0])
    with pytest.raises(ValueError, match="real numbers"):
        keras_cvdm.qpi.reconstruct(qpi_model, i_minus > 1.1, i_plus > 1.1)


def test_task_metadata_survives_a_keras_file(qpi_model, tmp_path):
    import keras

    path = str(tmp_path / "tiny.keras")
    qpi_model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.metadata == qpi_model.metadata
    i_minus, i_plus = _pair()
    for a, b in zip(keras_cvdm.qpi.reconstruct(qpi_model, i_minus, i_plus, 2, seed=9),
                    keras_cvdm.qpi.reconstruct(loaded, i_minus, i_plus, 2, seed=9)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="JSON object"):
        loaded.metadata = ["qpi"]
    with pytest.raises(ValueError, match="JSON values"):
        loaded.metadata = {"task": object()}


def test_sr_reconstruct_refuses_a_factor_the_model_was_not_trained_for(sr_model):
    image = np.ones((8, 8))
    with pytest.raises(ValueError, match="trained for 2× super-resolution, not 3×"):
        keras_cvdm.sr.reconstruct(sr_model, image, factor=3)


def test_sr_reconstruct_doubles_the_grid_and_is_affine_equivariant(sr_model):
    rng = np.random.default_rng(0)
    image = 10 + 50 * rng.random((2, 8, 8))
    out, std = keras_cvdm.sr.reconstruct(sr_model, image, num_samples=2, seed=3)
    assert out.shape == std.shape == (2, 16, 16)
    # Percentile normalisation makes the output follow any affine change of units.
    out2, std2 = keras_cvdm.sr.reconstruct(sr_model, 3 * image + 100, num_samples=2, seed=3)
    np.testing.assert_allclose(out2, 3 * out + 100, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(std2, 3 * std, rtol=1e-4, atol=1e-4)
    single, _ = keras_cvdm.sr.reconstruct(sr_model, image[0], num_samples=2, seed=3)
    assert single.shape == (16, 16)


def test_evaluate_qpi_breaks_the_mae_down_by_phantom_kind(qpi_model):
    pytest.importorskip("scipy")
    from keras_cvdm import data as datasets
    from keras_cvdm.evaluation import evaluate_qpi
    from tests.test_cli import aligned_abs_error, reference_tie

    result = evaluate_qpi(qpi_model, num_images=10, image_size=16, noise_levels=(0.05,),
                          num_samples=2)["0.05"]
    by_kind = result["by_kind"]
    _, _, _, kinds = datasets.qpi_test_set(10, 16, 0.05, return_kinds=True)
    assert {k: v["num_images"] for k, v in by_kind.items()} == {
        k: kinds.count(k) for k in set(kinds)
    }
    # The image-weighted mean of the per-kind MAEs is the overall MAE, for both methods.
    for method in ("cvdm", "tie"):
        pooled = sum(v["num_images"] * v[f"{method}_mae_aligned"] for v in by_kind.values())
        assert pooled / 10 == pytest.approx(result[f"{method}_mae_aligned"], rel=1e-5)
    # And the TIE numbers are TIE's at the tuned regularisation: an independently written
    # solver (tests/test_cli.py) at that regularisation gives the same error.
    i_minus, i_plus, phase = datasets.qpi_test_set(10, 16, 0.05)
    tie = reference_tie(i_minus, i_plus, result["tie_regularization"])
    assert np.mean(aligned_abs_error(tie, phase)) == pytest.approx(
        result["tie_mae_aligned"], rel=1e-4
    )


def test_predict_samples_refuses_a_zero_batch_size(qpi_model):
    x = np.zeros((1, 16, 16, 2), "float32")
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        qpi_model.predict_samples(x, num_steps=2, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="num_steps must be a whole number"):
        qpi_model.predict_samples(x, num_steps=2.7, verbose=0)
