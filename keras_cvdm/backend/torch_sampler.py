"""PyTorch sampling loop: the reverse diffusion under `torch.no_grad`, seeded generator."""

import torch

from keras_cvdm.sampling import reverse_diffusion


def make_sampler(model, num_steps, sampler, clip):
    """A `fn(x, z_init, seed) -> ŷ` for fixed steps/sampler/clip."""

    def fn(x, z_init, seed):
        shape = tuple(x.shape[:-1]) + (model.target_channels,)
        generator = torch.Generator(device="cpu").manual_seed(int(seed))

        def noise_fn(k):
            return torch.randn(shape, generator=generator).to(x.device)

        with torch.no_grad():
            return reverse_diffusion(model, x, z_init, num_steps, sampler, clip, noise_fn)

    return fn
