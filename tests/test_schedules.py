import keras
import numpy as np
import pytest
from keras import ops

from keras_cvdm import CosineSchedule, LearnedSchedule, LinearSchedule
from keras_cvdm.layers import MonotoneTime
from keras_cvdm.numerics import GAMMA_MAX, GAMMA_MIN

from .autodiff import grad_of_sum


def _learned(seed=0, scale=1.0):
    """A learned schedule with random (not initial) weights, and a random condition."""
    keras.utils.set_random_seed(seed)
    schedule = LearnedSchedule(target_channels=2, filters=8, hidden_units=16)
    schedule.build(x_shape=(None, 8, 8, 3))
    rng = np.random.default_rng(seed)
    schedule.set_weights([w + scale * rng.normal(size=w.shape) for w in schedule.get_weights()])
    x = rng.normal(size=(4, 8, 8, 3)).astype("float32")
    return schedule, x


SCHEDULES = {
    "learned": lambda: _learned(1, 0.3),
    "linear": lambda: (LinearSchedule(0.1, 20.0), np.zeros((4, 8, 8, 3), "float32")),
    "cosine": lambda: (CosineSchedule(-10.0, 10.0), np.zeros((4, 8, 8, 3), "float32")),
}

# Times away from the ends, where every schedule is smooth and γ is not clipped.
TIMES = np.array([0.07, 0.31, 0.55, 0.83], "float32")


def _unclipped(out, key):
    return ops.convert_to_numpy(out[key]).astype("float64")


def _rel_err(a, b):
    a, b = np.broadcast_arrays(np.asarray(a, "float64"), np.asarray(b, "float64"))
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_closed_form_derivatives_match_autodiff(name):
    schedule, x = SCHEDULES[name]()
    # λ(x) as a constant: only the time dependence is differentiated.
    lam = ops.convert_to_tensor(ops.convert_to_numpy(schedule.schedule_map(x)))
    rng = np.random.default_rng(0)
    out = schedule.terms(TIMES, lam)
    weights = rng.normal(size=ops.convert_to_numpy(out["dgamma"]).shape).astype("float32")
    w = ops.convert_to_tensor(weights)
    # Each example's γ depends only on its own t, so d/dt_i Σ w·γ = Σ_pixels w·∂tγ.
    auto_d1 = grad_of_sum(lambda t: w * ops.exp(-lam * schedule.time_terms(
        ops.reshape(t, (-1, 1, 1, 1)))[0]), TIMES)
    closed_d1 = np.sum(weights * _unclipped(out, "dgamma"), axis=(1, 2, 3))
    assert _rel_err(closed_d1, auto_d1) <= 1e-3
    auto_d2 = grad_of_sum(lambda t: w * schedule.terms(t, lam)["dgamma"], TIMES)
    closed_d2 = np.sum(weights * _unclipped(out, "d2gamma"), axis=(1, 2, 3))
    assert _rel_err(closed_d2, auto_d2) <= 1e-3


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_closed_form_derivatives_match_finite_differences(name):
    schedule, x = SCHEDULES[name]()
    lam = schedule.schedule_map(x)
    h = 1e-2

    def gamma(t):
        # Unclipped γ = exp(−λ Φ(t)), per pixel.
        t = ops.reshape(ops.convert_to_tensor(t, "float32"), (-1, 1, 1, 1))
        phi = schedule.time_terms(t)[0]
        return ops.convert_to_numpy(ops.exp(-lam * phi)).astype("float64")

    out = schedule.terms(TIMES, lam)
    g_minus, g0, g_plus = gamma(TIMES - h), gamma(TIMES), gamma(TIMES + h)
    g_m2, g_p2 = gamma(TIMES - 2 * h), gamma(TIMES + 2 * h)
    # Fourth-order central differences (truncation error O(h⁴)).
    fd1 = (g_m2 - 8 * g_minus + 8 * g_plus - g_p2) / (12 * h)
    fd2 = (-g_m2 + 16 * g_minus - 30 * g0 + 16 * g_plus - g_p2) / (12 * h * h)
    assert _rel_err(_unclipped(out, "dgamma"), fd1) <= 1e-3
    assert _rel_err(_unclipped(out, "d2gamma"), fd2) <= 1e-3


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_gamma_boundaries_monotone_and_beta_nonnegative(name, seed):
    if name == "learned":
        schedule, x = _learned(seed, scale=1.0)
    else:
        schedule, x = SCHEDULES[name]()
    lam = schedule.schedule_map(x)
    grid = np.linspace(0.0, 1.0, 101, dtype="float32")
    gammas = np.stack(
        [ops.convert_to_numpy(schedule.gamma(np.full((4,), t, "float32"), lam)) for t in grid]
    )
    assert np.all(gammas[0] >= GAMMA_MAX)  # γ(0, x) = 1 (stored clipped to 1 − 1e-5)
    # γ(1, x) from each schedule's parameters alone: exp(−λ(x)) for the learned one
    # (Φ(1) = 1), exp(−(β₀ + β₁)/2) for the linear one, and for the cosine one
    # cos²(a + b)/cos²(b) = sigmoid(logsnr_min)/sigmoid(logsnr_max).
    sigmoid = lambda v: 1.0 / (1.0 + np.exp(-v))
    end = {
        "learned": lambda: np.exp(-ops.convert_to_numpy(lam).astype("float64")),
        "linear": lambda: np.exp(-(0.1 + 20.0) / 2.0),
        "cosine": lambda: sigmoid(-10.0) / sigmoid(10.0),
    }[name]()
    end = np.broadcast_to(np.clip(end, GAMMA_MIN, GAMMA_MAX), gammas[-1].shape)
    np.testing.assert_allclose(gammas[-1], end, rtol=5e-4)  # float32 cos near π/2
    # `gamma` and `terms` agree (the sampler uses one, the loss the other).
    for i in (0, 30, 77, 100):
        from_terms = schedule.terms(np.full((4,), grid[i], "float32"), lam)["gamma"]
        np.testing.assert_allclose(ops.convert_to_numpy(from_terms), gammas[i], rtol=1e-6)
    # Strictly decreasing until the clip floor of 1e-6 is reached.
    raw = np.stack(
        [
            ops.convert_to_numpy(
                -lam * schedule.time_terms(ops.full((4, 1, 1, 1), float(t)))[0]
            )
            for t in grid
        ]
    )  # log γ, unclipped
    assert np.all(np.diff(raw, axis=0) < 0)
    for t in (0.0, 0.3, 0.99):
        beta = ops.convert_to_numpy(schedule.terms(np.full((4,), t, "float32"), lam)["beta"])
        assert np.all(beta >= 0)


