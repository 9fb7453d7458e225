"""TensorFlow multi-device engine: `tf.distribute` (Mirrored and MultiWorkerMirrored)."""

import json
import os

import tensorflow as tf

_STRATEGIES = {}


def replica_share():
    """`(index, count)` of the replica running this code: (0, 1) outside a strategy.

    Under a strategy each replica holds a contiguous part of the global batch; `index`
    may be a tensor (the replica id inside the synchronised group).
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return 0, 1
    return context.replica_id_in_sync_group, context.num_replicas_in_sync


def training_shards() -> int:
    """How many parts a global batch is split into: the replicas of the active strategy."""
    return tf.distribute.get_strategy().num_replicas_in_sync


sampling_shards = training_shards


def run_sharded(fn, model, *arrays):
    """`fn(*arrays)` with the rows split evenly over the replicas, gathered in order.

    Only for a model whose weights were created in the active strategy's scope (mirrored
    on its devices); a model built outside it runs on its own device, as before.
    """
    strategy = tf.distribute.get_strategy()
    shards = strategy.num_replicas_in_sync
    if shards == 1 or not strategy.extended.variable_created_in_scope(model.weights[0].value):
        return fn(*arrays)
    rows = int(arrays[0].shape[0]) // shards

    def part(context):
        start = context.replica_id_in_sync_group * rows
        return tuple(a[start : start + rows] for a in arrays)

    values = strategy.experimental_distribute_values_from_function(part)
    out = strategy.run(lambda parts: fn(*parts), args=(values,))
    return strategy.gather(out, axis=0)


def data_parallel(devices=None):
    """The scope of a data-parallel strategy (one per process and device list).

    With `TF_CONFIG` set (several worker processes): `MultiWorkerMirroredStrategy`,
    which must be created before TensorFlow runs anything else in the process.
    Otherwise `MirroredStrategy` over `devices` (default: every GPU, else the CPU).
    """
    multi_worker = "TF_CONFIG" in os.environ
    key = ("multi_worker",) if multi_worker else tuple(devices or ())
    if key not in _STRATEGIES:
        if multi_worker:
            _STRATEGIES[key] = tf.distribute.MultiWorkerMirroredStrategy()
        else:
            _STRATEGIES[key] = tf.distribute.MirroredStrategy(devices or None)
    return _STRATEGIES[key].scope()


def initialize(job_addresses, num_processes, process_id):
    """Describe this worker to TensorFlow through `TF_CONFIG` (one address per worker)."""
    if len(job_addresses) != num_processes:
        raise ValueError(
            f"TensorFlow needs one address per worker: got {len(job_addresses)} address(es) "
            f"for {num_processes} processes. Pass them all, comma-separated, the same list "
            "in every process (e.g. 127.0.0.1:12345,127.0.0.1:12346)."
        )
    os.environ["TF_CONFIG"] = json.dumps(
        {"cluster": {"worker": list(job_addresses)},
         "task": {"type": "worker", "index": int(process_id)}}
    )


def feed_share():
    """`(0, 1)`: every worker feeds the whole global batch; `tf.distribute` shards it."""
    return 0, 1
