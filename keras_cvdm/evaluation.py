"""Held-out evaluation protocols of trained models against the classical baselines.

- `evaluate` (the `keras-cvdm evaluate` command) and `format_table`: a model and its
  task's tuned classical baseline (QPI: TIE; SR: Richardson–Lucy and the up-sampled
  input) on the simulated test set or on a paired folder / `.npz`, with image quality
  and uncertainty scores per noise level and phantom kind.
- `evaluate_qpi`, `evaluate_sr`, `score_qpi`: the protocols behind the numbers stored in
  each preset's `metadata.json`, `benchmarks/preset_quality.py` and `keras-cvdm demo`.

Every score comes from `keras_cvdm.metrics`.
"""

import numpy as np

from keras_cvdm import metrics, qpi, sr, tasks, validation
from keras_cvdm.data import SR_TEST_SEED, qpi_test_set, sr_dataset, sr_test_set
from keras_cvdm.imaging import image_shape
from keras_cvdm.physics import (
    PAPER_DEFOCUS,
    PAPER_PHASE_MAX,
    PAPER_PIXEL_SIZE,
    PAPER_WAVELENGTH,
    microscopy,
    tie_phase,
    tune_tie_regularization,
)
from keras_cvdm.physics.deconvolution import richardson_lucy, sr_psf, tune_richardson_lucy


def score_qpi(mean, std, i_minus, i_plus, phase):
    """Score a phase estimate against the truth and against TIE tuned on the same images.

    TIE's regularisation is tuned on these very images (`tune_tie_regularization`), the
    strongest version of the baseline.

    Args:
        mean (np.ndarray): the model's phase estimate, `(N, H, W)` radians.
        std (np.ndarray): its per-pixel std, `(N, H, W)` radians.
        i_minus (np.ndarray): intensities at `-dz`, `(N, H, W)`.
        i_plus (np.ndarray): intensities at `+dz`, `(N, H, W)`.
        phase (np.ndarray): the true phase, `(N, H, W)` radians.

    Returns:
        dict: `cvdm_mae` and `tie_mae` (per-image mean-aligned phase MAE, `(N,)`), `tie`
        (the TIE estimate, `(N, H, W)`), `tie_regularization` (float) and
        `std_error_spearman` (float: ρ of `std` with the mean-aligned absolute error).

    Examples:
        >>> from keras_cvdm.data import qpi_test_set
        >>> i_minus, i_plus, phase = qpi_test_set(2, 32, noise_std=0.05)
        >>> noise = 0.1 * np.random.default_rng(0).standard_normal(phase.shape)
        >>> scores = score_qpi(phase + noise, np.abs(noise), i_minus, i_plus, phase)
        >>> scores["cvdm_mae"].shape, bool(scores["std_error_spearman"] > 0.9)
        ((2,), True)
    """
    eps, _ = tune_tie_regularization(i_minus, i_plus, phase)
    tie = tie_phase(i_minus, i_plus, regularization=eps)
    aligned = metrics.align_phase(mean, phase)
    return {
        "cvdm_mae": metrics.phase_mae(mean, phase),
        "tie_mae": metrics.phase_mae(tie, phase),
        "tie": tie,
        "tie_regularization": float(eps),
        "std_error_spearman": metrics.spearman(std, np.abs(aligned - phase)),
    }


