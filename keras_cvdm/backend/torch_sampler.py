"""PyTorch sampling loop: the reverse diffusion under `torch.no_grad`, per-row noise keys."""

import numpy as np
import torch

from keras_cvdm.sampling import reverse_diffusion


def make_sampler(model, num_steps, sampler, clip):
    """A `fn(x, z_init, keys) -> ŷ` for fixed steps/sampler/clip.

    `keys` are int32 `(B, 2)`, one 64-bit key per row (`keras_cvdm.sampling.pair_noise`);
    row `r`'s noise at step `k` comes from a counter-based Philox generator keyed by
    `(keys[r], k)`, so it depends on that row's key and `k` only. (torch's CPU generator
    keeps only 32 bits of its seed; Philox keeps the whole key.) The noise is drawn on the
    CPU, so it is the same on every device.
    """

    def fn(x, z_init, keys):
        shape = tuple(x.shape[1:-1]) + (model.target_channels,)
        words = np.ascontiguousarray(torch.as_tensor(keys).cpu().numpy().astype("int32"))
        row_keys = words.view("uint64")[:, 0]

        def noise_fn(k):
            rows = [
                np.random.Generator(np.random.Philox(key=[key, k])).standard_normal(
                    shape, dtype="float32"
                )
                for key in row_keys
            ]
            return torch.from_numpy(np.stack(rows)).to(x.device)

        with torch.no_grad():
            return reverse_diffusion(model, x, z_init, num_steps, sampler, clip, noise_fn)

    return fn
