"""Presets: save/load round trip, archives over HTTP with checksums, refusals."""

import functools
import hashlib
import http.server
import io
import json
import os
import shutil
import tarfile
import threading

import h5py
import keras
import numpy as np
import pytest

import keras_cvdm
from keras_cvdm import presets
from tests.conftest import tiny_model


@pytest.fixture(scope="module")
def preset_dir(tmp_path_factory):
    """A tiny QPI-like preset folder written with save_preset."""
    folder = tmp_path_factory.mktemp("presets") / "tiny"
    model = tiny_model()
    model.build((None, 16, 16, 2))
    # Trained a step, so the optimizer has state that must stay out of the preset.
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.train_on_batch(_x(), np.zeros((2, 16, 16, 1), "float32"))
    metadata = {
        "task": "qpi",
        "normalization": keras_cvdm.data.QPINormalization().to_dict(),
        "sampling": {"sampler": "ddim", "num_steps": 4},
    }
    keras_cvdm.save_preset(model, str(folder), metadata)
    return str(folder)


def _x(n=2, size=16, seed=0):
    return np.random.default_rng(seed).normal(size=(n, size, size, 2)).astype("float32")


def test_folder_round_trip_gives_identical_samples(preset_dir):
    first = keras_cvdm.from_preset(preset_dir)
    second = keras_cvdm.from_preset(preset_dir)
    for a, b in zip(first.weights, second.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    kwargs = dict(num_samples=2, num_steps=4, sampler="ddim", seed=3, verbose=0)
    np.testing.assert_array_equal(
        first.predict_samples(_x(), **kwargs), second.predict_samples(_x(), **kwargs)
    )
    with h5py.File(os.path.join(preset_dir, presets.WEIGHTS_FILE)) as f:
        assert "optimizer" not in f, "the optimizer state must not ship in a preset"
    meta = first.metadata
    assert meta["task"] == "qpi"
    assert meta["keras_cvdm_version"] == keras_cvdm.__version__
    assert meta["weights_sha256"] == presets.sha256_of(
        os.path.join(preset_dir, presets.WEIGHTS_FILE)
    )


def test_overrides_replace_config_entries(preset_dir):
    model = keras_cvdm.from_preset(preset_dir, num_timesteps=50)
    assert model.num_timesteps == 50


def test_save_preset_refuses_to_overwrite(preset_dir):
    model = keras_cvdm.from_preset(preset_dir)
    before = presets.sha256_of(os.path.join(preset_dir, presets.WEIGHTS_FILE))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        keras_cvdm.save_preset(model, preset_dir)
    assert presets.sha256_of(os.path.join(preset_dir, presets.WEIGHTS_FILE)) == before


def test_unknown_name_lists_the_known_presets():
    with pytest.raises(ValueError, match="Built-in presets") as info:
        keras_cvdm.from_preset("no-such-preset")
    for name in keras_cvdm.list_presets():
        assert name in str(info.value)


def test_missing_file_is_named(preset_dir, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(preset_dir, folder)
    os.remove(folder / presets.WEIGHTS_FILE)
    with pytest.raises(FileNotFoundError, match=r"lacks model\.weights\.h5"):
        keras_cvdm.from_preset(str(folder))


def test_corrupt_weights_are_refused(preset_dir, tmp_path):
    folder = tmp_path / "corrupt"
    shutil.copytree(preset_dir, folder)
    weights = folder / presets.WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match the sha256"):
        keras_cvdm.from_preset(str(folder))
    # Without a recorded checksum, an unreadable file still gives a clear error.
    meta = json.loads((folder / presets.METADATA_FILE).read_text())
    del meta["weights_sha256"]
    (folder / presets.METADATA_FILE).write_text(json.dumps(meta))
    weights.write_bytes(b"not an hdf5 file")
    with pytest.raises(ValueError, match="Could not load the weights"):
        keras_cvdm.from_preset(str(folder))


# ---------------------------------------------------------------------- archives


class _Server:
    """A static HTTP server on 127.0.0.1 that counts GET requests."""

    def __init__(self, root):
        counter = {"gets": 0}

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                counter["gets"] += 1
                return super().do_GET()

            def log_message(self, *args):
                pass

        handler = functools.partial(Handler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.counter = counter
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def url(self, name):
        return f"http://127.0.0.1:{self.httpd.server_port}/{name}"

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path):
    """The folder the local HTTP server serves archives from."""
    folder = tmp_path / "served"
    folder.mkdir()
    return folder


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _tar(path, folder, extra=()):
    with tarfile.open(path, "w:gz") as tf:
        tf.add(folder, arcname="tiny")
        for member, payload in extra:
            if payload is None:
                tf.addfile(member)
            else:
                member.size = len(payload)
                tf.addfile(member, io.BytesIO(payload))
    return str(path)


def _tree(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, files in os.walk(root) for f in files)


def test_archive_url_downloads_once_and_loads(preset_dir, tmp_path, served):
    archive = _tar(served / "tiny.tar.gz", preset_dir)
    cache = tmp_path / "cache"
    with _Server(served) as server:
        model = keras_cvdm.from_preset(server.url("tiny.tar.gz"), sha256=_sha(archive),
                                       cache_dir=str(cache))
        again = keras_cvdm.from_preset(server.url("tiny.tar.gz"), sha256=_sha(archive),
                                       cache_dir=str(cache))
        assert server.counter["gets"] == 1
    reference = keras_cvdm.from_preset(preset_dir)
    for a, b, c in zip(model.weights, again.weights, reference.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
        np.testing.assert_array_equal(np.asarray(b), np.asarray(c))
    with pytest.raises(ValueError, match="needs its sha256"):
        keras_cvdm.from_preset("https://127.0.0.1/tiny.tar.gz", cache_dir=str(cache))


def test_wrong_checksum_is_refused_and_nothing_extracted(preset_dir, tmp_path, served):
    _tar(served / "tiny.tar.gz", preset_dir)
    cache = tmp_path / "cache"
    with _Server(served) as server, pytest.raises(ValueError, match="sha256"):
        keras_cvdm.from_preset(server.url("tiny.tar.gz"), sha256="0" * 64, cache_dir=str(cache))
    assert not any(name.endswith(presets.CONFIG_FILE) for name in _tree(cache))
    assert _tree(tmp_path) == sorted(["served/tiny.tar.gz"])


@pytest.mark.parametrize("kind", ["traversal", "symlink"])
def test_unsafe_archive_is_refused_and_nothing_written(preset_dir, tmp_path, kind, served):
    if kind == "traversal":
        extra = [(tarfile.TarInfo("tiny/../../../evil.txt"), b"pwned")]
    else:
        link = tarfile.TarInfo("tiny/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        extra = [(link, None)]
    archive = _tar(served / "tiny.tar.gz", preset_dir, extra)
    cache = tmp_path / "sub" / "cache"
    with _Server(served) as server, pytest.raises(ValueError, match="Refusing to extract"):
        keras_cvdm.from_preset(server.url("tiny.tar.gz"), sha256=_sha(archive),
                               cache_dir=str(cache))
    # Only the verified archive itself is in the cache; nothing was extracted anywhere.
    files = _tree(tmp_path)
    assert not any("evil" in f or f.endswith(presets.CONFIG_FILE) for f in files)
    assert [f for f in files if not f.startswith("served/")] == [
        f"sub/cache/{presets.CACHE_SUBDIR}/{_sha(archive)[:16]}.tar.gz"
    ]


def _zip(path, folder):
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        for name in sorted(os.listdir(folder)):
            zf.write(os.path.join(folder, name), arcname=f"tiny/{name}")
    return str(path)


def test_zip_archive_goes_to_keras_home_and_is_extracted_once(
    preset_dir, tmp_path, monkeypatch, served
):
    archive = _zip(served / "tiny.zip", preset_dir)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    with _Server(served) as server:
        model = keras_cvdm.from_preset(server.url("tiny.zip"), sha256=_sha(archive))
        extracted = tmp_path / "home" / presets.CACHE_SUBDIR / f"{_sha(archive)[:16]}_extracted"
        assert (extracted / "tiny" / presets.CONFIG_FILE).is_file()
        # A later call reuses the extracted folder: an edit there survives it.
        meta_path = extracted / "tiny" / presets.METADATA_FILE
        meta = json.loads(meta_path.read_text())
        meta["description"] = "edited in the cache"
        meta_path.write_text(json.dumps(meta))
        again = keras_cvdm.from_preset(server.url("tiny.zip"), sha256=_sha(archive))
        assert server.counter["gets"] == 1
    assert again.metadata["description"] == "edited in the cache"
    assert model.metadata["task"] == again.metadata["task"] == "qpi"


def test_cache_dir_with_a_tilde_is_the_home_folder(preset_dir, tmp_path, monkeypatch, served):
    archive = _tar(served / "tiny.tar.gz", preset_dir)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    with _Server(served) as server:
        keras_cvdm.from_preset(server.url("tiny.tar.gz"), sha256=_sha(archive),
                               cache_dir="~/models")
    assert (tmp_path / "user" / "models" / presets.CACHE_SUBDIR).is_dir()
    assert not os.path.exists("~")


def test_save_preset_checks_metadata_before_writing(preset_dir, tmp_path):
    model = keras_cvdm.from_preset(preset_dir)
    folder = tmp_path / "bad"
    with pytest.raises(ValueError, match="to_dict"):
        keras_cvdm.save_preset(model, str(folder), {"normalization": object()})
    assert not folder.exists()
    # NaN scores (e.g. a Spearman ρ of a constant map) are kept, and the preset loads.
    keras_cvdm.save_preset(model, str(folder), {"task": "qpi", "rho": float("nan")})
    assert np.isnan(keras_cvdm.from_preset(str(folder)).metadata["rho"])
