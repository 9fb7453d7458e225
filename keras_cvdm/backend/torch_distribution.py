"""PyTorch (and any other backend): Keras 3 has no multi-device engine here."""

import keras

_LIMIT = (
    f"Keras 3 has no distribution support on the {keras.backend.backend()} backend "
    "(keras.distribution is "
    "implemented for JAX; tf.distribute serves TensorFlow). Train on several devices "
    "with KERAS_BACKEND=jax (keras_cvdm.distribute.data_parallel / model_parallel) or "
    "KERAS_BACKEND=tensorflow (data_parallel); a trained model runs on any backend."
)


def replica_share():
    return 0, 1


def training_shards() -> int:
    return 1


sampling_shards = training_shards


def data_parallel(devices=None):
    raise NotImplementedError(_LIMIT)


def initialize(job_addresses, num_processes, process_id):
    raise NotImplementedError(_LIMIT)


def feed_share():
    return 0, 1
