"""Reverse-diffusion samplers on the learned (or fixed) schedule (docs/architecture.md).

The step functions are pure `keras.ops`. `reverse_diffusion` runs the whole loop with
`keras.ops.fori_loop`; each backend in `keras_cvdm.backend` compiles it once (JAX:
`jax.jit`, TensorFlow: `tf.function`; PyTorch runs it under `torch.no_grad`) and supplies
the per-step noise, drawn inside the loop row by row from each (input, sample) pair's own
counter-based key, so that memory does not grow with the number of steps and a sample does
not depend on the batch it runs in. `draw_samples` is the numpy plumbing around it
(padding, seeding, batching) behind `CVDM.predict_samples`; `pair_noise` derives each
pair's starting noise and key from `(seed, image index, sample index)`.
"""

import keras
import numpy as np
from keras import ops

from keras_cvdm import validation

SAMPLERS = ("ancestral", "ddim", "dpmpp2m", "dpmpp2m_sde")
#: Samplers that draw fresh noise at every step (the others are deterministic given z_1).
STOCHASTIC = ("ancestral", "dpmpp2m_sde")
#: The recommended sampler: as accurate and as well calibrated as 200 ancestral steps at a
#: tenth of the denoiser calls (`benchmarks/quality.py`, `learned_fast20`). New models and
#: the presets record it as their default.
RECOMMENDED = {"sampler": "dpmpp2m_sde", "num_steps": 20}


def predict_clean(z_t, eps_hat, gamma_t, clip: bool):
    """The clean image implied by a noise prediction: ŷ = (z_t − √(1 − γ_t) ε̂) / √γ_t.

    Args:
        z_t: the noisy sample at time t.
        eps_hat: the denoiser's noise prediction ε̂, `z_t`'s shape.
        gamma_t: γ(t, x), broadcastable to `z_t`.
        clip: clip ŷ to [−1, 1] (for targets known to lie there).

    Returns:
        ŷ, `z_t`'s shape.

    Examples:
        >>> y_hat = predict_clean(ops.ones((1, 2)), ops.zeros((1, 2)), 0.25, clip=False)
        >>> ops.convert_to_numpy(y_hat).tolist()
        [[2.0, 2.0]]
        >>> ops.convert_to_numpy(predict_clean(ops.ones((1, 2)), ops.zeros((1, 2)), 0.25, True))
        array([[1., 1.]], dtype=float32)
    """
    y_hat = (z_t - ops.sqrt(1.0 - gamma_t) * eps_hat) / ops.sqrt(gamma_t)
    return ops.clip(y_hat, -1.0, 1.0) if clip else y_hat


