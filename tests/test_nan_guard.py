"""Training never lets a non-finite loss or gradient reach the weights."""

import keras
import numpy as np
import pytest

from keras_cvdm import CVDM
from keras_cvdm.layers import UNetDenoiser

SIZE = 8


@pytest.fixture(scope="module")
def model():
    """One model for the whole file: its train function compiles once per backend."""
    model = CVDM(denoiser=UNetDenoiser(1, widths=(8, 16)), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.build((None, SIZE, SIZE, 2))
    return model


def _batches(n, nan_at=None):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        x = rng.uniform(-1, 1, (2, SIZE, SIZE, 2)).astype("float32")
        y = rng.uniform(-1, 1, (2, SIZE, SIZE, 1)).astype("float32")
        if i == nan_at:
            x[0, 1, 2, 0] = np.nan
        out.append((x, y))
    return out


class _Batches(keras.utils.PyDataset):
    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        return self.batches[i]


def _source(kind, batches):
    if kind == "pydataset":
        return _Batches(batches)
    if kind == "generator":
        def generate():
            while True:
                yield from batches
        return generate()
    if kind == "tf.data":
        import tensorflow as tf

        x = np.concatenate([b[0] for b in batches])
        y = np.concatenate([b[1] for b in batches])
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(2)
    import torch

    x = torch.from_numpy(np.concatenate([b[0] for b in batches]))
    y = torch.from_numpy(np.concatenate([b[1] for b in batches]))
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=2)


def _all_finite(model):
    return all(np.all(np.isfinite(keras.ops.convert_to_numpy(v))) for v in model.weights)


def _state(model):
    values = model.trainable_variables + model.optimizer.variables
    return [keras.ops.convert_to_numpy(v).copy() for v in values]


@pytest.mark.parametrize("kind", ["pydataset", "generator", "tf.data", "torch"])
def test_a_nan_in_a_later_streamed_batch_is_skipped_and_counted(model, kind):
    iterations = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    with pytest.warns(RuntimeWarning, match="1 training update"):
        history = model.fit(_source(kind, _batches(3, nan_at=1)), epochs=1, steps_per_epoch=3,
                            verbose=0)
    assert history.history["skipped_updates"] == [1.0]  # the two finite batches count 0
    assert _all_finite(model)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == iterations + 2
    # The epoch's loss is the mean over the two good batches, not NaN.
    assert np.isfinite(history.history["loss"][0])


def test_a_skipped_update_leaves_weights_and_optimizer_state_bit_identical(model):
    model.fit(_Batches(_batches(1)), epochs=1, verbose=0)  # optimizer built, moments set
    before = _state(model)
    x, y = _batches(1, nan_at=0)[0]
    logs = model.train_on_batch(x, y, return_dict=True)  # past fit's first-batch check
    assert float(logs["skipped_updates"]) == 1.0
    after = _state(model)
    assert len(before) == len(after)
    for old, new in zip(before, after):
        np.testing.assert_array_equal(old, new)
    # A finite batch afterwards does move the weights again.
    model.fit(_Batches(_batches(1)), epochs=1, verbose=0)
    assert any(not np.array_equal(o, n) for o, n in zip(before, _state(model)))


def test_a_huge_learning_rate_never_gives_nan_weights(model):
    batches = _batches(2)
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    saved = _state(model)
    model.optimizer.learning_rate.assign(1e3)
    try:
        with pytest.warns(RuntimeWarning, match="skipped"):
            history = model.fit(x, y, batch_size=2, epochs=3, verbose=0)
        assert sum(history.history["skipped_updates"]) > 0
        assert _all_finite(model)
    finally:  # the shared model goes back to its trainable state
        model.optimizer.learning_rate.assign(1e-3)
        for variable, value in zip(model.trainable_variables + model.optimizer.variables, saved):
            variable.assign(value)


@pytest.mark.parametrize("kind", ["arrays", "pydataset", "tf.data", "torch"])
def test_empty_training_data_is_refused(model, kind):
    if kind == "arrays":
        args = (np.zeros((0, SIZE, SIZE, 2), "float32"), np.zeros((0, SIZE, SIZE, 1), "float32"))
    elif kind == "pydataset":
        args = (_Batches([]),)
    elif kind == "tf.data":
        import tensorflow as tf

        args = (tf.data.Dataset.from_tensor_slices(
            (np.zeros((0, SIZE, SIZE, 2), "float32"), np.zeros((0, SIZE, SIZE, 1), "float32"))
        ).batch(2),)
    else:
        import torch

        args = (torch.utils.data.DataLoader(torch.utils.data.TensorDataset(
            torch.zeros((0, SIZE, SIZE, 2)), torch.zeros((0, SIZE, SIZE, 1)))),)
    with pytest.raises(ValueError, match="empty"):
        model.fit(*args, epochs=1, verbose=0)


def test_targets_outside_the_diffused_range_are_refused(model):
    x = np.zeros((2, SIZE, SIZE, 2), "float32")
    y = np.full((2, SIZE, SIZE, 1), 200.0, "float32")  # raw 8-bit values
    with pytest.raises(ValueError, match=r"\[-1, 1\].*target_scale"):
        model.fit(x, y, epochs=1, verbose=0)


def test_a_non_finite_evaluation_batch_shows_as_a_nan_loss(model):
    # Evaluation updates nothing, so nothing is skipped: its loss mean stays plain.
    logs = model.evaluate(_Batches(_batches(2, nan_at=1)), verbose=0, return_dict=True)
    assert np.isnan(logs["loss"])
    assert logs["skipped_updates"] == 0.0


def test_the_first_batch_of_a_generator_is_checked_and_still_trained_on(model):
    x, y = _batches(1)[0]
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        model.fit((b for b in [(x, 200.0 * y)]), epochs=1, verbose=0)
    iterations = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    model.fit((b for b in [(x, y)]), epochs=1, steps_per_epoch=1, verbose=0)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == iterations + 1


def test_a_loss_scale_optimizer_keeps_lowering_its_scale(model):
    # Its own skip-and-halve must still run: a first scale so large that every scaled
    # gradient overflows is halved until the updates go through.
    original, saved = model.optimizer, _state(model)
    optimizer = keras.optimizers.LossScaleOptimizer(
        keras.optimizers.Adam(1e-3), initial_scale=2.0**126
    )
    model.compile(optimizer=optimizer)
    batch = _batches(1)[0]
    steps = 24

    def repeat():
        while True:
            yield batch

    try:
        with pytest.warns(RuntimeWarning, match="skipped"):
            history = model.fit(repeat(), epochs=1, steps_per_epoch=steps, verbose=0)
        skipped = history.history["skipped_updates"][0]
        assert 0 < skipped < steps
        scale = float(keras.ops.convert_to_numpy(optimizer.dynamic_scale))
        assert scale == 2.0 ** (126 - skipped)
        assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == steps - skipped
        assert _all_finite(model)
    finally:  # the shared model goes back to its own optimizer and weights
        model.compile(optimizer=original)
        for variable, value in zip(model.trainable_variables + original.variables, saved):
            variable.assign(value)
