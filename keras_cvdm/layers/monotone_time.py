"""Monotone scalar network of time with closed-form derivatives."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_cvdm")
class MonotoneTime(keras.layers.Layer):
    """A monotone increasing map of time, normalised to `Φ(0) = 0`, `Φ(1) = 1`.

    The raw network is the monotone construction of Variational Diffusion Models
    (positive weights, sigmoid hidden layer):

        a(t) = w₁ t + b₁
        φ(t) = a(t) + Σₖ w₃ₖ · sigmoid(w₂ₖ a(t) + b₂ₖ)

    with `w₁, w₂, w₃ > 0` (softplus of unconstrained kernels), so `φ' > 0`.
    The layer returns `Φ(t) = (φ(t) − φ(0)) / (φ(1) − φ(0))` together with `Φ'(t)`
    and `Φ''(t)` in closed form (chain rule through the two layers), so losses that need
    time derivatives never call a backend's autodiff.

    Args:
        hidden_units (int): width `K` of the sigmoid layer.
        **kwargs: standard layer arguments (`name`, `dtype`, ...). The layer computes in
            float32 unless a dtype is given, whatever the global mixed-precision policy.

    Call arguments:
        t: tensor of times in `[0, 1]`, any shape.

    Returns:
        A tuple `(Φ, Φ', Φ'')`, each with the shape of `t`.

    Examples:
    >>> layer = MonotoneTime(hidden_units=16)
    >>> phi, dphi, d2phi = layer(keras.ops.linspace(0.0, 1.0, 5))
    >>> [abs(round(float(v), 6)) for v in (phi[0], phi[-1])]
    [0.0, 1.0]
    >>> bool(keras.ops.all(dphi > 0))
    True

    References:
        Kingma et al., "Variational Diffusion Models", NeurIPS 2021 (arXiv:2107.00630).
    """

    def __init__(self, hidden_units=64, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.hidden_units = int(hidden_units)

    def build(self, input_shape=None):
        k = self.hidden_units
        self.w1 = self.add_weight(shape=(), initializer=keras.initializers.Constant(0.5), name="w1")
        self.b1 = self.add_weight(shape=(), initializer="zeros", name="b1")
        self.w2 = self.add_weight(
            shape=(k,), initializer=keras.initializers.RandomNormal(0.0, 1.0), name="w2"
        )
        self.b2 = self.add_weight(
            shape=(k,), initializer=keras.initializers.RandomUniform(-3.0, 3.0), name="b2"
        )
        self.w3 = self.add_weight(
            shape=(k,), initializer=keras.initializers.RandomNormal(-2.0, 0.5), name="w3"
        )
        self.built = True

    def _raw(self, t):
        """φ(t), φ'(t), φ''(t) of the unnormalised network, each shaped like `t`."""
        w1 = ops.softplus(self.w1)
        w2 = ops.softplus(self.w2)
        w3 = ops.softplus(self.w3)
        a = w1 * t + self.b1
        h = ops.sigmoid(ops.expand_dims(a, -1) * w2 + self.b2)
        dh = h * (1.0 - h)  # sigmoid' at the hidden pre-activation
        d2h = dh * (1.0 - 2.0 * h)  # sigmoid''
        phi = a + ops.sum(w3 * h, axis=-1)
        dphi = w1 + ops.sum(w3 * dh * w2, axis=-1) * w1
        d2phi = ops.sum(w3 * d2h * ops.square(w2), axis=-1) * ops.square(w1)
        return phi, dphi, d2phi

    def call(self, t):
        t = ops.convert_to_tensor(t, dtype=self.compute_dtype)
        phi, dphi, d2phi = self._raw(t)
        ends, _, _ = self._raw(ops.convert_to_tensor([0.0, 1.0], dtype=self.compute_dtype))
        scale = ends[1] - ends[0]
        return (phi - ends[0]) / scale, dphi / scale, d2phi / scale

    def compute_output_spec(self, t):
        spec = keras.KerasTensor(t.shape, dtype=self.compute_dtype)
        return spec, spec, spec

    def get_config(self):
        config = super().get_config()
        config.update({"hidden_units": self.hidden_units})
        return config
