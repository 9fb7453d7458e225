"""Pretrained presets: `from_preset`, `list_presets`, `save_preset`.

- `registry`: the built-in presets, shipped inside the package (offline).
- `loader`: preset folders (config, weights, metadata) in and out.
- `remote`: archives from a URL with their sha256: downloaded once with a timeout into the
  Keras cache, checked (unsafe members, size) before anything is written, extracted atomically
  with normalised permissions.
"""

from keras_cvdm.presets.loader import (
    CONFIG_FILE,
    METADATA_FILE,
    PRESET_FILES,
    WEIGHTS_FILE,
    check_preset_folder,
    describe_preset,
    from_preset,
    load_preset_folder,
    save_preset,
    sha256_of,
)
from keras_cvdm.presets.registry import BUILTIN_DIR, BUILTIN_PRESETS, list_presets
from keras_cvdm.presets.remote import CACHE_SUBDIR

__all__ = [
    "BUILTIN_DIR",
    "BUILTIN_PRESETS",
    "CACHE_SUBDIR",
    "CONFIG_FILE",
    "METADATA_FILE",
    "PRESET_FILES",
    "WEIGHTS_FILE",
    "check_preset_folder",
    "describe_preset",
    "from_preset",
    "list_presets",
    "load_preset_folder",
    "save_preset",
    "sha256_of",
]
