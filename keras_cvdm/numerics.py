"""Numerical guards shared by the schedules, the losses and the sampler."""

from keras import ops

GAMMA_MIN = 1e-6
GAMMA_MAX = 1.0 - 1e-5


def clip_gamma(gamma):
    """Clip γ to `[1e-6, 1 − 1e-5]`, the range where `log γ` and `1 − γ` are safe."""
    return ops.clip(gamma, GAMMA_MIN, GAMMA_MAX)
