"""Every documented constructor option: one training step, sampling, `.keras` round trip.

Each case builds a small `CVDM` that sets several options to non-default values, trains
it for one step on one tiny batch, samples with DDIM and checks that the model loaded
back from a `.keras` file (safe mode) draws the same samples from the same seed.
`test_every_documented_option_is_exercised` reads the `Args:` sections of the public
classes' docstrings and fails when a documented option is left at its default by every
case.
"""

import inspect
import json
import re

import keras
import numpy as np
import pytest
from keras import ops

import keras_cvdm
from keras_cvdm import CVDM, CosineSchedule, LearnedSchedule, LinearSchedule, layers

from .conftest import BACKEND

SIZE = 8


@keras.saving.register_keras_serializable(package="keras_cvdm_tests")
class PixelDenoiser(keras.layers.Layer):
    """The cheapest denoiser: one 3×3 convolution of `[z_t, x, γ]`."""

    def __init__(self, target_channels=1, **kwargs):
        super().__init__(**kwargs)
        self.target_channels = int(target_channels)
        self.conv = keras.layers.Conv2D(self.target_channels, 3, padding="same")

    def build(self, input_shape):
        z_shape, x_shape, _ = input_shape
        self.conv.build(tuple(z_shape[:-1]) + (2 * z_shape[-1] + x_shape[-1],))

    def call(self, inputs, training=None):
        z, x, gamma = inputs
        gamma = ops.broadcast_to(ops.cast(gamma, z.dtype), ops.shape(z))
        return self.conv(ops.concatenate([z, ops.cast(x, z.dtype), gamma], axis=-1))

    def get_config(self):
        return {**super().get_config(), "target_channels": self.target_channels}


@keras.saving.register_keras_serializable(package="keras_cvdm_tests")
class EmbeddingDenoiser(keras.layers.Layer):
    """A convolution of `[z_t, x]` plus a `GammaEmbedding` of γ with its own options."""

    def __init__(self, target_channels=1, frequencies=3, **kwargs):
        super().__init__(**kwargs)
        self.target_channels = int(target_channels)
        self.frequencies = int(frequencies)
        self.embedding = layers.GammaEmbedding(embedding_dim=2, frequencies=self.frequencies)
        self.conv = keras.layers.Conv2D(self.target_channels, 3, padding="same")

    def build(self, input_shape):
        z_shape, x_shape, _ = (tuple(s) for s in input_shape)
        self.embedding.build(z_shape)
        self.conv.build(z_shape[:-1] + (z_shape[-1] + x_shape[-1] + 2,))

    def call(self, inputs, training=None):
        z, x, gamma = inputs
        embedding = self.embedding(ops.broadcast_to(ops.cast(gamma, "float32"), ops.shape(z)))
        return self.conv(ops.concatenate([z, ops.cast(x, z.dtype), embedding], axis=-1))

    def get_config(self):
        config = super().get_config()
        config.update({"target_channels": self.target_channels, "frequencies": self.frequencies})
        return config


def _learned_exact_residual():
    schedule = LearnedSchedule(target_channels=2, filters=4, depth=1, hidden_units=4,
                               initial_lambda=8.0, coupling="exact", min_lambda=0.5)
    return CVDM(target_channels=2, schedule=schedule, denoiser=PixelDenoiser(2),
                noise_weight=0.5, beta_weight=1.5, prior_weight=0.25, gamma_weight=3.0,
                alpha=0.01, snr_order=3, residual=True, target_scale=0.5, num_timesteps=4,
                seed=11)


def _linear_zero_mean():
    mean = layers.ConvNet(output_channels=1, filters=4, depth=1, output_bias=0.2)
    return CVDM(schedule=LinearSchedule(beta_min=0.3, beta_max=12.0),
                denoiser=EmbeddingDenoiser(), zero_mean=True, mean_network=mean,
                mean_weight=0.3, target_scale=2.0, num_timesteps=3, seed=2,
                metadata={"task": "sr", "steps": [3, 5]})