def test_fixed_schedules_do_not_depend_on_the_condition():
    for schedule in (LinearSchedule(), CosineSchedule()):
        t = np.array([0.4], "float32")
        a = schedule.gamma(t, schedule.schedule_map(np.zeros((1, 4, 4, 1))))
        b = schedule.gamma(t, schedule.schedule_map(np.ones((1, 4, 4, 1))))
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))


def test_closed_forms_of_fixed_schedules():
    t = np.array([0.0, 0.25, 1.0], "float32")
    lam = np.ones((3, 1, 1, 1), "float32")
    linear = ops.convert_to_numpy(LinearSchedule(0.1, 20.0).gamma(t, lam)).ravel()
    expected = np.exp(-(0.1 * t + 0.5 * 19.9 * t**2))
    np.testing.assert_allclose(linear, np.clip(expected, 1e-6, GAMMA_MAX), rtol=1e-5)
    cosine = CosineSchedule(-10.0, 10.0)
    g1 = float(ops.convert_to_numpy(cosine.gamma(np.array([1.0], "float32"), lam[:1])).ravel()[0])
    # log-SNR(1) ≈ logsnr_min, so γ(1) ≈ sigmoid(−10) (up to the γ(0) normalisation).
    assert g1 == pytest.approx(1 / (1 + np.exp(10.0)), rel=1e-3)


def test_learned_schedule_starts_with_small_gamma_at_one():
    schedule = LearnedSchedule(target_channels=1, filters=4, initial_lambda=10.0)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    lam = ops.convert_to_numpy(schedule.schedule_map(x))
    np.testing.assert_allclose(lam, 10.0, rtol=1e-5)
    g1 = ops.convert_to_numpy(schedule.gamma(np.ones((2,), "float32"), lam))
    np.testing.assert_allclose(g1, np.exp(-10.0), rtol=1e-4)


