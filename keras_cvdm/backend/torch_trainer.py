"""PyTorch training step: autograd on the shared loss."""

import torch
from keras.utils import unpack_x_y_sample_weight


class CVDMTrainer:
    def train_step(self, data):
        x, y, _ = unpack_x_y_sample_weight(data)
        self.zero_grad()
        total, terms = self.compute_loss_terms(x, y, training=True)
        self.optimizer.scale_loss(total).backward()
        variables = self.trainable_weights
        grads = [v.value.grad for v in variables]
        with torch.no_grad():
            skipped = self._apply_if_finite(total, grads, variables)
        return self._update_trackers(total, terms, skipped)

    def test_step(self, data):
        x, y, _ = unpack_x_y_sample_weight(data)
        with torch.no_grad():
            total, terms = self.compute_loss_terms(x, y, training=False)
        return self._update_trackers(total, terms)
