"""Reproduce the shipped `qpi` preset from scratch.

    KERAS_BACKEND=tensorflow python examples/train_qpi_preset.py --output my_qpi

Two-shot QPI over a range of optics (wavelength 0.45–0.65 µm, pixel 0.15–0.35 µm,
defocus 0.5–2 µm, each drawn per sample around the paper's λ 0.521 µm, pixel 0.21 µm,
±1 µm), phase 0–3.5 rad, intensity noise std drawn per sample up to 0.2, trained on the
package's simulated phantom mix as whole 128×128 fields (the test images' size), so
the lowest spatial frequencies are seen.

The model is a zero-mean CVDM whose mean network carries the physics
(`keras_cvdm.layers.TIEMeanNetwork`): transport-of-intensity solves in `keras.ops` (FFT)
at three regularisations, using the optics that the input's third channel carries,
plus a U-Net's learned correction; the learned-schedule diffusion models the residual
`y − μ(x)` (scaled by 1/0.1), which carries the uncertainty. After training, a blend of
the posterior mean with the TIE solve per band of spatial frequency, then one factor for
the posterior std, are fitted on validation fields (not the test set) and stored in the
preset (`metadata["calibration"]`, `keras_cvdm.calibration`). Interrupted runs resume
from `--workdir`.
"""

import numpy as np
from preset_training import parse_args, run

from keras_cvdm import evaluation, metrics, qpi
from keras_cvdm import physics as optics
from keras_cvdm.calibration import BLEND_EDGES, blend_bands, fit_band_blend, fit_std_scale
from keras_cvdm.data import QPINormalization, qpi_dataset, qpi_test_set
from keras_cvdm.layers.tie_mean import DEFAULT_REGULARIZATIONS
from keras_cvdm.metrics import align_phase
from keras_cvdm.physics.propagation import REFERENCE_FRESNEL
from keras_cvdm.sampling import RECOMMENDED

OPTICS_RANGE = {"wavelength_um": [0.45, 0.65], "pixel_size_um": [0.15, 0.35],
                "defocus_um": [0.5, 2.0]}
NORMALIZATION = QPINormalization(optics_channel=True)

RECIPE = {
    "name": "qpi",
    "script": "qpi",
    "seed": 2,
    "eval_images": 64,
    "steps": 6000,
    "steps_per_epoch": 50,
    "batch_size": 4,
    "image_size": 128,
    "dataset": {"function": "keras_cvdm.data.qpi_dataset", "noise_std": [0.0, 0.2],
                "mix": "default (QPI_DEFAULT_MIX)", "augment": True,
                "resample_each_epoch": True, "optics_range": OPTICS_RANGE},
    "model": {"target_channels": 1, "condition_channels": 3, "widths": [16, 32, 64],
              "attention_levels": [], "embedding_dim": 32, "schedule": "learned",
              "mean_network": {"type": "tie", "widths": [32, 64, 96, 96],
                               "regularizations": list(DEFAULT_REGULARIZATIONS),
                               "phase_span": optics.PAPER_PHASE_MAX},
              "target_scale": 0.1},
    "optimizer": {"name": "adam", "learning_rate": 1e-3, "final_lr_fraction": 0.05,
                  "global_clipnorm": 1.0, "ema_momentum": 0.995},
    # Then 3000 more steps: a warm restart at a fifth of the peak rate, without the
    # moving average, on data of another seed.
    "refine": {"steps": 3000, "data_seed": 3, "learning_rate": 2e-4,
               "final_lr_fraction": 0.05, "global_clipnorm": 1.0},
    "calibration": {"images": 64, "noise_levels": [0.05, 0.1], "seed": 20_000},
    "metadata": {
        "task": "qpi",
        "description": "Two-shot quantitative phase imaging: phase (rad) from intensities "
                       "at -dz and +dz, with per-pixel uncertainty, for a range of optics.",
        "input": "channels (I(-dz), I(+dz)), raw intensities, any unit, and the optics "
                 "code log(s / s_ref), s = wavelength * defocus / pixel_size^2",
        "output": "phase in radians (background near 0)",
        "phase_convention": "training phase maps span [0, 3.5] rad with their minimum (the "
                            "background) at 0 rad; intensities fix phase only up to a "
                            "constant, which the model infers from this convention",
        "forward_model": {"wavelength_um": optics.PAPER_WAVELENGTH,
                          "pixel_size_um": optics.PAPER_PIXEL_SIZE,
                          "defocus_um": optics.PAPER_DEFOCUS,
                          "optics_range": OPTICS_RANGE,
                          "phase_range_rad": [0.0, optics.PAPER_PHASE_MAX],
                          "noise_std_range": [0.0, 0.2],
                          "noise": "Gaussian, std = s · mean intensity, s ~ U(0, 0.2)"},
        "normalization": NORMALIZATION.to_dict(),
        "sampling": dict(RECOMMENDED),
    },
}


