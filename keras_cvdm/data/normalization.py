"""Normalisation between physical quantities and the model's `[-1, 1]` images.

One convention, shared by the datasets, the training scripts and the presets (whose
`metadata.json` stores it with `to_dict()`):

**QPI** (`QPINormalization`)

- Phase (target `y`): the range `[phase_min, phase_max]` = `[0, 3.5]` rad maps linearly to
  `[-1, 1]`: `y = 2 (φ - phase_min) / (phase_max - phase_min) - 1`, inverted by
  `φ = phase_min + (y + 1) (phase_max - phase_min) / 2`.
- Intensities (condition `x`): raw intensities in any unit (camera counts, a.u.) are
  divided by their mean over the sample (all pixels and all channels, so the relative
  brightness of the defocus planes is kept), then `x = (I / Ī - 1) / intensity_scale`.
  The map is affine, so it is inverted by `I = Ī (1 + intensity_scale · x)`; the mean
  `Ī` is returned by `normalize_intensities` when asked. A uniform field gives `x = 0`,
  and `x ≥ -1` for any non-negative intensity (before noise) with the default
  `intensity_scale = 1`. With the paper's optics, smooth objects (cells, random fields)
  stay within about ±0.7 at the 1st/99th percentiles; sharp, strongly focusing
  structures (3.5 rad filaments, puncta, strokes) form caustics up to `x ≈ 2–3` at
  the 99th percentile — kept, not clipped, so the map stays invertible.
- Optics (with `optics_channel=True`): a third channel, constant over the image, holds
  `log(s / REFERENCE_FRESNEL)` with `s = λ·dz / p²` the defocus Fresnel number in pixels
  (`keras_cvdm.layers.tie_mean`), so one model serves a range of microscopes.

**Super-resolution** (`SRNormalization`)

- Each image is mapped affinely so that its low percentile goes to -1 and its high
  percentile to +1 (the reference implementation min-max normalises each sample;
  percentiles make the noisy input robust to outliers). The `(low, high)` values are
  returned so outputs can be mapped back to the input's units.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: The optics keys of a QPI model's metadata, in the order of `optics_code`'s arguments.
OPTICS_KEYS = ("wavelength_um", "pixel_size_um", "defocus_um")


def optics_code(wavelength, pixel_size, defocus):
    """The optics channel's value, `log(s / REFERENCE_FRESNEL)`, `s = λ·dz / p²` (µm).

    Examples:
        >>> float(optics_code(0.521, 0.21, 1.0))
        0.0
    """
    from keras_cvdm.physics.propagation import REFERENCE_FRESNEL, fresnel_number

    return np.log(fresnel_number(wavelength, pixel_size, defocus) / REFERENCE_FRESNEL)


@dataclasses.dataclass(frozen=True)
class QPINormalization:
    """The QPI normalisation convention (see the module docstring).

    Args:
        phase_min: phase (rad) mapped to -1.
        phase_max: phase (rad) mapped to +1.
        intensity_scale: divisor of the mean-normalised intensity contrast `I/Ī - 1`.
        optics_channel: `pair_to_model` appends the optics code as a third channel
            (models whose mean network solves the TIE, `TIEMeanNetwork`).

    Examples:
        >>> import numpy as np
        >>> norm = QPINormalization()
        >>> float(norm.normalize_phase(np.float32(3.5))), float(norm.denormalize_phase(-1.0))
        (1.0, 0.0)
        >>> QPINormalization.from_dict(norm.to_dict()) == norm
        True
    """

    phase_min: float = 0.0
    phase_max: float = 3.5
    intensity_scale: float = 1.0
    optics_channel: bool = False

    def __post_init__(self):
        if not self.phase_max > self.phase_min:
            raise ValueError(
                f"phase_max ({self.phase_max}) must be greater than phase_min ({self.phase_min})."
            )
        if not self.intensity_scale > 0:
            raise ValueError(f"intensity_scale must be positive, got {self.intensity_scale}.")

    def normalize_phase(self, phase: np.ndarray) -> np.ndarray:
        """Radians → model units: `[phase_min, phase_max]` ↦ `[-1, 1]` (float32).

        Args:
            phase: phase in radians, any shape.

        Returns:
            The phase in model units, float32.
        """
        phase = np.asarray(phase, dtype=np.float64)
        span = self.phase_max - self.phase_min
        return (2.0 * (phase - self.phase_min) / span - 1.0).astype(np.float32)

    def denormalize_phase(self, y: np.ndarray) -> np.ndarray:
        """Model units → radians, the inverse of `normalize_phase` (float32).

        Args:
            y: phase in model units, any shape.

        Returns:
            The phase in radians, float32.
        """
        y = np.asarray(y, dtype=np.float64)
        span = self.phase_max - self.phase_min
        return (self.phase_min + 0.5 * (y + 1.0) * span).astype(np.float32)

    def normalize_intensities(
        self, intensities: np.ndarray, return_mean: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Raw intensities, channels last `(..., H, W, C)` → model input `x` (float32).

        Args:
            intensities: non-negative intensities, one channel per defocus plane (or
                colour), any unit.
            return_mean: also return the per-sample mean `Ī`, shape `(..., 1, 1, 1)`.

        Returns:
            `x = (I / Ī - 1) / intensity_scale`, and `Ī` if `return_mean`.
        """
        intensities = np.asarray(intensities, dtype=np.float64)
        if intensities.ndim < 3:
            raise ValueError(
                "`intensities` must be channels-last (..., H, W, C); stack the defocus "
                f"images with `stack_pair` first (got shape {intensities.shape})."
            )
        mean = np.mean(intensities, axis=(-3, -2, -1), keepdims=True)
        if np.any(mean <= 0):
            raise ValueError("Intensities must have a positive mean (got a mean <= 0).")
        x = ((intensities / mean - 1.0) / self.intensity_scale).astype(np.float32)
        return (x, mean.astype(np.float32)) if return_mean else x

    def denormalize_intensities(self, x: np.ndarray, mean: float | np.ndarray = 1.0) -> np.ndarray:
        """Model input → intensities `Ī (1 + intensity_scale · x)` (float32).

        Args:
            x: model input, channels last.
            mean: the per-sample mean `Ī` returned by `normalize_intensities`.

        Returns:
            Intensities in the original unit, float32.
        """
        x = np.asarray(x, dtype=np.float64)
        return (np.asarray(mean, dtype=np.float64) * (1.0 + self.intensity_scale * x)).astype(
            np.float32
        )

    def pair_to_model(self, i_minus: np.ndarray, i_plus: np.ndarray,
                      optics: Mapping[str, Any] | None = None) -> np.ndarray:
        """Two defocused intensities `(..., H, W)` → the model's input `x`.

        Args:
            i_minus: intensity at `-dz`, `(..., H, W)`, any unit.
            i_plus: intensity at `+dz`, same shape.
            optics: with `optics_channel`, the optics of the images,
                `{"wavelength_um", "pixel_size_um", "defocus_um"}` (scalars, or arrays of
                one value per image of the stack); ignored otherwise.

        Returns:
            `(..., H, W, 2)` float32: channel 0 is `I(-dz)`, channel 1 is `I(+dz)`; with
            `optics_channel`, `(..., H, W, 3)` with the optics code as channel 2.

        Examples:
            >>> import numpy as np
            >>> norm = QPINormalization(optics_channel=True)
            >>> optics = {"wavelength_um": 0.521, "pixel_size_um": 0.21, "defocus_um": 2.0}
            >>> x = norm.pair_to_model(np.ones((4, 4)), np.ones((4, 4)), optics)
            >>> x.shape, round(float(x[0, 0, 2]), 3)  # log 2
            ((4, 4, 3), 0.693)
        """
        x = self.normalize_intensities(stack_pair(i_minus, i_plus))
        if not self.optics_channel:
            return x
        if optics is None or any(k not in optics for k in OPTICS_KEYS):
            raise ValueError(
                f"This normalisation carries the optics as a channel: pass optics with "
                f"{', '.join(OPTICS_KEYS)} (micrometres)."
            )
        code = optics_code(*(np.asarray(optics[k], np.float64) for k in OPTICS_KEYS))
        code = np.reshape(code, np.shape(code) + (1,) * (x.ndim - 1 - np.ndim(code)))
        channel = np.broadcast_to(code, x.shape[:-1])[..., None]
        return np.concatenate([x, channel.astype(np.float32)], axis=-1)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (with `"type": "qpi"`) for a preset's `metadata.json`."""
        return {"type": "qpi", **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> QPINormalization:
        """The inverse of `to_dict(config)`; a key it does not know is an error."""
        config = {k: v for k, v in config.items() if k != "type"}
        return cls(**config)


@dataclasses.dataclass(frozen=True)
class SRNormalization:
    """Per-image percentile normalisation for super-resolution (see the module docstring).

    Args:
        input_percentiles: `(low, high)` percentiles of the input mapped to `(-1, 1)`.
        target_percentiles: the same for targets (noise-free: min-max by default).

    Examples:
        >>> import numpy as np
        >>> norm = SRNormalization()
        >>> x, (lo, hi) = norm.normalize(np.linspace(0, 10, 100), (0, 100))
        >>> float(x.min()), float(x.max()), float(lo), float(hi)
        (-1.0, 1.0, 0.0, 10.0)
    """

    input_percentiles: tuple[float, float] = (0.1, 99.9)
    target_percentiles: tuple[float, float] = (0.0, 100.0)

    def __post_init__(self):
        for name in ("input_percentiles", "target_percentiles"):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo < hi <= 100.0:
                raise ValueError(f"{name} must satisfy 0 <= low < high <= 100, got {(lo, hi)}.")
            object.__setattr__(self, name, (float(lo), float(hi)))

    @staticmethod
    def normalize(
        image: np.ndarray, percentiles: Sequence[float]
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Map `image` (one sample, any shape) so its percentiles go to `(-1, 1)`.

        Args:
            image: one sample, any shape.
            percentiles: `(low, high)` percentiles mapped to -1 and +1.

        Returns:
            `(normalised float32 image, (low, high))` with the values used.
        """
        image = np.asarray(image, dtype=np.float64)
        lo, hi = np.percentile(image, percentiles)
        span = max(hi - lo, 1e-12)
        return (2.0 * (image - lo) / span - 1.0).astype(np.float32), (lo, lo + span)

    @staticmethod
    def denormalize(y: np.ndarray, low: float, high: float) -> np.ndarray:
        """Inverse of `normalize` given its `(low, high)`.

        Args:
            y: normalised values.
            low, high: the values `normalize` returned for this sample.

        Returns:
            The values in the original unit, float32.
        """
        y = np.asarray(y, dtype=np.float64)
        return (low + 0.5 * (y + 1.0) * (high - low)).astype(np.float32)

    def normalize_input(self, image: np.ndarray):
        """`normalize(image, input_percentiles)`: a (noisy) input sample → `(x, (low, high))`."""
        return self.normalize(image, self.input_percentiles)

    def normalize_target(self, image: np.ndarray):
        """`normalize(image, target_percentiles)`: a target sample → `(y, (low, high))`."""
        return self.normalize(image, self.target_percentiles)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (with `"type": "sr"`) for a preset's `metadata.json`."""
        return {
            "type": "sr",
            "input_percentiles": list(self.input_percentiles),
            "target_percentiles": list(self.target_percentiles),
        }

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> SRNormalization:
        """The inverse of `to_dict(config)`; the percentile lists become tuples."""
        config = {k: tuple(v) for k, v in config.items() if k != "type"}
        return cls(**config)


def stack_pair(i_minus: np.ndarray, i_plus: np.ndarray) -> np.ndarray:
    """Stack two defocused intensities `(..., H, W)` channels-last: `(..., H, W, 2)`.

    Args:
        i_minus: intensity at `-dz`.
        i_plus: intensity at `+dz`, same shape.

    Returns:
        The stacked array `(..., H, W, 2)`.

    Examples:
        >>> import numpy as np
        >>> stack_pair(np.zeros((4, 4)), np.ones((4, 4))).shape
        (4, 4, 2)
    """
    i_minus, i_plus = np.asarray(i_minus), np.asarray(i_plus)
    if i_minus.shape != i_plus.shape:
        raise ValueError(
            f"The two defocus images differ in shape: {i_minus.shape} vs {i_plus.shape}."
        )
    return np.stack([i_minus, i_plus], axis=-1)


def normalization_from_dict(config: Mapping[str, Any]) -> QPINormalization | SRNormalization:
    """Rebuild a normalisation from its `to_dict()` (the `"type"` key selects the class).

    Args:
        config: a dict with `"type"` (`"qpi"`, the default, or `"sr"`) and the fields.

    Returns:
        A `QPINormalization` or `SRNormalization`.

    Examples:
        >>> normalization_from_dict({"type": "qpi", "phase_max": 3.5}).phase_max
        3.5
    """
    kind = config.get("type", "qpi")
    if kind == "qpi":
        return QPINormalization.from_dict(config)
    if kind == "sr":
        return SRNormalization.from_dict(config)
    raise ValueError(f"Unknown normalisation type {kind!r}; expected 'qpi' or 'sr'.")
