"""A small per-pixel convolutional network on the condition."""

import keras


@keras.saving.register_keras_serializable(package="keras_cvdm")
class ConvNet(keras.layers.Layer):
    """`depth` 3×3 convolutions with swish, then a 3×3 projection to `output_channels`.

    Used for the schedule network `g(x)` of the learned schedule (`λ(x) = softplus(g(x))`)
    and for the mean network `μ(x)` of zero-mean diffusion. It keeps the spatial size.

    Args:
        output_channels (int): channels of the output map.
        filters (int): width of the hidden convolutions.
        depth (int): number of hidden convolutions (0 leaves only the projection).
        output_bias (float): initial value of the output bias (the output kernel starts
            at zero, so the initial output is this constant everywhere).
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        x: condition image `(B, H, W, C)`.

    Returns:
        `(B, H, W, output_channels)`.

    Examples:
    >>> g = ConvNet(output_channels=1, filters=8, output_bias=0.5)
    >>> out = g(keras.ops.zeros((2, 16, 16, 3)))
    >>> tuple(out.shape)
    (2, 16, 16, 1)
    >>> float(keras.ops.max(keras.ops.abs(out - 0.5)))
    0.0
    """

    def __init__(self, output_channels, filters=32, depth=2, output_bias=0.0, **kwargs):
        super().__init__(**kwargs)
        self.output_channels = int(output_channels)
        self.filters = int(filters)
        self.depth = int(depth)
        self.output_bias = float(output_bias)
        self.hidden = [
            keras.layers.Conv2D(
                self.filters, 3, padding="same", activation="swish", dtype=self.dtype_policy
            )
            for _ in range(self.depth)
        ]
        self.projection = keras.layers.Conv2D(
            self.output_channels,
            3,
            padding="same",
            kernel_initializer="zeros",
            bias_initializer=keras.initializers.Constant(self.output_bias),
            dtype=self.dtype_policy,
        )

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.hidden:
            layer.build(shape)
            shape = shape[:-1] + (self.filters,)
        self.projection.build(shape)
        self.built = True

    def call(self, x):
        for layer in self.hidden:
            x = layer(x)
        return self.projection(x)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "output_channels": self.output_channels,
                "filters": self.filters,
                "depth": self.depth,
                "output_bias": self.output_bias,
            }
        )
        return config
