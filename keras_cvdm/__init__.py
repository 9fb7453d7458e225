"""keras-cvdm: Conditional Variational Diffusion Models in Keras 3.

A conditional diffusion model whose noise schedule is learned per pixel and conditioned
on the measurement, for scientific inverse problems (quantitative phase imaging,
super-resolution microscopy), with per-pixel uncertainty from posterior samples.
"""

from keras_cvdm import (
    _backend_check,  # noqa: F401  (first: a clear error, not a traceback)
    data,
    distribute,
    io,
    layers,
    losses,
    metrics,
    physics,
    qpi,
    schedules,
    sr,
    tiling,
)
from keras_cvdm.model import CVDM
from keras_cvdm.presets import from_preset, list_presets, save_preset
from keras_cvdm.schedules import CosineSchedule, LearnedSchedule, LinearSchedule
from keras_cvdm.version import __version__

__all__ = [
    "CVDM",
    "CosineSchedule",
    "LearnedSchedule",
    "LinearSchedule",
    "__version__",
    "data",
    "distribute",
    "from_preset",
    "io",
    "layers",
    "list_presets",
    "losses",
    "metrics",
    "physics",
    "qpi",
    "save_preset",
    "schedules",
    "sr",
    "tiling",
]
