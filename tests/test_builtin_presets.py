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