def _cosine_unets():
    # Attention with the default blocks_per_level: on the way up it follows two residual
    # blocks. The regressor's U-Net has no down blocks. Both are one level deep (cheap to
    # compile); the two-level path is trained in test_model.py.
    unet = layers.UNetDenoiser(target_channels=2, widths=(8,), attention_levels=(0,),
                               embedding_dim=4, dropout=0.1, groups=4)
    mean = layers.UNetRegressor(output_channels=2, widths=(8,), blocks_per_level=0,
                                attention_levels=(0,), embedding_dim=4, groups=4)
    return CVDM(target_channels=2, schedule=CosineSchedule(logsnr_min=-8.0, logsnr_max=6.0),
                denoiser=unet, zero_mean=True, mean_network=mean, num_timesteps=3, seed=1)


def _tie_mean_network():
    # The QPI physics mean network: its condition carries the optics code as a third channel.
    mean = layers.TIEMeanNetwork(widths=(8,), regularizations=(1e-6, 1e-5), phase_span=2.0,
                                 intensity_scale=0.5, embedding_dim=4)
    return CVDM(schedule=LinearSchedule(), denoiser=PixelDenoiser(), zero_mean=True,
                mean_network=mean, target_scale=0.5, num_timesteps=2, seed=4)


# The loss weights each case sets (w_ε, w_β, w_prior, w_γ, α, w_mean), written out here so
# that the logged total is checked against the arguments, not against the model's attributes.
LOSS_WEIGHTS = {
    "learned-exact-residual-weights": (0.5, 1.5, 0.25, 3.0, 0.01, 0.0),
    "linear-zero-mean-convnet-embedding": (1.0, 2.0, 2.0, 2.0, 1e-3, 0.3),
    "cosine-unet-denoiser-and-regressor": (1.0, 2.0, 2.0, 2.0, 1e-3, 1.0),
    "tie-mean-network": (1.0, 2.0, 2.0, 2.0, 1e-3, 1.0),
}

CASES = {
    "learned-exact-residual-weights": _learned_exact_residual,
    "linear-zero-mean-convnet-embedding": _linear_zero_mean,
    "cosine-unet-denoiser-and-regressor": _cosine_unets,
    "tie-mean-network": _tie_mean_network,
}

#: Condition channels of each case's batch (two by default).
CONDITION_CHANNELS = {"tie-mean-network": 3}

DOCUMENTED = [CVDM, LearnedSchedule, LinearSchedule, CosineSchedule] + [
    getattr(layers, name) for name in layers.__all__
]


def _batch(target_channels, condition_channels=2):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(2, SIZE, SIZE, condition_channels)).astype("float32")
    y = np.tanh(x[..., :1] + rng.normal(0, 0.1, size=(2, SIZE, SIZE, target_channels)))
    return x, y.astype("float32")


def _trainable(part):
    return [ops.convert_to_numpy(v) for v in part.trainable_variables]


def _as_json(config):
    return json.loads(json.dumps(config))


@pytest.mark.parametrize("case", sorted(CASES))
def test_option_trains_samples_and_round_trips(case, tmp_path):
    model = CASES[case]()
    x, y = _batch(model.target_channels, CONDITION_CHANNELS.get(case, 2))
    # One eager step on TensorFlow: tracing a graph for a single step costs more than it saves.
    model.compile(optimizer=keras.optimizers.Adam(1e-2), run_eagerly=BACKEND == "tensorflow",
                  jit_compile=BACKEND == "jax")
    model.build(x.shape)
    parts = [p for p in (model.schedule, model.denoiser, model.mean_network)
             if p is not None and p.trainable_variables]
    before = [_trainable(p) for p in parts]
    logs = {k: v[-1] for k, v in model.fit(x, y, batch_size=2, epochs=1, verbose=0).history.items()}

    # The logged loss is the weighted sum of the logged terms, with the weights the case set.
    w_noise, w_beta, w_prior, w_gamma, alpha, w_mean = LOSS_WEIGHTS[case]
    expected = (w_noise * logs["noise_loss"] + w_beta * logs["beta_loss"]
                + w_prior * logs["prior_loss"] + w_gamma * alpha * logs["gamma_loss"]
                + w_mean * logs.get("mean_loss", 0.0))
    assert logs["loss"] == pytest.approx(expected, rel=1e-5)
    # Every part with weights (schedule, denoiser, mean network) took a step.
    for part, old in zip(parts, before):
        assert any(not np.array_equal(a, b) for a, b in zip(old, _trainable(part))), part.name

    samples = model.predict_samples(x, sampler="ddim", seed=7, verbose=0)
    assert samples.shape == (2, 1, SIZE, SIZE, model.target_channels)
    assert np.all(np.isfinite(samples))
    # num_timesteps is the default number of steps.
    explicit = model.predict_samples(
        x, sampler="ddim", num_steps=model.num_timesteps, seed=7, verbose=0
    )
    np.testing.assert_array_equal(samples, explicit)

    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded.denoiser) is type(model.denoiser)
    assert _as_json(loaded.get_config()) == _as_json(model.get_config())
    again = loaded.predict_samples(x, sampler="ddim", seed=7, verbose=0)
    np.testing.assert_array_equal(again, samples)


