"""Reproduce the shipped `qpi` preset from scratch.

    KERAS_BACKEND=tensorflow python examples/train_qpi_preset.py --output my_qpi

Two-shot QPI with the paper's optics (λ 0.521 µm, pixel 0.21 µm, ±1 µm defocus, phase
0–3.5 rad, intensity noise std drawn per sample up to 0.2), trained on the package's
simulated phantom mix. Interrupted runs resume from `--workdir`.
"""

from preset_training import parse_args, run

from keras_cvdm.data import QPINormalization, qpi_dataset
from keras_cvdm.evaluation import evaluate_qpi
from keras_cvdm.physics import qpi as optics

RECIPE = {
    "name": "qpi",
    "script": "qpi",
    "seed": 1,
    "steps": 2000,
    "steps_per_epoch": 50,
    "batch_size": 2,
    "image_size": 128,
    "dataset": {"function": "keras_cvdm.data.qpi_dataset", "noise_std": [0.0, 0.2],
                "mix": "default (QPI_DEFAULT_MIX)", "augment": True,
                "resample_each_epoch": True},
    "model": {"target_channels": 1, "condition_channels": 2, "widths": [32, 64, 128],
              "attention_levels": [], "embedding_dim": 32, "schedule": "learned"},
    "optimizer": {"name": "adam", "learning_rate": 1e-3, "final_lr_fraction": 0.05,
                  "global_clipnorm": 1.0, "ema_momentum": 0.995},
    "metadata": {
        "task": "qpi",
        "description": "Two-shot quantitative phase imaging: phase (rad) from intensities "
                       "at -dz and +dz, with per-pixel uncertainty.",
        "input": "channels (I(-dz), I(+dz)), raw intensities, any unit",
        "output": "phase in radians (background near 0)",
        "phase_convention": "training phase maps span [0, 3.5] rad with their minimum (the "
                            "background) at 0 rad; intensities fix phase only up to a "
                            "constant, which the model infers from this convention",
        "forward_model": {"wavelength_um": optics.PAPER_WAVELENGTH,
                          "pixel_size_um": optics.PAPER_PIXEL_SIZE,
                          "defocus_um": optics.PAPER_DEFOCUS,
                          "phase_range_rad": [0.0, optics.PAPER_PHASE_MAX],
                          "noise_std_range": [0.0, 0.2],
                          "noise": "Gaussian, std = s · mean intensity, s ~ U(0, 0.2)"},
        "normalization": QPINormalization().to_dict(),
        "sampling": {"sampler": "ddim", "num_steps": 20},
    },
}


def make_dataset(recipe, num_batches):
    return qpi_dataset(
        batch_size=recipe["batch_size"], image_size=recipe["image_size"],
        num_batches=num_batches, seed=recipe["seed"], noise_std=(0.0, 0.2),
        resample_each_epoch=True,
    )


def evaluate(model, num_images):
    return {"qpi_test_set": evaluate_qpi(model, num_images=num_images, image_size=128)}


if __name__ == "__main__":
    run(RECIPE, make_dataset, evaluate, parse_args(RECIPE, __doc__))