def ancestral_step(z_t, y_hat, gamma_t, gamma_s, noise):
    """One ancestral step from t to s < t: a draw from q(z_s | z_t, y = ŷ).

    With α = γ_t / γ_s:
    mean = √γ_s (1 − α)/(1 − γ_t) ŷ + √α (1 − γ_s)/(1 − γ_t) z_t,
    var = (1 − α)(1 − γ_s)/(1 − γ_t).

    Args:
        z_t: the sample at time t.
        y_hat: the predicted clean image ŷ.
        gamma_t, gamma_s: γ at t and at the earlier time s (γ_s > γ_t).
        noise: standard normal noise, `z_t`'s shape.

    Returns:
        z_s, `z_t`'s shape.

    Examples:
        >>> z_s = ancestral_step(ops.zeros((1,)), ops.ones((1,)), 0.5, 1.0, ops.zeros((1,)))
        >>> float(ops.convert_to_numpy(z_s)[0])  # γ_s = 1: the clean image itself
        1.0
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
    """One deterministic DDIM step: z_s = √γ_s ŷ + √(1 − γ_s) ε̂, with ε̂ implied by ŷ.

    Args:
        z_t: the sample at time t.
        y_hat: the predicted clean image ŷ.
        gamma_t, gamma_s: γ at t and at the earlier time s.

    Returns:
        z_s, `z_t`'s shape.

    Examples:
        >>> z = ops.convert_to_tensor([0.5])
        >>> round(float(ops.convert_to_numpy(ddim_step(z, ops.zeros((1,)), 0.5, 0.5))[0]), 6)
        0.5
    """
    eps_hat = (z_t - ops.sqrt(gamma_t) * y_hat) / ops.sqrt(1.0 - gamma_t)
    return ops.sqrt(gamma_s) * y_hat + ops.sqrt(1.0 - gamma_s) * eps_hat


def half_logsnr(gamma):
    """Half the log signal-to-noise ratio, ½ log(γ / (1 − γ)), per pixel.

    DPM-Solver's λ: with α = √γ and σ = √(1 − γ), λ = log(α / σ).

    Examples:
        >>> float(ops.convert_to_numpy(half_logsnr(ops.convert_to_tensor(0.5))))
        0.0
    """
    return 0.5 * (ops.log(gamma) - ops.log(1.0 - gamma))


def dpmpp2m_step(z_t, y_hat, y_prev, gamma_t, gamma_s, h_prev, noise=None):
    """One DPM-Solver++(2M) step from t to s < t, elementwise in the per-pixel log-SNR.

    With α = √γ, σ = √(1 − γ), λ = log(α/σ) per pixel and h = λ_s − λ_t > 0, the
    linear part of the probability-flow ODE (or of the reverse SDE) is solved exactly
    and the clean-image prediction is extrapolated linearly in λ from the previous step:
    D = ŷ_t + (h / 2h_prev)(ŷ_t − ŷ_prev) (second order; the first step, `h_prev` = 0,
    uses D = ŷ_t). Because the forward process is diagonal, each pixel follows its own
    schedule and the update carries over pixel by pixel.

    - ODE (`noise` None): z_s = (σ_s/σ_t) z_t + α_s (1 − e^{−h}) D. Its first-order form
      is `ddim_step`.
    - SDE (`noise` given): z_s = (σ_s/σ_t) e^{−h} z_t + α_s (1 − e^{−2h}) D
      + σ_s √(1 − e^{−2h}) ξ, with the same D. Its first-order form is `ancestral_step`.

    Args:
        z_t: the sample at time t.
        y_hat: ŷ at t.
        y_prev: ŷ at the previous (noisier) step; ignored where `h_prev` is 0.
        gamma_t, gamma_s: γ at t and at s (γ_s > γ_t).
        h_prev: the previous step's h per pixel (0 at the first step).
        noise: standard normal noise for the SDE form, or None for the ODE.

    Returns:
        `(z_s, h)`: the sample at s and this step's h (the next step's `h_prev`).

    References:
        Lu et al., "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
        Probabilistic Models", 2022 (arXiv:2211.01095), algorithm 2 and its SDE variant.

    Examples:
        >>> z, y = ops.convert_to_tensor([0.3]), ops.convert_to_tensor([0.8])
        >>> z_s, h = dpmpp2m_step(z, y, y, 0.2, 0.6, ops.zeros((1,)))
        >>> bool(ops.all(ops.abs(z_s - ddim_step(z, y, 0.2, 0.6)) < 1e-6))
        True
    """
    h = ops.broadcast_to(half_logsnr(gamma_s) - half_logsnr(gamma_t), ops.shape(z_t))
    # Second-order correction weight h / (2 h_prev); 0 where there is no previous step
    # (or where the clipped schedule did not move).
    safe_prev = ops.where(h_prev > 1e-6, h_prev, 1.0)
    weight = ops.where(h_prev > 1e-6, 0.5 * h / safe_prev, 0.0)
    d = y_hat + weight * (y_hat - y_prev)
    sigma_ratio = ops.sqrt((1.0 - gamma_s) / (1.0 - gamma_t))
    if noise is None:
        z_s = sigma_ratio * z_t + ops.sqrt(gamma_s) * (-ops.expm1(-h)) * d
    else:
        decay = -ops.expm1(-2.0 * h)
        z_s = (
            sigma_ratio * ops.exp(-h) * z_t
            + ops.sqrt(gamma_s) * decay * d
            + ops.sqrt((1.0 - gamma_s) * decay) * noise
        )
    return z_s, h


def reverse_diffusion(model, x, z_init, num_steps: int, sampler: str, clip: bool, noise_fn,
                      times=None):
    """Run the sampler from `t = 1` to `t = 0` on the grid `t_i = i / num_steps`.

    Step `k` evaluates the denoiser at `times[k]` and moves to `times[k + 1]`; the result
    is the clean-image prediction ŷ at the last evaluation, `times[num_steps − 1]`
    (`1 / num_steps` on the default grid).

    Args:
        model: a `CVDM` (its `schedule` and `denoiser` are used).
        x: condition batch `(B, H, W, C)`, float32.
        z_init: the starting noise `z_1`, shape `(B, H, W, target_channels)`.
        num_steps: number of denoiser evaluations.
        sampler: one of `SAMPLERS`.
        clip: clip ŷ to [−1, 1] at every step.
        noise_fn: `noise_fn(k)` returns standard normal noise with `z_init`'s shape
            for step `k` (used by the samplers in `STOCHASTIC`). The backends draw each
            row from that row's own key and `k` only, so that a row's noise does not
            depend on the other rows of the batch.
        times: optional decreasing grid of `num_steps + 1` times in [0, 1] replacing the
            uniform one (the tests integrate to a fixed end time with it).

    Returns:
        ŷ of the last step (in the diffused space), `(B, H, W, target_channels)`.

    Examples:
        >>> from keras_cvdm import CVDM
        >>> from keras_cvdm.layers import UNetDenoiser
        >>> model = CVDM(denoiser=UNetDenoiser(1, widths=(8, 16)))
        >>> model.build((None, 8, 8, 2))
        >>> x, z = ops.zeros((1, 8, 8, 2)), ops.ones((1, 8, 8, 1))
        >>> y = reverse_diffusion(model, x, z, 2, "ddim", True, noise_fn=None)
        >>> tuple(y.shape)
        (1, 8, 8, 1)
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}.")
    lam = model.schedule.schedule_map(x)  # once per input
    ones = ops.ones((ops.shape(x)[0],), "float32")
    if times is None:
        times = [(num_steps - i) / num_steps for i in range(num_steps + 1)]
    grid = ops.convert_to_tensor(times, "float32")

    def body(k, carry):
        z, y_prev, h_prev = carry
        t, s = ops.take(grid, k), ops.take(grid, k + 1)
        gamma_t = model.schedule.gamma(ones * t, lam)
        gamma_s = model.schedule.gamma(ones * s, lam)
        eps_hat = ops.cast(model.denoiser([z, x, gamma_t], training=False), "float32")
        y_hat = predict_clean(z, eps_hat, gamma_t, clip)
        noise = noise_fn(k) if sampler in STOCHASTIC else None
        if sampler == "ancestral":
            z = ancestral_step(z, y_hat, gamma_t, gamma_s, noise)
        elif sampler == "ddim":
            z = ddim_step(z, y_hat, gamma_t, gamma_s)
        else:
            z, h_prev = dpmpp2m_step(z, y_hat, y_prev, gamma_t, gamma_s, h_prev, noise)
        return z, y_hat, h_prev

    zeros = ops.zeros_like(z_init)
    _, y_hat, _ = ops.fori_loop(0, num_steps, body, (z_init, zeros, zeros))
    return y_hat


