"""The presets that ship inside the package: a name → folder table, nothing else."""

from __future__ import annotations

import os

#: The folder holding the built-in preset folders (`<name>/config.json`, ...).
BUILTIN_DIR = os.path.dirname(os.path.abspath(__file__))

#: Built-in presets and what each one does (`from_preset(name)` loads it offline).
BUILTIN_PRESETS = {
    "qpi": "Two-shot quantitative phase imaging: phase (rad) and its uncertainty from "
    "intensities at -dz and +dz, for λ 0.45–0.65 µm, pixel 0.15–0.35 µm, ±0.5–2 µm "
    "(default optics λ 0.521 µm, pixel 0.21 µm, ±1 µm).",
    "sr-microscopy": "2× super-resolution of wide-field fluorescence images (Airy PSF, "
    "NA 1.3, 488 nm) with per-pixel uncertainty.",
}


def list_presets() -> list[str]:
    """Names of the presets shipped with the package (usable offline).

    Returns:
        The sorted names accepted by `keras_cvdm.from_preset`.

    Examples:
        >>> list_presets()
        ['qpi', 'sr-microscopy']
    """
    return sorted(BUILTIN_PRESETS)


def builtin_folder(name: str) -> str:
    """The folder of the built-in preset `name`.

    Args:
        name: one of `list_presets()`.

    Returns:
        The absolute path of its folder.

    Examples:
        >>> os.path.basename(builtin_folder("qpi"))
        'qpi'
    """
    if name not in BUILTIN_PRESETS:
        raise ValueError(f"{name!r} is not a built-in preset; choose one of {list_presets()}.")
    return os.path.join(BUILTIN_DIR, name)
