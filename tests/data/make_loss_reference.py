"""Write the fixed weights, batch and loss terms that every backend must reproduce.

Run once (on any backend) after changing the architecture or the loss:

    KERAS_BACKEND=tensorflow python tests/data/make_loss_reference.py

It writes `loss_reference.weights.h5` (weights) and `loss_reference.npz` (x, y, t, ε and
the terms this backend computed); `tests/test_losses.py` checks every backend against them.
"""

import os

import keras
import numpy as np

from keras_cvdm import CVDM, LearnedSchedule
from keras_cvdm.layers import UNetDenoiser

HERE = os.path.dirname(os.path.abspath(__file__))
WEIGHTS = os.path.join(HERE, "loss_reference.weights.h5")
BATCH = os.path.join(HERE, "loss_reference.npz")


def reference_model():
    model = CVDM(
        target_channels=1,
        schedule=LearnedSchedule(1, filters=8, hidden_units=8),
        denoiser=UNetDenoiser(1, widths=(8, 16), embedding_dim=8, groups=4),
        snr_order=2,
    )
    model.build((None, 16, 16, 2))
    return model


def main():
    rng = np.random.default_rng(1234)
    model = reference_model()
    # Perturb every weight, so no part of the network (zero-initialised output layers
    # included) is trivially zero.
    model.set_weights([w + 0.1 * rng.normal(size=w.shape) for w in model.get_weights()])
    x = rng.normal(size=(3, 16, 16, 2)).astype("float32")
    y = np.tanh(x[..., :1]).astype("float32")
    t = np.array([0.1, 0.5, 0.9], "float32")
    eps = rng.normal(size=y.shape).astype("float32")
    total, terms = model.compute_loss_terms(x, y, t=t, eps=eps)
    values = {k: float(keras.ops.convert_to_numpy(v)) for k, v in terms.items()}
    values["loss"] = float(keras.ops.convert_to_numpy(total))
    model.save_weights(WEIGHTS, overwrite=True)
    np.savez(BATCH, x=x, y=y, t=t, eps=eps, **{f"term_{k}": v for k, v in values.items()})
    print(keras.backend.backend(), values)


if __name__ == "__main__":
    main()
