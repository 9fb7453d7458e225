"""Write the outputs every backend must reproduce from the shipped presets.

Run after retraining a preset (on any backend):

    KERAS_BACKEND=tensorflow python tests/data/make_preset_reference.py

It writes `preset_reference.npz`: for `qpi` and `sr-microscopy`, a fixed held-out input and
the posterior mean and std of 2 DDIM samples with seed 0, as computed on this backend.
`tests/test_presets.py` checks every backend against them.
"""

import os

import numpy as np

import keras_cvdm
from keras_cvdm.data import qpi_test_set, sr_test_set

HERE = os.path.dirname(os.path.abspath(__file__))
PATH = os.path.join(HERE, "preset_reference.npz")
SAMPLING = {"num_samples": 2, "seed": 0, "num_steps": 10, "sampler": "ddim"}


def reference_inputs():
    i_minus, i_plus, _ = qpi_test_set(1, 32, noise_std=0.05)
    x, _ = sr_test_set(1, 32)
    return i_minus[0], i_plus[0], x[0]


def compute():
    i_minus, i_plus, widefield = reference_inputs()
    qpi = keras_cvdm.from_preset("qpi")
    phase, phase_std = keras_cvdm.qpi.reconstruct(qpi, i_minus, i_plus, **SAMPLING)
    sr = keras_cvdm.from_preset("sr-microscopy")
    x = widefield[None, :, :, None]
    sr_mean, sr_std = sr.predict_uncertainty(x, **SAMPLING, verbose=0)
    return {"qpi_phase": phase, "qpi_std": phase_std, "sr_mean": sr_mean[0, ..., 0],
            "sr_std": sr_std[0, ..., 0]}


if __name__ == "__main__":
    import keras

    np.savez(PATH, backend=keras.backend.backend(), **compute())
    print(f"wrote {PATH}")