def evaluate_qpi(model, num_images=16, image_size=128, noise_levels=(0.05, 0.1),
                 num_samples=8, seed=0, **sampling):
    """Phase MAE (rad) of `model` and of the oracle-tuned TIE on the QPI test set.

    Args:
        model (keras_cvdm.CVDM): a QPI model with preset metadata (e.g.
            `keras_cvdm.from_preset("qpi")`).
        num_images (int): test images per noise level (`keras_cvdm.data.qpi_test_set`,
            its fixed seed).
        image_size (int): their side.
        noise_levels (Sequence[float]): relative intensity-noise stds.
        num_samples (int): posterior samples per image.
        seed (int): sampling seed.
        **sampling: passed to `keras_cvdm.qpi.reconstruct` (`num_steps`, `sampler`).

    Returns:
        dict: `{str(noise): scores}` with the mean-aligned and absolute (minimum at 0)
        MAE of both methods, TIE's regularisation, the Spearman ρ of the model's std
        with its absolute error, the mean std, and under `"by_kind"` the aligned MAE of
        both methods per phantom kind.

    Examples:
        >>> import keras_cvdm
        >>> model = keras_cvdm.from_preset("qpi")
        >>> result = evaluate_qpi(model, num_images=2, image_size=32, noise_levels=(0.05,),
        ...                       num_samples=2, num_steps=2)
        >>> sorted(result), result["0.05"]["num_images"]
        (['0.05'], 2)
    """
    num_images, image_size = _check_test_set(num_images, image_size)
    results = {}
    for noise in _check_noise_levels(noise_levels):
        i_minus, i_plus, phase, kinds = qpi_test_set(
            num_images, image_size, noise, return_kinds=True
        )
        mean, std = qpi.reconstruct(model, i_minus, i_plus, num_samples, seed, **sampling)
        scores = score_qpi(mean, std, i_minus, i_plus, phase)
        cvdm_mae, tie_mae = scores["cvdm_mae"], scores["tie_mae"]
        kinds = np.asarray(kinds)
        by_kind = {
            str(kind): {
                "num_images": int(np.sum(kinds == kind)),
                "cvdm_mae_aligned": float(np.mean(cvdm_mae[kinds == kind])),
                "tie_mae_aligned": float(np.mean(tie_mae[kinds == kind])),
            }
            for kind in sorted(set(kinds.tolist()))
        }
        absolute = {
            name: float(np.mean(metrics.phase_mae(estimate, phase, alignment="min")))
            for name, estimate in (("cvdm", mean), ("tie", scores["tie"]))
        }
        results[str(noise)] = {
            "num_images": num_images,
            "image_size": image_size,
            "cvdm_mae_aligned": float(np.mean(cvdm_mae)),
            "cvdm_mae_absolute": absolute["cvdm"],
            "tie_mae_aligned": float(np.mean(tie_mae)),
            "tie_mae_absolute": absolute["tie"],
            "tie_regularization": scores["tie_regularization"],
            "std_error_spearman": scores["std_error_spearman"],
            "mean_std_rad": float(np.mean(std)),
            "by_kind": by_kind,
        }
    return results


def evaluate_sr(model, num_images=16, image_size=128, num_samples=8, seed=0, **sampling):
    """PSNR and SSIM of `model` and of the up-sampled input on held-out SR pairs.

    Both estimates get a per-image least-squares affine fit to the target
    (`metrics.affine_fit`) before scoring, so the up-sampled input is not penalised for
    its intensity scale; scores are in the target's `[-1, 1]` units (data range 2).

    Args:
        model (keras_cvdm.CVDM): an SR model (e.g. `keras_cvdm.from_preset("sr-microscopy")`).
        num_images (int): test pairs (`keras_cvdm.data.sr_test_set`, its fixed seed).
        image_size (int): their side.
        num_samples (int): posterior samples per image.
        seed (int): sampling seed.
        **sampling: passed to `CVDM.predict_uncertainty` (`num_steps`, `sampler`; default:
            the model's, see `tasks.sampling_defaults`).

    Returns:
        dict: `num_images`, `image_size`, `cvdm_psnr`, `cvdm_ssim`, `upsampled_psnr`,
        `upsampled_ssim` (means over images) and `std_error_spearman` (ρ of the model's
        std with its absolute error).

    Examples:
        >>> import keras_cvdm
        >>> model = keras_cvdm.from_preset("sr-microscopy")
        >>> result = evaluate_sr(model, num_images=2, image_size=32, num_samples=2,
        ...                      num_steps=2)
        >>> sorted(k for k in result if k.endswith("ssim"))
        ['cvdm_ssim', 'upsampled_ssim']
    """
    num_images, image_size = _check_test_set(num_images, image_size)
    x, y = sr_test_set(num_images, image_size)
    num_steps, sampler = tasks.sampling_defaults(
        model, sampling.get("num_steps"), sampling.get("sampler"))
    mean, std = model.predict_uncertainty(
        x[..., None], num_samples=num_samples, seed=seed, verbose=0, num_steps=num_steps,
        sampler=sampler,
    )
    mean = mean[..., 0]
    out = {"num_images": num_images, "image_size": image_size}
    for method, estimate in (("cvdm", mean), ("upsampled", x)):
        fitted = np.stack([metrics.affine_fit(e, t)[0] for e, t in zip(estimate, y)])
        out[f"{method}_psnr"] = float(np.mean(metrics.psnr(fitted, y, data_range=2.0)))
        out[f"{method}_ssim"] = float(np.mean(metrics.ssim(fitted, y, data_range=2.0)))
    out["std_error_spearman"] = metrics.spearman(std[..., 0], np.abs(mean - y))
    return out


def _check_test_set(num_images, image_size):
    """`(num_images, image_size)` of a simulated test set as whole numbers (else ValueError)."""
    num_images = validation.check_int(num_images, "num_images", minimum=1)
    if isinstance(image_size, list | tuple):
        if len(image_size) != 2:
            raise ValueError(f"image_size must be an int or (H, W), got {image_size!r}.")
        return num_images, tuple(validation.check_int(s, "image_size", minimum=1)
                                 for s in image_size)
    return num_images, validation.check_int(image_size, "image_size", minimum=1)