def make_dataset(recipe, num_batches):
    data = recipe["dataset"]
    return qpi_dataset(
        batch_size=recipe["batch_size"], image_size=recipe["image_size"],
        num_batches=num_batches, seed=recipe["seed"], noise_std=tuple(data["noise_std"]),
        resample_each_epoch=True, normalization=NORMALIZATION,
        optics_range=data["optics_range"],
    )


#: Test images per noise level in each row of the optics table
#: (`evaluation.QPI_OPTICS_ROWS`), and its noise levels.
OPTICS_IMAGES = 8
OPTICS_NOISE = (0.05,)


def calibrate(model, settings):
    """Fit the band blend with TIE, then the std factor, on validation fields.

    The fields have their own seed (not the test set's). The blend's weights are fitted on
    the posterior means, the std factor on the blended means (the blend moves the mean,
    not the spread).
    """
    model.metadata = {k: v for k, v in model.metadata.items() if k != "calibration"}
    regularization = DEFAULT_REGULARIZATIONS[0]
    means, stds, ties, truths = [], [], [], []
    for noise in settings["noise_levels"]:
        i_minus, i_plus, phase = qpi_test_set(settings["images"], 128, noise,
                                              seed=settings["seed"])
        mean, std = qpi.reconstruct(model, i_minus, i_plus, num_samples=8, seed=1)
        means.append(mean)
        stds.append(std)
        ties.append(optics.tie_phase(
            i_minus, i_plus, regularization=regularization / optics.PAPER_PIXEL_SIZE ** 4))
        truths.append(phase)
    mean, std, tie, truth = (np.concatenate(a) for a in (means, stds, ties, truths))
    weights = [round(w, 4) for w in fit_band_blend(mean, tie, truth)]
    estimate = align_phase(blend_bands(mean, tie, weights), truth)
    return {"band_blend": {"weights": weights, "edges_cycles_per_pixel": list(BLEND_EDGES),
                           "tie_regularization_pixel": regularization,
                           "fresnel_number": round(REFERENCE_FRESNEL, 4)},
            "std_scale": round(fit_std_scale(estimate, std, truth), 4),
            "fitted_on": f"{settings['images']} validation fields (seed {settings['seed']}) "
                         f"per noise level {settings['noise_levels']}, reference optics, "
                         "posterior means of 8 samples (seed 1, the preset's sampler)",
            "target": "band blend: least squares per band; std: pooled coverage 0.9545 of "
                      "mean ± 2σ",
            "uncalibrated_coverage_2sigma": metrics.coverage(estimate, std, truth)}


def evaluate(model, num_images):
    fitted = calibrate(model, RECIPE["calibration"])
    model.metadata = dict(model.metadata, calibration=fitted)
    test = evaluation.evaluate(model, num_images=num_images)
    optics_rows = evaluation.optics_table(model, OPTICS_IMAGES, OPTICS_NOISE)
    return {"calibration": fitted,
            "qpi_test_set": {noise: evaluation.flat_summary(level)
                             for noise, level in test["levels"].items()},
            "optics_table": optics_rows}


if __name__ == "__main__":
    run(RECIPE, make_dataset, evaluate, parse_args(RECIPE, __doc__))