def resolve_seed(seed: int | None) -> int:
    """The user's integer seed, or a fresh one drawn from the OS when `seed` is None.

    Args:
        seed: a non-negative whole number, or None.

    Returns:
        A non-negative Python int.

    Examples:
        >>> resolve_seed(7), 0 <= resolve_seed(None) < 2**63
        (7, True)
    """
    if seed is None:
        return int(np.random.SeedSequence().generate_state(1)[0] >> 1)
    return validation.check_int(seed, "seed", minimum=0)


def pad_to_multiple(x: np.ndarray, multiple: int) -> np.ndarray:
    """Pad a batch `(N, H, W, C)` at the bottom/right so H and W are multiples of `multiple`.

    Reflection keeps the padded border image-like; an image smaller than its padding is
    mirrored symmetrically instead (reflection needs more pixels than it adds).

    Args:
        x: numpy batch `(N, H, W, C)`.
        multiple: the denoiser's down-sampling factor.

    Returns:
        The padded batch; crop `[:, :H, :W]` to undo.

    Examples:
        >>> pad_to_multiple(np.zeros((1, 5, 8, 2)), 4).shape
        (1, 8, 8, 2)
    """
    height, width = x.shape[1:3]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if not (pad_h or pad_w):
        return x
    mode = "reflect" if pad_h < height and pad_w < width else "symmetric"
    return np.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode=mode)


def pair_noise(seed: int, pairs, shape) -> tuple[np.ndarray, np.ndarray]:
    """The starting noise and per-step noise keys of (image, sample) pairs, one stream each.

    Pair `(n, k)`, sample `k` of image `n` of the stack, owns the stream
    `np.random.SeedSequence(seed, spawn_key=(n, k))`. Its first child draws z_1 with numpy
    (so the deterministic samplers give the same samples on every backend); its second
    gives two 32-bit words, the key from which the backend draws the pair's noise at each
    step (`noise_fn` of `reverse_diffusion`). A sample therefore depends on
    `(seed, n, k)` only: not on the batch size, not on the other images of the stack.

    Args:
        seed: a non-negative integer.
        pairs: a sequence of `(image index, sample index)`, non-negative integers.
        shape: the shape of one pair's starting noise, `(H, W, target_channels)`.

    Returns:
        `(z_init, keys)`: float32 `(len(pairs),) + shape` standard normal noise and the
        int32 keys `(len(pairs), 2)` (the two words' bits).

    Examples:
        >>> z, keys = pair_noise(0, [(0, 0), (1, 0)], (2, 2, 1))
        >>> z.shape, z.dtype.name, keys.shape, keys.dtype.name
        ((2, 2, 2, 1), 'float32', (2, 2), 'int32')
        >>> z_alone, keys_alone = pair_noise(0, [(1, 0)], (2, 2, 1))  # pair (1, 0) alone
        >>> bool(np.array_equal(z_alone[0], z[1]) and np.array_equal(keys_alone[0], keys[1]))
        True
    """
    shape = tuple(int(d) for d in shape)
    z_init = np.empty((len(pairs),) + shape, "float32")
    keys = np.empty((len(pairs), 2), "uint32")
    for row, (image, sample) in enumerate(pairs):
        start, steps = np.random.SeedSequence(seed, spawn_key=(image, sample)).spawn(2)
        z_init[row] = np.random.default_rng(start).standard_normal(shape, dtype="float32")
        keys[row] = steps.generate_state(2)
    return z_init, keys.view("int32")


