"""Numerical guards shared by the schedules, the losses and the sampler."""

import keras
from keras import ops

GAMMA_MIN = 1e-6
GAMMA_MAX = 1.0 - 1e-5


def clip_gamma(gamma):
    """Clip γ to `[1e-6, 1 − 1e-5]`, the range where `log γ` and `1 − γ` are safe.

    Args:
        gamma: a tensor of γ values.

    Returns:
        The clipped tensor (same shape and dtype).

    Examples:
        >>> import numpy as np
        >>> g = ops.convert_to_numpy(clip_gamma(ops.convert_to_tensor([0.0, 0.5, 1.0])))
        >>> bool(np.allclose(g, [GAMMA_MIN, 0.5, GAMMA_MAX], rtol=1e-7, atol=0))
        True
    """
    return ops.clip(gamma, GAMMA_MIN, GAMMA_MAX)


def all_finite(tensors):
    """One boolean tensor: True when every value of every tensor is finite (None skipped).

    The training steps use it to skip an update whose loss or gradient is NaN or Inf. It
    tests the float32 sum of all values, one reduction per tensor and no stack of flags
    (cheap where every op is a separate kernel): a NaN or an Inf anywhere makes the sum
    non-finite, and so does a sum beyond float32's range (about 3e38), a gradient too
    large to apply anyway.

    Args:
        tensors: a list of tensors (loss, gradients); None entries are ignored.

    Returns:
        A scalar boolean tensor.

    Examples:
        >>> bool(all_finite([ops.ones((2,)), None, ops.convert_to_tensor(3.0)]))
        True
        >>> bool(all_finite([ops.ones((2,)), ops.convert_to_tensor([1.0, float("nan")])]))
        False
        >>> bool(all_finite([ops.convert_to_tensor([float("inf"), -float("inf")])]))
        False
    """
    total = ops.convert_to_tensor(0.0, "float32")
    for t in tensors:
        if t is not None:
            total = total + ops.sum(ops.cast(t, "float32"))
    return ops.isfinite(total)


def update_is_finite(optimizer, total, grads):
    """Whether a training step's update may be applied: its loss and gradients are finite.

    Under a `keras.optimizers.LossScaleOptimizer` it is that optimizer's own verdict on
    the scaled gradients (it skips such a step itself and lowers its loss scale), so the
    count of skipped steps matches what it did.

    Args:
        optimizer: the model's optimizer.
        total: the step's loss.
        grads: its gradients (None entries ignored).

    Returns:
        A scalar boolean tensor.
    """
    if skips_non_finite_itself(optimizer):
        return optimizer.check_finite(grads)
    return all_finite([total] + list(grads))


def skips_non_finite_itself(optimizer) -> bool:
    """True for a `keras.optimizers.LossScaleOptimizer`: it must receive every step.

    It skips a non-finite step on its own and lowers its loss scale; holding such a step
    back from it would keep the scale too high for ever.
    """
    return isinstance(optimizer, keras.optimizers.LossScaleOptimizer)


def clips_gradients(optimizer) -> bool:
    """True when the optimizer clips its gradients (`clipnorm`, `global_clipnorm`, `clipvalue`)."""
    return any(
        (getattr(optimizer, name, None) or 0) > 0
        for name in ("clipnorm", "global_clipnorm", "clipvalue")
    )


def clip_gradients(optimizer, grads):
    """The clipping the optimizer is set up for, applied to `grads` (None entries kept).

    The same rule as a Keras optimizer's own: `clipnorm` per tensor, else
    `global_clipnorm` over all of them, else `clipvalue` elementwise. The TensorFlow
    training step uses it under `tf.distribute`, where a Keras optimizer would clip each
    replica's share of the gradient rather than the sum.

    Examples:
        >>> opt = keras.optimizers.SGD(global_clipnorm=1.0)
        >>> g = clip_gradients(opt, [ops.convert_to_tensor([3.0]), ops.convert_to_tensor([4.0])])
        >>> [round(float(ops.convert_to_numpy(v)[0]), 6) for v in g]  # norm 5 → 1
        [0.6, 0.8]
    """

    def norm(values):
        return ops.sqrt(sum(ops.sum(ops.square(v)) for v in values if v is not None))

    def scaled(values, limit):
        # A finite norm above the limit scales down; a NaN or Inf norm makes the scale
        # NaN (n − n), so the NaN guard skips the step, as in Keras.
        n = norm(values)
        scale = ops.minimum(1.0, limit / n) + (n - n)
        return [None if v is None else v * scale for v in values]

    if (optimizer.clipnorm or 0) > 0:
        return [None if g is None else scaled([g], optimizer.clipnorm)[0] for g in grads]
    if (optimizer.global_clipnorm or 0) > 0:
        return scaled(grads, optimizer.global_clipnorm)
    if (optimizer.clipvalue or 0) > 0:
        v = optimizer.clipvalue
        return [None if g is None else ops.clip(g, -v, v) for g in grads]
    return list(grads)
