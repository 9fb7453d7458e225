"""Forward models: QPI defocus imaging (Fresnel propagation, TIE baseline) and microscopy.

Everything here is numpy (float64 inside, float32 out); lengths are in micrometres.
"""

from keras_cvdm.physics.microscopy import (
    airy_psf,
    convolve,
    degrade,
    downsample,
    gaussian_psf,
    gaussian_sigma,
    make_psf,
    poisson_gaussian_noise,
    upsample,
)
from keras_cvdm.physics.qpi import (
    PAPER_DEFOCUS,
    PAPER_PHASE_MAX,
    PAPER_PIXEL_SIZE,
    PAPER_WAVELENGTH,
    RGB_WAVELENGTHS,
    defocus_pair,
    defocus_stack,
    fresnel_propagate,
    phase_mae,
    polychromatic_defocus,
    tie_phase,
    tune_tie_regularization,
)

__all__ = [
    "PAPER_DEFOCUS",
    "PAPER_PHASE_MAX",
    "PAPER_PIXEL_SIZE",
    "PAPER_WAVELENGTH",
    "RGB_WAVELENGTHS",
    "airy_psf",
    "convolve",
    "defocus_pair",
    "defocus_stack",
    "degrade",
    "downsample",
    "fresnel_propagate",
    "gaussian_psf",
    "gaussian_sigma",
    "make_psf",
    "phase_mae",
    "poisson_gaussian_noise",
    "polychromatic_defocus",
    "tie_phase",
    "tune_tie_regularization",
    "upsample",
]
