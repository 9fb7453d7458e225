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
