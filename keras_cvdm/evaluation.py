"""Held-out evaluation protocols of trained models against the classical baselines.

Used by the preset training scripts (the numbers stored in each preset's
`metadata.json`), by `benchmarks/preset_quality.py` and by the `keras-cvdm demo`
command. Every score comes from `keras_cvdm.metrics`.
"""

import numpy as np

from keras_cvdm import metrics, qpi
from keras_cvdm.data import qpi_test_set, sr_test_set
from keras_cvdm.physics import tie_phase, tune_tie_regularization


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
    results = {}
    for noise in noise_levels:
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
        **sampling: passed to `CVDM.predict_uncertainty` (default DDIM with 20 steps).

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
    x, y = sr_test_set(num_images, image_size)
    mean, std = model.predict_uncertainty(
        x[..., None], num_samples=num_samples, seed=seed, verbose=0,
        **{"num_steps": 20, "sampler": "ddim", **sampling},
    )
    mean = mean[..., 0]
    out = {"num_images": num_images, "image_size": image_size}
    for method, estimate in (("cvdm", mean), ("upsampled", x)):
        fitted = np.stack([metrics.affine_fit(e, t)[0] for e, t in zip(estimate, y)])
        out[f"{method}_psnr"] = float(np.mean(metrics.psnr(fitted, y, data_range=2.0)))
        out[f"{method}_ssim"] = float(np.mean(metrics.ssim(fitted, y, data_range=2.0)))
    out["std_error_spearman"] = metrics.spearman(std[..., 0], np.abs(mean - y))
    return out
