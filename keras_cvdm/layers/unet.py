"""SR3-style U-Net denoiser conditioned on a per-pixel γ map."""

import math

import keras
import numpy as np
from keras import ops, tree

from keras_cvdm.numerics import clip_gamma


def _arrays_to_tensors(inputs):
    """Tensors for the arrays in `inputs`; floating arrays become float32.

    The layers that keep γ in float32 skip Keras's conversion of the inputs to the compute
    dtype, and with it the conversion of numpy inputs to tensors; this restores the latter.
    """

    def convert(value):
        if ops.is_tensor(value) or isinstance(value, keras.KerasTensor):
            return value
        value = np.asarray(value)
        return ops.convert_to_tensor(value.astype("float32") if value.dtype.kind == "f" else value)

    return tree.map_structure(convert, inputs)


def _check_groups(layer, channels, groups):
    """Raise if GroupNormalization with `groups` cannot normalise `channels` channels."""
    if channels is None:
        raise ValueError(f"{layer}: the channel count of the input must be known to build it.")
    if channels % groups:
        raise ValueError(
            f"{layer}: {channels} input channels are not divisible by groups={groups}; "
            "choose widths that are multiples of the groups."
        )


@keras.saving.register_keras_serializable(package="keras_cvdm")
class GammaEmbedding(keras.layers.Layer):
    """Per-pixel embedding of the noise level γ (the paper's pixel-wise conditioning).

    The log-SNR `log γ − log(1 − γ)` of each pixel and channel is expanded into sine and
    cosine features, then mixed by a 1×1 and a 3×3 convolution with swish. A uniform γ
    (fixed schedules) gives a spatially constant embedding. γ is read in float32 whatever
    the dtype policy, so that values close to 1 stay distinct under mixed precision.

    Args:
        embedding_dim (int): channels of the embedding map.
        frequencies (int): number of sine/cosine frequencies per input channel.
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        gamma: `(B, H, W, C)` map of γ in `(0, 1)`.

    Returns:
        The embedding, `(B, H, W, embedding_dim)`.

    Examples:
    >>> layer = GammaEmbedding(embedding_dim=8, frequencies=4)
    >>> tuple(layer(keras.ops.full((2, 8, 8, 1), 0.5)).shape)
    (2, 8, 8, 8)
    """

    def __init__(self, embedding_dim=32, frequencies=8, **kwargs):
        super().__init__(**kwargs)
        # γ near 1 must not be rounded to a low-precision compute dtype before the
        # float32 log-SNR (under mixed precision 0.999 and 0.9999 would merge).
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self.embedding_dim = int(embedding_dim)
        self.frequencies = int(frequencies)
        policy = self.dtype_policy
        self.mix = keras.layers.Conv2D(self.embedding_dim, 1, activation="swish", dtype=policy)
        self.spread = keras.layers.Conv2D(
            self.embedding_dim, 3, padding="same", activation="swish", dtype=policy
        )

    def __call__(self, gamma, *args, **kwargs):
        return super().__call__(_arrays_to_tensors(gamma), *args, **kwargs)

    def build(self, input_shape):
        features = tuple(input_shape[:-1]) + (2 * self.frequencies * input_shape[-1],)
        self.mix.build(features)
        self.spread.build(features[:-1] + (self.embedding_dim,))
        self.built = True

    def call(self, gamma):
        gamma = clip_gamma(ops.cast(gamma, "float32"))
        # log-SNR in about [-14, 14]; scaled to about [-1, 1] before the Fourier features.
        u = (ops.log(gamma) - ops.log1p(-gamma)) / 16.0
        scales = ops.convert_to_tensor(
            [math.pi * 2.0**k for k in range(self.frequencies)], dtype="float32"
        )
        angles = ops.expand_dims(u, -1) * scales  # (B, H, W, C, F)
        features = ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1)
        shape = ops.shape(features)
        features = ops.reshape(features, (shape[0], shape[1], shape[2], -1))
        return self.spread(self.mix(features))

    def get_config(self):
        config = super().get_config()
        config.update({"embedding_dim": self.embedding_dim, "frequencies": self.frequencies})
        return config


