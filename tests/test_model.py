import json

import keras
import numpy as np
import pytest
from keras import ops

from keras_cvdm import CVDM, LinearSchedule
from keras_cvdm.layers import ConvNet, UNetRegressor

from .conftest import BACKEND, compile_fast, conditional_task, tiny_model

TERMS = ("loss", "noise_loss", "beta_loss", "prior_loss", "gamma_loss")


@pytest.mark.parametrize("schedule", ["learned", "linear"])
def test_fit_lowers_the_noise_loss(schedule):
    x, y = conditional_task(n=80)
    model = compile_fast(tiny_model(schedule, seed=3), keras.optimizers.Adam(2e-3))
    keras.utils.set_random_seed(0)
    # 10 epochs × 20 steps = 200 steps.
    history = model.fit(x, y, batch_size=4, epochs=10, verbose=0, shuffle=True).history
    for name in TERMS:
        assert name in history
        assert np.all(np.isfinite(history[name])), name
    first, last = history["noise_loss"][0], history["noise_loss"][-1]
    assert last <= 0.7 * first, f"noise loss {first:.3f} -> {last:.3f}"


def _input_sources(x, y):
    """(name, data) pairs: the same examples through every kind of input `fit` accepts."""
    sources = [("numpy", (x, y))]

    class Pairs(keras.utils.PyDataset):
        def __len__(self):
            return len(x) // 8

        def __getitem__(self, i):
            return x[8 * i : 8 * i + 8], y[8 * i : 8 * i + 8]

    sources.append(("PyDataset", (Pairs(),)))
    import tensorflow as tf
    import torch

    sources.append(("tf.data", (tf.data.Dataset.from_tensor_slices((x, y)).batch(8),)))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=8
    )
    sources.append(("DataLoader", (loader,)))
    return sources


def _compile_few_steps(model, optimizer=None):
    """Compile for a few steps: eager on TensorFlow, where tracing would cost more."""
    model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-3),
                  run_eagerly=BACKEND == "tensorflow", jit_compile=BACKEND == "jax")
    return model


def test_every_input_source_trains_like_numpy_arrays():
    """The same batches through each kind of input `fit` accepts give the same step."""
    x, y = conditional_task(n=16)
    model = _compile_few_steps(tiny_model(seed=1))
    model.build(x.shape)
    model.optimizer.build(model.trainable_variables)
    # Weights, seed-generator state and optimizer slots: restored before every source.
    state = model.variables + model.optimizer.variables
    start = [ops.convert_to_numpy(v) for v in state]
    results = {}
    for name, data in _input_sources(x, y):
        for variable, value in zip(state, start):
            variable.assign(value)
        kwargs = {"batch_size": 8} if name == "numpy" else {}
        history = model.fit(*data, epochs=1, verbose=0, shuffle=False, **kwargs).history
        results[name] = (history["loss"][-1], [ops.convert_to_numpy(v) for v in state])
    loss, weights = results.pop("numpy")
    assert any(not np.allclose(a, b) for a, b in zip(start, weights))
    for name, (other_loss, other_weights) in results.items():
        assert other_loss == pytest.approx(loss, rel=1e-6), name
        for a, b in zip(weights, other_weights):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7, err_msg=name)
    # The reported loss is the weighted sum of the reported terms (defaults 1, 2, 2, 2·α).
    logs = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    expected = (logs["noise_loss"] + 2 * logs["beta_loss"] + 2 * logs["prior_loss"]
                + 2e-3 * logs["gamma_loss"])
    assert logs["loss"] == pytest.approx(expected, rel=1e-5)


class _RecordWeights(keras.callbacks.Callback):
    """The raw trainable weights after each epoch (one step each here)."""

    def __init__(self):
        super().__init__()
        self.steps = []

    def on_epoch_end(self, epoch, logs=None):
        self.steps.append([ops.convert_to_numpy(v) for v in self.model.trainable_variables])


