"""Noise schedules: the learned, condition-dependent schedule of CVDM and fixed baselines.

Every schedule has the form

    γ(t, x) = exp(−λ(x) · Φ(t)),        β(t, x) = λ(x) · τ(t)

with `Φ(0) = 0` and `Φ' > 0`. The fixed schedules use `λ ≡ 1` and `τ = Φ'` exactly; the
learned schedule has a per-pixel `λ(x)` from a schedule network and monotone networks for
`Φ` and `τ`. All of them answer the same two questions:

- `schedule_map(x)`: `λ(x)`, computed once per input;
- `terms(t, lam)`: γ, β, ∂tγ and ∂t²γ at times `t` (one per example), in closed form.

Schedule arithmetic runs in float32 whatever the global dtype policy. The derivation of
the closed forms is in `docs/architecture.md`.
"""

import math

import keras
from keras import ops

from keras_cvdm.layers.conv_net import ConvNet
from keras_cvdm.layers.monotone_time import MonotoneTime
from keras_cvdm.numerics import clip_gamma

LAMBDA_FLOOR = 1e-3


def _increasing(owner, low_name, low, high_name, high, floor=None):
    """`(low, high)` as floats, after checking `floor <= low < high`."""
    if not (floor is None or floor <= low) or not low < high:
        bound = "" if floor is None else f"{floor:g} <= "
        raise ValueError(
            f"{owner} needs {bound}{low_name} < {high_name}, got {low_name}={low}, "
            f"{high_name}={high}."
        )
    return float(low), float(high)


def _check_learned_options(coupling, initial_lambda, min_lambda):
    if coupling not in ("ode", "exact"):
        raise ValueError(f"coupling must be 'ode' or 'exact', got {coupling!r}.")
    if min_lambda < LAMBDA_FLOOR:
        raise ValueError(
            f"min_lambda must be at least {LAMBDA_FLOOR} (every pixel must be noised), "
            f"got {min_lambda}."
        )
    if initial_lambda <= min_lambda + 10 * LAMBDA_FLOOR:
        raise ValueError(
            f"initial_lambda must be above min_lambda + 0.01 = {min_lambda + 0.01:g}, got "
            f"{initial_lambda}; raise initial_lambda or lower min_lambda."
        )


class Schedule(keras.layers.Layer):
    """Base class of the schedules: `γ(t, x) = exp(−λ(x) Φ(t))`, `β = λ τ(t)`.

    Subclasses implement `time_terms(t) -> (Φ, Φ', Φ'', τ)` and, when γ depends on the
    condition, `schedule_map(x) -> λ(x)`. A schedule computes in float32 unless a dtype
    is given.

    Args:
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        t: times, shape `(B,)`.
        x: condition images `(B, H, W, C)`.

    Returns:
        A dict (from `call` and `terms`) with `gamma` (clipped to `[1e-6, 1 − 1e-5]`),
        `beta`, `dgamma` (∂tγ) and `d2gamma` (∂t²γ), each broadcastable to
        `(B, H, W, target_channels)`.

    Examples:
    >>> class Exponential(Schedule):  # Φ(t) = 5t, τ = Φ' = 5
    ...     def time_terms(self, t):
    ...         return 5.0 * t, 5.0 + 0.0 * t, 0.0 * t, 5.0 + 0.0 * t
    >>> out = Exponential()(keras.ops.array([0.2]), keras.ops.zeros((1, 4, 4, 1)))
    >>> round(float(out["gamma"][0, 0, 0, 0]), 5), float(out["beta"][0, 0, 0, 0])
    (0.36788, 5.0)
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    #: whether γ depends on the condition x.
    conditional = False
    #: the constructor options, saved in the config from the attributes of the same name.
    config_keys = ()

    def build(self, t_shape=None, x_shape=None):
        """Fixed schedules have no weights; `x_shape` is the condition's shape."""
        self.built = True

    def schedule_map(self, x):
        """λ(x): `ones((B, 1, 1, 1))` for a fixed schedule."""
        x = ops.convert_to_tensor(x)
        return ops.ones((ops.shape(x)[0], 1, 1, 1), dtype=self.compute_dtype)

    def time_terms(self, t):
        raise NotImplementedError

    def terms(self, t, lam):
        """γ, β, ∂tγ, ∂t²γ at times `t` (shape `(B,)`) for a precomputed `lam = λ(x)`."""
        t = ops.reshape(ops.cast(t, self.compute_dtype), (-1, 1, 1, 1))
        lam = ops.cast(lam, self.compute_dtype)
        phi, dphi, d2phi, tau = self.time_terms(t)
        gamma = ops.exp(-lam * phi)
        return {
            "gamma": clip_gamma(gamma),
            "beta": lam * tau,
            "dgamma": -lam * dphi * gamma,
            "d2gamma": gamma * (ops.square(lam * dphi) - lam * d2phi),
        }

    def gamma(self, t, lam):
        """γ(t, x) only (clipped), for a precomputed `lam = λ(x)`."""
        t = ops.reshape(ops.cast(t, self.compute_dtype), (-1, 1, 1, 1))
        phi = self.time_terms(t)[0]
        return clip_gamma(ops.exp(-ops.cast(lam, self.compute_dtype) * phi))

    def call(self, t, x):
        return self.terms(t, self.schedule_map(x))

    def get_config(self):
        config = super().get_config()
        config.update({key: getattr(self, key) for key in self.config_keys})
        return config