@keras.saving.register_keras_serializable(package="keras_cvdm")
class ResidualBlock(keras.layers.Layer):
    """GroupNorm → swish → conv → (+ embedding) → GroupNorm → swish → dropout → conv, + skip.

    Args:
        filters (int): output channels.
        groups (int): groups of the GroupNormalization layers (must divide the input
            channels and `filters`).
        dropout (float): dropout rate before the second convolution.
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a pair `(h, embedding)`; `embedding` has the spatial size of `h` and is
            projected per pixel to `filters` channels and added (pixel-wise conditioning).
        training: dropout switch.

    Returns:
        `(B, H, W, filters)`; the input is added back (through a 1×1 convolution when its
        channel count differs from `filters`).

    Examples:
    >>> block = ResidualBlock(filters=8, groups=4, dropout=0.1)
    >>> h, e = keras.ops.ones((2, 8, 8, 4)), keras.ops.ones((2, 8, 8, 6))
    >>> tuple(block((h, e)).shape)
    (2, 8, 8, 8)
    """

    def __init__(self, filters, groups=8, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.groups = int(groups)
        self.dropout = float(dropout)
        policy = self.dtype_policy
        self.norm1 = keras.layers.GroupNormalization(self.groups, dtype=policy)
        self.conv1 = keras.layers.Conv2D(self.filters, 3, padding="same", dtype=policy)
        self.embedding_projection = keras.layers.Dense(self.filters, dtype=policy)
        self.norm2 = keras.layers.GroupNormalization(self.groups, dtype=policy)
        self.drop = keras.layers.Dropout(self.dropout, dtype=policy)
        self.conv2 = keras.layers.Conv2D(self.filters, 3, padding="same", dtype=policy)
        self.skip = None

    def build(self, input_shape):
        h_shape, e_shape = input_shape
        h_shape = tuple(h_shape)
        _check_groups("ResidualBlock", h_shape[-1], self.groups)
        out_shape = h_shape[:-1] + (self.filters,)
        self.norm1.build(h_shape)
        self.conv1.build(h_shape)
        self.embedding_projection.build(tuple(e_shape))
        self.norm2.build(out_shape)
        self.conv2.build(out_shape)
        if h_shape[-1] != self.filters:
            self.skip = keras.layers.Conv2D(self.filters, 1, dtype=self.dtype_policy)
            self.skip.build(h_shape)
        self.built = True

    def call(self, inputs, training=None):
        h, embedding = inputs
        out = self.conv1(ops.silu(self.norm1(h)))
        out = out + self.embedding_projection(embedding)
        out = self.drop(ops.silu(self.norm2(out)), training=training)
        out = self.conv2(out)
        return out + (h if self.skip is None else self.skip(h))

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "groups": self.groups, "dropout": self.dropout})
        return config


@keras.saving.register_keras_serializable(package="keras_cvdm")
class SpatialAttention(keras.layers.Layer):
    """Single-head self-attention over all pixels, with a residual connection.

    `h + W_o · softmax(q kᵀ / √C) v`, with `q, k, v` linear maps of the group-normalised
    pixels. The output projection `W_o` starts at zero, so a freshly built layer is the
    identity. The weights are `(C, 3C)` and `(C, C)` matrices: the layer works at any
    height and width, and its cost grows with the square of the pixel count.

    Args:
        groups (int): groups of the GroupNormalization before the attention (must divide
            the channels).
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        h: feature map `(B, H, W, C)`.

    Returns:
        A map with the shape of `h`.

    Examples:
    >>> attention = SpatialAttention(groups=4)
    >>> tuple(attention(keras.ops.ones((2, 4, 4, 8))).shape)
    (2, 4, 4, 8)
    """

    def __init__(self, groups=8, **kwargs):
        super().__init__(**kwargs)
        self.groups = int(groups)
        self.norm = keras.layers.GroupNormalization(self.groups, dtype=self.dtype_policy)

    def build(self, input_shape):
        channels = input_shape[-1]
        _check_groups("SpatialAttention", channels, self.groups)
        self.norm.build(tuple(input_shape))
        self.qkv_kernel = self.add_weight(
            shape=(channels, 3 * channels), initializer="glorot_uniform", name="qkv_kernel"
        )
        self.qkv_bias = self.add_weight(shape=(3 * channels,), initializer="zeros", name="qkv_bias")
        self.output_kernel = self.add_weight(
            shape=(channels, channels), initializer="zeros", name="output_kernel"
        )
        self.output_bias = self.add_weight(
            shape=(channels,), initializer="zeros", name="output_bias"
        )
        self.built = True

    def call(self, h):
        shape = ops.shape(h)
        channels = self.output_kernel.shape[0]
        seq = ops.reshape(self.norm(h), (shape[0], -1, channels))  # (B, N, C)
        qkv = ops.matmul(seq, self.qkv_kernel) + self.qkv_bias
        q, k, v = ops.split(qkv, 3, axis=-1)
        logits = ops.einsum("bic,bjc->bij", q, k) / math.sqrt(channels)
        weights = ops.cast(ops.softmax(ops.cast(logits, "float32"), axis=-1), v.dtype)
        out = ops.matmul(ops.einsum("bij,bjc->bic", weights, v), self.output_kernel)
        return h + ops.reshape(out + self.output_bias, shape)

    def get_config(self):
        config = super().get_config()
        config.update({"groups": self.groups})
        return config