def test_ema_weights_are_the_moving_average_of_the_trained_ones():
    x, y = conditional_task(n=8)
    momentum = 0.6
    optimizer = keras.optimizers.Adam(1e-2, use_ema=True, ema_momentum=momentum)
    model = _compile_few_steps(tiny_model(seed=2), optimizer)
    record = _RecordWeights()
    history = model.fit(x, y, batch_size=8, epochs=3, validation_data=(x, y), verbose=0,
                        callbacks=[record]).history
    assert len(history["val_noise_loss"]) == 3 and np.all(np.isfinite(history["val_loss"]))
    # The average starts at the first step's weights: a_1 = w_1, a_k = m a_(k-1) + (1 − m) w_k.
    average = [w.astype("float64") for w in record.steps[0]]
    for step in record.steps[1:]:
        average = [momentum * a + (1 - momentum) * w for a, w in zip(average, step)]
    final = [ops.convert_to_numpy(v) for v in model.trainable_variables]
    for a, w in zip(average, final):
        np.testing.assert_allclose(w, a, rtol=1e-5, atol=1e-7)
    # The average is not the last step's weights, so the comparison above can fail.
    assert any(not np.allclose(w, last, atol=1e-6) for w, last in zip(final, record.steps[-1]))


def test_mixed_precision_keeps_schedule_in_float32():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        x, y = conditional_task(n=8)
        model = _compile_few_steps(tiny_model(seed=4))
        model.build(x.shape)
        total, _ = model.compute_loss_terms(x, y)
        assert np.isfinite(float(ops.convert_to_numpy(total)))
        if BACKEND != "torch":
            # PyTorch's CPU convolution has no reduced-precision backward
            # ("slow_conv2d: grad_weight must be contiguous", also for a plain Keras
            # Conv2D model); on a CUDA device it trains like the other backends.
            history = model.fit(x, y, batch_size=4, epochs=1, verbose=0).history
            assert np.isfinite(history["loss"][-1])
        assert model.denoiser.compute_dtype == "bfloat16"
        lam = model.schedule.schedule_map(ops.convert_to_tensor(x[:2]))
        out = model.schedule.terms(np.array([0.3, 0.6], "float32"), lam)
        assert all(ops.dtype(v) == "float32" for v in out.values())
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("option", ["residual", "zero_mean"])
def test_residual_and_zero_mean_options(option):
    x, y = conditional_task(n=8)
    model = tiny_model(seed=5, target_scale=0.5, **{option: True})
    model.build(x.shape)
    xt = ops.convert_to_tensor(x)
    target = model.diffusion_target(xt, ops.convert_to_tensor(y))
    back = ops.convert_to_numpy(model.target_from_diffusion(xt, target))
    np.testing.assert_allclose(back, y, atol=1e-5)
    if option == "residual":
        np.testing.assert_allclose(
            ops.convert_to_numpy(target), (y - x[..., :1]) / 0.5, atol=1e-5
        )
    _compile_few_steps(model)
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][-1])
    if option == "zero_mean":
        assert "mean_loss" in history


