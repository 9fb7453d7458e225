"""SR3-style U-Net denoiser conditioned on a per-pixel γ map."""

import math

import keras
from keras import ops

from keras_cvdm.numerics import clip_gamma


@keras.saving.register_keras_serializable(package="keras_cvdm")
class GammaEmbedding(keras.layers.Layer):
    """Per-pixel embedding of the noise level γ (the paper's pixel-wise conditioning).

    The log-SNR `log γ − log(1 − γ)` of each pixel and channel is expanded into sine and
    cosine features, then mixed by a 1×1 and a 3×3 convolution with swish. A uniform γ
    (fixed schedules) gives a spatially constant embedding.

    Args:
        embedding_dim: channels of the embedding map.
        frequencies: number of sine/cosine frequencies per input channel.

    Call arguments:
        gamma: `(B, H, W, C)` map of γ in `(0, 1)`.
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
        filters: output channels.
        groups: groups of the GroupNormalization layers (must divide the channels).
        dropout: dropout rate before the second convolution.

    Call arguments:
        inputs: a pair `(h, embedding)`; `embedding` has the spatial size of `h` and is
            projected per pixel to `filters` channels and added (pixel-wise conditioning).
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
        if h_shape[-1] % self.groups:
            raise ValueError(
                f"ResidualBlock: {h_shape[-1]} input channels are not divisible by "
                f"groups={self.groups}; choose widths that are multiples of the groups."
            )
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

    Args:
        groups: groups of the GroupNormalization before the attention.
    """

    def __init__(self, groups=8, **kwargs):
        super().__init__(**kwargs)
        self.groups = int(groups)
        self.norm = keras.layers.GroupNormalization(self.groups, dtype=self.dtype_policy)
        self.attention = None

    def build(self, input_shape):
        channels = input_shape[-1]
        self.norm.build(tuple(input_shape))
        self.attention = keras.layers.MultiHeadAttention(
            num_heads=1, key_dim=channels, dtype=self.dtype_policy
        )
        seq = (input_shape[0], None, channels)
        self.attention.build(seq, seq)
        self.built = True

    def call(self, h):
        shape = ops.shape(h)
        seq = ops.reshape(self.norm(h), (shape[0], -1, shape[-1]))
        out = self.attention(seq, seq)
        return h + ops.reshape(out, shape)


    def get_config(self):
        config = super().get_config()
        config.update({"groups": self.groups})
        return config


