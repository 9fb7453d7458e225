"""TensorFlow sampling loop: one `tf.function` around the whole reverse diffusion."""

import tensorflow as tf

from keras_cvdm.sampling import reverse_diffusion


def make_sampler(model, num_steps, sampler, clip, jit_compile=False):
    """A compiled `fn(x, z_init, seed) -> ŷ` for fixed steps/sampler/clip.

    `jit_compile=True` compiles the loop with XLA (`benchmarks/sample_speed.py` measures
    it against the default graph mode). The deterministic samplers give the same result
    either way; XLA draws the stochastic samplers' per-step noise with its own generator,
    so their samples for a seed differ from graph mode's (same distribution).
    """

    @tf.function(reduce_retracing=True, jit_compile=jit_compile)
    def fn(x, z_init, seed):
        shape = tf.concat([tf.shape(x)[:-1], [model.target_channels]], axis=0)
        seed = tf.cast(seed, tf.int64)

        def noise_fn(k):
            return tf.random.stateless_normal(shape, seed=tf.stack([seed, tf.cast(k, tf.int64)]))

        return reverse_diffusion(model, x, z_init, num_steps, sampler, clip, noise_fn)

    return fn