@keras.saving.register_keras_serializable(package="keras_cvdm")
class LinearSchedule(Schedule):
    """The linear-β schedule of DDPM in continuous time (Song et al.'s VP-SDE).

    `β(t) = β₀ + (β₁ − β₀) t`, so `Φ(t) = β₀ t + (β₁ − β₀) t² / 2` and
    `γ(t) = exp(−Φ(t))`, independent of the condition.

    Args:
        beta_min (float): `β₀ ≥ 0`, the noise rate at `t = 0`.
        beta_max (float): `β₁ > β₀`, the noise rate at `t = 1`; `γ(1) = exp(−(β₀ + β₁)/2)`.
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        t: times `(B,)`.
        x: condition images `(B, H, W, C)`; only their number matters.

    Returns:
        The dict of `Schedule.terms`; every entry is `(B, 1, 1, 1)`, the same for all
        pixels.

    Examples:
    >>> s = LinearSchedule(beta_min=0.1, beta_max=20.0)
    >>> out = s(keras.ops.array([0.0, 0.5, 1.0]), keras.ops.zeros((3, 8, 8, 1)))
    >>> round(float(out["gamma"][2, 0, 0, 0] / math.exp(-10.05)), 4)
    1.0

    References:
        Ho et al., "Denoising Diffusion Probabilistic Models", NeurIPS 2020.
        Song et al., "Score-Based Generative Modeling through SDEs", ICLR 2021.
    """

    config_keys = ("beta_min", "beta_max")

    def __init__(self, beta_min=0.1, beta_max=20.0, **kwargs):
        super().__init__(**kwargs)
        self.beta_min, self.beta_max = _increasing(
            "LinearSchedule", "beta_min", beta_min, "beta_max", beta_max, floor=0.0
        )

    def time_terms(self, t):
        slope = self.beta_max - self.beta_min
        dphi = self.beta_min + slope * t
        phi = self.beta_min * t + 0.5 * slope * ops.square(t)
        d2phi = ops.full_like(t, slope)
        return phi, dphi, d2phi, dphi


