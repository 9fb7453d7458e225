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