def _check_noise_levels(noise_levels):
    """QPI noise levels as a non-empty list of finite floats >= 0 (else ValueError)."""
    levels = [validation.check_number(n, "noise level", minimum=0)
              for n in np.atleast_1d(np.asarray(noise_levels, dtype=object)).tolist()]
    if not levels:
        raise ValueError("noise_levels is empty; give at least one level, e.g. 0.05.")
    return levels


# ---------------------------------------------------------------------------- evaluate

#: Noise levels of the simulated QPI test set when `evaluate` is given none.
QPI_NOISE_LEVELS = (0.05, 0.1)
#: Half-width, in stds, of the interval whose coverage `evaluate` reports.
COVERAGE_K = 2.0
#: Image-quality scores of every method, then the uncertainty scores of the model.
QUALITY_METRICS = ("mae", "psnr", "ssim", "ms_ssim")
UNCERTAINTY_METRICS = ("coverage_2sigma", "std_error_spearman", "mean_std")
#: The level name of the simulated SR test set and of user data.
SIMULATED_SR_LEVEL = "simulated"
DATA_LEVEL = "data"

_SR_SIMULATOR_KEYS = {
    "psf": "psf", "wavelength_um": "wavelength", "na": "na", "pixel_size_um": "pixel_size",
    "photons": "photons", "read_noise_std": "read_noise_std", "background": "background",
    "target_resolution_gain": "target_resolution_gain",
}


def _model_task(model):
    metadata = getattr(model, "metadata", None) or {}
    task = metadata.get("task") or metadata.get("normalization", {}).get("type")
    if task not in ("qpi", "sr"):
        raise ValueError(
            f"evaluate needs a model whose metadata names its task ('qpi' or 'sr'), got "
            f"{task!r}. Load a pretrained model with keras_cvdm.from_preset(...) or set "
            "model.metadata to a preset's metadata."
        )
    return task


def _qpi_optics(model, optics=None):
    used = tasks.check_optics(model, **(optics or {}))
    return {
        "wavelength": float(used.get("wavelength_um", PAPER_WAVELENGTH)),
        "pixel_size": float(used.get("pixel_size_um", PAPER_PIXEL_SIZE)),
        "defocus": float(used.get("defocus_um", PAPER_DEFOCUS)),
    }


def _sr_factor(model):
    if model.metadata.get("forward_model", {}).get("factor") is None:
        raise ValueError("This SR model's metadata records no up-sampling factor (forward_model).")
    return sr.trained_factor(model)


class _RawUnits:
    """Stands in for `SRNormalization` so the SR simulator hands back raw images."""

    @staticmethod
    def normalize_input(image):
        return np.asarray(image, np.float32), None

    normalize_target = normalize_input


def _simulated_sr(model, num_images, image_size):
    """The SR test set (`sr_test_set`'s images) as raw low-res inputs and normalised targets.

    `sr_test_set` returns only the interpolated input; `sr.reconstruct` takes the wide-field
    image itself. The same simulation (same seed, so the same draws) with nearest-neighbour
    up-sampling and no normalisation gives it exactly: every `factor × factor` block of the
    nearest-neighbour image is one low-resolution pixel.
    """
    forward = model.metadata.get("forward_model", {})
    factor = _sr_factor(model)
    options = {new: forward[old] for old, new in _SR_SIMULATOR_KEYS.items() if old in forward}
    if isinstance(options.get("psf"), list):
        options["psf"] = np.asarray(options["psf"], np.float32)
    ds = sr_dataset(batch_size=num_images, image_size=image_size, num_batches=1,
                    seed=SR_TEST_SEED, augment=False, factor=factor, **options)
    ds.upsample_method = "nearest"
    ds.normalization = _RawUnits()
    nearest, target = ds[0]
    low = nearest[:, ::factor, ::factor, 0]
    norm = tasks.normalization(model, "sr")
    target = np.stack([norm.normalize_target(t)[0] for t in target[..., 0]])
    return low, target, ds.psf