def test_seed_fixes_the_training_noise():
    """The same seed draws the same t and ε in the loss; another seed draws others."""
    x, y = _batch(1)

    def loss(seed):
        keras.utils.set_random_seed(0)  # same initial weights
        model = CVDM(schedule=LinearSchedule(), denoiser=PixelDenoiser(), seed=seed)
        model.build(x.shape)
        return [float(ops.convert_to_numpy(model.compute_loss_terms(x, y)[0])) for _ in "ab"]

    first, repeat, other = loss(21), loss(21), loss(22)
    assert first == repeat
    assert first[0] != first[1]  # the generator advances between batches
    assert other != first


def _documented_args(cls):
    """Names in the `Args:` section of the class docstring (`a, b: ...` lists several)."""
    doc = inspect.getdoc(cls)
    section = re.search(r"^Args:\n((?:    .*\n|\n)+)", doc + "\n", re.MULTILINE)
    assert section, f"{cls.__name__} documents no Args"
    names = []
    for line in section.group(1).splitlines():
        match = re.match(r"^    (\*{0,2}\w[\w, ]*?)(?: \([^)]*\))?:", line)
        if match:
            names += [n.strip() for n in match.group(1).split(",")]
    return [n for n in names if not n.startswith("*")]


def _without_names(config):
    if isinstance(config, dict):
        return {k: _without_names(v) for k, v in config.items() if k != "name"}
    if isinstance(config, list):
        return [_without_names(v) for v in config]
    return config


def _non_default_options(layer):
    """Constructor options of `layer` whose configured value differs from the default.

    The reference is the config of the same class built with default arguments; an
    argument without a default counts as set.
    """
    params = inspect.signature(type(layer).__init__).parameters
    config = _without_names(_as_json(layer.get_config()))
    required = {n for n, p in params.items() if n in config and p.default is p.empty}
    reference = _without_names(
        _as_json(type(layer)(**{n: layer.get_config()[n] for n in required}).get_config())
    )
    return required | {n for n in params if n in config and config[n] != reference.get(n)}


def test_every_documented_option_is_exercised():
    covered = {cls: set() for cls in DOCUMENTED}
    for build in CASES.values():
        for layer in build()._flatten_layers(include_self=True):
            if type(layer) in covered:
                covered[type(layer)] |= _non_default_options(layer)
    missing = {}
    for cls in DOCUMENTED:
        documented = set(_documented_args(cls))
        params = {n for n, p in inspect.signature(cls.__init__).parameters.items()
                  if n != "self" and p.kind is not p.VAR_KEYWORD}
        assert documented == params, f"{cls.__name__}: documented {documented}, takes {params}"
        if documented - covered[cls]:
            missing[cls.__name__] = sorted(documented - covered[cls])
    assert not missing, f"options no case sets: {missing}"


def test_public_layers_are_all_checked():
    public = {name for name in dir(keras_cvdm.layers) if name[0].isupper()}
    assert public == set(layers.__all__)
