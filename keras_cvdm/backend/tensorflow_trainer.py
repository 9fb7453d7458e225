"""TensorFlow training step: `tf.GradientTape` around the shared loss."""

import tensorflow as tf
from keras.utils import unpack_x_y_sample_weight


class CVDMTrainer:
    def train_step(self, data):
        x, y, _ = unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            total, terms = self.compute_loss_terms(x, y, training=True)
            scaled = self.optimizer.scale_loss(total)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        skipped = self._apply_if_finite(total, grads, variables)
        return self._update_trackers(total, terms, skipped)

    def test_step(self, data):
        x, y, _ = unpack_x_y_sample_weight(data)
        total, terms = self.compute_loss_terms(x, y, training=False)
        return self._update_trackers(total, terms)
