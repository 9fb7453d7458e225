"""Super-resolution microscopy with a trained model: wide-field image → finer image."""

import numpy as np

from keras_cvdm import tasks, validation
from keras_cvdm.data.normalization import SRNormalization
from keras_cvdm.physics import microscopy


def reconstruct(
    model, image: np.ndarray, num_samples: int = 8, seed: int | None = None,
    num_steps: int | None = None, sampler: str | None = None, factor: int | None = None,
    normalization: SRNormalization | None = None, verbose: int = 0, *,
    tile: int | None = None, overlap: int | None = None, batch_size: int | None = None,
    return_samples: bool = False,
) -> tuple[np.ndarray, ...]:
    """Super-resolved image and its per-pixel uncertainty from a wide-field image.

    The image is interpolated onto the `factor`× finer grid (cubic, as in training),
    normalised per image (`SRNormalization`), reconstructed, and mapped back to the
    input's intensity units with the same per-image affine map.

    Args:
        model: an SR `CVDM`, e.g. `keras_cvdm.from_preset("sr-microscopy")`.
        image: wide-field image `(H, W)` or stack `(N, H, W)`, any unit.
        num_samples: posterior samples per image (≥ 2).
        seed: integer for reproducible samples.
        num_steps, sampler: sampling settings (default: the preset's).
        factor: up-sampling factor (default and only allowed value: the one in
            `model.metadata`, when it records one).
        normalization: an `SRNormalization` (default: the one in `model.metadata`).
        verbose: progress bar (0: silent).
        tile: reconstruct in overlapping windows of `tile`×`tile` pixels of the *output*
            grid (`keras_cvdm.tiling`), so memory does not grow with the image; an image
            that fits in one tile gives exactly the untiled result.
        overlap: tile overlap in output pixels (default `tile // 4`).
        batch_size: (image or tile, sample) pairs per model call (default 16).
        return_samples: also return the posterior samples.

    Returns:
        `(image, std)`, each `(factor·H, factor·W)` (or with the leading `N`), in the
        input's units; with `return_samples`, a third array of samples
        `(num_samples, factor·H, factor·W)` (or with the leading `N`).

    Examples:
        >>> import numpy as np, keras_cvdm
        >>> model = keras_cvdm.from_preset("sr-microscopy")
        >>> widefield = 100 + 50 * np.random.default_rng(0).random((16, 16))
        >>> image, std = keras_cvdm.sr.reconstruct(model, widefield, num_samples=2, seed=0)
        >>> image.shape, std.shape
        ((32, 32), (32, 32))
    """
    norm = tasks.normalization(model, "sr", normalization)
    if not isinstance(norm, SRNormalization):
        raise ValueError("sr.reconstruct needs an SRNormalization.")
    factor = trained_factor(model, factor)
    single = np.ndim(image) == 2
    image = tasks.as_stack(image, "image")
    xs, ranges = [], []
    for low_res in image:
        x, (low, high) = norm.normalize_input(microscopy.upsample(low_res, factor))
        xs.append(x)
        ranges.append((low, high))
    x = np.stack(xs)[..., None]
    mean, std, samples = tasks.posterior(
        model, x, num_samples, seed=seed, num_steps=num_steps, sampler=sampler,
        batch_size=batch_size, tile=tile, overlap=overlap, keep_samples=return_samples,
        verbose=verbose,
    )
    out = [np.stack([norm.denormalize(m[..., 0], lo, hi) for m, (lo, hi) in zip(mean, ranges)])]
    spread = np.array([(hi - lo) / 2.0 for lo, hi in ranges], dtype=np.float32)[:, None, None]
    out.append((std[..., 0] * spread).astype(np.float32))
    if return_samples:
        out.append(np.stack([norm.denormalize(s[..., 0], lo, hi)
                             for s, (lo, hi) in zip(samples, ranges)]))
    if not all(np.all(np.isfinite(a)) for a in out):
        raise ValueError(
            "The reconstruction overflows float32 in the input's units: the image's values "
            "span too wide a range. Rescale the image (e.g. divide it by its maximum) and "
            "multiply the result back."
        )
    return tuple(a[0] for a in out) if single else tuple(out)


def trained_factor(model, factor=None):
    """The up-sampling factor to use with `model`: the one its metadata records.

    The factor a model was trained for is `model.metadata["forward_model"]["factor"]`
    (written by the training recipes and `keras-cvdm train`); a model knows only that
    factor, so any other is refused.

    Args:
        model: an SR `CVDM`.
        factor: the caller's factor, or None (the model's).

    Returns:
        The factor, a Python int.

    Raises:
        ValueError: a factor that is not a positive whole number, that differs from the
            trained one, or none at all when the metadata records none.

    Examples:
        >>> from keras_cvdm import CVDM
        >>> model = CVDM(metadata={"task": "sr", "forward_model": {"factor": 2}})
        >>> trained_factor(model), trained_factor(model, 2.0)
        (2, 2)
    """
    trained = model.metadata.get("forward_model", {}).get("factor")
    if trained is not None:
        trained = validation.check_int(trained, "the metadata's forward_model.factor",
                                       minimum=1)
    if factor is None:
        if trained is None:
            raise ValueError("Pass `factor=`: the model's metadata records no up-sampling factor.")
        return trained
    factor = validation.check_int(factor, "factor", minimum=1)
    if trained is not None and factor != trained:
        raise ValueError(
            f"This model was trained for {trained}× super-resolution, not {factor}×; leave "
            f"`factor` unset or pass factor={trained}."
        )
    return factor
