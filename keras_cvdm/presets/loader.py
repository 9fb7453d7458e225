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

import functools
import hashlib
import json
import os
import warnings

import keras

from keras_cvdm import validation
from keras_cvdm.presets import registry, remote
from keras_cvdm.version import __version__

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
PRESET_FILES = (CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE)
#: The metadata entries that must be JSON objects when present.
OBJECT_ENTRIES = ("forward_model", "normalization", "sampling", "training", "validation")


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


def from_preset(name_or_path, sha256: str | None = None, cache_dir: str | None = None, *,
                timeout: float = remote.DOWNLOAD_TIMEOUT_S,
                max_extracted_bytes: int | None = None, **overrides):
    """Load a pretrained `CVDM` from a built-in name, a folder, or an archive URL.

    Args:
        name_or_path: a name from `list_presets()` (e.g. `"qpi"`, `"sr-microscopy"`), a
            local preset folder, or an `https://` URL of a `.tar.gz`/`.zip` preset archive.
        sha256: the archive's hex sha256; required for URLs, ignored otherwise.
        cache_dir: where downloads are cached (default: Keras's cache, `$KERAS_HOME` or
            `~/.keras`). A cached copy found damaged is extracted (or downloaded) again.
        timeout: for URLs, seconds to wait for the server to connect or to send more
            data before giving up with a `ValueError` (default 60).
        max_extracted_bytes: for URLs, the most bytes the archive may expand to, checked
            before anything is extracted (default: the larger of 256 MiB and 10 times the
            archive's size).
        **overrides: entries of the model config to replace (e.g. `num_timesteps=100`).

    Returns:
        A built `CVDM` with the preset's weights; `model.metadata` holds `metadata.json`.

    Raises:
        TypeError: `name_or_path` is not a str or os.PathLike.
        ValueError: an unknown name; a damaged preset; for URLs a missing or wrong sha256,
            a failed or timed-out download, or an unsafe or too large archive (nothing is
            extracted then).
        FileNotFoundError: a preset folder lacks one of its files.

    Examples:
        >>> model = from_preset("qpi")
        >>> model.metadata["task"], model.metadata["forward_model"]["wavelength_um"]
        ('qpi', 0.521)
    """
    name_or_path = _preset_reference(name_or_path, "from_preset")
    if name_or_path.startswith(("https://", "http://")):
        fetch = functools.partial(
            remote.fetch_preset_archive, name_or_path, sha256, cache_dir,
            root_file=CONFIG_FILE, timeout=timeout, max_extracted_bytes=max_extracted_bytes,
        )
        folder = fetch()
        try:
            check_preset_folder(folder)
        except (FileNotFoundError, ValueError) as damage:
            # A cached extraction damaged since: extract (or download) it again.
            warnings.warn(
                f"The cached copy of {name_or_path} in {folder} is damaged ({damage}); "
                "extracting it again from the verified archive.", stacklevel=2,
            )
            folder = fetch(refresh=True)
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
    config, metadata, weights = check_preset_folder(folder)
    inner = {**config.get("config", {}), **overrides, "metadata": metadata}
    config = {**config, "config": inner}
    # Imported here: the model module registers the CVDM class with Keras.
    from keras_cvdm.model import CVDM
    from keras_cvdm.presets.placeholders import placeholder_weights

    # load_weights below overwrites every weight (it refuses a file that misses one), so
    # the build skips the initialisers: most of a load's time on JAX.
    with placeholder_weights():
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


def check_preset_folder(folder):
    """Read a preset folder's files and check them, without building the model.

    Checked: the three files are there, both JSON files hold objects (and the metadata's
    `OBJECT_ENTRIES` too), and the weights match the sha256 recorded in the metadata.

    Args:
        folder: the preset folder.

    Returns:
        `(config, metadata, weights_path)`; raises `FileNotFoundError` for a missing file
        and `ValueError` for a damaged one.

    Examples:
        >>> config, metadata, weights = check_preset_folder(registry.builtin_folder("qpi"))
        >>> config["class_name"], metadata["task"], os.path.basename(weights)
        ('CVDM', 'qpi', 'model.weights.h5')
    """
    missing = [f for f in PRESET_FILES if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        raise FileNotFoundError(
            f"The preset folder {folder!r} lacks {', '.join(missing)}. A preset folder holds "
            f"{', '.join(PRESET_FILES)}; write one with keras_cvdm.save_preset(model, folder)."
        )
    metadata = _read_metadata(folder)
    weights = os.path.join(folder, WEIGHTS_FILE)
    expected = metadata.get("weights_sha256")
    if expected is not None and sha256_of(weights) != expected:
        raise ValueError(
            f"{weights} does not match the sha256 recorded in its metadata.json: the file is "
            "corrupt or was replaced. Reinstall keras-cvdm (built-in presets), or load the "
            "preset again from its URL (a damaged download is extracted again)."
        )
    config = _read_json_object(os.path.join(folder, CONFIG_FILE))
    if not isinstance(config.get("config", {}), dict):
        raise ValueError(
            f"{os.path.join(folder, CONFIG_FILE)}: its 'config' entry must be a JSON object, "
            f"not a {type(config['config']).__name__}; the preset is damaged. Write it again "
            "with keras_cvdm.save_preset."
        )
    return config, metadata, weights


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
    name = _preset_reference(name_or_folder, "describe_preset")
    folder = registry.builtin_folder(name) if name in registry.BUILTIN_PRESETS else name
    metadata = _read_metadata(folder)
    scores = {}

    def flatten(prefix, value):
        if isinstance(value, dict):
            for key, inner in value.items():
                if key not in ("by_kind", "sampling", "calibration_curve"):  # not scores
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


def _preset_reference(name_or_path, caller):
    """`name_or_path` as a str, or a TypeError naming what `caller` accepts."""
    value = os.fspath(name_or_path) if isinstance(name_or_path, os.PathLike) else name_or_path
    if not isinstance(value, str):
        raise TypeError(
            f"{caller} takes a built-in preset name ({', '.join(registry.list_presets())}), "
            "the path of a preset folder (a str or os.PathLike), or an https:// URL of a "
            f"preset archive; got {type(name_or_path).__name__} {name_or_path!r}."
        )
    return value


def _read_metadata(folder):
    """`metadata.json` as a dict whose `OBJECT_ENTRIES` are dicts, else a ValueError."""
    path = os.path.join(folder, METADATA_FILE)
    metadata = _read_json_object(path)
    for key in OBJECT_ENTRIES:
        if key in metadata and not isinstance(metadata[key], dict):
            raise ValueError(
                f"{path}: its {key!r} entry must be a JSON object ({{...}}), not a "
                f"{type(metadata[key]).__name__}; the preset is damaged. Write it again "
                "with keras_cvdm.save_preset."
            )
    if not isinstance(metadata.get("task", ""), str | None):
        raise ValueError(
            f"{path}: its 'task' entry must be a string such as 'qpi' or 'sr', not "
            f"{metadata['task']!r}; the preset is damaged."
        )
    return metadata


def _read_json_object(path):
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except ValueError as error:  # not JSON, or not UTF-8 text
        raise ValueError(f"{path} is not valid JSON ({error}); the preset is damaged.") from error
    if not isinstance(value, dict):
        raise ValueError(
            f"{path} must hold a JSON object ({{...}}), not a {type(value).__name__}; the "
            "preset is damaged."
        )
    return value
