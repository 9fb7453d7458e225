"""Building a model whose weights are about to be loaded, without running its initialisers.

A preset's model is built first (every layer creates its weights) and then receives the
weights file, which overwrites every value. The values the initialisers drew are thrown
away, yet on JAX drawing them is most of a load: each random initialiser of a new weight
shape compiles its own XLA program (a few hundred for the `qpi` preset, about 20 s on two
CPU cores). Inside `placeholder_weights()` the weights a layer creates start as zeros made
in numpy instead: no initialiser runs and nothing is compiled for them. Shapes, dtypes,
names and the layers' configs (initialisers included) are exactly those of a normal build,
so the loaded model is the same model, weight for weight.

Only for models whose every weight is loaded next: `keras.Model.load_weights` refuses a
file that does not cover every variable, which is what makes the zeros safe there.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading

import keras
import numpy as np

_ACTIVE = contextvars.ContextVar("keras_cvdm_placeholder_weights", default=False)
_LOCK = threading.RLock()
_ORIGINAL_ADD_WEIGHT = keras.Layer.add_weight


class _Placeholder(keras.initializers.Initializer):
    """Zeros made in numpy (nothing compiled on any backend), in the weight's dtype."""

    def __call__(self, shape, dtype=None):
        try:
            return np.zeros(shape, dtype=dtype or "float32")
        except TypeError:  # a dtype numpy does not know by that name (e.g. bfloat16)
            return keras.ops.zeros(shape, dtype=dtype)


def _add_weight(layer, *args, **kwargs):
    if _ACTIVE.get():
        if len(args) > 1:  # Keras 2 style: add_weight(shape, initializer, dtype)
            args = (args[0], _Placeholder(), *args[2:])
        else:
            kwargs["initializer"] = _Placeholder()
    return _ORIGINAL_ADD_WEIGHT(layer, *args, **kwargs)


@contextlib.contextmanager
def placeholder_weights():
    """Inside: layers create their weights as zeros instead of calling their initialisers.

    Use it only to build a model whose weights are loaded right after (all of them); what
    the layers store (their configs, initialisers included) is unchanged. Other threads
    building models meanwhile are not affected.

    Examples:
        >>> import numpy as np
        >>> with placeholder_weights():
        ...     layer = keras.layers.Dense(3)
        ...     layer.build((None, 2))
        >>> float(np.abs(layer.get_weights()[0]).max())
        0.0
        >>> layer.get_config()["kernel_initializer"]["class_name"]
        'GlorotUniform'
    """
    with _LOCK:
        outermost = keras.Layer.add_weight is not _add_weight
        token = _ACTIVE.set(True)
        keras.Layer.add_weight = _add_weight
        try:
            yield
        finally:
            if outermost:
                keras.Layer.add_weight = _ORIGINAL_ADD_WEIGHT
            _ACTIVE.reset(token)
