"""Multi-device and multi-process runs for tests/test_distribute.py, one per subprocess.

The device count of a JAX or TensorFlow process is fixed when the framework starts, so
each run is its own process. It prints one JSON line:

    python tests/distributed_worker.py devices
        one device vs `data_parallel` over two (and `model_parallel` on JAX): the
        training losses and final weights, and samples for the same seed;
    python tests/distributed_worker.py worker ADDRESSES NUM_PROCESSES PROCESS_ID
        one process of a multi-process `data_parallel` run: its training losses.
"""

import contextlib
import json
import os
import sys

BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")
if BACKEND == "jax" and sys.argv[1] == "devices":
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
if BACKEND == "tensorflow" and sys.argv[1] == "devices":
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_cvdm import CVDM, distribute  # noqa: E402
from keras_cvdm.backend import distribution as engine  # noqa: E402
from keras_cvdm.layers import UNetDenoiser  # noqa: E402

BATCH = 8
EPOCHS = 2


def data():
    rng = np.random.default_rng(0)
    x = rng.random((16, 16, 16, 2)).astype("float32")
    y = (rng.random((16, 16, 16, 1)) * 2 - 1).astype("float32")
    return x, y


class Batches(keras.utils.PyDataset):
    def __init__(self, x, y, batch):
        super().__init__()
        self.x, self.y, self.batch = x, y, batch

    def __len__(self):
        return len(self.x) // self.batch

    def __getitem__(self, i):
        rows = slice(i * self.batch, (i + 1) * self.batch)
        return self.x[rows], self.y[rows]


def new_model():
    keras.utils.set_random_seed(0)
    model = CVDM(denoiser=UNetDenoiser(1, widths=(8, 16)), seed=0)
    model.build((None, 16, 16, 2))
    # An active clip (the gradient norm is far above 0.05) checks it acts on the
    # global gradient, as on one device.
    model.compile(optimizer=keras.optimizers.Adam(1e-3, global_clipnorm=0.05))
    return model


def train(scope=None, rows=None, poison=False):
    x, y = data()
    if poison:
        # A NaN in the last rows of the second batch: on two devices only the second
        # one sees it, and both must skip the step.
        y = y.copy()
        y[12:16] = np.nan
    batch = BATCH
    if rows is not None:
        x, y, batch = rows(x, y, batch)
    # A NaN is refused up front in arrays; streamed, it reaches the training step.
    fed = (Batches(x, y, batch),) if poison else (x, y)
    kwargs = {} if poison else {"batch_size": batch}
    with (scope or contextlib.nullcontext)():
        model = new_model()
        history = model.fit(*fed, epochs=EPOCHS, shuffle=False, verbose=0, **kwargs)
    weights = [np.asarray(w) for w in model.get_weights()]
    return history.history, weights, model


def samples(model, scope=None):
    x = data()[0][:5]
    out = {}
    for sampler in ("ancestral", "ddim"):
        with (scope or contextlib.nullcontext)():
            out[sampler] = model.predict_samples(x, num_samples=1, num_steps=3,
                                                 sampler=sampler, seed=7, batch_size=5,
                                                 verbose=0)
    return out


def devices():
    one, w_one, model = train()
    two, w_two, model_two = train(distribute.data_parallel)
    result = {
        "one_device": one,
        "data_parallel": two,
        "weight_difference": max(float(np.abs(a - b).max()) for a, b in zip(w_one, w_two)),
        "weight_scale": max(float(np.abs(a).max()) for a in w_one),
    }
    with distribute.data_parallel():
        result["sampling_shards"] = engine.sampling_shards()
    ref = samples(model)
    split = samples(model, distribute.data_parallel)
    split_built_inside = samples(model_two, distribute.data_parallel)
    for name in ref:
        result[f"sample_difference_{name}"] = float(np.abs(ref[name] - split[name]).max())
        result[f"sample_difference_{name}_inside"] = float(
            np.abs(samples(model_two)[name] - split_built_inside[name]).max()
        )
        result[f"sample_scale_{name}"] = float(np.abs(ref[name]).max())
    for name, scope in (("one_device", None), ("data_parallel", distribute.data_parallel)):
        history, weights, _ = train(scope, poison=True)
        result[f"nan_{name}"] = {"skipped_updates": history["skipped_updates"],
                                 "loss": history["loss"],
                                 "finite": bool(all(np.isfinite(w).all() for w in weights)),
                                 "weight_sum": float(sum(np.abs(w).sum() for w in weights))}
    result["cli"] = {kind: cli_final_loss(kind) for kind in (None, "data-parallel")}
    if BACKEND == "jax":
        mp, w_mp, model_mp = train(lambda: distribute.model_parallel(2))
        result["model_parallel"] = mp
        result["model_parallel_weight_difference"] = max(
            float(np.abs(a - b).max()) for a, b in zip(w_one, w_mp)
        )
        sharded = [v for v in model_mp.weights if len(v.value.sharding.device_set) > 1
                   and not v.value.sharding.is_fully_replicated]
        result["model_parallel_sharded_weights"] = len(sharded)
    return result


def cli_final_loss(kind):
    """`keras-cvdm train` (tiny SR run) on one device or with --distribute data-parallel."""
    import tempfile

    from keras_cvdm import cli

    output = os.path.join(tempfile.mkdtemp(), "run")
    argv = ["train", "--task", "sr", "--output", output, "--epochs", "1",
            "--steps-per-epoch", "2", "--batch-size", "4", "--image-size", "16",
            "--widths", "8,16", "--preview-every", "0"]
    cli.main(argv + (["--distribute", kind] if kind else []))
    with open(os.path.join(output, "preset", "metadata.json")) as f:
        training = json.load(f)["training"]
    return {"final_loss": training["final_loss"], "distribute": training["distribute"]}


def worker(addresses, num_processes, process_id):
    distribute.initialize(addresses, int(num_processes), int(process_id))
    history, weights, model = train(distribute.data_parallel, rows=distribute.process_rows)
    with distribute.data_parallel():
        s = model.predict_samples(data()[0][:3], num_samples=2, num_steps=2, seed=1, verbose=0)
    return {"history": history, "weight_sum": float(sum(np.abs(w).sum() for w in weights)),
            "sample_sum": float(np.abs(s).sum()), "samples_finite": bool(np.isfinite(s).all())}


if __name__ == "__main__":
    result = devices() if sys.argv[1] == "devices" else worker(*sys.argv[2:5])
    print("RESULT " + json.dumps(result), flush=True)
