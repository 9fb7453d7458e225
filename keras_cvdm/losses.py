"""The terms of the CVDM training loss, as functions of tensors (`keras.ops` only).

For one example with `t ~ U(0, 1)` and fresh noise ε (della Maggiora et al., ICLR 2024,
eqs. 10–13; the derivation is in `docs/architecture.md`):

    L = w_ε ‖ε − ε̂‖² + w_β L_β + w_prior L_prior + w_γ α L_γ

Every term is averaged over pixels and channels and then over the batch, so the
numbers do not depend on the image size.
"""

from keras import ops


def _mean_per_example(values):
    """Mean over every axis but the batch axis."""
    return ops.mean(ops.reshape(values, (ops.shape(values)[0], -1)), axis=-1)


def noise_loss(eps, eps_hat):
    """`‖ε − ε̂‖²` per example (mean over pixels).

    Args:
        eps: the drawn noise, `(B, H, W, C)`.
        eps_hat: the denoiser's prediction, same shape.

    Returns:
        `(B,)` float32.

    Examples:
        >>> [float(v) for v in ops.convert_to_numpy(noise_loss(ops.ones((2, 4, 4, 1)),
        ...                                                      ops.zeros((2, 4, 4, 1))))]
        [1.0, 1.0]
    """
    return _mean_per_example(ops.square(ops.cast(eps, "float32") - ops.cast(eps_hat, "float32")))


def beta_loss(dgamma, beta, gamma, gamma_t0, gamma_t1):
    """`L_β = (∂tγ + β γ)² + (γ(t₀) − 1)² + γ(t₁)²` per example.

    The first part holds the schedule to its ODE `∂tγ = −β γ` at the sampled `t`; the
    other two are the boundary conditions at `t₀ = 1/T` and `t₁ = 1 − 1/T`.

    Args:
        dgamma, beta, gamma: ∂tγ, β and γ at the sampled times, `(B, H, W, C)`.
        gamma_t0, gamma_t1: γ at `t₀` and `t₁`.

    Returns:
        `(B,)` float32.

    Examples:
        >>> g = ops.full((1, 2, 2, 1), 0.5)  # γ = e^{−t} at t = ln 2: ∂tγ = −γ, β = 1
        >>> ends = (ops.ones_like(g), ops.zeros_like(g))  # γ(t₀) = 1, γ(t₁) = 0
        >>> float(ops.convert_to_numpy(beta_loss(-g, ops.ones_like(g), g, *ends))[0])
        0.0
    """
    return (
        _mean_per_example(ops.square(dgamma + beta * gamma))
        + _mean_per_example(ops.square(gamma_t0 - 1.0))
        + _mean_per_example(ops.square(gamma_t1))
    )


def prior_loss(y, gamma_t1):
    """`KL(N(√γ₁ y, 1 − γ₁) ‖ N(0, 1))` per example, `γ₁ = γ(t₁, x)`, mean over pixels.

    Args:
        y: the diffusion target, `(B, H, W, C)`.
        gamma_t1: γ at `t₁ = 1 − 1/T`, broadcastable to `y`.

    Returns:
        `(B,)` float32; zero when `γ₁ = 0` (the end of the process is pure noise).

    Examples:
        >>> float(ops.convert_to_numpy(prior_loss(ops.ones((1, 2, 2, 1)), 0.0))[0])
        0.0
    """
    y = ops.cast(y, "float32")
    variance = 1.0 - gamma_t1
    kl = 0.5 * (variance + gamma_t1 * ops.square(y) - 1.0 - ops.log(variance))
    return _mean_per_example(ops.broadcast_to(kl, ops.shape(y)))