def _load_paired(data, num_images, task, factor=None):
    """The first `num_images` pairs of a paired folder or `.npz`, as stacked arrays."""
    from keras_cvdm.data import paired_dataset

    pairs = paired_dataset(data, batch_size=1, shuffle=False).pairs
    available = len(pairs)
    xs, ys = [], []
    for i in range(min(available, num_images)):
        x, y = pairs.get(i)  # float64, channels last: (H, W, C), or (2, H, W) from a TIFF stack
        if y.ndim != 3 or y.shape[-1] != 1:
            raise ValueError(
                f"Pair {i} of {data}: the target y must be one single-channel image, got shape "
                f"{y.shape}."
            )
        y = y[..., 0]
        if task == "qpi":
            if x.ndim == 3 and x.shape[-1] == 2:
                x = np.moveaxis(x, -1, 0)
            elif not (x.ndim == 3 and x.shape[0] == 2):
                raise ValueError(
                    f"Pair {i} of {data}: a QPI input x must hold two planes (I(-dz), I(+dz)) "
                    f"as (H, W, 2) or a two-page stack (2, H, W); got shape {x.shape}. Is this "
                    "data for a super-resolution model?"
                )
            if x.shape[1:] != y.shape:
                raise ValueError(
                    f"Pair {i} of {data}: the planes of x are {x.shape[1:]} but the phase y is "
                    f"{y.shape}; they must be the same size."
                )
        else:
            if x.ndim != 3 or x.shape[-1] != 1:
                raise ValueError(
                    f"Pair {i} of {data}: an SR input x must be one single-channel wide-field "
                    f"image, got shape {x.shape}. Is this data for a QPI model?"
                )
            x = x[..., 0]
            if y.shape != (factor * x.shape[0], factor * x.shape[1]):
                raise ValueError(
                    f"Pair {i} of {data}: x is {x.shape} and y is {y.shape}; this model "
                    f"super-resolves by {factor}×, so y must be {factor}× x's size (x is the "
                    "low-resolution wide-field image, not one interpolated onto y's grid)."
                )
        xs.append(x)
        ys.append(y)
    shapes = sorted({(x.shape, y.shape) for x, y in zip(xs, ys)})
    if len(shapes) > 1:
        raise ValueError(
            f"The pairs in {data} differ in size ({shapes[:4]}); crop them to one size."
        )
    return np.stack(xs), np.stack(ys), available


def _skipped(height, width):
    """`(scales, skipped)`: the MS-SSIM scales used (0: none) and `{metric: reason}`."""
    scales = metrics.ms_ssim_scales(height, width)
    skipped = {}
    if scales < 1:
        skipped["ssim"] = (
            f"images of {height}×{width} pixels are smaller than the "
            f"{metrics.SSIM_FILTER_SIZE}×{metrics.SSIM_FILTER_SIZE} SSIM window"
        )
    if scales < 2:
        skipped["ms_ssim"] = (
            f"images of {height}×{width} pixels fit {scales} MS-SSIM scale(s); a multi-scale "
            f"score needs two or more (at least {2 * metrics.SSIM_FILTER_SIZE} pixels a side)"
        )
        scales = 0
    return scales, skipped


def _image_scores(estimate, truth, mae, data_range, scales):
    """Per-image quality of one aligned or fitted estimate: `{metric: (N,) array}`."""
    scores = {"mae": np.asarray(mae, np.float64)}
    scores["psnr"] = metrics.psnr(estimate, truth, data_range)
    if min(truth.shape[-2:]) >= metrics.SSIM_FILTER_SIZE:
        scores["ssim"] = metrics.ssim(estimate, truth, data_range)
    if scales:
        scores["ms_ssim"] = metrics.ms_ssim(estimate, truth, data_range, scales=scales)
    return scores


def _method(estimate, std, truth, mae, data_range, scales):
    estimate = np.asarray(estimate, np.float64)
    return {
        "estimate": estimate,
        "std": None if std is None else np.asarray(std, np.float64),
        "per_image": _image_scores(estimate, truth, mae, data_range, scales),
    }


def _summary(method, truth, index):
    """Mean per-image quality and pooled uncertainty scores over the images `index`."""
    out = {
        name: float(np.mean(method["per_image"][name][index]))
        if name in method["per_image"] else None
        for name in QUALITY_METRICS
    }
    std = method["std"]
    if std is not None:
        estimate, std, truth = method["estimate"][index], std[index], truth[index]
        out["coverage_2sigma"] = metrics.coverage(estimate, std, truth, k=COVERAGE_K)
        out["std_error_spearman"] = metrics.spearman(std, np.abs(estimate - truth))
        out["mean_std"] = float(np.mean(std))
        out["calibration_curve"] = dict(zip(
            (f"{level:g}" for level in metrics.CALIBRATION_LEVELS),
            metrics.calibration_curve(estimate, std, truth), strict=True))
    return out


def _level(methods, truth, kinds=None, **baseline):
    everything = np.arange(len(truth))
    record = {
        "num_images": len(truth),
        "methods": {name: _summary(m, truth, everything) for name, m in methods.items()},
        **baseline,
    }
    if kinds is not None:
        kinds = np.asarray(kinds)
        record["by_kind"] = {
            str(kind): {
                "num_images": int(np.sum(kinds == kind)),
                "methods": {
                    name: _summary(m, truth, np.flatnonzero(kinds == kind))
                    for name, m in methods.items()
                },
            }
            for kind in sorted(set(kinds.tolist()))
        }
    return record