def test_unet_mean_network_sees_the_whole_image():
    """A pixel in one corner moves μ in the opposite corner (the ConvNet's cannot)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 16, 16, 2)).astype("float32")
    far = x.copy()
    far[0, 0, 0] += 5.0
    for net, reaches in ((UNetRegressor(1, widths=(8, 16, 32)), True),
                         (ConvNet(1, filters=8, depth=4), False)):
        net.build(x.shape)
        net.set_weights([w + 0.1 * rng.normal(size=w.shape) for w in net.get_weights()])
        change = np.abs(ops.convert_to_numpy(net(far)) - ops.convert_to_numpy(net(x)))
        assert (change[0, -1, -1, 0] > 1e-6) == reaches
        assert change[0, 0, 0, 0] > 1e-6


def test_spatial_attention_matches_a_numpy_computation():
    from keras_cvdm.layers import SpatialAttention

    rng = np.random.default_rng(0)
    h = rng.normal(size=(2, 3, 4, 8)).astype("float32")
    layer = SpatialAttention(groups=4)
    layer.build(h.shape)
    weights = {}
    for v in (layer.qkv_kernel, layer.qkv_bias, layer.output_kernel, layer.output_bias):
        weights[v.name] = rng.normal(scale=0.3, size=v.shape).astype("float32")
        v.assign(weights[v.name])
    got = ops.convert_to_numpy(layer(h))
    # GroupNormalization (4 groups of 2 channels, ε = 1e-3, unit scale, zero offset).
    grouped = h.reshape(2, 12, 4, 2).astype("float64")
    mean = grouped.mean(axis=(1, 3), keepdims=True)
    var = grouped.var(axis=(1, 3), keepdims=True)
    normed = ((grouped - mean) / np.sqrt(var + 1e-3)).reshape(2, 12, 8)
    q, k, v = np.split(normed @ weights["qkv_kernel"] + weights["qkv_bias"], 3, axis=-1)
    logits = q @ k.transpose(0, 2, 1) / np.sqrt(8)
    attention = np.exp(logits - logits.max(-1, keepdims=True))
    attention /= attention.sum(-1, keepdims=True)
    out = attention @ v @ weights["output_kernel"] + weights["output_bias"]
    np.testing.assert_allclose(got, h + out.reshape(h.shape), rtol=1e-4, atol=1e-4)


def test_every_block_of_an_attention_level_has_its_own_attention():
    from keras_cvdm.layers import SpatialAttention, UNetDenoiser

    net = UNetDenoiser(1, widths=(8, 16), blocks_per_level=2, attention_levels=(1,), groups=4)
    layers = [layer for layer in net._flatten_layers() if isinstance(layer, SpatialAttention)]
    assert len({id(layer) for layer in layers}) == 2 + 3  # after each block down and up
    with pytest.raises(ValueError, match="attention_levels"):
        UNetDenoiser(1, widths=(8, 16), attention_levels=(2,))


def test_zero_mean_with_unet_mean_network_round_trip(tmp_path):
    x, y = conditional_task(n=8)
    model = tiny_model(seed=3, zero_mean=True, target_scale=0.25,
                       mean_network=UNetRegressor(1, widths=(8, 16)))
    assert model.downsampling_factor == 2
    _compile_few_steps(model)
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["mean_loss"]))
    path = str(tmp_path / "zero_mean.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded.mean_network, UNetRegressor)
    np.testing.assert_allclose(
        ops.convert_to_numpy(loaded.mean_network(x)),
        ops.convert_to_numpy(model.mean_network(x)), atol=1e-6,
    )
    a = model.predict_samples(x[:2], num_steps=5, sampler="ddim", seed=1, verbose=0)
    b = loaded.predict_samples(x[:2], num_steps=5, sampler="ddim", seed=1, verbose=0)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_mean_network_needs_zero_mean():
    with pytest.raises(ValueError, match="zero_mean=True"):
        tiny_model(mean_network=UNetRegressor(1, widths=(8, 16)))


def test_save_and_load_round_trip(tmp_path):
    x, y = conditional_task(n=4)
    model = tiny_model(seed=6, alpha=2e-3, snr_order=2)
    model.build(x.shape)
    rng = np.random.default_rng(0)
    model.set_weights([w + 0.05 * rng.normal(size=w.shape) for w in model.get_weights()])
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, CVDM)
    as_json = lambda config: json.loads(json.dumps(config))  # tuples and lists alike
    assert as_json(loaded.get_config()) == as_json(model.get_config())
    t = np.array([0.2, 0.4, 0.6, 0.8], "float32")
    eps = rng.normal(size=y.shape).astype("float32")
    a_total, a_terms = model.compute_loss_terms(x, y, t=t, eps=eps)
    b_total, b_terms = loaded.compute_loss_terms(x, y, t=t, eps=eps)
    assert float(ops.convert_to_numpy(a_total)) == float(ops.convert_to_numpy(b_total))
    np.testing.assert_array_equal(model.schedule_map(x), loaded.schedule_map(x))
    eps_a = ops.convert_to_numpy(model([eps, x, t]))
    eps_b = ops.convert_to_numpy(loaded([eps, x, t]))
    np.testing.assert_array_equal(eps_a, eps_b)


def test_fixed_schedule_model_round_trip(tmp_path):
    model = tiny_model(LinearSchedule(0.2, 12.0), seed=7)
    model.build((None, 16, 16, 2))
    path = str(tmp_path / "linear.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.schedule.get_config() == model.schedule.get_config()


def test_custom_denoiser_is_used():
    @keras.saving.register_keras_serializable(package="keras_cvdm_tests")
    class Zero(keras.layers.Layer):
        def call(self, inputs, training=None):
            return ops.zeros_like(inputs[0])

    model = CVDM(target_channels=1, schedule="cosine", denoiser=Zero())
    x, y = conditional_task(n=2)
    eps = np.ones_like(y)
    _, terms = model.compute_loss_terms(x, y, t=np.array([0.5, 0.5], "float32"), eps=eps)
    # ε̂ = 0, ε = 1 everywhere: the noise term is exactly 1.
    assert float(ops.convert_to_numpy(terms["noise_loss"])) == pytest.approx(1.0)


# ------------------------------------------------------------------ bad input


@pytest.fixture(scope="module")
def built_model():
    model = compile_fast(tiny_model(seed=8))
    model.build((None, 16, 16, 2))
    return model


def test_error_spatial_sizes_differ(built_model):
    x, y = conditional_task(n=4)
    with pytest.raises(ValueError, match="share height and width"):
        built_model.fit(x, y[:, :8, :8], epochs=1, verbose=0)


def test_error_wrong_rank(built_model):
    x, y = conditional_task(n=4)
    with pytest.raises(ValueError, match=r"\(N, H, W, C\).*rank 3"):
        built_model.fit(x, y[..., 0], epochs=1, verbose=0)


def test_error_non_finite(built_model):
    x, y = conditional_task(n=4)
    x[0, 3, 3, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        built_model.fit(x, y, epochs=1, verbose=0)
    x[0, 3, 3, 0] = 0.0
    y[1, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="y contains 1 non-finite"):
        built_model.fit(x, y, epochs=1, verbose=0)


def test_error_size_not_divisible(built_model):
    x, y = conditional_task(n=4, size=15)
    with pytest.raises(ValueError, match="not a multiple of 2"):
        built_model.fit(x, y, epochs=1, verbose=0)


def test_error_channel_mismatch(built_model):
    x, y = conditional_task(n=4)
    x3 = np.concatenate([x, x[..., :1]], axis=-1)
    with pytest.raises(ValueError, match="3 channels but the model was built for 2"):
        built_model.fit(x3, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="target_channels=1"):
        built_model.fit(x, np.concatenate([y, y], -1), epochs=1, verbose=0)


def test_error_missing_targets(built_model):
    x, _ = conditional_task(n=4)
    with pytest.raises(ValueError, match=r"\(x, y\) pairs"):
        built_model.fit(x, epochs=1, verbose=0)


def test_error_sample_weight_and_mismatched_parts(built_model):
    x, y = conditional_task(n=4)
    with pytest.raises(ValueError, match="sample_weight"):
        built_model.fit(x, y, sample_weight=np.ones(4), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="target_channels=2"):
        CVDM(target_channels=1, denoiser=tiny_model(target_channels=2).denoiser)


def test_gamma_embedding_keeps_float32_precision_under_mixed_policy():
    from keras_cvdm.layers import GammaEmbedding

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = GammaEmbedding(8)
        gammas = np.array([0.999, 0.9999, 0.99999], "float32").reshape(3, 1, 1, 1)
        gamma_map = ops.convert_to_tensor(np.tile(gammas, (1, 4, 4, 1)), "float32")
        out = ops.convert_to_numpy(ops.cast(layer(gamma_map), "float32"))
        # bfloat16 rounds all three γ to 1.0; the embedding must still tell them apart.
        assert not np.allclose(out[0], out[1]) and not np.allclose(out[1], out[2])
    finally:
        keras.mixed_precision.set_global_policy("float32")
