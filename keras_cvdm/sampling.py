"""Reverse-diffusion samplers on the learned (or fixed) schedule (DESIGN.md §1).

The step functions are pure `keras.ops`. `reverse_diffusion` runs the whole loop with
`keras.ops.fori_loop`; each backend in `keras_cvdm.backend` compiles it once (JAX:
`jax.jit`, TensorFlow: `tf.function`; PyTorch runs it under `torch.no_grad`) and supplies
the per-step noise, drawn inside the loop from a counter-based key so that memory does
not grow with the number of steps.
"""

from keras import ops

SAMPLERS = ("ancestral", "ddim")


def predict_clean(z_t, eps_hat, gamma_t, clip):
    """ŷ = (z_t − √(1 − γ_t) ε̂) / √γ_t, optionally clipped to [−1, 1]."""
    y_hat = (z_t - ops.sqrt(1.0 - gamma_t) * eps_hat) / ops.sqrt(gamma_t)
    return ops.clip(y_hat, -1.0, 1.0) if clip else y_hat


def ancestral_step(z_t, y_hat, gamma_t, gamma_s, noise):
    """One ancestral step from t to s < t: a draw from q(z_s | z_t, y = ŷ).

    With α = γ_t / γ_s:
    mean = √γ_s (1 − α)/(1 − γ_t) ŷ + √α (1 − γ_s)/(1 − γ_t) z_t,
    var = (1 − α)(1 − γ_s)/(1 − γ_t).
    """
    alpha = gamma_t / gamma_s
    one_minus_t = 1.0 - gamma_t
    mean = (
        ops.sqrt(gamma_s) * (1.0 - alpha) / one_minus_t * y_hat
        + ops.sqrt(alpha) * (1.0 - gamma_s) / one_minus_t * z_t
    )
    variance = ops.maximum((1.0 - alpha) * (1.0 - gamma_s) / one_minus_t, 0.0)
    return mean + ops.sqrt(variance) * noise


def ddim_step(z_t, y_hat, gamma_t, gamma_s):
    """One deterministic DDIM step: z_s = √γ_s ŷ + √(1 − γ_s) ε̂, with ε̂ implied by ŷ."""
    eps_hat = (z_t - ops.sqrt(gamma_t) * y_hat) / ops.sqrt(1.0 - gamma_t)
    return ops.sqrt(gamma_s) * y_hat + ops.sqrt(1.0 - gamma_s) * eps_hat


def reverse_diffusion(model, x, z_init, num_steps, sampler, clip, noise_fn):
    """Run the sampler from `t = 1` to `t = 0` on the grid `t_i = i / num_steps`.

    Args:
        model: a `CVDM` (its `schedule` and `denoiser` are used).
        x: condition batch `(B, H, W, C)`, float32.
        z_init: the starting noise `z_1`, shape `(B, H, W, target_channels)`.
        num_steps: number of denoiser evaluations.
        sampler: `"ancestral"` or `"ddim"`.
        clip: clip ŷ to [−1, 1] at every step.
        noise_fn: `noise_fn(k)` returns standard normal noise with `z_init`'s shape
            for step `k` (unused by DDIM).

    Returns:
        ŷ of the last step (in the diffused space), `(B, H, W, target_channels)`.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}.")
    lam = model.schedule.schedule_map(x)  # once per input
    ones = ops.ones((ops.shape(x)[0],), "float32")
    steps = float(num_steps)

    def body(k, carry):
        z, _ = carry
        t = (steps - ops.cast(k, "float32")) / steps
        s = t - 1.0 / steps
        gamma_t = model.schedule.gamma(ones * t, lam)
        gamma_s = model.schedule.gamma(ones * s, lam)
        eps_hat = ops.cast(model.denoiser([z, x, gamma_t], training=False), "float32")
        y_hat = predict_clean(z, eps_hat, gamma_t, clip)
        if sampler == "ancestral":
            z = ancestral_step(z, y_hat, gamma_t, gamma_s, noise_fn(k))
        else:
            z = ddim_step(z, y_hat, gamma_t, gamma_s)
        return z, y_hat

    _, y_hat = ops.fori_loop(0, num_steps, body, (z_init, ops.zeros_like(z_init)))
    return y_hat
