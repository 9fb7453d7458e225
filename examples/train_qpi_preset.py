"""Reproduce the shipped `qpi` preset from scratch.

    KERAS_BACKEND=tensorflow python examples/train_qpi_preset.py --output my_qpi

Two-shot QPI with the paper's optics (λ 0.521 µm, pixel 0.21 µm, ±1 µm defocus, phase
0–3.5 rad, intensity noise std drawn per sample up to 0.2), trained on the package's
simulated phantom mix. Each training example is a 64×64 window cut from a simulated
128×128 field (the test images' size, so structures have the same scale in pixels; the
window's borders see light propagated from outside it, as in a real camera crop).

The model is a zero-mean CVDM: a U-Net regressor learns the conditional mean phase μ(x)
(the Poisson-like inversion that TIE does with an FFT needs a wide receptive field), and
the learned-schedule diffusion models the residual `y − μ(x)` (scaled by 1/0.1), which
carries the uncertainty. Interrupted runs resume from `--workdir`.
"""

import numpy as np
from preset_training import parse_args, run

from keras_cvdm import physics as optics
from keras_cvdm.data import QPINormalization, qpi_dataset
from keras_cvdm.evaluation import evaluate_qpi
from keras_cvdm.sampling import RECOMMENDED

RECIPE = {
    "name": "qpi",
    "script": "qpi",
    "seed": 1,
    "eval_images": 64,
    "steps": 2500,
    "steps_per_epoch": 50,
    "batch_size": 8,
    "image_size": 64,
    "dataset": {"function": "keras_cvdm.data.qpi_dataset", "noise_std": [0.0, 0.2],
                "mix": "default (QPI_DEFAULT_MIX)", "augment": True,
                "resample_each_epoch": True, "field_size": 128, "crops_per_field": 2},
    "model": {"target_channels": 1, "condition_channels": 2, "widths": [16, 32, 64],
              "attention_levels": [], "embedding_dim": 32, "schedule": "learned",
              "mean_network": {"widths": [32, 64, 96, 96]}, "target_scale": 0.1},
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
        "sampling": dict(RECOMMENDED),
    },
}


class RandomCrops:
    """Batches of `crop`×`crop` windows, `per_field` cut at random from each simulated field."""

    def __init__(self, fields, crop, per_field, seed):
        self.fields, self.crop, self.per_field, self.seed = fields, crop, per_field, seed
        self.batch_size = fields.batch_size * per_field

    def __len__(self):
        return len(self.fields)

    def __getitem__(self, index):
        x, y = self.fields[index]
        rng = np.random.default_rng((self.seed, index))
        rows = rng.integers(0, x.shape[1] - self.crop + 1, size=self.batch_size)
        cols = rng.integers(0, x.shape[2] - self.crop + 1, size=self.batch_size)
        source = np.repeat(np.arange(x.shape[0]), self.per_field)
        window = [(i, slice(r, r + self.crop), slice(c, c + self.crop))
                  for i, r, c in zip(source, rows, cols)]
        return np.stack([x[w] for w in window]), np.stack([y[w] for w in window])


def make_dataset(recipe, num_batches):
    data = recipe["dataset"]
    fields = qpi_dataset(
        batch_size=recipe["batch_size"] // data["crops_per_field"],
        image_size=data["field_size"], num_batches=num_batches, seed=recipe["seed"],
        noise_std=(0.0, 0.2), resample_each_epoch=True,
    )
    return RandomCrops(fields, recipe["image_size"], data["crops_per_field"], recipe["seed"])


def evaluate(model, num_images):
    return {"qpi_test_set": evaluate_qpi(model, num_images=num_images, image_size=128)}


if __name__ == "__main__":
    run(RECIPE, make_dataset, evaluate, parse_args(RECIPE, __doc__))