def draw_samples(model, x: np.ndarray, num_samples: int, num_steps: int, sampler: str,
                 clip: bool, batch_size: int, seed: int, verbose=0) -> np.ndarray:
    """Posterior samples for a validated condition batch: the plumbing of `predict_samples`.

    The inputs are padded to the denoiser's multiple, repeated `num_samples` times
    (input-major), run through the model's compiled sampler `batch_size` pairs at a time,
    mapped back to target space and cropped.

    Each (input, sample) pair gets its own stream from `(seed, image index, sample index)`
    (`pair_noise`): the starting noise is drawn with numpy (so the deterministic samplers
    give the same samples on every backend) and the stochastic samplers' per-step noise
    comes from the backend's counter-based generator, keyed per pair. The samples do not
    depend on `batch_size` or on the other inputs, up to floating-point rounding of the
    denoiser at different batch sizes. Under a multi-device distribution
    (`keras_cvdm.distribute`) each call's pairs are split over the devices, which is
    why the samples are the same as on one device.

    Args:
        model: a built `CVDM`.
        x: numpy float32 conditions `(N, H, W, C)`.
        num_samples, num_steps: positive integers.
        sampler: one of `SAMPLERS`.
        clip: clip ŷ to [−1, 1] at every step.
        batch_size: (input, sample) pairs per compiled call.
        seed: an integer.
        verbose: 0 silent, otherwise a progress bar over batches.

    Returns:
        numpy `(N, num_samples, H, W, target_channels)`.

    Examples:
        >>> from keras_cvdm import CVDM
        >>> from keras_cvdm.layers import UNetDenoiser
        >>> model = CVDM(denoiser=UNetDenoiser(1, widths=(8, 16)))
        >>> model.build((None, 8, 8, 2))
        >>> x = np.zeros((2, 6, 6, 2), "float32")
        >>> draw_samples(model, x, 3, 2, "ddim", True, batch_size=4, seed=0).shape
        (2, 3, 6, 6, 1)
    """
    from keras_cvdm.backend import distribution  # the backend's samplers import this module

    n, height, width = x.shape[:3]
    pairs = np.repeat(pad_to_multiple(x, model.downsampling_factor), num_samples, axis=0)
    run = model.compiled_sampler(num_steps, sampler, clip)
    shards = distribution.sampling_shards()
    starts = range(0, len(pairs), batch_size)
    bar = keras.utils.Progbar(len(starts), verbose=0 if verbose == 0 else 1)
    outputs = []
    for b, start in enumerate(starts):
        xb = pairs[start : start + batch_size]
        rows = len(xb)
        z_init, keys = pair_noise(
            seed, [divmod(p, num_samples) for p in range(start, start + rows)],
            xb.shape[1:-1] + (model.target_channels,),
        )
        # Under a distribution the rows are split over its devices: fill the last part
        # with copies of the last row (dropped after), so every device gets as many.
        xb, z_init, keys = (_fill_rows(a, shards) for a in (xb, z_init, keys))
        xb = ops.convert_to_tensor(xb, "float32")
        d = run(xb, ops.convert_to_tensor(z_init), ops.convert_to_tensor(keys, "int32"))
        outputs.append(ops.convert_to_numpy(model.target_from_diffusion(xb, d))[:rows])
        bar.update(b + 1)
    out = np.concatenate(outputs)[:, :height, :width]
    return out.reshape((n, num_samples) + out.shape[1:])


def _fill_rows(a: np.ndarray, multiple: int) -> np.ndarray:
    """`a` with its last row repeated until its length is a multiple of `multiple`."""
    extra = -len(a) % multiple
    return np.concatenate([a, np.repeat(a[-1:], extra, axis=0)]) if extra else a
