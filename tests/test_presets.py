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
        self.thread = threading.Thread(
            target=functools.partial(self.httpd.serve_forever, poll_interval=0.02), daemon=True
        )

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


# ------------------------------------------------------------- hostile or odd input


class _PathOfBytes:
    def __fspath__(self):
        return b"qpi"


@pytest.mark.parametrize("bad", [None, 3, b"qpi", ["qpi"], _PathOfBytes()])
def test_a_wrong_type_is_a_type_error_naming_the_accepted_forms(bad):
    for load in (keras_cvdm.from_preset, presets.describe_preset):
        with pytest.raises(TypeError, match="takes a built-in preset name") as info:
            load(bad)
        assert "qpi" in str(info.value) and "https://" in str(info.value)


def test_damaged_json_is_refused_with_a_value_error(preset_dir, tmp_path):
    folder = tmp_path / "damaged"
    shutil.copytree(preset_dir, folder)
    meta_path, config_path = folder / presets.METADATA_FILE, folder / presets.CONFIG_FILE
    meta, config = json.loads(meta_path.read_text()), config_path.read_text()
    cases = [
        (meta_path, "[1, 2]", "must hold a JSON object"),
        (meta_path, json.dumps({**meta, "forward_model": [0.521]}), "'forward_model' entry"),
        (meta_path, json.dumps({**meta, "sampling": "ddim"}), "'sampling' entry"),
        (meta_path, json.dumps({**meta, "task": 3}), "'task' entry"),
        (meta_path, b"\xff\xfe{}", "not valid JSON"),
        (config_path, json.dumps({**json.loads(config), "config": []}), "'config' entry"),
    ]
    for path, text, message in cases:
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        for load in (keras_cvdm.from_preset, presets.describe_preset):
            if load is presets.describe_preset and path == config_path:
                continue  # describe_preset reads the metadata only
            with pytest.raises(ValueError, match=message):
                load(str(folder))
        meta_path.write_text(json.dumps(meta))
        config_path.write_text(config)
    assert keras_cvdm.from_preset(str(folder)).metadata == meta


def _cache_files(cache):
    """Every file and folder under the cache's preset folder, relative to it."""
    root = cache / presets.CACHE_SUBDIR
    return sorted(os.path.relpath(os.path.join(d, n), root)
                  for d, dirs, files in os.walk(root) for n in dirs + files)


def _stored_zip(path, folder, corrupt=None):
    """A zip of `folder` under tiny/, members stored; `corrupt` names one whose data is
    flipped (its CRC then fails while the others extract)."""
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name in presets.PRESET_FILES:
            zf.write(os.path.join(folder, name), arcname=f"tiny/{name}")
    if corrupt is not None:
        data = bytearray(open(path, "rb").read())
        payload = open(os.path.join(folder, corrupt), "rb").read()
        at = data.index(payload[:256]) + len(payload) // 2
        data[at] ^= 0xFF
        open(path, "wb").write(bytes(data))
    return str(path)


