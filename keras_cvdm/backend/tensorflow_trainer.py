"""TensorFlow training step: `tf.GradientTape` around the shared loss."""

import tensorflow as tf
from keras.utils import unpack_x_y_sample_weight

from keras_cvdm.numerics import skips_non_finite_itself, update_is_finite


def _apply_if_finite(optimizer, total, grads, variables):
    """Apply the update only when the loss and every gradient are finite, in the graph.

    Under a `tf.distribute` strategy the replicas agree on one verdict (a NaN on any of
    them skips the step on all, so the weights stay in sync), and the conditional runs
    in the cross-replica context where the optimizer's own synchronisation is allowed.

    Returns:
        1.0 if the update was skipped, else 0.0, divided by the number of replicas (the
        step counter is a sum over replicas).
    """
    finite = update_is_finite(optimizer, total, grads)
    context = tf.distribute.get_replica_context()
    replicas = 1 if context is None else context.num_replicas_in_sync
    if replicas > 1:
        bad = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.cast(~finite, "float32"))
        finite = tf.equal(bad, 0.0)
    if skips_non_finite_itself(optimizer):
        optimizer.apply(grads, variables)
    elif context is None or tf.__internal__.distribute.strategy_supports_no_merge_call():
        tf.cond(finite, lambda: optimizer.apply(grads, variables), lambda: None)
    else:

        def cross_replica(strategy, finite, grads):
            def apply():
                strategy.extended.call_for_each_replica(optimizer.apply, args=(grads, variables))

            finite = strategy.experimental_local_results(finite)[0]
            tf.cond(finite, apply, lambda: None)

        context.merge_call(cross_replica, args=(finite, grads))
    return (1.0 - tf.cast(finite, "float32")) / replicas


class CVDMTrainer:
    def train_step(self, data):
        x, y, _ = unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            total, terms = self.compute_loss_terms(x, y, training=True)
            scaled = self.optimizer.scale_loss(total)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        if not self.optimizer.built:
            self.optimizer.build(variables)
        skipped = _apply_if_finite(self.optimizer, total, grads, variables)
        return self._update_trackers(total, terms, skipped)

    def test_step(self, data):
        x, y, _ = unpack_x_y_sample_weight(data)
        total, terms = self.compute_loss_terms(x, y, training=False)
        return self._update_trackers(total, terms)
