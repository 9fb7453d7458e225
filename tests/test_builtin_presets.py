"""The presets shipped in the package: offline loading, metadata, backend agreement."""

import os
import socket

import numpy as np
import pytest

import keras_cvdm
from keras_cvdm import presets


def test_builtin_presets_are_listed():
    assert {"qpi", "sr-microscopy"} <= set(keras_cvdm.list_presets())


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("name", ["qpi", "sr-microscopy"])
def test_builtin_preset_loads_offline_with_metadata(name, no_network):
    model = keras_cvdm.from_preset(name)
    meta = model.metadata
    assert meta["task"] in ("qpi", "sr")
    for key in ("forward_model", "normalization", "training", "validation", "weights_sha256"):
        assert key in meta, key
    size = os.path.getsize(os.path.join(presets.BUILTIN_DIR, name, presets.WEIGHTS_FILE))
    assert size <= 15 * 2**20


def test_builtin_presets_agree_across_backends():
    """DDIM from the same seed: every backend reproduces the stored outputs."""
    from tests.data import make_preset_reference as ref

    stored = np.load(ref.PATH)
    for key, value in ref.compute().items():
        # Radians for qpi_*, normalised [-1, 1] units for sr_*.
        np.testing.assert_allclose(value, stored[key], atol=2e-3, err_msg=key)


@pytest.mark.parametrize("name", ["qpi", "sr-microscopy"])
def test_preset_saved_as_keras_file_reconstructs_identically(name, tmp_path):
    """The model carries its task: from_preset → model.save → load_model → reconstruct."""
    import keras

    preset = keras_cvdm.from_preset(name)
    path = str(tmp_path / "mine.keras")
    preset.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.metadata == preset.metadata
    rng = np.random.default_rng(7)
    kwargs = {"num_samples": 2, "num_steps": 3, "seed": 11}
    if name == "qpi":
        i_minus, i_plus = (100.0 * (1.0 + 0.1 * rng.random((2, 24, 24))) for _ in range(2))
        first = keras_cvdm.qpi.reconstruct(preset, i_minus, i_plus, **kwargs)
        second = keras_cvdm.qpi.reconstruct(loaded, i_minus, i_plus, **kwargs)
    else:
        image = 50.0 + 200.0 * rng.random((2, 12, 12))
        first = keras_cvdm.sr.reconstruct(preset, image, **kwargs)
        second = keras_cvdm.sr.reconstruct(loaded, image, **kwargs)
    for a, b in zip(first, second):
        assert np.std(a) > 0  # a real reconstruction, not a constant
        np.testing.assert_array_equal(a, b)
    # And back into a preset folder: the metadata, sampler defaults included, survive.
    folder = str(tmp_path / "again")
    keras_cvdm.save_preset(loaded, folder)
    reloaded = keras_cvdm.from_preset(folder)
    for key in ("task", "normalization", "forward_model", "sampling", "validation"):
        assert reloaded.metadata.get(key) == preset.metadata.get(key), key


# ------------------------------------------------------- building without the initialisers


@pytest.fixture(scope="module")
def tiny_preset(tmp_path_factory):
    """A tiny preset folder whose weights are not what any initialiser would draw."""
    from tests.conftest import tiny_model

    model = tiny_model()
    model.build((None, 16, 16, 2))
    rng = np.random.default_rng(5)
    model.set_weights([w + rng.normal(0.0, 0.1, w.shape).astype(w.dtype)
                       for w in model.get_weights()])
    folder = str(tmp_path_factory.mktemp("placeholders") / "tiny")
    keras_cvdm.save_preset(model, folder, {"task": "qpi"})
    return folder


def _count_initialiser_calls(monkeypatch):
    """Counts the calls of Keras initialisers: all but `Zeros` (the metrics' counters use it,
    and they are not part of a preset) and the loader's own placeholder."""
    import keras

    from keras_cvdm.presets import placeholders

    calls = []
    pending = [keras.initializers.Initializer]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        skipped = (placeholders._Placeholder, keras.initializers.Zeros)
        if cls in skipped or "__call__" not in cls.__dict__:
            continue

        def counted(self, *args, _original=cls.__dict__["__call__"], **kwargs):
            calls.append(type(self).__name__)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__call__", counted)
    return calls


def test_a_preset_is_built_without_its_initialisers_and_loads_the_same(tiny_preset, monkeypatch):
    import json

    import keras

    calls = _count_initialiser_calls(monkeypatch)
    cheap = keras_cvdm.from_preset(tiny_preset)
    assert calls == [], f"initialisers ran during a preset load: {sorted(set(calls))}"
    # The plain way: build with the initialisers, then load the same file.
    with open(os.path.join(tiny_preset, presets.CONFIG_FILE)) as f:
        plain = keras.saving.deserialize_keras_object(json.load(f))
    assert len(calls) > 10  # the counter sees the initialisers of a normal build
    plain.load_weights(os.path.join(tiny_preset, presets.WEIGHTS_FILE))
    assert len(cheap.weights) == len(plain.weights)
    for a, b in zip(cheap.weights, plain.weights):
        assert (a.name, a.shape, a.dtype) == (b.name, b.shape, b.dtype)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    # Same configuration (the initialisers the layers record are untouched) and samples.
    config = cheap.get_config()
    config.pop("metadata")
    assert config == {k: v for k, v in plain.get_config().items() if k != "metadata"}
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 2)).astype("float32")
    kwargs = dict(num_samples=2, num_steps=2, sampler="ddim", seed=4, verbose=0)
    np.testing.assert_array_equal(cheap.predict_samples(x, **kwargs),
                                  plain.predict_samples(x, **kwargs))
    # Outside the load, layers are initialised as usual again.
    layer = keras.layers.Dense(4)
    layer.build((None, 3))
    assert np.abs(layer.get_weights()[0]).min() > 0


def test_a_weights_file_missing_a_weight_is_refused(tiny_preset, tmp_path):
    """What makes the placeholders safe: a file that misses one weight is refused."""
    import json
    import shutil

    import h5py

    folder = tmp_path / "short"
    shutil.copytree(tiny_preset, folder)
    with h5py.File(folder / presets.WEIGHTS_FILE, "r+") as f:
        names = []
        f.visititems(lambda name, item: names.append(name)
                     if isinstance(item, h5py.Dataset) else None)
        del f[names[-1]]
    meta = json.loads((folder / presets.METADATA_FILE).read_text())
    del meta["weights_sha256"]
    (folder / presets.METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="Could not load the weights"):
        keras_cvdm.from_preset(str(folder))