@pytest.mark.parametrize("kind", ["no-config", "truncated", "corrupt-member"])
def test_a_failed_extraction_leaves_nothing_and_fails_again_cleanly(
    preset_dir, tmp_path, served, kind
):
    if kind == "no-config":
        name = "p.tar.gz"
        with tarfile.open(served / name, "w:gz") as tf:
            for f in (presets.METADATA_FILE, presets.WEIGHTS_FILE):
                tf.add(os.path.join(preset_dir, f), arcname=f"tiny/{f}")
        message = "holds no preset folder"
    elif kind == "truncated":
        name = "p.tar.gz"
        _tar(served / name, preset_dir)
        data = (served / name).read_bytes()
        (served / name).write_bytes(data[: len(data) // 2])
        message = "not a readable"
    else:
        name = "p.zip"
        _stored_zip(served / name, preset_dir, corrupt=presets.WEIGHTS_FILE)
        message = "could not be extracted"
    sha, cache = _sha(served / name), tmp_path / "cache"
    with _Server(served) as server:
        for _ in range(2):
            with pytest.raises(ValueError, match=message):
                keras_cvdm.from_preset(server.url(name), sha256=sha, cache_dir=str(cache))
            # The verified archive stays (it is what the checksum names); nothing else.
            assert _cache_files(cache) == [sha[:16] + name[1:]]
        assert server.counter["gets"] == 1
        # Fixed on the server (a new archive, its new checksum): it loads.
        fixed = _tar(served / "fixed.tar.gz", preset_dir)
        model = keras_cvdm.from_preset(server.url("fixed.tar.gz"), sha256=_sha(fixed),
                                       cache_dir=str(cache))
    assert model.metadata["task"] == "qpi"


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_extracted_size_is_limited_before_anything_is_written(
    preset_dir, tmp_path, served, monkeypatch, fmt
):
    import zipfile

    zeros = b"\0" * (2 << 20)  # 2 MiB that compress to a few kB
    name = f"p.{fmt}"
    if fmt == "zip":
        with zipfile.ZipFile(served / name, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in presets.PRESET_FILES:
                zf.write(os.path.join(preset_dir, f), arcname=f"tiny/{f}")
            zf.writestr("tiny/zeros.bin", zeros)
    else:
        _tar(served / name, preset_dir, [(tarfile.TarInfo("tiny/zeros.bin"), zeros)])
    sha, cache = _sha(served / name), tmp_path / "cache"
    assert os.path.getsize(served / name) * 10 < len(zeros)
    with _Server(served) as server:
        url = server.url(name)
        with pytest.raises(ValueError, match=r"more than 1000000 bytes.*max_extracted_bytes="):
            keras_cvdm.from_preset(url, sha256=sha, cache_dir=str(cache),
                                   max_extracted_bytes=1_000_000)
        assert _cache_files(cache) == [sha[:16] + name[1:]]
        # The default limit: 10 times the archive's size, at least MIN_EXTRACTED_LIMIT.
        monkeypatch.setattr(presets.remote, "MIN_EXTRACTED_LIMIT", 1 << 20)
        with pytest.raises(ValueError, match="max_extracted_bytes"):
            keras_cvdm.from_preset(url, sha256=sha, cache_dir=str(cache))
        assert _cache_files(cache) == [sha[:16] + name[1:]]
        model = keras_cvdm.from_preset(url, sha256=sha, cache_dir=str(cache),
                                       max_extracted_bytes=4 << 20)
    assert model.metadata["task"] == "qpi"
    for bad in (0, -1, 1.5, True, "1MB"):
        with pytest.raises(ValueError, match="max_extracted_bytes must be a positive int"):
            keras_cvdm.from_preset(url, sha256=sha, cache_dir=str(cache),
                                   max_extracted_bytes=bad)


def test_permission_bits_are_normalised(preset_dir, tmp_path, served):
    def hostile_modes(info):
        info.mode = 0o777 if info.isdir() else 0o6777  # setuid, setgid, world-writable
        return info

    archive = served / "p.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(preset_dir, arcname="tiny", filter=hostile_modes)
        sub = tarfile.TarInfo("tiny/extra")
        sub.type, sub.mode = tarfile.DIRTYPE, 0o1777  # sticky
        tf.addfile(sub)
    cache = tmp_path / "cache"
    with _Server(served) as server:
        keras_cvdm.from_preset(server.url("p.tar.gz"), sha256=_sha(archive),
                               cache_dir=str(cache))
    extracted = cache / presets.CACHE_SUBDIR / f"{_sha(archive)[:16]}_extracted"
    modes = {}
    for folder, dirs, files in os.walk(extracted):
        for n in dirs + files:
            path = os.path.join(folder, n)
            modes[os.path.relpath(path, extracted)] = os.stat(path).st_mode & 0o7777
    assert modes["tiny/" + presets.WEIGHTS_FILE] == 0o644
    assert {m for p, m in modes.items() if os.path.isfile(extracted / p)} == {0o644}
    assert {m for p, m in modes.items() if os.path.isdir(extracted / p)} == {0o755}
    assert modes["tiny/extra"] == 0o755


def test_a_silent_server_times_out_with_a_clear_error(tmp_path):
    import socket
    import time

    # Accepts connections (the kernel's backlog) and never answers; closed after 20 s
    # so that a download without a timeout fails rather than hangs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    closer = threading.Timer(20, listener.close)
    closer.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/p.tar.gz"
    try:
        start = time.monotonic()
        with pytest.raises(ValueError, match=r"did not answer within 0\.5 s.*timeout="):
            keras_cvdm.from_preset(url, sha256="0" * 64, cache_dir=str(tmp_path / "c"),
                                   timeout=0.5)
        assert time.monotonic() - start < 5
    finally:
        closer.cancel()
        listener.close()
    assert _cache_files(tmp_path / "c") == []
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        keras_cvdm.from_preset(url, sha256="0" * 64, cache_dir=str(tmp_path / "c"), timeout=0)


def test_a_damaged_cached_copy_is_extracted_or_downloaded_again(preset_dir, tmp_path, served):
    archive = _tar(served / "tiny.tar.gz", preset_dir)
    sha, cache = _sha(archive), tmp_path / "cache"
    extracted = cache / presets.CACHE_SUBDIR / f"{sha[:16]}_extracted" / "tiny"
    reference = keras_cvdm.from_preset(preset_dir).get_weights()

    def flip(path):
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))

    with _Server(served) as server:
        url = server.url("tiny.tar.gz")
        keras_cvdm.from_preset(url, sha256=sha, cache_dir=str(cache))
        # The extracted weights damaged: extracted again from the cached archive.
        flip(extracted / presets.WEIGHTS_FILE)
        with pytest.warns(UserWarning, match="damaged"):
            model = keras_cvdm.from_preset(url, sha256=sha, cache_dir=str(cache))
        assert server.counter["gets"] == 1
        # A file gone and the cached archive damaged too: downloaded again.
        os.remove(extracted / presets.METADATA_FILE)
        flip(cache / presets.CACHE_SUBDIR / f"{sha[:16]}.tar.gz")
        with pytest.warns(UserWarning, match="lacks metadata.json"):
            again = keras_cvdm.from_preset(url, sha256=sha, cache_dir=str(cache))
        assert server.counter["gets"] == 2
    for a, b, c in zip(model.get_weights(), again.get_weights(), reference):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, c)
    assert _cache_files(cache) == sorted([
        f"{sha[:16]}.tar.gz", f"{sha[:16]}_extracted", f"{sha[:16]}_extracted/.extracted",
        f"{sha[:16]}_extracted/tiny",
        *(f"{sha[:16]}_extracted/tiny/{f}" for f in presets.PRESET_FILES),
    ])
