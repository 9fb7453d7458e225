"""TensorFlow training step: `tf.GradientTape` around the shared loss."""

import tensorflow as tf
from keras.utils import unpack_x_y_sample_weight

from keras_cvdm.backend.tensorflow_distribution import replica_share
from keras_cvdm.numerics import (
    clip_gradients,
    clips_gradients,
    skips_non_finite_itself,
    update_is_finite,
)


def _apply_if_finite(optimizer, total, grads, variables):
    """Apply the update only when the loss and every gradient are finite, in the graph.

    Under a `tf.distribute` strategy the replicas agree on one verdict (a NaN on any of
    them skips the step on all, so the weights stay in sync), and the conditional runs
    in the cross-replica context where the optimizer's own synchronisation is allowed.

    Returns:
        1.0 if the update was skipped, else 0.0, divided by the number of replicas (the
        step counter is a sum over replicas: its value is read summed across them).
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


def _clip_global_gradient(optimizer, grads, count):
    """Clip the global gradient once, as one device would, under `count` > 1 replicas.

    A Keras optimizer clips each replica's share before it sums the shares: the clip
    would act on a 1/count part. Here the shares are summed first (the same sum on
    every replica), clipped, and handed back divided by `count`, which the optimizer's
    own (now inactive) clip leaves alone and its sum restores.
    """
    context = tf.distribute.get_replica_context()
    kept = [g for g in grads if g is not None]
    summed = iter(context.all_reduce(tf.distribute.ReduceOp.SUM, kept))
    grads = clip_gradients(optimizer, [None if g is None else next(summed) for g in grads])
    return [None if g is None else g / count for g in grads]


def _clips_plain_gradients(optimizer):
    """The optimizer clips the gradient it receives as it is (no loss scale to undo, no
    accumulation over steps first): then the step can clip the global sum itself.
    Otherwise Keras's own per-replica clip stays (README, Scaling)."""
    return (
        clips_gradients(optimizer)
        and not skips_non_finite_itself(optimizer)
        and not getattr(optimizer, "loss_scale_factor", None)
        and not getattr(optimizer, "gradient_accumulation_steps", None)
    )


class CVDMTrainer:
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras builds an unbuilt model here from one batch, which under a strategy it
        # first reduces across replicas; MultiWorkerMirroredStrategy cannot reduce an
        # (x, y) tuple. A CVDM is always built from the first batch before `fit` and
        # `evaluate` get here, so no batch is needed (only the optimizer is built).
        if self.built and getattr(self, "_compile_metrics", None) is None:
            super()._maybe_symbolic_build()
        else:
            super()._maybe_symbolic_build(iterator, data_batch)

    def train_step(self, data):
        x, y, _ = unpack_x_y_sample_weight(data)
        _, count = replica_share()
        with tf.GradientTape() as tape:
            total, terms = self.compute_loss_terms(x, y, training=True)
            # Replicas' gradients are summed: each differentiates its share of the mean.
            scaled = self.optimizer.scale_loss(total / count if count > 1 else total)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        if count > 1 and _clips_plain_gradients(self.optimizer):
            grads = _clip_global_gradient(self.optimizer, grads, count)
        if not self.optimizer.built:
            self.optimizer.build(variables)
        skipped = _apply_if_finite(self.optimizer, total, grads, variables)
        return _for_keras(self._update_trackers(total, terms, skipped))

    def test_step(self, data):
        x, y, _ = unpack_x_y_sample_weight(data)
        total, terms = self.compute_loss_terms(x, y, training=False)
        return _for_keras(self._update_trackers(total, terms))


def _for_keras(logs):
    """The step's logs in the form Keras reduces across the replicas of its strategy.

    Across several worker processes Keras averages the logs along their first axis
    (`MultiWorkerMirroredStrategy`), which a scalar lacks: there they travel as
    one-element vectors and come back scalars.
    """
    resolver = getattr(tf.distribute.get_strategy(), "cluster_resolver", None)
    if resolver is None or len(resolver.cluster_spec().as_dict().get("worker", ())) < 2:
        return logs
    return {name: tf.reshape(value, (1,)) for name, value in logs.items()}