def _tuned_tie(i_minus, i_plus, phase, optics, boundaries):
    """TIE at the regularisation (and boundary) with the lowest aligned MAE on these images."""
    best = None
    for boundary in boundaries:
        eps, errors = tune_tie_regularization(i_minus, i_plus, phase, **optics,
                                              boundary=boundary)
        if best is None or errors[eps] < best[0]:
            best = (errors[eps], eps, boundary)
    _, eps, boundary = best
    return tie_phase(i_minus, i_plus, **optics, regularization=eps, boundary=boundary), {
        "tie_regularization": float(eps), "tie_boundary": boundary,
    }


def _tuned_rl(upsampled, target, psf, boundaries):
    """RL at the iteration count (and boundary) with the best mean PSNR on these images."""
    best = None
    for boundary in boundaries:
        num_iter, scores = tune_richardson_lucy(upsampled, target, psf, boundary=boundary)
        if best is None or scores[num_iter] > best[0]:
            best = (scores[num_iter], num_iter, boundary)
    _, num_iter, boundary = best
    return richardson_lucy(upsampled, psf, num_iter, boundary=boundary), {
        "rl_iterations": int(num_iter), "rl_boundary": boundary,
    }


def _qpi_level(model, i_minus, i_plus, phase, sampling, optics, boundaries, data_range,
               scales, kinds=None):
    mean, std = qpi.reconstruct(model, i_minus, i_plus, **sampling, **optics)[:2]
    tie, baseline = _tuned_tie(i_minus, i_plus, phase, optics, boundaries)
    methods = {
        name: _method(metrics.align_phase(estimate, phase), spread, phase,
                      metrics.phase_mae(estimate, phase), data_range, scales)
        for name, estimate, spread in (("cvdm", mean, std), ("tie", tie, None))
    }
    return _level(methods, phase, kinds, **baseline)


def _sr_level(model, low, target, sampling, psf, boundaries, scales):
    mean, std = sr.reconstruct(model, low, **sampling)[:2]
    upsampled = microscopy.upsample(low, _sr_factor(model), "cubic")
    deconvolved, baseline = _tuned_rl(upsampled, target, psf, boundaries)
    methods = {}
    for name, estimate, spread in (("cvdm", mean, std), ("richardson_lucy", deconvolved, None),
                                   ("upsampled", upsampled, None)):
        fits = [metrics.affine_fit(e, t) for e, t in zip(estimate, target)]
        fitted = np.stack([fit for fit, _ in fits])
        if spread is not None:
            slopes = np.abs([slope for _, slope in fits])
            spread = np.asarray(spread, np.float64) * slopes[:, None, None]
        methods[name] = _method(fitted, spread, target, metrics.mae(fitted, target), 2.0, scales)
    return _level(methods, target, **baseline)


