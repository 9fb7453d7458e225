"""Forward models and the classical baseline, in numpy (float64 inside, float32 out).

- `propagation`: QPI defocus imaging (Fresnel propagation, defocus pairs and stacks,
  polychromatic brightfield) and the paper's optics (`PAPER_*`).
- `tie`: the transport-of-intensity phase baseline and its regularisation tuning.
- `microscopy`: widefield fluorescence degradation (PSFs, blur, binning, noise,
  up-sampling).
- `deconvolution`: the Richardson–Lucy baseline for super-resolution (scikit-image) and
  its iteration-count tuning.

Lengths are in micrometres.
"""

from keras_cvdm.physics.deconvolution import richardson_lucy, sr_psf, tune_richardson_lucy
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
from keras_cvdm.physics.propagation import (
    PAPER_DEFOCUS,
    PAPER_PHASE_MAX,
    PAPER_PIXEL_SIZE,
    PAPER_WAVELENGTH,
    RGB_WAVELENGTHS,
    defocus_pair,
    defocus_stack,
    fresnel_propagate,
    polychromatic_defocus,
)
from keras_cvdm.physics.tie import tie_phase, tune_tie_regularization

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
    "poisson_gaussian_noise",
    "polychromatic_defocus",
    "richardson_lucy",
    "sr_psf",
    "tie_phase",
    "tune_richardson_lucy",
    "tune_tie_regularization",
    "upsample",
]
