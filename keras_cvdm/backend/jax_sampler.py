"""JAX sampling loop: one `jax.jit` of the whole reverse diffusion, stateless weights."""

import jax
import jax.numpy as jnp
from keras import StatelessScope

from keras_cvdm.backend.jax_distribution import place
from keras_cvdm.sampling import reverse_diffusion


def make_sampler(model, num_steps, sampler, clip):
    """A compiled `fn(x, z_init, keys) -> ŷ` for fixed steps/sampler/clip.

    `keys` are int32 `(B, 2)`, one threefry key per row (`keras_cvdm.sampling.pair_noise`);
    row `r`'s noise at step `k` is drawn from `fold_in(keys[r], k)`, so it depends on that
    row's key and `k` only. Under a `keras.distribution` the rows are split over the
    devices of its batch axis (and the weights laid out as it says): the same samples,
    computed in parts.
    """
    variables = model.trainable_variables + model.non_trainable_variables

    @jax.jit
    def run(values, x, z_init, keys):
        data = jax.lax.bitcast_convert_type(keys, jnp.uint32)
        row_keys = jax.random.wrap_key_data(data, impl="threefry2x32")
        shape = x.shape[1:-1] + (model.target_channels,)

        def row_noise(key, k):
            return jax.random.normal(jax.random.fold_in(key, k), shape, jnp.float32)

        def noise_fn(k):
            return jax.vmap(row_noise, in_axes=(0, None))(row_keys, k)

        with StatelessScope(state_mapping=list(zip(variables, values))):
            return reverse_diffusion(model, x, z_init, num_steps, sampler, clip, noise_fn)

    def fn(x, z_init, keys):
        values, arrays = place(variables, [v.value for v in variables], [x, z_init, keys])
        return run(values, *arrays)

    return fn
