"""Each backend's own autodiff, for checking the closed-form time derivatives."""

import keras
import numpy as np


def grad_of_sum(fn, t):
    """d/dt_i of sum(fn(t)) for a float32 vector t, using the active backend's autodiff."""
    backend = keras.backend.backend()
    t = np.asarray(t, "float32")
    if backend == "tensorflow":
        import tensorflow as tf

        tt = tf.constant(t)
        with tf.GradientTape() as tape:
            tape.watch(tt)
            out = tf.reduce_sum(fn(tt))
        return tape.gradient(out, tt).numpy()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        return np.asarray(jax.grad(lambda tt: jnp.sum(fn(tt)))(jnp.asarray(t)))
    if backend == "torch":
        import torch

        tt = torch.tensor(t, requires_grad=True)
        fn(tt).sum().backward()
        return tt.grad.detach().cpu().numpy()
    raise NotImplementedError(backend)
