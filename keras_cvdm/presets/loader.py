"""Loading and writing preset folders: `from_preset`, `save_preset`.

A preset is a folder in keras-hub's layout:

- `config.json`: the serialised `CVDM` (registered class name, config, build config);
- `model.weights.h5`: its weights (no optimizer state);
- `metadata.json`: the task metadata the model carries (`CVDM.metadata`: task, forward
  model, normalisation, sampling defaults, training recipe, validation scores) plus the
  sha256 of the weights and the versions that wrote it.

The metadata lives in `metadata.json` rather than in `config.json`, so the recorded
weights checksum can sit beside it; `from_preset` puts it back on the model, where
`model.save` then keeps it in the `.keras` file's config.
"""

from __future__ import annotations

import hashlib
import json
import os

import keras

from keras_cvdm import validation
from keras_cvdm.presets import registry, remote
from keras_cvdm.version import __version__

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
PRESET_FILES = (CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE)


def sha256_of(path) -> str:
    """Hex sha256 of a file, read in chunks.

    Args:
        path: the file.

    Returns:
        64 lowercase hex digits.

    Examples:
        >>> len(sha256_of(os.path.join(registry.builtin_folder("qpi"), METADATA_FILE)))
        64
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def from_preset(name_or_path, sha256: str | None = None, cache_dir: str | None = None,
                **overrides):
    """Load a pretrained `CVDM` from a built-in name, a folder, or an archive URL.

    Args:
        name_or_path: a name from `list_presets()` (e.g. `"qpi"`, `"sr-microscopy"`), a
            local preset folder, or an `https://` URL of a `.tar.gz`/`.zip` preset archive.
        sha256: the archive's hex sha256; required for URLs, ignored otherwise.
        cache_dir: where downloads are cached (default: Keras's cache, `$KERAS_HOME` or
            `~/.keras`).
        **overrides: entries of the model config to replace (e.g. `num_timesteps=100`).

    Returns:
        A built `CVDM` with the preset's weights; `model.metadata` holds `metadata.json`.

    Examples:
        >>> model = from_preset("qpi")
        >>> model.metadata["task"], model.metadata["forward_model"]["wavelength_um"]
        ('qpi', 0.521)
    """
    if not isinstance(name_or_path, str | os.PathLike):
        raise ValueError(
            f"from_preset needs a preset name, a folder or a URL (a string), got "
            f"{name_or_path!r}. Built-in presets: {', '.join(registry.list_presets())}."
        )
    name_or_path = os.fspath(name_or_path)
    if name_or_path.startswith(("https://", "http://")):
        folder = _preset_root(remote.fetch_preset_archive(name_or_path, sha256, cache_dir),
                              name_or_path)
    elif name_or_path in registry.BUILTIN_PRESETS:
        folder = registry.builtin_folder(name_or_path)
    elif os.path.isdir(name_or_path):
        folder = name_or_path
    else:
        raise ValueError(
            f"Unknown preset {name_or_path!r}: it is not a built-in preset name nor an "
            f"existing folder. Built-in presets: {', '.join(registry.list_presets())}. "
            "Pass one of these names, the path of a preset folder, or an https:// URL "
            "with its sha256."
        )
    return load_preset_folder(folder, **overrides)


def load_preset_folder(folder, **overrides):
    """Load a `CVDM` from a preset folder (see the module docstring for its layout).

    Args:
        folder: the preset folder.
        **overrides: entries of the model config to replace.

    Returns:
        The built model, its weights loaded and `model.metadata` set from `metadata.json`.

    Examples:
        >>> model = load_preset_folder(registry.builtin_folder("sr-microscopy"))
        >>> model.metadata["forward_model"]["factor"]
        2
    """
    missing = [f for f in PRESET_FILES if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        raise FileNotFoundError(
            f"The preset folder {folder!r} lacks {', '.join(missing)}. A preset folder holds "
            f"{', '.join(PRESET_FILES)}; write one with keras_cvdm.save_preset(model, folder)."
        )
    metadata = _read_json_object(os.path.join(folder, METADATA_FILE))
    weights = os.path.join(folder, WEIGHTS_FILE)
    expected = metadata.get("weights_sha256")
    if expected is not None and sha256_of(weights) != expected:
        raise ValueError(
            f"{weights} does not match the sha256 recorded in its metadata.json: the file is "
            "corrupt or was replaced. Reinstall keras-cvdm (built-in presets) or download "
            "the preset again."
        )
    config = _read_json_object(os.path.join(folder, CONFIG_FILE))
    inner = {**config.get("config", {}), **overrides, "metadata": metadata}
    config = {**config, "config": inner}
    # Imported here: the model module registers the CVDM class with Keras.
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
    return model


def save_preset(model, folder, metadata=None, overwrite: bool = False) -> dict:
    """Write `model` as a preset folder (config, weights, metadata with the weights' sha256).

    Args:
        model: a built `CVDM`.
        folder: the folder to create.
        metadata: a JSON-ready dict (task, forward model, normalisation, sampling,
            training recipe, metrics); default: `model.metadata`. `weights_sha256`,
            `keras_cvdm_version` and `keras_version` are added.
        overwrite: replace the preset files if the folder already holds some.

    Returns:
        The metadata written.

    Examples:
        >>> import tempfile
        >>> model = from_preset("qpi")
        >>> folder = os.path.join(tempfile.mkdtemp(), "my-qpi")
        >>> written = save_preset(model, folder)
        >>> from_preset(folder).metadata == written
        True
    """
    if not model.built:
        raise ValueError("Build or train the model before saving it as a preset.")
    existing = [f for f in PRESET_FILES if os.path.exists(os.path.join(folder, f))]
    if existing and not overwrite:
        raise FileExistsError(
            f"{folder} already holds {', '.join(existing)}; pass overwrite=True to replace "
            "them or choose another folder."
        )
    # Checked before anything is written, so a bad value leaves no half-written folder.
    metadata = validation.check_metadata(model.metadata if metadata is None else metadata)
    os.makedirs(folder, exist_ok=True)
    config = keras.saving.serialize_keras_object(model)
    config.pop("compile_config", None)  # a preset is for inference: no optimizer
    config["config"].pop("metadata", None)  # written to metadata.json below
    with open(os.path.join(folder, CONFIG_FILE), "w") as f:
        json.dump(config, f, indent=2)
    weights = os.path.join(folder, WEIGHTS_FILE)
    # A compiled model's weights file also holds the optimizer's state (2–4× the size);
    # a preset ships the model's weights only, from an uncompiled copy.
    bare = keras.saving.deserialize_keras_object(config)
    bare.set_weights(model.get_weights())
    bare.save_weights(weights, overwrite=True)
    metadata.update(
        weights_sha256=sha256_of(weights),
        keras_cvdm_version=__version__,
        keras_version=keras.__version__,
    )
    with open(os.path.join(folder, METADATA_FILE), "w") as f:
        json.dump(metadata, f, indent=2)
    return metadata


def describe_preset(name_or_folder) -> dict:
    """What a preset folder holds, read from its files without building the model.

    Args:
        name_or_folder: a built-in preset name or a preset folder.

    Returns:
        dict: `name`, `task`, `description`, `optics` (the metadata's forward model),
        `weights_mb`, `sampling` and `scores` (the stored held-out metrics, flattened
        to `"set/level/metric": value`).

    Examples:
        >>> row = describe_preset("sr-microscopy")
        >>> row["task"], row["optics"]["factor"], row["weights_mb"] < 15
        ('sr', 2, True)
    """
    name = os.fspath(name_or_folder)
    folder = registry.builtin_folder(name) if name in registry.BUILTIN_PRESETS else name
    metadata = _read_json_object(os.path.join(folder, METADATA_FILE))
    scores = {}

    def flatten(prefix, value):
        if isinstance(value, dict):
            for key, inner in value.items():
                if key not in ("by_kind", "sampling"):  # not scores
                    flatten(f"{prefix}/{key}" if prefix else key, inner)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            scores[prefix] = value

    flatten("", metadata.get("validation", {}))
    weights = os.path.join(folder, WEIGHTS_FILE)
    return {
        "name": name,
        "task": metadata.get("task"),
        "description": registry.BUILTIN_PRESETS.get(name, metadata.get("description", "")),
        "optics": {k: v for k, v in metadata.get("forward_model", {}).items()},
        "weights_mb": round(os.path.getsize(weights) / 1e6, 1) if os.path.exists(weights)
        else None,
        "sampling": metadata.get("sampling", {}),
        "scores": scores,
    }


def _read_json_object(path):
    try:
        with open(path) as f:
            value = json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); the preset is damaged.") from error
    if not isinstance(value, dict):
        raise ValueError(
            f"{path} must hold a JSON object ({{...}}), not a {type(value).__name__}; the "
            "preset is damaged."
        )
    return value


def _preset_root(folder, url):
    """The preset folder inside an extracted archive: its top level or its one subfolder."""
    if os.path.isfile(os.path.join(folder, CONFIG_FILE)):
        return folder
    entries = [e for e in os.listdir(folder) if not e.startswith(".")]
    if len(entries) == 1 and os.path.isfile(os.path.join(folder, entries[0], CONFIG_FILE)):
        return os.path.join(folder, entries[0])
    raise ValueError(
        f"The archive from {url} holds no preset folder (no {CONFIG_FILE} at its top level "
        "or in a single top-level folder)."
    )
