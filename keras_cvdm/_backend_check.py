"""Imported first by the package: a Keras backend that is not installed is refused with
the fix (Keras defaults to TensorFlow, which `pip install keras-cvdm[jax]` does not bring).
"""

import importlib.util
import json
import os


def configured_backend():
    """The backend Keras will load: `KERAS_BACKEND`, else `keras.json`, else TensorFlow."""
    name = os.environ.get("KERAS_BACKEND")
    if name:
        return name
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            name = json.load(f).get("backend")
    except (OSError, ValueError, AttributeError):
        name = None
    return name or "tensorflow"


def check_backend(name=None, find_spec=importlib.util.find_spec):
    """Raise an `ImportError` naming the fix if backend `name` is not installed.

    Examples:
        >>> check_backend("jax", find_spec=lambda module: None)
        Traceback (most recent call last):
        ...
        ImportError: Keras is set to the 'jax' backend, which is not installed. Install it ...
    """
    name = configured_backend() if name is None else name
    if name in ("tensorflow", "jax", "torch") and find_spec(name) is None:
        raise ImportError(
            f"Keras is set to the {name!r} backend, which is not installed. Install it "
            f"(pip install 'keras-cvdm[{name}]') or use an installed one: "
            "export KERAS_BACKEND=jax (or torch, or tensorflow) before running keras-cvdm."
        )


check_backend()
