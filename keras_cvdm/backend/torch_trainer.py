"""PyTorch training step: autograd on the shared loss."""

import torch
from keras import ops
from keras.utils import unpack_x_y_sample_weight

from keras_cvdm.numerics import skips_non_finite_itself, update_is_finite


class CVDMTrainer:
    def train_step(self, data):
        x, y, _ = unpack_x_y_sample_weight(data)
        self.zero_grad()
        total, terms = self.compute_loss_terms(x, y, training=True)
        self.optimizer.scale_loss(total).backward()
        variables = self.trainable_weights
        grads = [v.value.grad for v in variables]
        with torch.no_grad():
            # A non-finite loss or gradient leaves weights and optimizer state untouched
            # (a loss-scale optimizer skips such a step itself and lowers its scale).
            finite = update_is_finite(self.optimizer, total, grads)
            if bool(finite) or skips_non_finite_itself(self.optimizer):
                self.optimizer.apply(grads, variables)
        skipped = 1.0 - ops.cast(finite, "float32")
        return self._update_trackers(total, terms, skipped)

    def test_step(self, data):
        x, y, _ = unpack_x_y_sample_weight(data)
        with torch.no_grad():
            total, terms = self.compute_loss_terms(x, y, training=False)
        return self._update_trackers(total, terms)
