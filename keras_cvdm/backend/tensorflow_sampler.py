"""TensorFlow sampling loop: one `tf.function` around the whole reverse diffusion."""

import tensorflow as tf

from keras_cvdm.backend.tensorflow_distribution import run_sharded
from keras_cvdm.sampling import reverse_diffusion


def make_sampler(model, num_steps, sampler, clip, jit_compile=False):
    """A compiled `fn(x, z_init, keys) -> ŷ` for fixed steps/sampler/clip.

    `keys` are int32 `(B, 2)`, one key per row (`keras_cvdm.sampling.pair_noise`); row
    `r`'s noise at step `k` is a stateless normal draw seeded by `(keys[r] as one int64, k)`,
    so it depends on that row's key and `k` only.

    `jit_compile=True` compiles the loop with XLA (`benchmarks/sample_speed.py` measures
    it against the default graph mode). The deterministic samplers give the same result
    either way; XLA draws the stochastic samplers' per-step noise with its own generator,
    so their samples for a seed differ from graph mode's (same distribution).

    Under a `tf.distribute` strategy, for a model built (or loaded) in its scope, the
    rows are split evenly over its replicas and gathered back in order: the same
    samples, computed in parts.
    """

    @tf.function(reduce_retracing=True, jit_compile=jit_compile)
    def loop(x, z_init, keys):
        shape = tf.concat([tf.shape(x)[1:-1], [model.target_channels]], axis=0)
        row_keys = tf.bitcast(tf.cast(keys, tf.int32), tf.int64)  # (B,): both words

        def noise_fn(k):
            step = tf.fill(tf.shape(row_keys), tf.cast(k, tf.int64))
            return tf.map_fn(
                lambda seed: tf.random.stateless_normal(shape, seed=seed),
                tf.stack([row_keys, step], axis=1),
                fn_output_signature=tf.float32,
            )

        return reverse_diffusion(model, x, z_init, num_steps, sampler, clip, noise_fn)

    def fn(x, z_init, keys):
        return run_sharded(loop, model, x, z_init, keys)

    return fn
