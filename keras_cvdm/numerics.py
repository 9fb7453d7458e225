"""Numerical guards shared by the schedules, the losses and the sampler."""

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

    The training steps use it to skip an update whose loss or gradient is NaN or Inf.

    Args:
        tensors: a list of tensors (loss, gradients); None entries are ignored.

    Returns:
        A scalar boolean tensor.

    Examples:
        >>> bool(all_finite([ops.ones((2,)), None, ops.convert_to_tensor(3.0)]))
        True
        >>> bool(all_finite([ops.ones((2,)), ops.convert_to_tensor([1.0, float("nan")])]))
        False
    """
    flags = [ops.all(ops.isfinite(t)) for t in tensors if t is not None]
    return ops.all(ops.stack(flags))
