"""Reproduce the shipped `sr-microscopy` preset from scratch.

    KERAS_BACKEND=tensorflow python examples/train_sr_preset.py --output my_sr

2× super-resolution of simulated wide-field fluorescence (Airy PSF, NA 1.3, 488 nm,
31.3 nm fine-grid pixels, Poisson–Gaussian noise) of filaments and puncta, towards a
2× finer-resolved (SIM-like) target. The model diffuses the residual to the input.
"""

from preset_training import parse_args, run

from keras_cvdm.data import SR_TEST_SEED, SRNormalization, sr_dataset
from keras_cvdm.evaluation import evaluate_sr
from keras_cvdm.sampling import RECOMMENDED

RECIPE = {
    "name": "sr-microscopy",
    "script": "sr",
    "seed": 2,
    "steps": 3000,
    "steps_per_epoch": 100,
    "batch_size": 4,
    "image_size": 64,
    "dataset": {"function": "keras_cvdm.data.sr_dataset", "factor": 2,
                "mix": "default (SR_DEFAULT_MIX)", "augment": True,
                "resample_each_epoch": True},
    "model": {"target_channels": 1, "condition_channels": 1, "widths": [32, 64, 128],
              "attention_levels": [], "embedding_dim": 32, "schedule": "learned",
              "residual": True},
    "optimizer": {"name": "adam", "learning_rate": 1e-3, "final_lr_fraction": 0.05,
                  "global_clipnorm": 1.0, "ema_momentum": 0.995},
    "metadata": {
        "task": "sr",
        "description": "2x super-resolution of wide-field fluorescence images, with "
                       "per-pixel uncertainty.",
        "input": "one wide-field image on the coarse grid, any unit",
        "output": "the image on the 2x finer grid, in the input's units",
        "forward_model": {"factor": 2, "psf": "airy", "wavelength_um": 0.488, "na": 1.3,
                          "pixel_size_um": 0.0313, "photons": [20.0, 1000.0],
                          "read_noise_std": [0.0, 2.0], "background": [0.0, 0.1],
                          "target_resolution_gain": 2.0, "upsample_method": "cubic"},
        "normalization": SRNormalization().to_dict(),
        "sampling": dict(RECOMMENDED),
        "test_seed": SR_TEST_SEED,
    },
}


def make_dataset(recipe, num_batches):
    return sr_dataset(
        batch_size=recipe["batch_size"], image_size=recipe["image_size"],
        num_batches=num_batches, seed=recipe["seed"], resample_each_epoch=True,
    )


def evaluate(model, num_images):
    return {"sr_test_set": evaluate_sr(model, num_images=num_images, image_size=128)}


if __name__ == "__main__":
    run(RECIPE, make_dataset, evaluate, parse_args(RECIPE, __doc__))
