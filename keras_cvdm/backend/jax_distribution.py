"""JAX multi-device engine: `keras.distribution` (DataParallel, ModelParallel) on `jax.jit`."""

import jax
import keras


def replica_share():
    """`(0, 1)`: JAX compiles one program over the global batch (no replicas)."""
    return 0, 1


def sampling_shards() -> int:
    """How many parts a sampling batch is split into: the batch axis of the distribution."""
    distribution = keras.distribution.distribution()
    if distribution is None:
        return 1
    mesh = distribution.device_mesh
    name = getattr(distribution, "batch_dim_name", mesh.axis_names[0])
    return int(mesh.shape[mesh.axis_names.index(name)])


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
    arrays = [
        jax.device_put(a, distribution.get_data_layout(a.shape).backend_layout)
        for a in arrays
    ]
    return values, arrays


def data_parallel(devices=None):
    """The scope of `keras.distribution.DataParallel` over `devices` (default: all).

    With several processes each one feeds its own rows of every global batch
    (`keras_cvdm.distribute.process_rows` / `ProcessPart`), so Keras's own sharding of a
    `tf.data` input is turned off: the data are already split.
    """
    distribution = keras.distribution.DataParallel(devices=devices)
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