@keras.saving.register_keras_serializable(package="keras_cvdm")
class UNetDenoiser(keras.layers.Layer):
    """An SR3-style U-Net that predicts the noise ε̂(z_t, x, γ).

    The noisy target `z_t` and the condition `x` are concatenated at the input; the
    per-pixel γ map is embedded (`GammaEmbedding`), average-pooled to every resolution
    and added inside every residual block. Each level has `blocks_per_level` residual
    blocks on the way down and one more on the way up; at the levels named in
    `attention_levels` every residual block is followed by its own `SpatialAttention`.
    Levels are joined by a stride-2 convolution on the way down and by nearest-neighbour
    up-sampling and a 3×3 convolution on the way up. The output convolution starts at
    zero, so the initial prediction is ε̂ = 0 and the initial noise loss is 1. The
    architecture is described in `docs/architecture.md`.

    Args:
        target_channels (int): channels of `z_t` and of the output.
        widths (tuple of int): channels at each resolution level; the input size must be a
            multiple of `2 ** (len(widths) - 1)` (`downsampling_factor`).
        blocks_per_level (int): residual blocks per level on the way down (one more on the
            way up).
        attention_levels (tuple of int): indices into `widths` of the levels that get
            self-attention (use only the low-resolution ones: attention is quadratic in
            the pixel count).
        embedding_dim (int): channels of the γ embedding.
        dropout (float): dropout rate inside the residual blocks.
        groups (int): GroupNormalization groups (must divide every width).
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `[z_t, x, gamma]`, each `(B, H, W, ·)`; `gamma` broadcastable to `z_t`.
        training: dropout switch.

    Returns:
        ε̂ with the shape of `z_t`.

    Examples:
    >>> net = UNetDenoiser(target_channels=1, widths=(8, 16), attention_levels=(1,))
    >>> z, x, g = (keras.ops.zeros((2, 16, 16, c)) for c in (1, 2, 1))
    >>> tuple(net([z, x, g + 0.5]).shape)
    (2, 16, 16, 1)

    References:
        Saharia et al., "Image Super-Resolution via Iterative Refinement" (SR3), 2021.
        della Maggiora et al., "Conditional Variational Diffusion Models", ICLR 2024.
    """

    def __init__(
        self,
        target_channels=1,
        widths=(32, 64, 128),
        blocks_per_level=1,
        attention_levels=(),
        embedding_dim=32,
        dropout=0.0,
        groups=8,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._convert_input_args = False  # keep γ float32 (see GammaEmbedding)
        self._allow_non_tensor_positional_args = True
        self.target_channels = int(target_channels)
        self.widths = tuple(int(w) for w in widths)
        self.blocks_per_level = int(blocks_per_level)
        self.attention_levels = tuple(int(i) for i in attention_levels)
        self.embedding_dim = int(embedding_dim)
        self.dropout = float(dropout)
        self.groups = int(groups)
        levels = len(self.widths)
        bad = [w for w in self.widths if w % self.groups]
        if bad:
            raise ValueError(
                f"UNetDenoiser widths {bad} are not multiples of groups={self.groups}."
            )
        outside = [i for i in self.attention_levels if not 0 <= i < levels]
        if outside:
            raise ValueError(
                f"UNetDenoiser attention_levels {outside} are not levels of widths="
                f"{self.widths}; use indices from 0 to {levels - 1}."
            )
        policy = self.dtype_policy
        self.embedding = GammaEmbedding(self.embedding_dim, dtype=policy, name="gamma_embedding")
        self.input_conv = keras.layers.Conv2D(self.widths[0], 3, padding="same", dtype=policy)
        self.pools = [
            keras.layers.AveragePooling2D(2**i, dtype=policy) if i else None for i in range(levels)
        ]

        def block(width):
            return ResidualBlock(width, self.groups, self.dropout, dtype=policy)

        def attention(level):
            if level in self.attention_levels:
                return SpatialAttention(self.groups, dtype=policy)
            return None

        self.down_blocks = [
            [block(w) for _ in range(self.blocks_per_level)] for w in self.widths
        ]
        # One attention layer after each residual block of an attention level.
        self.down_attention = [
            [attention(i) for _ in range(self.blocks_per_level)] for i in range(levels)
        ]
        self.downsamplers = [
            keras.layers.Conv2D(self.widths[i + 1], 3, strides=2, padding="same", dtype=policy)
            for i in range(levels - 1)
        ]
        self.middle_blocks = [block(self.widths[-1]), block(self.widths[-1])]
        self.up_blocks = [
            [block(w) for _ in range(self.blocks_per_level + 1)] for w in self.widths
        ]
        self.up_attention = [
            [attention(i) for _ in range(self.blocks_per_level + 1)] for i in range(levels)
        ]
        # Nearest-neighbour ×2 (a repetition of rows and columns, so it needs no known
        # height and width at trace time), then a 3×3 convolution per level.
        self.upsample = keras.layers.UpSampling2D(
            2, data_format="channels_last", interpolation="nearest", dtype=policy
        )
        self.upsamplers = [
            keras.layers.Conv2D(self.widths[i], 3, padding="same", dtype=policy)
            for i in range(levels - 1)
        ]
        self.output_norm = keras.layers.GroupNormalization(self.groups, dtype=policy)
        self.output_conv = keras.layers.Conv2D(
            self.target_channels, 3, padding="same", kernel_initializer="zeros", dtype=policy
        )

    @property
    def downsampling_factor(self):
        """Input height and width must be multiples of this."""
        return 2 ** (len(self.widths) - 1)

    def __call__(self, inputs, *args, **kwargs):
        return super().__call__(_arrays_to_tensors(inputs), *args, **kwargs)

    def build(self, input_shape):
        z_shape, x_shape, _ = (tuple(s) for s in input_shape)
        batch = z_shape[0]

        def shape(channels):
            return (batch, None, None, channels)

        embedding = shape(self.embedding_dim)
        self.upsample.build(shape(None))  # no weights; built even with a single level
        self.embedding.build(shape(z_shape[-1]))
        self.input_conv.build(shape(z_shape[-1] + x_shape[-1]))
        channels, skips = self.widths[0], []
        for level, blocks in enumerate(self.down_blocks):
            for blk, attention in zip(blocks, self.down_attention[level]):
                blk.build((shape(channels), embedding))
                channels = blk.filters
                if attention is not None:
                    attention.build(shape(channels))
                skips.append(channels)
            if level < len(self.downsamplers):
                self.downsamplers[level].build(shape(channels))
                channels = self.widths[level + 1]
        for blk in self.middle_blocks:
            blk.build((shape(channels), embedding))
        for level in reversed(range(len(self.widths))):
            for i, (blk, attention) in enumerate(
                zip(self.up_blocks[level], self.up_attention[level])
            ):
                if i < self.blocks_per_level:
                    channels += skips.pop()
                blk.build((shape(channels), embedding))
                channels = blk.filters
                if attention is not None:
                    attention.build(shape(channels))
            if level > 0:
                self.upsamplers[level - 1].build(shape(channels))
                channels = self.widths[level - 1]
        self.output_norm.build(shape(channels))
        self.output_conv.build(shape(channels))
        self.built = True

    def call(self, inputs, training=None):
        z_t, x, gamma = inputs
        gamma = ops.broadcast_to(ops.cast(gamma, "float32"), ops.shape(z_t))
        embedding = self.embedding(gamma)
        embeddings = [embedding if pool is None else pool(embedding) for pool in self.pools]
        h = self.input_conv(ops.concatenate([z_t, ops.cast(x, z_t.dtype)], axis=-1))
        skips = []
        for level, blocks in enumerate(self.down_blocks):
            for blk, attention in zip(blocks, self.down_attention[level]):
                h = blk((h, embeddings[level]), training=training)
                if attention is not None:
                    h = attention(h)
                skips.append(h)
            if level < len(self.downsamplers):
                h = self.downsamplers[level](h)
        for blk in self.middle_blocks:
            h = blk((h, embeddings[-1]), training=training)
        for level in reversed(range(len(self.widths))):
            for i, (blk, attention) in enumerate(
                zip(self.up_blocks[level], self.up_attention[level])
            ):
                if i < self.blocks_per_level:
                    h = ops.concatenate([h, skips.pop()], axis=-1)
                h = blk((h, embeddings[level]), training=training)
                if attention is not None:
                    h = attention(h)
            if level > 0:
                h = self.upsamplers[level - 1](self.upsample(h))
        return self.output_conv(ops.silu(self.output_norm(h)))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "target_channels": self.target_channels,
                "widths": list(self.widths),
                "blocks_per_level": self.blocks_per_level,
                "attention_levels": list(self.attention_levels),
                "embedding_dim": self.embedding_dim,
                "dropout": self.dropout,
                "groups": self.groups,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_cvdm")
class UNetRegressor(keras.layers.Layer):
    """The same U-Net as a plain regressor `x → μ(x)`, for zero-mean diffusion.

    `CVDM(zero_mean=True, mean_network=UNetRegressor(...))` learns the conditional mean
    with a U-Net's receptive field (the default mean network is a small `ConvNet`,
    which only sees a few pixels around each output). It wraps a `UNetDenoiser` whose
    noisy-target input is held at zero and whose γ input is a constant, so both only
    add learned constants.

    Args:
        output_channels (int): channels of `μ(x)`.
        widths (tuple of int): channels at each resolution level, as for `UNetDenoiser`.
        blocks_per_level (int): residual blocks per level, as for `UNetDenoiser`.
        attention_levels (tuple of int): levels with self-attention, as for
            `UNetDenoiser`.
        embedding_dim (int): channels of the (constant) γ embedding.
        groups (int): GroupNormalization groups (must divide every width).
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        x: condition images `(B, H, W, C)`; H and W multiples of `downsampling_factor`.
        training: passed to the U-Net.

    Returns:
        `μ(x)`, `(B, H, W, output_channels)`.

    Examples:
    >>> net = UNetRegressor(output_channels=1, widths=(8, 16))
    >>> tuple(net(keras.ops.zeros((2, 16, 16, 2))).shape)
    (2, 16, 16, 1)
    """

    def __init__(self, output_channels=1, widths=(32, 64, 128), blocks_per_level=1,
                 attention_levels=(), embedding_dim=32, groups=8, **kwargs):
        super().__init__(**kwargs)
        self.output_channels = int(output_channels)
        self.unet = UNetDenoiser(
            self.output_channels, widths=widths, blocks_per_level=blocks_per_level,
            attention_levels=attention_levels, embedding_dim=embedding_dim, groups=groups,
            dtype=self.dtype_policy, name="unet",
        )

    @property
    def downsampling_factor(self):
        """Input height and width must be multiples of this."""
        return self.unet.downsampling_factor

    def _constant_inputs(self, x):
        batch, height, width = ops.shape(x)[0], ops.shape(x)[1], ops.shape(x)[2]
        zeros = ops.zeros((batch, height, width, self.output_channels), x.dtype)
        return zeros, ops.full((batch, 1, 1, 1), 0.5, "float32")

    def build(self, input_shape):
        shape = tuple(input_shape)
        target = shape[:-1] + (self.output_channels,)
        self.unet.build((target, shape, (shape[0], 1, 1, 1)))
        self.built = True

    def call(self, x, training=None):
        zeros, gamma = self._constant_inputs(x)
        return self.unet([zeros, x, gamma], training=training)

    def get_config(self):
        config = super().get_config()
        unet = self.unet.get_config()
        config["output_channels"] = self.output_channels
        config.update({key: unet[key] for key in _UNET_OPTIONS})
        return config


# The U-Net options a UNetRegressor takes (the regressor has no dropout).
_UNET_OPTIONS = ("widths", "blocks_per_level", "attention_levels", "embedding_dim", "groups")
