"""Backend-specific code: the only package that imports tensorflow, jax or torch.

`CVDMTrainer` is the `train_step`/`test_step` mix-in for the active Keras backend; each
one differentiates the same backend-free `CVDM.compute_loss_terms`. `make_sampler`
compiles the backend-free `keras_cvdm.sampling.reverse_diffusion` loop and supplies its
per-step noise. `distribution` is the backend's multi-device engine (`tf.distribute`,
`keras.distribution` on JAX, none on torch) as `keras_cvdm.distribute` uses it.
"""

import keras

_BACKEND = keras.backend.backend()

if _BACKEND == "tensorflow":
    from keras_cvdm.backend import tensorflow_distribution as distribution
    from keras_cvdm.backend.tensorflow_sampler import make_sampler
    from keras_cvdm.backend.tensorflow_trainer import CVDMTrainer
elif _BACKEND == "jax":
    from keras_cvdm.backend import jax_distribution as distribution
    from keras_cvdm.backend.jax_sampler import make_sampler
    from keras_cvdm.backend.jax_trainer import CVDMTrainer
elif _BACKEND == "torch":
    from keras_cvdm.backend import torch_distribution as distribution
    from keras_cvdm.backend.torch_sampler import make_sampler
    from keras_cvdm.backend.torch_trainer import CVDMTrainer
else:
    from keras_cvdm.backend import torch_distribution as distribution  # no engine either

    def make_sampler(model, num_steps, sampler, clip):
        raise NotImplementedError(
            f"keras-cvdm samples on the tensorflow, jax and torch backends; the active "
            f"backend is {_BACKEND!r}."
        )

    class CVDMTrainer:
        """Training is not available on this backend."""

        def train_step(self, *args, **kwargs):
            raise NotImplementedError(
                f"keras-cvdm trains on the tensorflow, jax and torch backends; the active "
                f"backend is {_BACKEND!r}. Set KERAS_BACKEND to one of those."
            )

        test_step = train_step


__all__ = ["CVDMTrainer", "distribution", "make_sampler"]
