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