@keras.saving.register_keras_serializable(package="keras_cvdm")
class CosineSchedule(Schedule):
    """The cosine schedule, parameterised by its log-SNR endpoints.

    `γ(t) = cos²(a t + b) / cos²(b)` with `b = arctan(exp(−snr_max/2))` and
    `a = arctan(exp(−snr_min/2)) − b`, so that `γ(0) = 1` and the log-SNR runs from about
    `logsnr_max` to `logsnr_min` (Nichol & Dhariwal's schedule; the endpoints are what a
    user tunes).

    Args:
        logsnr_min (float): log-SNR at `t = 1` (more negative: noisier end).
        logsnr_max (float): log-SNR at `t = 0` (before the normalisation `γ(0) = 1`).
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        t, x: as for `LinearSchedule` (times `(B,)`; of `x` only the batch size is used).

    Returns:
        γ, β, ∂tγ, ∂t²γ as for `LinearSchedule`, each `(B, 1, 1, 1)`.

    Examples:
    >>> s = CosineSchedule(logsnr_min=-10.0, logsnr_max=10.0)
    >>> out = s(keras.ops.array([0.0, 1.0]), keras.ops.zeros((2, 8, 8, 1)))
    >>> gamma_1 = float(out["gamma"][1, 0, 0, 0])  # sigmoid(−10) / sigmoid(10)
    >>> round(gamma_1 * (1 + math.exp(10.0)) * (1 + math.exp(-10.0)), 3)
    1.0

    References:
        Nichol & Dhariwal, "Improved Denoising Diffusion Probabilistic Models", ICML 2021.
    """

    config_keys = ("logsnr_min", "logsnr_max")

    def __init__(self, logsnr_min=-10.0, logsnr_max=10.0, **kwargs):
        super().__init__(**kwargs)
        self.logsnr_min, self.logsnr_max = _increasing(
            "CosineSchedule", "logsnr_min", logsnr_min, "logsnr_max", logsnr_max
        )
        self._b = math.atan(math.exp(-0.5 * self.logsnr_max))
        self._a = math.atan(math.exp(-0.5 * self.logsnr_min)) - self._b

    def time_terms(self, t):
        a, b = self._a, self._b
        u = a * t + b
        tan_u = ops.tan(u)
        phi = -2.0 * ops.log(ops.cos(u)) + 2.0 * math.log(math.cos(b))
        dphi = 2.0 * a * tan_u
        d2phi = 2.0 * a * a * (1.0 + ops.square(tan_u))
        return phi, dphi, d2phi, dphi


