"""The CVDM model: a conditional diffusion model whose noise schedule is learned."""

import types
import warnings

import keras
import numpy as np
from keras import ops

from keras_cvdm import losses, metrics, sampling, schedules, validation
from keras_cvdm.backend import CVDMTrainer, distribution, make_sampler
from keras_cvdm.layers.conv_net import ConvNet
from keras_cvdm.layers.unet import UNetDenoiser

_TERM_NAMES = ("noise_loss", "beta_loss", "prior_loss", "gamma_loss")


@keras.saving.register_keras_serializable(package="keras_cvdm")
class CVDM(CVDMTrainer, keras.Model):
    """Conditional Variational Diffusion Model.

    Learns `p(y | x)` with a diffusion whose variance schedule `γ(t, x)` is learned per
    pixel and conditioned on the measurement `x` (della Maggiora et al., ICLR 2024).
    `fit` trains the denoiser and the schedule together with the regularised loss
    `L_ε + w_β L_β + w_prior L_prior + w_γ α L_γ`; `predict_samples` and
    `predict_uncertainty` draw posterior samples.

    Args:
        target_channels: channels of `y`.
        schedule: `"learned"` (CVDM), `"linear"` or `"cosine"` (a conventional
            conditional DDPM), or a `keras_cvdm.schedules.Schedule` layer.
        denoiser: the noise predictor, called as `denoiser([z_t, x, gamma],
            training=...)` and returning ε̂ with `z_t`'s shape. Default: a
            `UNetDenoiser(target_channels)`.
        noise_weight, beta_weight, prior_weight, gamma_weight: weights of the loss
            terms (defaults: the reference implementation's 1, 2, 2, 2).
        alpha: the extra factor of `L_γ` (1e-3).
        snr_order: `n` of the SNR series in `L_γ`.
        residual: diffuse `y − x[..., :target_channels]` instead of `y` (when x and y
            share a grid, as in super-resolution).
        zero_mean: learn a mean network `μ(x)` with MSE and diffuse `y − μ(x)`.
        mean_network: the layer `μ` used with `zero_mean=True`, called as
            `mean_network(x)` and returning `target_channels` channels. Default: a
            small `ConvNet`; a `UNetRegressor` sees the whole image.
        target_scale: the diffused quantity is divided by this (residual / zero-mean
            targets are often small).
        mean_weight: weight of the mean network's MSE (`zero_mean=True` only).
        num_timesteps: `T`; the boundary terms sit at `t₀ = 1/T` and `t₁ = 1 − 1/T`,
            and it is the default number of sampling steps.
        seed: seed of the model's `SeedGenerator` (times and noise during training).
        metadata: what the model knows of its task, as a JSON object: the task name,
            the normalisation between physical units and model units, the forward
            model's optics, the phase convention, the default sampler and steps, and a
            preset's recipe and scores (the schema of a preset's `metadata.json`; see
            docs/architecture.md). It is part of the model's config, so it survives
            `model.save` / `keras.saving.load_model` and `save_preset` / `from_preset`;
            `keras_cvdm.qpi.reconstruct` and `keras_cvdm.sr.reconstruct` read it.

    Examples:
    >>> model = CVDM(target_channels=1, denoiser=UNetDenoiser(1, widths=(8, 16)))
    >>> model.compile(optimizer=keras.optimizers.Adam(1e-4))
    >>> x = np.random.rand(8, 16, 16, 2).astype("float32")
    >>> y = np.random.rand(8, 16, 16, 1).astype("float32")
    >>> history = model.fit(x, y, epochs=1, verbose=0)

    References:
        della Maggiora et al., "Conditional Variational Diffusion Models", ICLR 2024
        (arXiv:2312.02246).
    """

    def __init__(
        self,
        target_channels=1,
        schedule="learned",
        denoiser=None,
        noise_weight=1.0,
        beta_weight=2.0,
        prior_weight=2.0,
        gamma_weight=2.0,
        alpha=1e-3,
        snr_order=1,
        residual=False,
        zero_mean=False,
        mean_network=None,
        target_scale=1.0,
        mean_weight=1.0,
        num_timesteps=200,
        seed=None,
        metadata=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if residual and zero_mean:
            raise ValueError("Choose residual=True or zero_mean=True, not both.")
        if target_scale <= 0:
            raise ValueError(f"target_scale must be positive, got {target_scale}.")
        if num_timesteps < 2:
            raise ValueError(f"num_timesteps must be at least 2, got {num_timesteps}.")
        self.target_channels = int(target_channels)
        self.schedule = schedules.get(schedule, self.target_channels)
        if isinstance(denoiser, dict):
            denoiser = keras.saving.deserialize_keras_object(denoiser)
        self.denoiser = denoiser if denoiser is not None else UNetDenoiser(
            self.target_channels, name="denoiser"
        )
        for part, name in ((self.schedule, "schedule"), (self.denoiser, "denoiser")):
            channels = getattr(part, "target_channels", self.target_channels)
            if channels != self.target_channels:
                raise ValueError(
                    f"The {name} was built for target_channels={channels} but the model has "
                    f"target_channels={self.target_channels}; give both the same value."
                )
        self.noise_weight = float(noise_weight)
        self.beta_weight = float(beta_weight)
        self.prior_weight = float(prior_weight)
        self.gamma_weight = float(gamma_weight)
        self.alpha = float(alpha)
        self.snr_order = int(snr_order)
        self.residual = bool(residual)
        self.zero_mean = bool(zero_mean)
        self.target_scale = float(target_scale)
        self.mean_weight = float(mean_weight)
        self.num_timesteps = int(num_timesteps)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="seed_generator")
        if mean_network is not None and not self.zero_mean:
            raise ValueError("mean_network is only used with zero_mean=True; set zero_mean=True.")
        if isinstance(mean_network, dict):
            mean_network = keras.saving.deserialize_keras_object(mean_network)
        if self.zero_mean and mean_network is None:
            mean_network = ConvNet(self.target_channels, filters=32, depth=4, name="mean_network")
        self.mean_network = mean_network
        names = ("loss",) + _TERM_NAMES + (("mean_loss",) if self.zero_mean else ())
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}
        # Training steps whose loss or gradient was not finite: skipped, weights untouched.
        self.trackers["skipped_updates"] = keras.metrics.Sum(name="skipped_updates")
        self._condition_shape = None
        self._samplers = {}
        self.metadata = metadata

    # ------------------------------------------------------------------ construction

    @property
    def metadata(self):
        """The task metadata (a dict; empty for a model that knows no task)."""
        return self._metadata

    def __setattr__(self, name, value):
        if name == "metadata":
            # Data, not state: set through the property, past Keras's (and TensorFlow's)
            # attribute tracking, which would wrap the dict and make it a dependency.
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    @metadata.setter
    def metadata(self, value):
        object.__setattr__(self, "_metadata", validation.check_metadata(value))

    @classmethod
    def build_default(cls, condition_shape, target_channels: int = 1, **kwargs) -> "CVDM":
        """A CVDM with the default U-Net, built for `condition_shape = (H, W, C)`.

        Args:
            condition_shape: `(H, W, C)` of one condition image (H and W may be None).
            target_channels: channels of `y`.
            **kwargs: any other constructor argument.

        Returns:
            The built model.
        """
        model = cls(target_channels=target_channels, **kwargs)
        model.build((None,) + tuple(condition_shape))
        return model

    @property
    def downsampling_factor(self):
        """Image height and width must be multiples of this."""
        parts = (self.denoiser, self.mean_network)
        return max(int(getattr(part, "downsampling_factor", 1)) for part in parts)

    @property
    def condition_channels(self):
        """Channels of `x` the model was built for (None before it is built)."""
        return None if self._condition_shape is None else self._condition_shape[-1]

    def build(self, input_shape):
        """Create all weights for conditions of shape `(N, H, W, C)`.

        Accepts the condition shape, or the shapes `[z_t, x, t]` of `call`'s inputs.
        """
        shape = tuple(input_shape)
        if shape and isinstance(shape[0], (list, tuple)):
            shape = tuple(shape[1])
        validation.check_condition_shape(shape, multiple=1)
        if shape[-1] is None:
            raise ValueError("The condition's channel count must be known to build the model.")
        self._condition_shape = (None, None, None, int(shape[-1]))
        if not self.schedule.built:
            self.schedule.build(x_shape=self._condition_shape)
        # One pass through every sub-network on a tiny batch creates all weights
        # (convolution weights do not depend on the image size).
        side = 2 * self.downsampling_factor
        x = ops.zeros((1, side, side, self.condition_channels))
        y = ops.zeros((1, side, side, self.target_channels))
        self.compute_loss_terms(x, y, t=ops.full((1,), 0.5), eps=y)
        self.built = True

    def get_build_config(self):
        if self._condition_shape is None:
            return None
        return {"condition_shape": list(self._condition_shape)}

    def build_from_config(self, config):
        if config and "condition_shape" in config:
            self.build(tuple(config["condition_shape"]))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "target_channels": self.target_channels,
                "schedule": keras.saving.serialize_keras_object(self.schedule),
                "denoiser": keras.saving.serialize_keras_object(self.denoiser),
                "noise_weight": self.noise_weight,
                "beta_weight": self.beta_weight,
                "prior_weight": self.prior_weight,
                "gamma_weight": self.gamma_weight,
                "alpha": self.alpha,
                "snr_order": self.snr_order,
                "residual": self.residual,
                "zero_mean": self.zero_mean,
                "mean_network": (
                    keras.saving.serialize_keras_object(self.mean_network)
                    if self.zero_mean
                    else None
                ),
                "target_scale": self.target_scale,
                "mean_weight": self.mean_weight,
                "num_timesteps": self.num_timesteps,
                "seed": self.seed,
                "metadata": self.metadata,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("schedule", "denoiser", "mean_network"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)

    # ------------------------------------------------------------------ the maths

    def schedule_map(self, x):
        """λ(x), the per-pixel noise-rate map of the learned schedule, as numpy.

        Args:
            x: conditions `(N, H, W, C)`.

        Returns:
            `(N, H, W, target_channels)` for the learned schedule; ones `(N, 1, 1, 1)` for
            a fixed one. Large λ: the pixel is noised fast (its SNR falls far);
            `γ(1, x) = exp(−λ(x))`.

        Raises:
            ValueError: `x` refused as by `predict_samples` (empty, not real, not finite,
                beyond `validation.MAX_MODEL_MAGNITUDE`), or non-finite weights.
        """
        x = self._prepare_condition(x)
        return ops.convert_to_numpy(self.schedule.schedule_map(x))

    def gamma(self, t, x):
        """γ(t, x) as numpy.

        Args:
            t: a scalar time in [0, 1], or one time per input.
            x: conditions `(N, H, W, C)`.

        Returns:
            γ, broadcastable to `(N, H, W, target_channels)`.

        Raises:
            ValueError: `t` outside [0, 1], not finite, or neither a scalar nor one time
                per input; `x` refused as by `predict_samples`.
        """
        x = self._prepare_condition(x)
        t = validation.check_real(t, "t")
        validation.check_finite(t, "t")
        if t.size and (t.min() < 0 or t.max() > 1):
            raise ValueError(
                f"t must lie in [0, 1] (diffusion time); got values from {t.min():g} to "
                f"{t.max():g}. Rescale step indices k of T steps to t = k / T."
            )
        if t.ndim > 1 or t.size not in (1, x.shape[0]):
            raise ValueError(
                f"t must be a scalar or one time per input ({x.shape[0]}), got shape {t.shape}."
            )
        t = ops.broadcast_to(ops.convert_to_tensor(t.astype("float32")), (ops.shape(x)[0],))
        return ops.convert_to_numpy(self.schedule.gamma(t, self.schedule.schedule_map(x)))

    def diffusion_target(self, x, y):
        """The quantity diffused: `y`, `y − x[..., :C]` or `y − μ(x)`, over `target_scale`.

        Args:
            x: conditions `(B, H, W, C)` (tensor).
            y: targets `(B, H, W, target_channels)` (tensor).

        Returns:
            The diffusion target, `y`'s shape.
        """
        return (y - self._target_offset(x)) / self.target_scale

    def target_from_diffusion(self, x, d):
        """Invert `diffusion_target`: map a diffused-space sample back to `y`.

        Args:
            x: conditions `(B, H, W, C)` (tensor).
            d: samples in the diffused space.

        Returns:
            The samples in target units.
        """
        return d * self.target_scale + self._target_offset(x)

    def _target_offset(self, x):
        if self.residual:
            if x.shape[-1] is not None and x.shape[-1] < self.target_channels:
                raise ValueError(
                    f"residual=True needs x to have at least target_channels="
                    f"{self.target_channels} channels; it has {x.shape[-1]}."
                )
            return ops.cast(x[..., : self.target_channels], "float32")
        if self.zero_mean:
            return ops.cast(ops.stop_gradient(self.mean_network(x)), "float32")
        return ops.zeros((), "float32")

    def call(self, inputs, training=False):
        """One denoiser evaluation: `[z_t, x, t] → ε̂(z_t, x, γ(t, x))`.

        `t` holds one time per example. Sampling is `predict_samples`.
        """
        z_t, x, t = inputs
        gamma = self.schedule.gamma(t, self.schedule.schedule_map(x))
        return self.denoiser([z_t, x, gamma], training=training)

    def compute_loss_terms(self, x, y, t=None, eps=None, training=False):
        """The total loss and its unweighted terms for a batch (backend-free).

        Args:
            x, y: condition and target batches, `(B, H, W, ·)`.
            t: times `(B,)`; drawn `U(0, 1)` from the model's seed generator if None.
            eps: noise with `y`'s shape; drawn from the seed generator if None.
            training: passed to the denoiser.

        Returns:
            `(total, terms)`: the weighted scalar loss and a dict of the scalar terms
            (`noise_loss`, `beta_loss`, `prior_loss`, `gamma_loss`, and `mean_loss`
            with `zero_mean=True`).
        """
        validation.check_pair_shapes(
            x.shape, y.shape, self.target_channels, self.condition_channels,
            self.downsampling_factor,
        )
        x = ops.cast(x, "float32")
        y = ops.cast(y, "float32")
        batch = ops.shape(y)[0]
        if self.zero_mean:
            # One pass of μ serves both its MSE and the diffused residual (which must
            # not train μ: the gradient of the residual stops there).
            mean = ops.cast(self.mean_network(x), "float32")
            target = (y - ops.stop_gradient(mean)) / self.target_scale
        else:
            target = self.diffusion_target(x, y)
        if t is None:
            t = self._draw(keras.random.uniform, (batch,))
        if eps is None:
            eps = self._draw(keras.random.normal, ops.shape(target))
        t = ops.cast(t, "float32")
        eps = ops.cast(eps, "float32")

        lam = self.schedule.schedule_map(x)  # once per input
        terms_t = self.schedule.terms(t, lam)
        edge = 1.0 / self.num_timesteps
        gamma_t0 = self.schedule.gamma(ops.full((batch,), edge), lam)
        gamma_t1 = self.schedule.gamma(ops.full((batch,), 1.0 - edge), lam)

        gamma = terms_t["gamma"]
        z_t = ops.sqrt(gamma) * target + ops.sqrt(1.0 - gamma) * eps
        eps_hat = self.denoiser([z_t, x, gamma], training=training)

        terms = losses.cvdm_loss_terms(
            eps, eps_hat, target, terms_t, gamma_t0, gamma_t1, self.snr_order
        )
        total = losses.weighted_total(
            terms, self.noise_weight, self.beta_weight, self.prior_weight,
            self.gamma_weight, self.alpha,
        )
        if self.zero_mean:
            terms["mean_loss"] = ops.mean(ops.square(mean - y))
            total = total + self.mean_weight * terms["mean_loss"]
        return total, terms

    def _draw(self, draw, shape):
        """A training draw (times or noise) from the model's seed generator.

        Under a `tf.distribute` strategy every replica holds a contiguous part of the
        global batch and the same generator state: each draws for the whole global
        batch and keeps its own rows, so the replicas' draws are the rows one device
        would draw, not copies of each other. Elsewhere it is one plain draw.
        """
        index, count = distribution.replica_share()
        if count == 1:
            return draw(shape, seed=self.seed_generator)
        return ops.take(draw((count,) + tuple(shape), seed=self.seed_generator), index, axis=0)

    # ------------------------------------------------------------------ sampling

    def predict_samples(
        self,
        x,
        num_samples=1,
        num_steps=None,
        sampler="ancestral",
        clip=None,
        batch_size=None,
        seed=None,
        verbose="auto",
    ):
        """Draw posterior samples `y ~ p(y | x)`.

        λ(x) is computed once per input; the loop over steps runs inside one compiled
        function per backend. Inputs of any height and width are reflect-padded to the
        denoiser's multiple and cropped back.

        Args:
            x: conditions, `(N, H, W, C)` numpy array (or one image `(H, W, C)`).
            num_samples: samples per input.
            num_steps: denoiser evaluations per sample (default `num_timesteps`, 200).
            sampler: `"ancestral"` (stochastic, the paper's, 200 steps), `"ddim"` or
                `"dpmpp2m"` (deterministic given the starting noise), or `"dpmpp2m_sde"`
                (stochastic; with 20 steps as accurate and as well calibrated as
                ancestral-200, the presets' default). This method keeps the paper's
                ancestral-200 as its own default; `qpi.reconstruct`, `sr.reconstruct` and
                the CLI use the model's metadata, else `sampling.RECOMMENDED`. See
                docs/architecture.md.
            clip: clip the predicted clean image ŷ to [−1, 1] at each step (in the
                diffused space). Default: True for plain targets (images in [−1, 1]),
                False with `residual` or `zero_mean` (their diffused values are not
                bounded by 1).
            batch_size: how many (input, sample) pairs run together (default 16).
            seed: integer for reproducible samples; None draws a fresh seed. Sample `k`
                of input `n` depends on `(seed, n, k)` only: the same seed gives the same
                samples whatever `batch_size` and whatever the other inputs of the stack,
                up to floating-point rounding; with the deterministic samplers (DDIM,
                DPM-Solver++(2M) ODE) the samples also agree across backends up to
                rounding.
            verbose: 0 silent, 1 or "auto" a progress bar over batches.

        Returns:
            numpy array `(N, num_samples, H, W, target_channels)` in target space
            (residual / zero-mean transforms undone).

        Raises:
            ValueError: with the fix named, for an empty batch, booleans or complex
                numbers, NaN/Inf, values beyond `validation.MAX_MODEL_MAGNITUDE` (1e4: no
                normalised measurement is that large), counts that are not positive
                whole numbers, an unknown sampler, or a model whose weights are not all
                finite (training diverged: retrain or reload them).

        Examples:
        >>> model = CVDM(target_channels=1, denoiser=UNetDenoiser(1, widths=(8, 16)))
        >>> x = np.zeros((2, 12, 12, 2), "float32")
        >>> model.predict_samples(x, num_samples=3, num_steps=2, seed=0, verbose=0).shape
        (2, 3, 12, 12, 1)
        """
        x = validation.check_real(x, "x")
        single = x.ndim == 3
        if single:
            x = x[None]
        x = ops.convert_to_numpy(self._prepare_condition(x))
        if sampler not in sampling.SAMPLERS:
            raise ValueError(f"sampler must be one of {sampling.SAMPLERS}, got {sampler!r}.")
        num_steps = validation.check_int(
            self.num_timesteps if num_steps is None else num_steps, "num_steps", minimum=1
        )
        num_samples = validation.check_int(num_samples, "num_samples", minimum=1)
        batch_size = validation.check_int(
            16 if batch_size is None else batch_size, "batch_size", minimum=1
        )
        if clip is None:
            clip = not (self.residual or self.zero_mean)
        out = sampling.draw_samples(
            self, x, num_samples, num_steps, sampler, bool(clip), batch_size,
            sampling.resolve_seed(seed), verbose,
        )
        return out[0] if single else out

    def compiled_sampler(self, num_steps, sampler, clip):
        """The backend's compiled sampling loop for these settings, built once and cached.

        Args:
            num_steps: denoiser evaluations per sample.
            sampler: one of `keras_cvdm.sampling.SAMPLERS`.
            clip: clip ŷ to [−1, 1] at every step.

        Returns:
            `fn(x, z_init, keys) → ŷ`, with `keys` the int32 `(B, 2)` per-pair noise keys
            of `keras_cvdm.sampling.pair_noise` (see `keras_cvdm.sampling.reverse_diffusion`).
        """
        key = (int(num_steps), sampler, bool(clip))
        if key not in self._samplers:
            self._samplers[key] = make_sampler(self, *key)
        return self._samplers[key]

    def predict_uncertainty(self, x, num_samples=20, **kwargs):
        """Per-pixel posterior mean and standard deviation from `num_samples` samples.

        Args:
            x: conditions `(N, H, W, C)`.
            num_samples: samples per input (the paper uses 20).
            **kwargs: passed to `predict_samples` (`num_steps`, `sampler`, `seed`, ...).

        Returns:
            `(mean, std)`, each `(N, H, W, target_channels)`; std uses `ddof=1`.
        """
        if validation.check_int(num_samples, "num_samples") < 2:
            raise ValueError("predict_uncertainty needs num_samples >= 2 for a standard deviation.")
        samples = self.predict_samples(x, num_samples=num_samples, **kwargs)
        return metrics.mean_and_std(samples, axis=0 if np.ndim(x) == 3 else 1)

    # ------------------------------------------------------------------ training plumbing

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _update_trackers(self, total, terms, skipped=None):
        """Update the trackers and return the logs (used by every backend).

        `skipped` (training steps only) is positive for a step whose update was skipped
        (non-finite loss or gradient): the step is counted in `skipped_updates` and left
        out of the loss means, so one bad batch does not turn the epoch's logged loss
        into NaN. Evaluation steps (`skipped` None) update nothing, and their means stay
        plain: a non-finite evaluation batch shows as a NaN loss.
        """
        kept = 1.0 if skipped is None else ops.cast(ops.less_equal(skipped, 0.0), "float32")
        for name, value in (("loss", total),) + tuple(terms.items()):
            value = ops.cast(value, "float32")
            if skipped is not None:
                value = ops.where(kept > 0, value, 0.0)
            self.trackers[name].update_state(value, kept)
        self.trackers["skipped_updates"].update_state(0.0 if skipped is None else skipped)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def _prepare_condition(self, x):
        """Validate a condition batch (numpy, tensor or list), build the model if needed.

        Shape and channels, a non-empty batch, real finite values within
        `validation.MAX_MODEL_MAGNITUDE` (checked before the float32 cast, so float64
        values beyond float32 are refused, not turned into Inf), and finite weights.
        """
        x = validation.check_real(x, "x")
        validation.check_condition_shape(x.shape, self.condition_channels, 1)
        validation.check_not_empty(x.shape, "x")
        validation.check_finite(x, "x")
        validation.check_magnitude(x, "x")
        x = x.astype("float32")
        if not self.built:
            self.build(x.shape)
        validation.check_condition_shape(x.shape, self.condition_channels, 1)
        validation.check_finite_weights(self)
        return ops.convert_to_tensor(x, "float32")

    def _check_training_data(self, x, y):
        """Validate the first batch of `fit`/`evaluate` data and build the model from it.

        Returns:
            `x`, or for a Python generator an equivalent generator that yields the batch
            taken out for the check first.
        """
        if isinstance(x, types.GeneratorType):
            first = next(x, None)
            if first is None:
                return x  # Keras refuses an empty generator with a clear message.
            pair = tuple(first[:2]) if isinstance(first, (tuple, list)) else (first, None)
            self._check_training_data(*pair)

            def replay(rest=x):
                yield first
                yield from rest

            return replay()
        first = validation.first_batch(x, y)
        if first is None:
            if not self.built:
                raise ValueError(
                    "Cannot infer the condition shape from this data source. Call "
                    "model.build((None, H, W, C)) before fit(), or pass numpy arrays, a "
                    "keras.utils.PyDataset, a tf.data.Dataset or a torch DataLoader."
                )
            return x
        bx, by = first
        if by is None:
            raise ValueError(
                "CVDM needs (x, y) pairs: pass fit(x, y) with arrays, or a dataset that "
                "yields (condition, target) tuples."
            )
        bx, by = np.asarray(bx), np.asarray(by)
        validation.check_pair_shapes(
            bx.shape, by.shape, self.target_channels, self.condition_channels,
            self.downsampling_factor,
        )
        if bx.shape[0] == 0:
            raise ValueError(
                "The training data is empty (0 examples). Pass at least one (x, y) pair."
            )
        validation.check_finite(bx, "x")
        validation.check_finite(by, "y")
        if not (self.residual or self.zero_mean):
            # Plain targets are diffused as they are and every sample is clipped to
            # [-1, 1]: a target outside that range cannot be reproduced.
            peak = float(np.max(np.abs(by))) / self.target_scale
            if peak > 1.0 + 1e-3:
                raise ValueError(
                    f"y reaches |y| / target_scale = {peak:.4g}, but this model diffuses "
                    "targets in [-1, 1] and clips its samples to that range. Normalise the "
                    "targets to [-1, 1] first (e.g. y / 127.5 - 1 for 8-bit images, or a "
                    "keras_cvdm.data normalisation), build the model with "
                    "target_scale >= the largest |y|, or diffuse a difference instead "
                    "(residual=True or zero_mean=True)."
                )
        if not self.built:
            self.build(bx.shape)
        return x

    def fit(self, x=None, y=None, **kwargs):
        if kwargs.get("sample_weight") is not None or kwargs.get("class_weight") is not None:
            raise ValueError(
                "CVDM does not support sample_weight or class_weight: every pixel enters "
                "the diffusion loss with weight 1. Remove the argument."
            )
        x = self._check_training_data(x, y)
        validation_data = kwargs.get("validation_data")
        if validation_data is not None:
            if isinstance(validation_data, (tuple, list)):
                self._check_training_data(*validation_data[:2])
            else:
                kwargs["validation_data"] = self._check_training_data(validation_data, None)
        history = super().fit(x, y, **kwargs)
        skipped = int(round(sum(history.history.get("skipped_updates", ()))))
        if skipped:
            warnings.warn(
                f"{skipped} training update(s) were skipped because the loss or a gradient "
                "was NaN or Inf; the weights were left unchanged at those steps (see the "
                "'skipped_updates' metric per epoch). Check the data for non-finite values "
                "in streamed batches, or lower the learning rate. (Under a "
                "LossScaleOptimizer a few skipped steps while its loss scale falls are "
                "normal.)",
                RuntimeWarning,
                stacklevel=2,
            )
        return history

    def evaluate(self, x=None, y=None, **kwargs):
        x = self._check_training_data(x, y)
        return super().evaluate(x, y, **kwargs)