@keras.saving.register_keras_serializable(package="keras_cvdm")
class UNetDenoiser(keras.layers.Layer):
    """An SR3-style U-Net that predicts the noise ε̂(z_t, x, γ).

    The noisy target `z_t` and the condition `x` are concatenated at the input; the
    per-pixel γ map is embedded (`GammaEmbedding`), average-pooled to every resolution
    and added inside every residual block. The output convolution starts at zero, so
    the initial prediction is ε̂ = 0 and the initial noise loss is 1.

    Args:
        target_channels: channels of `z_t` and of the output.
        widths: channels at each resolution level; the input size must be a multiple
            of `2 ** (len(widths) - 1)` (`downsampling_factor`).
        blocks_per_level: residual blocks per level on the way down (one more on the
            way up).
        attention_levels: indices of the levels that get self-attention (use only the
            low-resolution ones: attention is quadratic in the pixel count).
        embedding_dim: channels of the γ embedding.
        dropout: dropout rate inside the residual blocks.
        groups: GroupNormalization groups (must divide every width).

    Call arguments:
        inputs: `[z_t, x, gamma]`, each `(B, H, W, ·)`; `gamma` broadcastable to `z_t`.
        training: dropout switch.

    Examples:
    >>> net = UNetDenoiser(target_channels=1, widths=(8, 16))
    >>> z, x, g = (keras.ops.zeros((2, 16, 16, c)) for c in (1, 2, 1))
    >>> net([z, x, g + 0.5]).shape
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
        bad = [w for w in self.widths if w % self.groups]
        if bad:
            raise ValueError(
                f"UNetDenoiser widths {bad} are not multiples of groups={self.groups}."
            )
        levels = len(self.widths)
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
        self.down_attention = [attention(i) for i in range(levels)]
        self.downsamplers = [
            keras.layers.Conv2D(self.widths[i + 1], 3, strides=2, padding="same", dtype=policy)
            for i in range(levels - 1)
        ]
        self.middle_blocks = [block(self.widths[-1]), block(self.widths[-1])]
        self.up_blocks = [
            [block(w) for _ in range(self.blocks_per_level + 1)] for w in self.widths
        ]
        self.up_attention = [attention(i) for i in range(levels)]
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

    def build(self, input_shape):
        z_shape, x_shape, _ = (tuple(s) for s in input_shape)
        batch = z_shape[0]

        def shape(channels):
            return (batch, None, None, channels)

        embedding = shape(self.embedding_dim)
        self.embedding.build(shape(z_shape[-1]))
        self.input_conv.build(shape(z_shape[-1] + x_shape[-1]))
        channels, skips = self.widths[0], []
        for level, blocks in enumerate(self.down_blocks):
            for blk in blocks:
                blk.build((shape(channels), embedding))
                channels = blk.filters
                if self.down_attention[level] is not None:
                    self.down_attention[level].build(shape(channels))
                skips.append(channels)
            if level < len(self.downsamplers):
                self.downsamplers[level].build(shape(channels))
                channels = self.widths[level + 1]
        for blk in self.middle_blocks:
            blk.build((shape(channels), embedding))
        for level in reversed(range(len(self.widths))):
            for i, blk in enumerate(self.up_blocks[level]):
                if i < self.blocks_per_level:
                    channels += skips.pop()
                blk.build((shape(channels), embedding))
                channels = blk.filters
                if self.up_attention[level] is not None:
                    self.up_attention[level].build(shape(channels))
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
            for blk in blocks:
                h = blk((h, embeddings[level]), training=training)
                if self.down_attention[level] is not None:
                    h = self.down_attention[level](h)
                skips.append(h)
            if level < len(self.downsamplers):
                h = self.downsamplers[level](h)
        for blk in self.middle_blocks:
            h = blk((h, embeddings[-1]), training=training)
        for level in reversed(range(len(self.widths))):
            for i, blk in enumerate(self.up_blocks[level]):
                if i < self.blocks_per_level:
                    h = ops.concatenate([h, skips.pop()], axis=-1)
                h = blk((h, embeddings[level]), training=training)
                if self.up_attention[level] is not None:
                    h = self.up_attention[level](h)
            if level > 0:
                # Nearest-neighbour ×2 by repetition: unlike a resize to a computed size,
                # it stays valid when height and width are unknown at trace time.
                h = ops.repeat(ops.repeat(h, 2, axis=1), 2, axis=2)
                h = self.upsamplers[level - 1](h)
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
        output_channels: channels of `μ(x)`.
        widths, blocks_per_level, attention_levels, embedding_dim, groups: as for
            `UNetDenoiser`.

    Examples:
    >>> net = UNetRegressor(output_channels=1, widths=(8, 16))
    >>> net(keras.ops.zeros((2, 16, 16, 2))).shape
    (2, 16, 16, 1)
    """

    def __init__(
        self,
        output_channels=1,
        widths=(32, 64, 128),
        blocks_per_level=1,
        attention_levels=(),
        embedding_dim=32,
        groups=8,
        **kwargs,
    ):
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
        unet = self.unet
        config.update(
            {
                "output_channels": self.output_channels,
                "widths": list(unet.widths),
                "blocks_per_level": unet.blocks_per_level,
                "attention_levels": list(unet.attention_levels),
                "embedding_dim": unet.embedding_dim,
                "groups": unet.groups,
            }
        )
        return config