@keras.saving.register_keras_serializable(package="keras_cvdm")
class LearnedSchedule(Schedule):
    """The CVDM schedule: `β(t, x) = λ(x) τ(t)`, `γ(t, x) = exp(−λ(x) Φ(t))`.

    `λ(x) = softplus(g(x)) + λ_min` is a per-pixel, per-output-channel map from a small conv
    network on the condition; it is computed once per input (`schedule_map`). `Φ` is a
    monotone network normalised to `Φ(0) = 0`, `Φ(1) = 1`, so `γ(1, x) = exp(−λ(x))`:
    λ(x) is the log-SNR range a pixel travels. `τ(t)` is a second monotone network's
    normalised derivative, tied to `Φ'` by the loss term `L_β` (the paper's
    construction); with `coupling="exact"` one network gives both, `τ = Φ'`.

    Args:
        target_channels (int): channels of `y` (λ has one map per output channel).
        filters (int): width of the schedule network `g` (a `ConvNet`).
        depth (int): hidden convolutions of `g`.
        hidden_units (int): width of the monotone time networks (`MonotoneTime`).
        initial_lambda (float): the initial value of λ everywhere (so the initial
            `γ(1, x) = exp(−initial_lambda)`; 10 gives `γ(1) ≈ 4.5e-5`).
        coupling (str): `"ode"` (two time networks tied by `L_β`, as in the paper) or
            `"exact"` (`τ = Φ'`, one network).
        min_lambda (float): `λ_min`, the least log-SNR range a pixel may travel, so that
            `γ(1, x) ≤ exp(−min_lambda)` everywhere. The default 10⁻³ only keeps every
            pixel noised; a larger value (e.g. 7, `γ(1) ≤ 10⁻³`) holds the end of the
            forward process close to the pure noise the sampler starts from (at the CPU
            scale of `benchmarks/quality.py` this bought no accuracy and cost calibration).
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        t: times `(B,)`.
        x: condition images `(B, H, W, C)`.

    Returns:
        The dict of `Schedule.terms`, each entry `(B, H, W, target_channels)`.

    Examples:
    >>> s = LearnedSchedule(target_channels=1, filters=8)
    >>> x = keras.ops.zeros((2, 16, 16, 2))
    >>> lam = s.schedule_map(x)               # once per input
    >>> out = s.terms(keras.ops.array([0.1, 0.7]), lam)
    >>> tuple(out["gamma"].shape)
    (2, 16, 16, 1)
    >>> round(float(s.gamma(keras.ops.array([1.0, 1.0]), lam)[0, 0, 0, 0] * math.exp(10)), 3)
    1.0

    References:
        della Maggiora et al., "Conditional Variational Diffusion Models", ICLR 2024
        (arXiv:2312.02246), eqs. 5–9.
    """

    conditional = True
    config_keys = ("target_channels", "filters", "depth", "hidden_units", "initial_lambda",
                   "coupling", "min_lambda")

    def __init__(
        self,
        target_channels=1,
        filters=32,
        depth=2,
        hidden_units=64,
        initial_lambda=10.0,
        coupling="ode",
        min_lambda=LAMBDA_FLOOR,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_learned_options(coupling, initial_lambda, min_lambda)
        self.target_channels = int(target_channels)
        self.filters, self.depth = int(filters), int(depth)
        self.hidden_units = int(hidden_units)
        self.coupling = coupling
        self.initial_lambda, self.min_lambda = float(initial_lambda), float(min_lambda)
        # softplus⁻¹(initial_lambda − λ_min): the output bias that makes λ start at
        # initial_lambda.
        start = self.initial_lambda - self.min_lambda
        inverse_softplus = start + math.log(-math.expm1(-start))
        self.network = ConvNet(
            self.target_channels,
            filters=self.filters,
            depth=self.depth,
            output_bias=inverse_softplus,
            dtype=self.dtype_policy,
            name="schedule_network",
        )
        self.phi_network = MonotoneTime(
            self.hidden_units, dtype=self.dtype_policy, name="phi_network"
        )
        self.tau_network = (
            MonotoneTime(self.hidden_units, dtype=self.dtype_policy, name="tau_network")
            if coupling == "ode"
            else None
        )

    def build(self, t_shape=None, x_shape=None):
        if x_shape is None:
            raise ValueError("LearnedSchedule.build needs the condition shape x_shape.")
        self._x_shape = tuple(x_shape)
        for layer, shape in (
            (self.network, x_shape),
            (self.phi_network, None),
            (self.tau_network, None),
        ):
            if layer is not None and not layer.built:
                layer.build(shape)
        self.built = True

    def get_build_config(self):
        return {"x_shape": list(self._x_shape)} if self.built else None

    def build_from_config(self, config):
        if config and config.get("x_shape") is not None:
            self.build(x_shape=tuple(config["x_shape"]))

    def schedule_map(self, x):
        """λ(x) = softplus(g(x)) + λ_min, shape `(B, H, W, target_channels)`.

        The floor keeps every pixel noised (γ strictly decreasing in t) even where the
        schedule network's output saturates, and bounds `γ(1, x)` by `exp(−λ_min)`.
        """
        return ops.softplus(self.network(ops.cast(x, self.compute_dtype))) + self.min_lambda

    def time_terms(self, t):
        phi, dphi, d2phi = self.phi_network(t)
        tau = dphi if self.tau_network is None else self.tau_network(t)[1]
        return phi, dphi, d2phi, tau


def get(identifier, target_channels=1):
    """Resolve `"learned" | "linear" | "cosine" | Schedule | config dict` to a schedule layer."""
    if isinstance(identifier, Schedule):
        return identifier
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    if identifier == "learned":
        return LearnedSchedule(target_channels=target_channels, name="schedule")
    if identifier == "linear":
        return LinearSchedule(name="schedule")
    if identifier == "cosine":
        return CosineSchedule(name="schedule")
    raise ValueError(
        f"Unknown schedule {identifier!r}. Use 'learned', 'linear', 'cosine' or a "
        "keras_cvdm.schedules.Schedule layer."
    )
