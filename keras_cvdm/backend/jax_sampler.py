"""JAX sampling loop: one `jax.jit` of the whole reverse diffusion, stateless weights."""

import jax
from keras import StatelessScope

from keras_cvdm.sampling import reverse_diffusion


def make_sampler(model, num_steps, sampler, clip):
    """A compiled `fn(x, z_init, seed) -> ŷ` for fixed steps/sampler/clip."""
    variables = model.trainable_variables + model.non_trainable_variables

    @jax.jit
    def run(values, x, z_init, seed):
        key = jax.random.key(seed)
        shape = x.shape[:-1] + (model.target_channels,)

        def noise_fn(k):
            return jax.random.normal(jax.random.fold_in(key, k), shape)

        with StatelessScope(state_mapping=list(zip(variables, values))):
            return reverse_diffusion(model, x, z_init, num_steps, sampler, clip, noise_fn)

    def fn(x, z_init, seed):
        return run([v.value for v in variables], x, z_init, seed)

    return fn
