"""JAX multi-device engine: `keras.distribution` (DataParallel, ModelParallel) on `jax.jit`."""

import jax
import keras


def replica_share():
    """`(0, 1)`: JAX compiles one program over the global batch (no replicas)."""
    return 0, 1


def training_shards() -> int:
    """How many parts a global training batch is split into: the distribution's batch axis."""
    distribution = keras.distribution.distribution()
    if distribution is None:
        return 1
    mesh = distribution.device_mesh
    name = getattr(distribution, "batch_dim_name", mesh.axis_names[0])
    return int(mesh.shape[mesh.axis_names.index(name)])


def sampling_shards() -> int:
    """How many parts a sampling batch is split into: as training, on one process.

    1 with several processes: each one samples its own call whole (see `place`).
    """
    return 1 if jax.process_count() > 1 else training_shards()


def place(variables, values, arrays):
    """Put weights and a sampling batch where the active distribution wants them.

    Weights go to their variables' layouts (a no-op for a model built in the scope); the
    batch is split along its first axis. Without a distribution, nothing moves.
    """
    distribution = keras.distribution.distribution()
    if distribution is None:
        return values, arrays
    values = [
        jax.device_put(value, distribution.get_variable_layout(v).backend_layout)
        for v, value in zip(variables, values)
    ]
    mesh = distribution.device_mesh
    arrays = [
        jax.device_put(a, (
            distribution.get_data_layout(a.shape) if jax.process_count() == 1
            # Across processes a split result could not be read back here: the batch
            # is replicated (every process computes it whole, as one process would).
            else keras.distribution.TensorLayout([None] * len(a.shape), mesh)
        ).backend_layout)
        for a in arrays
    ]
    return values, arrays


def data_parallel(devices=None):
    """The scope of `keras.distribution.DataParallel` over `devices` (default: all)."""
    return scope(keras.distribution.DataParallel(devices=devices))


def scope(distribution):
    """`distribution.scope()`; with several processes Keras's own data sharding is off.

    Each process feeds its own rows of every global batch
    (`keras_cvdm.distribute.process_rows` / `ProcessPart`): the data are already split.
    """
    if jax.process_count() > 1:
        distribution.auto_shard_dataset = False
    return distribution.scope()


def initialize(job_addresses, num_processes, process_id):
    """`jax.distributed.initialize` through Keras: the first address is the coordinator."""
    keras.distribution.initialize(
        job_addresses=job_addresses[0], num_processes=num_processes, process_id=process_id
    )


def feed_share():
    """`(index, count)`: this process feeds part `index` of `count` of each global batch.

    Keras's JAX trainer assembles the global batch from every process's local rows.
    """
    return jax.process_index(), jax.process_count()