def evaluate(model, data=None, num_images=64, image_size=128, noise_levels=None, num_samples=8,
             seed=0, num_steps=None, sampler=None, tile=None, overlap=None, optics=None):
    """Score a model and its task's tuned classical baseline against ground truth.

    The task is `model.metadata["task"]`. Predictions go through the public
    `keras_cvdm.qpi.reconstruct` / `keras_cvdm.sr.reconstruct`; every score comes from
    `keras_cvdm.metrics`.

    - **QPI**: the model and TIE (`keras_cvdm.physics.tie_phase`, optics from
      `model.metadata["forward_model"]`) with its regularisation tuned on the same images
      (`tune_tie_regularization`). Each estimate is shifted to the true phase's mean (phase
      is fixed only up to a constant): MAE is `metrics.phase_mae`; PSNR, SSIM and MS-SSIM
      score the aligned phase with the data range of the model's phase normalisation
      (3.5 rad for the `qpi` preset).
    - **SR**: the model, Richardson–Lucy on the cubic up-sampled input with the
      simulator's PSF and its iteration count tuned on the same images
      (`keras_cvdm.physics.deconvolution`), and the cubic up-sampled input itself. Targets
      are normalised per image as in training (`[-1, 1]`); each estimate gets a per-image
      least-squares affine fit to its target (`metrics.affine_fit`), and the scores are
      on the fitted images (data range 2).

    The model's std (scaled like its estimate) gives the uncertainty scores: the pooled
    coverage of the truth by `mean ± 2σ` (`metrics.coverage`), the Spearman ρ of σ with
    the absolute error (`metrics.spearman`) and the mean σ. Simulated tuning uses periodic
    boundaries (the simulators are periodic); for user data the baselines are also
    tuned over the boundary handling (periodic or mirrored).

    Args:
        model (keras_cvdm.CVDM): a model with task metadata (e.g.
            `keras_cvdm.from_preset("qpi")` or `"sr-microscopy"`).
        data (str | os.PathLike | None): `None` for the package's simulated test set
            (QPI: `qpi_test_set` at each noise level, broken down by phantom kind; SR:
            `sr_test_set`), or a paired folder (`x/`, `y/` with the same file names) or
            `.npz` (`x`, `y`). QPI: `x` two planes (I(-dz), I(+dz)), `(H, W, 2)` or a
            two-page TIFF, `y` the phase in radians (store it as float: integer images are
            scaled to `[0, 1]` on reading, see `keras_cvdm.io`). SR: `x` the
            low-resolution wide-field image, `y` the target on the `factor`× finer grid
            (any units: both are normalised per image). Pairs must share one size.
        num_images (int): simulated test images per noise level, or the number of pairs
            used from `data` (the first ones, in file-name order).
        image_size (int): side of the simulated images (ignored with `data`).
        noise_levels (Sequence[float] | float | None): QPI relative intensity-noise stds
            (default `QPI_NOISE_LEVELS`); not used for SR or with `data`.
        num_samples (int): posterior samples per image (>= 2).
        seed (int): sampling seed.
        num_steps (int | None): sampling steps (default: the model's metadata).
        sampler (str | None): sampler name (default: the model's metadata).
        tile (int | None): tiled reconstruction, passed to `reconstruct`.
        overlap (int | None): tile overlap, passed to `reconstruct`.
        optics (dict | None): QPI only: `{"wavelength", "pixel_size", "defocus"}` in µm
            (any subset; the rest the model's) for the simulated test set, the model
            (`qpi.reconstruct(..., wavelength=...)`) and TIE; checked against the range
            the model was trained for. Default: the model's optics.

    Returns:
        dict: JSON-ready. `task`; `settings` (`data`, `num_images`, `image_size` `[H, W]`,
        `noise_levels`, `optics` (QPI: the µm optics used, else None), `num_samples`,
        `num_steps`, `sampler`, `seed`, `tile`, `overlap`, `backend`, and `num_available`
        with `data`); `data_range` and `units`; `levels`:
        one entry per noise level (`"0.05"`, ...), `"simulated"` (SR) or `"data"`, each
        with `num_images`, `methods` (`{method: scores}`: `mae`, `psnr`, `ssim`,
        `ms_ssim` for every method, plus `coverage_2sigma`, `std_error_spearman`,
        `mean_std` and `calibration_curve` (`{nominal: observed}` coverage,
        `metrics.calibration_curve`) for `cvdm`), the tuned baseline's setting
        (`tie_regularization` and `tie_boundary`, or `rl_iterations` and
        `rl_boundary`) and, for simulated QPI, `by_kind` (`{kind: {"num_images",
        "methods"}}`); `ms_ssim_scales`; `skipped` (`{metric: reason}`, e.g. MS-SSIM
        on images too small for two scales, whose values are then None).

    Examples:
        >>> import keras_cvdm
        >>> model = keras_cvdm.from_preset("sr-microscopy")
        >>> results = evaluate(model, num_images=2, image_size=32, num_samples=2,
        ...                    num_steps=2)
        >>> sorted(results["levels"]["simulated"]["methods"])
        ['cvdm', 'richardson_lucy', 'upsampled']
    """
    import keras

    task = _model_task(model)
    num_images = validation.check_int(num_images, "num_images", minimum=1)
    if data is None:
        num_images, image_size = _check_test_set(num_images, image_size)
    steps, sampler_name = tasks.sampling_defaults(model, num_steps, sampler)
    sampling = {"num_samples": num_samples, "seed": seed, "num_steps": steps,
                "sampler": sampler_name, "tile": tile, "overlap": overlap}
    settings = {"data": "simulated" if data is None else str(data)}
    levels = {}
    if task == "qpi":
        norm = tasks.normalization(model, "qpi")
        data_range = float(norm.phase_max - norm.phase_min)
        optics = _qpi_optics(model, optics)
        if data is None:
            noise_levels = QPI_NOISE_LEVELS if noise_levels is None else noise_levels
            noise_levels = _check_noise_levels(noise_levels)
            phase_range = model.metadata.get("forward_model", {}).get("phase_range_rad")
            phase_max = PAPER_PHASE_MAX if phase_range is None else float(phase_range[1])
            scales, skipped = _skipped(*image_shape(image_size))
            for noise in noise_levels:
                i_minus, i_plus, phase, kinds = qpi_test_set(
                    num_images, image_size, noise, return_kinds=True, phase_max=phase_max,
                    **optics,
                )
                levels[str(noise)] = _qpi_level(model, i_minus, i_plus, phase, sampling,
                                                optics, ("periodic",), data_range, scales,
                                                kinds)
        else:
            x, phase, available = _load_paired(data, num_images, "qpi")
            settings["num_available"] = available
            noise_levels = None
            scales, skipped = _skipped(*phase.shape[-2:])
            levels[DATA_LEVEL] = _qpi_level(model, x[:, 0], x[:, 1], phase, sampling, optics,
                                            ("periodic", "symmetric"), data_range, scales)
        shape = phase.shape[-2:]
        units = (
            f"MAE in radians after shifting each estimate to the true phase's mean; PSNR, "
            f"SSIM and MS-SSIM of the mean-aligned phase with data range {data_range:g} rad"
        )
    else:
        factor = _sr_factor(model)
        noise_levels = None
        data_range = 2.0
        if data is None:
            low, target, psf = _simulated_sr(model, num_images, image_size)
            boundaries, name = ("periodic",), SIMULATED_SR_LEVEL
        else:
            low, target, available = _load_paired(data, num_images, "sr", factor)
            settings["num_available"] = available
            norm = tasks.normalization(model, "sr")
            target = np.stack([norm.normalize_target(t)[0] for t in target])
            forward = model.metadata.get("forward_model", {})
            options = {new: forward[old] for old, new in _SR_SIMULATOR_KEYS.items()
                       if old in forward and new in ("psf", "wavelength", "na", "pixel_size")}
            psf = sr_psf(target.shape[-2:], **options)
            boundaries, name = ("symmetric", "periodic"), DATA_LEVEL
        scales, skipped = _skipped(*target.shape[-2:])
        levels[name] = _sr_level(model, low, target, sampling, psf, boundaries, scales)
        shape = target.shape[-2:]
        units = (
            "targets normalised per image to [-1, 1]; every estimate affine-fitted per image "
            "to its target (its std scaled by the fit's slope); MAE, PSNR (data range 2), "
            "SSIM and MS-SSIM of the fitted images"
        )
    first = next(iter(levels.values()))
    settings.update(
        num_images=int(first["num_images"]), image_size=[int(s) for s in shape],
        noise_levels=noise_levels, num_samples=int(num_samples), num_steps=int(steps),
        optics=optics if task == "qpi" else None,
        sampler=sampler_name, seed=seed, tile=tile, overlap=overlap,
        backend=keras.backend.backend(),
    )
    units += f"; coverage of the truth by mean ± {COVERAGE_K:g}σ; Spearman ρ(σ, |error|)"
    return {
        "task": task,
        "settings": settings,
        "data_range": data_range,
        "units": units,
        "ms_ssim_scales": scales,
        "levels": levels,
        "skipped": skipped,
    }


