"""Physics inside the model: a transport-of-intensity solve in `keras.ops` as the mean's start.

For a thin phase object imaged at `∓dz`, the whole measurement depends on the optics
through one number, the defocus Fresnel number in pixels `s = λ·dz / p²` (wavelength
`λ`, defocus `dz`, pixel size `p`): the Fresnel transfer function is
`exp(-iπ λ dz |f|²)` and in pixel frequencies `f = f_pix / p` it is `exp(-iπ s |f_pix|²)`.
The transport-of-intensity equation with a uniform in-focus intensity then reads, in
pixel units,

    φ = (π / s) · ∇⁻²_pix ( -(I₊ − I₋) / Ī ),      ∇⁻² ↦ −ω²/(ω⁴ + ε)  (ω in rad/pixel),

so `s` scales the estimate and `ε` (per pixel⁴) trades low-frequency detail for noise.
`TIEMeanNetwork` computes this estimate for a few `ε` (periodic boundaries, as the
simulator's: on its periodic fields a mirrored solve was measured 2.3× worse than the
periodic one), feeds them with the measurement to a U-Net, and returns the middle estimate
plus the U-Net's learned correction (its output convolution starts at zero, so a new model
starts as TIE and learns what improves on it): the Poisson solve,
which a convolutional network's receptive field cannot do over a whole field, comes from
the FFT, and the network only has to correct it locally.

The measurement channels are the QPI normalisation's (`QPINormalization`, with
`optics_channel=True`): `I(-dz)/Ī − 1`, `I(+dz)/Ī − 1` (over `intensity_scale`) and the
optics code `log(s / REFERENCE_FRESNEL)`, constant over the image.
"""

import math

import keras
from keras import ops

from keras_cvdm.layers.unet import UNetRegressor
from keras_cvdm.physics.propagation import REFERENCE_FRESNEL

#: The default Tikhonov parameters ε of the TIE estimates, per pixel⁴ (rad/pixel)⁴.
DEFAULT_REGULARIZATIONS = (1e-7, 2e-6, 4e-5)


def _omega_squared(n, dtype):
    """`(2π f)²` of an FFT grid of `n` points, f in cycles per pixel, fftfreq order."""
    f = ops.cast(ops.arange(n), dtype) / ops.cast(n, dtype)
    f = ops.where(f >= 0.5, f - 1.0, f)
    return (2.0 * math.pi * f) ** 2


def tie_estimates(contrast_difference, fresnel, regularizations=DEFAULT_REGULARIZATIONS):
    """TIE phase estimates (rad, zero mean) in `keras.ops`, one per regularisation.

    Args:
        contrast_difference: `(I(+dz) − I(−dz)) / Ī`, `(B, H, W)`.
        fresnel: `s = λ·dz / p²` per image, `(B,)`.
        regularizations: the Tikhonov parameters ε (per pixel⁴).

    Returns:
        `(B, H, W, len(regularizations))` phases in radians, each with zero mean over
        the image. Boundaries are periodic (the FFT's), as in the simulator.

    Examples:
        >>> import numpy as np
        >>> from keras_cvdm.physics import defocus_pair, tie_phase
        >>> yy, xx = np.mgrid[-32:32, -32:32] * 0.21
        >>> phase = 0.5 * np.exp(-(xx**2 + yy**2) / 4.0)
        >>> i_minus, i_plus = defocus_pair(phase)
        >>> diff = ((i_plus - i_minus) / (0.5 * (i_plus + i_minus).mean()))[None]
        >>> ours = tie_estimates(diff.astype("float32"), np.array([11.81], "float32"), (1e-8,))
        >>> theirs = tie_phase(i_minus, i_plus, regularization=1e-8 / 0.21**4)
        >>> bool(np.abs(np.asarray(ours)[0, ..., 0] - theirs).max() < 1e-3)
        True
    """
    d = ops.cast(contrast_difference, "float32")
    wy = _omega_squared(ops.shape(d)[1], "float32")[:, None]
    wx = _omega_squared(ops.shape(d)[2], "float32")[None, :]
    omega2 = wy + wx
    real, imag = ops.fft2((d, ops.zeros_like(d)))
    scale = (math.pi / ops.reshape(ops.cast(fresnel, "float32"), (-1, 1, 1)))
    out = []
    for eps in regularizations:
        kernel = omega2 / (ops.square(omega2) + float(eps))  # 0 at ω = 0: zero mean
        phase, _ = ops.ifft2((real * kernel, imag * kernel))
        phase = scale * phase
        out.append(phase - ops.mean(phase, axis=(1, 2), keepdims=True))
    return ops.stack(out, axis=-1)


