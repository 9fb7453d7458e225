"""Pretrained presets: `from_preset`, `list_presets`, `save_preset`.

A preset is a folder in keras-hub's layout:

- `config.json`: the serialised `CVDM` (registered class name, config, build config);
- `model.weights.h5`: its weights;
- `metadata.json`: the task, the forward model and normalisation the model was trained
  with, the training recipe, validation metrics, and the sha256 of the weights.

Built-in presets ship inside the package (`keras_cvdm/presets/<name>/`), so loading one
never touches the network. A preset can also be a local folder, or an `https://` URL of
a `.tar.gz`/`.zip` archive of such a folder given with its sha256: it is downloaded once
into the Keras cache, verified, and extracted there (members that would land outside the
extraction folder, links and devices are refused before anything is extracted).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import zipfile

import keras

from keras_cvdm.version import __version__

BUILTIN_DIR = os.path.dirname(os.path.abspath(__file__))
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
PRESET_FILES = (CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE)
CACHE_SUBDIR = "keras_cvdm_presets"


def list_presets():
    """Names of the presets shipped with the package (usable offline).

    Examples:
        >>> "qpi" in list_presets()
        True
    """
    if not os.path.isdir(BUILTIN_DIR):
        return []
    return sorted(
        name
        for name in os.listdir(BUILTIN_DIR)
        if os.path.isfile(os.path.join(BUILTIN_DIR, name, CONFIG_FILE))
    )


def sha256_of(path):
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def from_preset(name_or_path, sha256=None, cache_dir=None, **overrides):
    """Load a pretrained `CVDM` from a built-in name, a folder, or an archive URL.

    Args:
        name_or_path: a name from `list_presets()` (e.g. `"qpi"`, `"sr-microscopy"`), a
            local preset folder, or an `https://` URL of a `.tar.gz`/`.zip` preset archive.
        sha256: the archive's hex sha256; required for URLs, ignored otherwise.
        cache_dir: where downloads are cached (default: Keras's cache, `~/.keras`).
        **overrides: entries of the model config to replace (e.g. `num_timesteps=100`).

    Returns:
        A built `CVDM` with the preset's weights; `model.metadata` holds `metadata.json`.

    Examples:
        >>> model = from_preset("qpi")
        >>> model.metadata["task"]
        'qpi'
    """
    name_or_path = os.fspath(name_or_path)
    if name_or_path.startswith(("https://", "http://")):
        folder = _fetch_archive(name_or_path, sha256, cache_dir)
    elif name_or_path in list_presets():
        folder = os.path.join(BUILTIN_DIR, name_or_path)
    elif os.path.isdir(name_or_path):
        folder = name_or_path
    else:
        raise ValueError(
            f"Unknown preset {name_or_path!r}: it is not a built-in preset name nor an "
            f"existing folder. Built-in presets: {', '.join(list_presets()) or 'none'}. "
            "Pass one of these names, the path of a preset folder, or an https:// URL "
            "with its sha256."
        )
    return load_preset_folder(folder, **overrides)


def load_preset_folder(folder, **overrides):
    """Load a `CVDM` from a preset folder (see the module docstring for its layout)."""
    missing = [f for f in PRESET_FILES if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        raise FileNotFoundError(
            f"The preset folder {folder!r} lacks {', '.join(missing)}. A preset folder holds "
            f"{', '.join(PRESET_FILES)}; write one with keras_cvdm.save_preset(model, folder)."
        )
    metadata = _read_json(os.path.join(folder, METADATA_FILE))
    weights = os.path.join(folder, WEIGHTS_FILE)
    expected = metadata.get("weights_sha256")
    if expected is not None and sha256_of(weights) != expected:
        raise ValueError(
            f"{weights} does not match the sha256 recorded in its metadata.json: the file is "
            "corrupt or was replaced. Reinstall keras-cvdm (built-in presets) or download "
            "the preset again."
        )
    config = _read_json(os.path.join(folder, CONFIG_FILE))
    if overrides:
        config = dict(config, config=dict(config.get("config", {}), **overrides))
    # Import here: the model module registers the CVDM class with Keras.
    from keras_cvdm.model import CVDM

    model = keras.saving.deserialize_keras_object(config)
    if not isinstance(model, CVDM):
        raise ValueError(f"{folder}/{CONFIG_FILE} describes a {type(model).__name__}, not a CVDM.")
    if not model.built:
        raise ValueError(
            f"{folder}/{CONFIG_FILE} has no build config; re-save the preset with "
            "keras_cvdm.save_preset from a built model."
        )
    try:
        model.load_weights(weights)
    except Exception as error:  # h5py and Keras raise many kinds for a bad file
        raise ValueError(
            f"Could not load the weights {weights} into the preset's model ({error}). The "
            "file is corrupt, or an override changed the architecture; reinstall or "
            "download the preset again, and override only non-architectural settings."
        ) from error
    model.metadata = metadata
    return model


def save_preset(model, folder, metadata=None, overwrite=False):
    """Write `model` as a preset folder (config, weights, metadata with the weights' sha256).

    Args:
        model: a built `CVDM`.
        folder: the folder to create.
        metadata: a JSON-ready dict (task, forward model, normalisation, training
            recipe, metrics); `weights_sha256`, `keras_cvdm_version` and `keras_version`
            are added.
        overwrite: replace the preset files if the folder already holds some.

    Returns:
        The metadata written.
    """
    if not model.built:
        raise ValueError("Build or train the model before saving it as a preset.")
    existing = [f for f in PRESET_FILES if os.path.exists(os.path.join(folder, f))]
    if existing and not overwrite:
        raise FileExistsError(
            f"{folder} already holds {', '.join(existing)}; pass overwrite=True to replace "
            "them or choose another folder."
        )
    os.makedirs(folder, exist_ok=True)
    config = keras.saving.serialize_keras_object(model)
    config.pop("compile_config", None)  # a preset is for inference: no optimizer
    with open(os.path.join(folder, CONFIG_FILE), "w") as f:
        json.dump(config, f, indent=2)
    weights = os.path.join(folder, WEIGHTS_FILE)
    # A compiled model's weights file also holds the optimizer's state (2–4× the size);
    # a preset ships the model's weights only, from an uncompiled copy.
    bare = keras.saving.deserialize_keras_object(config)
    bare.set_weights(model.get_weights())
    bare.save_weights(weights, overwrite=True)
    metadata = dict(metadata or {})
    metadata.update(
        weights_sha256=sha256_of(weights),
        keras_cvdm_version=__version__,
        keras_version=keras.__version__,
    )
    with open(os.path.join(folder, METADATA_FILE), "w") as f:
        json.dump(metadata, f, indent=2)
    return metadata


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); the preset is damaged.") from error


# ---------------------------------------------------------------------- archives


def _fetch_archive(url, sha256, cache_dir):
    if not sha256 or len(sha256) != 64:
        raise ValueError(
            f"Loading a preset from a URL needs its sha256 (64 hex digits), got {sha256!r}: "
            "call from_preset(url, sha256='…') with the checksum published with the archive."
        )
    sha256 = sha256.lower()
    cache_dir = os.path.expanduser(cache_dir or os.path.join("~", ".keras"))
    root = os.path.join(cache_dir, CACHE_SUBDIR)
    target = os.path.join(root, sha256[:16])
    found = _find_preset_root(target) if os.path.isdir(target) else None
    if found:
        return found
    base = os.path.basename(url.split("?", 1)[0]) or "preset"
    suffix = next((s for s in (".tar.gz", ".tgz", ".tar", ".zip") if base.endswith(s)), None)
    if suffix is None:
        raise ValueError(f"{url} is not a .tar.gz, .tgz, .tar or .zip preset archive.")
    archive = os.path.join(root, f"{sha256[:16]}{suffix}")
    # get_file falls back to /tmp/.keras when the cache folder is missing: create it.
    os.makedirs(root, exist_ok=True)
    try:
        archive = keras.utils.get_file(
            fname=os.path.basename(archive),
            origin=url,
            file_hash=sha256,
            hash_algorithm="sha256",
            cache_dir=cache_dir,
            cache_subdir=CACHE_SUBDIR,
        )
    except Exception as error:
        _remove(archive)
        raise ValueError(
            f"Downloading {url} failed or its sha256 did not match {sha256} ({error}). Check "
            "the URL and the checksum; nothing was extracted."
        ) from error
    if sha256_of(archive) != sha256:
        _remove(archive)
        raise ValueError(
            f"The archive from {url} does not have the sha256 {sha256}; it was deleted and "
            "nothing was extracted. Check the URL and the checksum."
        )
    staging = tempfile.mkdtemp(prefix=".extract-", dir=root)
    try:
        _safe_extract(archive, staging)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    found = _find_preset_root(target)
    if not found:
        raise ValueError(
            f"The archive from {url} holds no preset folder (no {CONFIG_FILE} at its top "
            "level or in a single top-level folder)."
        )
    return found


def _find_preset_root(folder):
    if os.path.isfile(os.path.join(folder, CONFIG_FILE)):
        return folder
    entries = [e for e in os.listdir(folder) if not e.startswith(".")]
    if len(entries) == 1:
        inner = os.path.join(folder, entries[0])
        if os.path.isfile(os.path.join(inner, CONFIG_FILE)):
            return inner
    return None


def _check_member(name, dest):
    path = os.path.realpath(os.path.join(dest, name))
    if os.path.isabs(name) or ".." in name.replace("\\", "/").split("/") or not (
        path == dest or path.startswith(dest + os.sep)
    ):
        raise ValueError(
            f"Refusing to extract the preset archive: member {name!r} would be written "
            "outside the extraction folder. The archive is unsafe; nothing was extracted."
        )


def _safe_extract(archive, dest):
    """Extract after checking every member; regular files and folders only."""
    dest = os.path.realpath(dest)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                _check_member(info.filename, dest)
            zf.extractall(dest)
        return
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        for member in members:
            _check_member(member.name, dest)
            if not (member.isfile() or member.isdir()):
                raise ValueError(
                    f"Refusing to extract the preset archive: member {member.name!r} is a "
                    "link or a special file. Nothing was extracted."
                )
        for member in members:
            path = os.path.join(dest, member.name)
            if member.isdir():
                os.makedirs(path, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with tf.extractfile(member) as src, open(path, "wb") as out:
                shutil.copyfileobj(src, out)


def _remove(path):
    if os.path.exists(path):
        os.remove(path)
