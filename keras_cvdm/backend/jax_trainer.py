"""JAX training step: `jax.value_and_grad` over a stateless evaluation of the shared loss."""

import jax
import jax.numpy as jnp
from keras import StatelessScope
from keras.utils import unpack_x_y_sample_weight

from keras_cvdm.numerics import skips_non_finite_itself, update_is_finite


def _stateless(model, mapping, fn):
    """Run `fn()` with the model's variables mapped to values; return (result, scope)."""
    with StatelessScope(state_mapping=mapping) as scope:
        result = fn()
    return result, scope


def _current(scope, variables):
    values = []
    for v in variables:
        new = scope.get_current_value(v)
        values.append(v.value if new is None else new)
    return values


class CVDMTrainer:
    def _stateless_loss(self, trainable, non_trainable, optimizer_variables, x, y, training):
        mapping = list(zip(self.trainable_variables, trainable))
        mapping += list(zip(self.non_trainable_variables, non_trainable))
        if optimizer_variables is not None:
            mapping += list(zip(self.optimizer.variables, optimizer_variables))

        def fn():
            total, terms = self.compute_loss_terms(x, y, training=training)
            scaled = self.optimizer.scale_loss(total) if optimizer_variables is not None else total
            return scaled, total, terms

        (scaled, total, terms), scope = _stateless(self, mapping, fn)
        return scaled, (total, terms, _current(scope, self.non_trainable_variables))

    def _stateless_trackers(self, metrics_variables, total, terms, skipped=None):
        mapping = list(zip(self.metrics_variables, metrics_variables))
        logs, scope = _stateless(
            self, mapping, lambda: self._update_trackers(total, terms, skipped)
        )
        return logs, _current(scope, self.metrics_variables)

    def train_step(self, state, data):
        trainable, non_trainable, optimizer_variables, metrics_variables = state
        x, y, _ = unpack_x_y_sample_weight(data)
        grad_fn = jax.value_and_grad(self._stateless_loss, has_aux=True)
        (_, (total, terms, non_trainable)), grads = grad_fn(
            trainable, non_trainable, optimizer_variables, x, y, True
        )
        new_trainable, new_optimizer_variables = self.optimizer.stateless_apply(
            optimizer_variables, grads, trainable
        )
        # A non-finite loss or gradient keeps the old weights and optimizer state (a
        # loss-scale optimizer skips such a step itself and lowers its scale).
        finite = update_is_finite(self.optimizer, total, grads)
        keep = finite | skips_non_finite_itself(self.optimizer)
        trainable = [jnp.where(keep, new, old) for new, old in zip(new_trainable, trainable)]
        optimizer_variables = [
            jnp.where(keep, new, old)
            for new, old in zip(new_optimizer_variables, optimizer_variables)
        ]
        skipped = 1.0 - finite.astype("float32")
        logs, metrics_variables = self._stateless_trackers(
            metrics_variables, total, terms, skipped
        )
        return logs, (trainable, non_trainable, optimizer_variables, metrics_variables)

    def test_step(self, state, data):
        trainable, non_trainable, metrics_variables = state
        x, y, _ = unpack_x_y_sample_weight(data)
        _, (total, terms, non_trainable) = self._stateless_loss(
            trainable, non_trainable, None, x, y, False
        )
        logs, metrics_variables = self._stateless_trackers(metrics_variables, total, terms)
        return logs, (trainable, non_trainable, metrics_variables)