def test_min_lambda_bounds_the_terminal_gamma():
    """λ ≥ min_lambda wherever the schedule network saturates, so γ(1) ≤ exp(−min_lambda);
    the network still starts at initial_lambda."""
    schedule = LearnedSchedule(target_channels=1, filters=4, initial_lambda=10.0, min_lambda=7.0)
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(ops.convert_to_numpy(schedule.schedule_map(x)), 10.0, rtol=1e-5)
    # Drive the network's output to −50 everywhere: softplus → 0, λ → min_lambda.
    for weight in schedule.network.weights:
        weight.assign(np.zeros(weight.shape, "float32"))
    schedule.network.weights[-1].assign(np.full(schedule.network.weights[-1].shape, -50.0))
    lam = ops.convert_to_numpy(schedule.schedule_map(x))
    np.testing.assert_allclose(lam, 7.0, rtol=1e-6)
    g1 = ops.convert_to_numpy(schedule.gamma(np.ones((2,), "float32"), lam))
    np.testing.assert_allclose(g1, np.exp(-7.0), rtol=1e-4)
    with pytest.raises(ValueError, match="initial_lambda must be above min_lambda"):
        LearnedSchedule(initial_lambda=5.0, min_lambda=7.0)
    with pytest.raises(ValueError, match="min_lambda must be at least"):
        LearnedSchedule(min_lambda=0.0)


def test_a_config_saved_without_min_lambda_keeps_the_old_floor():
    """Presets saved before `min_lambda` existed load with the floor they were trained with."""
    config = LearnedSchedule(target_channels=1, filters=4).get_config()
    del config["min_lambda"]
    assert LearnedSchedule.from_config(config).min_lambda == pytest.approx(1e-3)


def test_monotone_time_is_normalised():
    layer = MonotoneTime(hidden_units=8)
    phi, dphi, _ = layer(ops.convert_to_tensor([0.0, 0.5, 1.0]))
    phi = ops.convert_to_numpy(phi)
    assert phi[0] == pytest.approx(0.0, abs=1e-6)
    assert phi[2] == pytest.approx(1.0, abs=1e-6)
    assert np.all(ops.convert_to_numpy(dphi) > 0)


def test_exact_coupling_has_zero_ode_residual():
    schedule = LearnedSchedule(target_channels=1, filters=4, coupling="exact")
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 2)).astype("float32")
    out = schedule.terms(np.array([0.2, 0.5, 0.9], "float32"), schedule.schedule_map(x))
    gamma = ops.convert_to_numpy(out["gamma"])
    residual = ops.convert_to_numpy(out["dgamma"]) + ops.convert_to_numpy(out["beta"]) * gamma
    assert np.max(np.abs(residual)) < 1e-5
    assert schedule.tau_network is None


def test_schedule_config_round_trip():
    for schedule in (
        LearnedSchedule(target_channels=2, filters=4, coupling="exact", initial_lambda=7.0),
        LearnedSchedule(target_channels=1, filters=4, min_lambda=5.0),
        LinearSchedule(0.2, 15.0),
        CosineSchedule(-12.0, 8.0),
    ):
        clone = schedule.__class__.from_config(schedule.get_config())
        assert clone.get_config() == schedule.get_config()


def test_bad_schedule_arguments():
    with pytest.raises(ValueError, match="beta_min < beta_max"):
        LinearSchedule(5.0, 1.0)
    with pytest.raises(ValueError, match="logsnr_min < logsnr_max"):
        CosineSchedule(5.0, -5.0)
    with pytest.raises(ValueError, match="coupling"):
        LearnedSchedule(coupling="magic")


def test_learned_schedule_can_be_called_before_it_is_built():
    schedule = LearnedSchedule(target_channels=1, filters=4)
    out = schedule(np.array([0.5, 0.5], "float32"), np.zeros((2, 8, 8, 3), "float32"))
    assert tuple(out["gamma"].shape) == (2, 8, 8, 1)
