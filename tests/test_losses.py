import os

import keras
import numpy as np
import pytest
from keras import ops

from keras_cvdm import LinearSchedule, losses

from .data.make_loss_reference import BATCH, WEIGHTS, reference_model


def test_loss_terms_match_the_reference_on_every_backend():
    """Same weights file, batch, t and ε → the same terms on TensorFlow, JAX and PyTorch."""
    assert os.path.exists(WEIGHTS), "run tests/data/make_loss_reference.py"
    model = reference_model()
    model.load_weights(WEIGHTS)
    ref = np.load(BATCH)
    total, terms = model.compute_loss_terms(ref["x"], ref["y"], t=ref["t"], eps=ref["eps"])
    terms["loss"] = total
    for name, value in terms.items():
        np.testing.assert_allclose(
            float(ops.convert_to_numpy(value)), float(ref[f"term_{name}"]), rtol=1e-4,
            err_msg=name,
        )


def test_prior_loss_is_the_gaussian_kl_by_quadrature():
    gamma1 = 0.3
    y = np.array([[-0.8, 0.1], [0.5, 1.0]], "float32").reshape(1, 2, 2, 1)
    got = float(ops.convert_to_numpy(losses.prior_loss(y, np.float32(gamma1)))[0])
    z = np.linspace(-12, 12, 200_001)
    kls = []
    for yi in y.ravel().astype("float64"):
        mean, var = np.sqrt(gamma1) * yi, 1 - gamma1
        q = np.exp(-((z - mean) ** 2) / (2 * var)) / np.sqrt(2 * np.pi * var)
        p = np.exp(-(z**2) / 2) / np.sqrt(2 * np.pi)
        kls.append(np.trapezoid(q * np.log(q / p), z))
    assert got == pytest.approx(np.mean(kls), rel=1e-4)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_snr_series_curvature_matches_finite_differences(order):
    b0, b1 = 0.1, 20.0
    t = np.array([0.05, 0.2, 0.4], "float64")

    def s_n(tt):  # S_n(γ(t)) in float64
        g = np.exp(-(b0 * tt + 0.5 * (b1 - b0) * tt**2))
        return sum(g**k for k in range(1, order + 1))

    h = 1e-4
    fd = (s_n(t + h) - 2 * s_n(t) + s_n(t - h)) / h**2
    out = LinearSchedule(b0, b1).terms(t.astype("float32"), np.ones((3, 1, 1, 1), "float32"))
    got = ops.convert_to_numpy(
        losses.snr_series_second_derivative(out["gamma"], out["dgamma"], out["d2gamma"], order)
    ).ravel()
    np.testing.assert_allclose(got, fd, rtol=1e-3)


def test_fixed_schedule_beta_loss_is_only_the_boundary_terms():
    schedule = LinearSchedule(0.1, 20.0)
    lam = np.ones((2, 1, 1, 1), "float32")
    out = schedule.terms(np.array([0.3, 0.7], "float32"), lam)
    g0 = schedule.gamma(np.full((2,), 1 / 200, "float32"), lam)
    g1 = schedule.gamma(np.full((2,), 1 - 1 / 200, "float32"), lam)
    got = ops.convert_to_numpy(losses.beta_loss(out["dgamma"], out["beta"], out["gamma"], g0, g1))
    expected = (ops.convert_to_numpy(g0) - 1) ** 2 + ops.convert_to_numpy(g1) ** 2
    np.testing.assert_allclose(got, expected.ravel(), rtol=1e-3, atol=1e-9)


def test_noise_loss_and_weighted_total():
    rng = np.random.default_rng(0)
    eps = rng.normal(size=(2, 4, 4, 1)).astype("float32")
    per_example = ops.convert_to_numpy(losses.noise_loss(eps, np.zeros_like(eps)))
    np.testing.assert_allclose(per_example, np.mean(eps**2, axis=(1, 2, 3)), rtol=1e-6)
    terms = {"noise_loss": 1.0, "beta_loss": 2.0, "prior_loss": 3.0, "gamma_loss": 400.0}
    total = losses.weighted_total(terms, 1.0, 2.0, 2.0, 2.0, 1e-3)
    assert float(total) == pytest.approx(1 + 4 + 6 + 0.8)
    with pytest.raises(ValueError, match="order"):
        losses.snr_series_second_derivative(0.5, 0.1, 0.1, order=0)


def test_terms_match_an_independent_numpy_computation():
    """Linear schedule and a zero denoiser: every term has a closed form in numpy."""
    from keras_cvdm import CVDM

    @keras.saving.register_keras_serializable(package="keras_cvdm_tests")
    class ZeroNoise(keras.layers.Layer):
        def call(self, inputs, training=None):
            return ops.zeros_like(inputs[0])

    b0, b1, steps = 0.1, 20.0, 50
    model = CVDM(target_channels=1, schedule=LinearSchedule(b0, b1), denoiser=ZeroNoise(),
                 num_timesteps=steps, snr_order=2, alpha=1e-3)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 8, 8, 1)).astype("float32")
    y = rng.uniform(-1, 1, size=(2, 8, 8, 1)).astype("float32")
    t = np.array([0.2, 0.6], "float32")
    eps = rng.normal(size=y.shape).astype("float32")
    total, terms = model.compute_loss_terms(x, y, t=t, eps=eps)
    terms = {k: float(ops.convert_to_numpy(v)) for k, v in terms.items()}

    def gamma(tt):
        return np.clip(np.exp(-(b0 * tt + 0.5 * (b1 - b0) * tt**2)), 1e-6, 1 - 1e-5)

    tt = t.astype("float64")[:, None, None, None]
    g, beta = gamma(tt), b0 + (b1 - b0) * tt
    dg, d2g = -beta * g, (beta**2 - (b1 - b0)) * g
    g0, g1 = gamma(1 / steps), gamma(1 - 1 / steps)
    expected = {
        "noise_loss": np.mean(eps.astype("float64") ** 2),  # ε̂ = 0
        "beta_loss": np.mean((dg + beta * g) ** 2) + (g0 - 1) ** 2 + g1**2,
        "prior_loss": np.mean(0.5 * ((1 - g1) + g1 * y.astype("float64") ** 2 - 1
                                     - np.log(1 - g1))),
        # S_2 = γ + γ²: ∂t²S_2 = ∂t²γ + 2(∂tγ)² + 2γ ∂t²γ
        "gamma_loss": np.mean(np.broadcast_to((d2g + 2 * dg**2 + 2 * g * d2g) ** 2, y.shape)),
    }
    for name, value in expected.items():
        assert terms[name] == pytest.approx(value, rel=1e-4, abs=1e-9), name
    weighted = (expected["noise_loss"] + 2 * expected["beta_loss"] + 2 * expected["prior_loss"]
                + 2e-3 * expected["gamma_loss"])
    assert float(ops.convert_to_numpy(total)) == pytest.approx(weighted, rel=1e-4)