def snr_series_second_derivative(gamma, dgamma, d2gamma, order=1):
    """`∂t² S_n` for `S_n = γ + γ² + … + γⁿ` (the n-term series of `SNR = γ/(1 − γ)`).

    `∂t² γᵏ = k(k − 1) γᵏ⁻² (∂tγ)² + k γᵏ⁻¹ ∂t²γ`.

    Args:
        gamma, dgamma, d2gamma: γ, ∂tγ and ∂t²γ.
        order: `n`, the number of terms (≥ 1).

    Returns:
        `∂t² S_n`, with γ's shape.

    Examples:
        >>> # γ = 0.5, ∂tγ = 1, ∂t²γ = 0: ∂t²(γ + γ²) = 2 (∂tγ)² = 2.
        >>> float(snr_series_second_derivative(0.5, 1.0, 0.0, order=2))
        2.0
    """
    if order < 1:
        raise ValueError(f"The SNR series order must be >= 1, got {order}.")
    total = d2gamma
    for k in range(2, order + 1):
        total = total + k * (k - 1) * gamma ** (k - 2) * ops.square(dgamma)
        total = total + k * gamma ** (k - 1) * d2gamma
    return total


def gamma_loss(gamma, dgamma, d2gamma, order=1):
    """`L_γ = (∂t² S_n)²` per example (mean over pixels): keeps the SNR's curvature small.

    Args:
        gamma, dgamma, d2gamma: γ, ∂tγ and ∂t²γ, `(B, H, W, C)`.
        order: `n` of the SNR series.

    Returns:
        `(B,)` float32.

    Examples:
        >>> ones = ops.ones((1, 2, 2, 1))
        >>> float(ops.convert_to_numpy(gamma_loss(0.5 * ones, ones, 3.0 * ones))[0])
        9.0
    """
    second = snr_series_second_derivative(gamma, dgamma, d2gamma, order)
    return _mean_per_example(ops.square(second))


def cvdm_loss_terms(eps, eps_hat, y, terms_t, gamma_t0, gamma_t1, order=1):
    """The four unweighted terms, each averaged over the batch.

    Args:
        eps, eps_hat: the drawn noise and the denoiser's prediction, `(B, H, W, C)`.
        y: the diffusion target (after any residual / zero-mean transform).
        terms_t: the schedule's output at the sampled `t` (`gamma`, `beta`, `dgamma`,
            `d2gamma`).
        gamma_t0, gamma_t1: γ at `t₀ = 1/T` and `t₁ = 1 − 1/T`.
        order: `n` of the SNR series in `L_γ`.

    Returns:
        Dict with scalar `noise_loss`, `beta_loss`, `prior_loss`, `gamma_loss`.
    """
    g, dg, d2g = terms_t["gamma"], terms_t["dgamma"], terms_t["d2gamma"]
    return {
        "noise_loss": ops.mean(noise_loss(eps, eps_hat)),
        "beta_loss": ops.mean(beta_loss(dg, terms_t["beta"], g, gamma_t0, gamma_t1)),
        "prior_loss": ops.mean(prior_loss(y, gamma_t1)),
        "gamma_loss": ops.mean(gamma_loss(g, dg, d2g, order)),
    }


def weighted_total(terms, noise_weight=1.0, beta_weight=2.0, prior_weight=2.0, gamma_weight=2.0,
                   alpha=1e-3):
    """`w_ε L_ε + w_β L_β + w_prior L_prior + w_γ α L_γ` (defaults: the reference's 1, 2, 2, 2).

    Args:
        terms (dict): `noise_loss`, `beta_loss`, `prior_loss` and `gamma_loss`, as from
            `cvdm_loss_terms`.
        noise_weight, beta_weight, prior_weight, gamma_weight (float): the weights.
        alpha (float): the extra factor of `L_γ`.

    Returns:
        The weighted sum (a scalar of the terms' type).

    Examples:
    >>> terms = {"noise_loss": 1.0, "beta_loss": 0.5, "prior_loss": 0.25, "gamma_loss": 100.0}
    >>> round(weighted_total(terms), 6)
    2.7
    """
    return (
        noise_weight * terms["noise_loss"]
        + beta_weight * terms["beta_loss"]
        + prior_weight * terms["prior_loss"]
        + gamma_weight * alpha * terms["gamma_loss"]
    )