#: Columns of `format_table`: result key, header, number format.
TABLE_COLUMNS = (
    ("mae", "MAE", "{:.4f}"),
    ("psnr", "PSNR", "{:.2f}"),
    ("ssim", "SSIM", "{:.4f}"),
    ("ms_ssim", "MS-SSIM", "{:.4f}"),
    ("coverage_2sigma", "cov ±2σ", "{:.3f}"),
    ("std_error_spearman", "ρ(σ,|err|)", "{:.3f}"),
    ("mean_std", "mean σ", "{:.4f}"),
)


def _cell(scores, key, fmt):
    if key not in scores:
        return ""
    value = scores[key]
    return "n/a" if value is None else fmt.format(value)


def _baseline_note(level, record):
    if "tie_regularization" in record:
        return (f"{level}: TIE regularisation {record['tie_regularization']:.3g} "
                f"({record['tie_boundary']} boundary)")
    if "rl_iterations" in record:
        return (f"{level}: Richardson-Lucy {record['rl_iterations']} iterations "
                f"({record['rl_boundary']} boundary)")
    return None


def format_table(results):
    """The plain-text table of `evaluate`'s results that `keras-cvdm evaluate` prints.

    One row per set (noise level, `simulated` or `data`; then each phantom kind) and
    method; one column per score (blank where a method has none, `n/a` where a score was
    skipped). A header names the run's settings; footers give the tuned baselines'
    settings and the reasons for skipped scores.

    Args:
        results (dict): the output of `evaluate` (extra top-level keys such as `model`
            are allowed).

    Returns:
        str: the table, lines joined by newlines.

    Examples:
        >>> scores = {"mae": 0.1, "psnr": 30.0, "ssim": 0.9, "ms_ssim": None}
        >>> results = {"task": "sr", "levels": {"data": {"num_images": 2,
        ...            "methods": {"cvdm": scores}}}}
        >>> print(format_table(results).splitlines()[-1])
        data  cvdm         2  0.1000  30.00  0.9000      n/a
    """
    settings = results.get("settings", {})
    described = [f"task {results.get('task', '?')}"]
    source = results.get("model")
    if isinstance(source, dict):  # keras_cvdm.prediction.load_model's description
        source = source.get("preset") or source.get("model_file")
    if source is not None:
        described.append(f"model {source}")
    if settings:
        height, width = settings["image_size"]
        described += [
            f"data {settings['data']}",
            f"{settings['num_images']} images of {height}×{width}",
            f"{settings['num_samples']} samples",
            f"{settings['sampler']} {settings['num_steps']} steps",
            f"seed {settings['seed']}",
            f"backend {settings['backend']}",
        ]
        if settings.get("tile") is not None:
            described.append(f"tile {settings['tile']}")
    header = ("set", "method", "images", *(title for _, title, _ in TABLE_COLUMNS))
    rows = []
    for level, record in results["levels"].items():
        groups = [(level, record)] + [
            (f"{level} {kind}", sub) for kind, sub in record.get("by_kind", {}).items()
        ]
        for name, group in groups:
            for method, scores in group["methods"].items():
                rows.append((name, method, str(group["num_images"]),
                             *(_cell(scores, key, fmt) for key, _, fmt in TABLE_COLUMNS)))
    # Drop the columns no row fills (e.g. uncertainty scores without a model row).
    keep = [i for i in range(len(header)) if i < 3 or any(row[i] for row in rows)]
    table = [[row[i] for i in keep] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(keep))]
    lines = [" · ".join(described)]
    if "units" in results:
        lines.append(f"scores: {results['units']}")
    for row in table:
        cells = [
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    notes = [_baseline_note(level, r) for level, r in results["levels"].items()]
    notes = [note for note in notes if note]
    if notes:
        lines.append("tuned on these images: " + "; ".join(notes))
    for metric, reason in results.get("skipped", {}).items():
        lines.append(f"{metric} not computed: {reason}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- flat summaries

#: The optics table of a QPI preset: each row changes the reference optics (µm) to an end
#: of the `qpi` preset's trained range, and one corner changes all three at once.
QPI_OPTICS_ROWS = (
    {"wavelength": 0.45}, {"wavelength": 0.65},
    {"pixel_size": 0.15}, {"pixel_size": 0.35},
    {"defocus": 0.5}, {"defocus": 2.0},
    {"wavelength": 0.45, "pixel_size": 0.35, "defocus": 0.5},
)


def optics_table(model, num_images=8, noise_levels=(0.05,), **kwargs):
    """`evaluate` at each row of `QPI_OPTICS_ROWS`, flat: the optics table of a QPI preset.

    Args:
        model: a QPI model trained over a range of optics.
        num_images: simulated test images per noise level and row.
        noise_levels: the rows' noise levels.
        **kwargs: passed to `evaluate` (`num_samples`, `seed`, ...).

    Returns:
        list of `{"changed", "optics", "levels": {noise: flat_summary}}` (without the
        per-kind breakdown and the calibration curve).
    """
    rows = []
    for row in QPI_OPTICS_ROWS:
        result = evaluate(model, num_images=num_images, noise_levels=noise_levels, optics=row,
                          **kwargs)
        rows.append({
            "changed": row, "optics": result["settings"]["optics"],
            "levels": {noise: {k: v for k, v in flat_summary(level).items()
                               if k not in ("by_kind", "calibration_curve")}
                       for noise, level in result["levels"].items()},
        })
    return rows


def flat_summary(level):
    """One level of `evaluate`'s result in the flat form stored in a preset's metadata.

    QPI: `cvdm_mae_aligned`, `tie_mae_aligned`, `tie_regularization`,
    `std_error_spearman`, `coverage_2sigma`, `mean_std_rad`, `calibration_curve` and,
    for the simulated test set, `by_kind`. SR: PSNR and SSIM of `cvdm`,
    `richardson_lucy` and `upsampled`, `rl_iterations`, and the uncertainty scores.

    Examples:
        >>> import keras_cvdm
        >>> model = keras_cvdm.from_preset("sr-microscopy")
        >>> level = evaluate(model, num_images=2, image_size=32, num_samples=2,
        ...                  num_steps=2)["levels"]["simulated"]
        >>> sorted(k for k in flat_summary(level) if k.endswith("psnr"))
        ['cvdm_psnr', 'richardson_lucy_psnr', 'upsampled_psnr']
    """
    methods = level["methods"]
    cvdm = methods["cvdm"]
    out = {"num_images": level["num_images"],
           "std_error_spearman": cvdm["std_error_spearman"],
           "coverage_2sigma": cvdm["coverage_2sigma"],
           "calibration_curve": cvdm["calibration_curve"]}
    if "tie" in methods:
        out.update(cvdm_mae_aligned=cvdm["mae"], tie_mae_aligned=methods["tie"]["mae"],
                   tie_regularization=level["tie_regularization"],
                   mean_std_rad=cvdm["mean_std"])
        if "by_kind" in level:
            out["by_kind"] = {
                kind: {"num_images": k["num_images"],
                       "cvdm_mae_aligned": k["methods"]["cvdm"]["mae"],
                       "tie_mae_aligned": k["methods"]["tie"]["mae"],
                       "coverage_2sigma": k["methods"]["cvdm"]["coverage_2sigma"]}
                for kind, k in level["by_kind"].items()
            }
        return out
    for name, scores in methods.items():
        out[f"{name}_psnr"], out[f"{name}_ssim"] = scores["psnr"], scores["ssim"]
    out.update(rl_iterations=level["rl_iterations"], mean_std=cvdm["mean_std"])
    return out