@keras.saving.register_keras_serializable(package="keras_cvdm")
class TIEMeanNetwork(keras.layers.Layer):
    """Mean network of a QPI CVDM: a TIE solve in `keras.ops` plus a learned correction.

    `μ(x) = TIE_ε₂(x) + (U₀ − ⟨U₀⟩) + ⟨U₁⟩` in model units, `U = U([x, TIE_ε₁(x), TIE_ε₂(x),
    TIE_ε₃(x)])` a two-channel correction and `⟨·⟩` the image mean: `U₀` corrects the
    shape and `⟨U₁⟩` sets the image's one free phase constant (`U` starts at zero: a new
    network is the TIE estimate), where the
    TIE estimates use the optics carried by `x`'s third channel (see the module
    docstring) and `U` is a `UNetRegressor`. Use as
    `CVDM(zero_mean=True, mean_network=TIEMeanNetwork(...))`.

    Args:
        widths (tuple of int): the correction U-Net's widths.
        regularizations (tuple of float): ε of the TIE estimates (per pixel⁴); the
            middle one is the estimate the correction starts from.
        phase_span (float): radians per two model units (`phase_max − phase_min` of
            the normalisation).
        intensity_scale (float): the normalisation's `intensity_scale`.
        embedding_dim (int): the U-Net's (constant) γ embedding channels.
        **kwargs: standard layer arguments.

    Call arguments:
        x: `(B, H, W, 3)`: the two normalised intensities and the optics code.

    Returns:
        `μ(x)`, `(B, H, W, 1)` phase in model units.

    Examples:
    >>> import numpy as np
    >>> net = TIEMeanNetwork(widths=(8, 16))
    >>> tuple(net(np.zeros((2, 16, 16, 3), "float32")).shape)
    (2, 16, 16, 1)
    """

    def __init__(self, widths=(32, 64, 96), regularizations=DEFAULT_REGULARIZATIONS,
                 phase_span=3.5, intensity_scale=1.0, embedding_dim=32, **kwargs):
        super().__init__(**kwargs)
        self.regularizations = tuple(float(e) for e in regularizations)
        if not self.regularizations or min(self.regularizations) < 0:
            raise ValueError(
                f"`regularizations` must be one or more values >= 0, got {regularizations}."
            )
        self.phase_span = float(phase_span)
        self.intensity_scale = float(intensity_scale)
        self.output_channels = 1
        # Two channels: a spatial correction (its image mean removed) and an offset
        # (its image mean kept), see `call`.
        self.correction = UNetRegressor(2, widths=tuple(widths), embedding_dim=embedding_dim,
                                        dtype=self.dtype_policy, name="correction")

    @property
    def downsampling_factor(self):
        """Input height and width must be multiples of this."""
        return self.correction.downsampling_factor

    def build(self, input_shape):
        shape = tuple(input_shape)
        if shape[-1] is not None and shape[-1] != 3:
            raise ValueError(
                "TIEMeanNetwork needs 3 condition channels (I(-dz), I(+dz), optics code: "
                f"QPINormalization(optics_channel=True)); got {shape[-1]}."
            )
        if not self.correction.built:
            self.correction.build(shape[:-1] + (3 + len(self.regularizations),))
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (1,)

    def physics(self, x):
        """The TIE estimates in model units (zero mean), `(B, H, W, len(regularizations))`."""
        x = ops.stop_gradient(ops.cast(x, "float32"))
        difference = self.intensity_scale * (x[..., 1] - x[..., 0])
        fresnel = REFERENCE_FRESNEL * ops.exp(ops.mean(x[..., 2], axis=(1, 2)))
        return tie_estimates(difference, fresnel, self.regularizations) * (2.0 / self.phase_span)

    def call(self, x, training=None):
        tie = self.physics(x)
        features = ops.concatenate([ops.cast(x, tie.dtype), tie], axis=-1)
        middle = len(self.regularizations) // 2
        start = tie[..., middle:middle + 1]
        correction = ops.cast(self.correction(features, training=training), tie.dtype)
        # Intensities fix the phase only up to a constant, which the convention (background
        # at phase_min) fixes from the whole field. A per-pixel output would guess that
        # constant from each pixel's receptive field and leave a slowly varying error on
        # fields without a flat background; here the offset is one number per image.
        shape, offset = correction[..., :1], correction[..., 1:]
        return (start + shape - ops.mean(shape, axis=(1, 2), keepdims=True)
                + ops.mean(offset, axis=(1, 2), keepdims=True))

    def get_config(self):
        config = super().get_config()
        config.update(
            widths=list(self.correction.unet.widths),
            regularizations=list(self.regularizations),
            phase_span=self.phase_span,
            intensity_scale=self.intensity_scale,
            embedding_dim=self.correction.unet.embedding_dim,
        )
        return config
