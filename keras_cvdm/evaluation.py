"""Held-out evaluation of trained models against the classical baselines.

Used by the preset training scripts (the numbers stored in `metadata.json`) and by the
benchmarks. Metrics come from maintained libraries (scikit-image, SciPy; the `metrics`
extra).
"""

import numpy as np

from keras_cvdm import qpi
from keras_cvdm.data import datasets
from keras_cvdm.physics import phase_mae, tie_phase, tune_tie_regularization

SR_TEST_SEED = 20_000


def _metrics_libraries():
    try:
        from scipy import stats
        from skimage import metrics
    except ImportError as error:
        raise ImportError(
            "Evaluation needs scikit-image and SciPy: pip install 'keras-cvdm[metrics]'."
        ) from error
    return metrics, stats


def spearman(a, b):
    """Spearman rank correlation of two arrays (flattened)."""
    _, stats = _metrics_libraries()
    return float(stats.spearmanr(np.ravel(a), np.ravel(b)).statistic)


def score_qpi(mean, std, i_minus, i_plus, phase):
    """Score a phase estimate against the truth and against TIE tuned on the same images.

    Args:
        mean, std: the model's phase estimate and its per-pixel std, `(N, H, W)` radians.
        i_minus, i_plus, phase: the defocused intensities and the true phase, `(N, H, W)`.

    Returns:
        A dict: per-image mean-aligned MAE of the estimate (`cvdm_mae`) and of TIE
        (`tie_mae`), the TIE estimate (`tie`) and its regularisation (`tie_regularization`),
        and the Spearman correlation of `std` with the aligned absolute error.
    """
    eps, _ = tune_tie_regularization(i_minus, i_plus, phase)
    tie = tie_phase(i_minus, i_plus, regularization=eps)
    aligned = mean - np.mean(mean - phase, axis=(1, 2), keepdims=True)
    return {
        "cvdm_mae": phase_mae(mean, phase),
        "tie_mae": phase_mae(tie, phase),
        "tie": tie,
        "tie_regularization": float(eps),
        "std_error_spearman": spearman(std, np.abs(aligned - phase)),
    }


def evaluate_qpi(model, num_images=16, image_size=128, noise_levels=(0.05, 0.1),
                 num_samples=8, seed=0, **sampling):
    """Phase MAE (rad) of `model` and of the oracle-tuned TIE on the QPI test set.

    Returns `{str(noise): {...}}` with the mean-aligned and absolute (min at 0) MAE of
    both, the Spearman correlation of the model's std with its absolute error, and under
    `"by_kind"` the aligned MAE of both for each phantom kind in the set.
    """
    results = {}
    for noise in noise_levels:
        i_minus, i_plus, phase, kinds = datasets.qpi_test_set(
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
        results[str(noise)] = {
            "num_images": num_images,
            "image_size": image_size,
            "cvdm_mae_aligned": float(np.mean(cvdm_mae)),
            "cvdm_mae_absolute": float(np.mean(phase_mae(mean, phase, alignment="min"))),
            "tie_mae_aligned": float(np.mean(tie_mae)),
            "tie_mae_absolute": float(np.mean(phase_mae(scores["tie"], phase, alignment="min"))),
            "tie_regularization": scores["tie_regularization"],
            "std_error_spearman": scores["std_error_spearman"],
            "mean_std_rad": float(np.mean(std)),
            "by_kind": by_kind,
        }
    return results


def sr_test_set(num_images=16, image_size=128, seed=SR_TEST_SEED, **kwargs):
    """Held-out SR pairs `(x, y)`, `(N, H, W)` each: normalised up-sampled inputs, targets."""
    ds = datasets.sr_dataset(
        batch_size=num_images, image_size=image_size, num_batches=1, seed=seed,
        augment=False, **kwargs,
    )
    x, y = ds[0]
    return x[..., 0], y[..., 0]


def affine_fit(image, target):
    """`(a·image + b, a)`: the affine map of `image` closest to `target` in least squares
    (fair to any intensity scale), and its slope (to rescale an uncertainty with it)."""
    design = np.stack([np.ravel(image), np.ones(image.size)], axis=1)
    coef, *_ = np.linalg.lstsq(design, np.ravel(target), rcond=None)
    return coef[0] * image + coef[1], float(coef[0])


def image_scores(estimate, target):
    """PSNR and SSIM of `estimate` against `target` (both in the target's [-1, 1] units)."""
    metrics, _ = _metrics_libraries()
    return {
        "psnr": float(metrics.peak_signal_noise_ratio(target, estimate, data_range=2.0)),
        "ssim": float(metrics.structural_similarity(target, estimate, data_range=2.0)),
    }


def evaluate_sr(model, num_images=16, image_size=128, num_samples=8, seed=0, **sampling):
    """PSNR/SSIM of `model` and of the up-sampled input on held-out SR data.

    Both estimates get a per-image least-squares affine fit to the target before
    scoring, so the up-sampled input is not penalised for its intensity scale.
    """
    x, y = sr_test_set(num_images, image_size)
    mean, std = model.predict_uncertainty(
        x[..., None], num_samples=num_samples, seed=seed, verbose=0,
        **{"num_steps": 20, "sampler": "ddim", **sampling},
    )
    mean = mean[..., 0]
    scores = {"cvdm": [], "upsampled": []}
    for m, xi, yi in zip(mean, x, y):
        scores["cvdm"].append(image_scores(affine_fit(m, yi)[0], yi))
        scores["upsampled"].append(image_scores(affine_fit(xi, yi)[0], yi))
    out = {"num_images": num_images, "image_size": image_size}
    for method, rows in scores.items():
        for key in ("psnr", "ssim"):
            out[f"{method}_{key}"] = float(np.mean([r[key] for r in rows]))
    out["std_error_spearman"] = spearman(std[..., 0], np.abs(mean - y))
    return out
