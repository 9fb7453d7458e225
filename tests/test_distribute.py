"""Multi-device and multi-process training and sampling (keras_cvdm.distribute).

Each run is a subprocess (tests/distributed_worker.py): a framework's device count is
fixed when it starts. JAX gets two host devices from `XLA_FLAGS`, TensorFlow two
logical CPUs; the multi-process runs start two workers on 127.0.0.1, one device each.
"""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_cvdm import distribute

BACKEND = keras.backend.backend()
WORKER = os.path.join(os.path.dirname(__file__), "distributed_worker.py")
ENGINES = ("jax", "tensorflow")


def run_worker(*args, timeout=600):
    proc = subprocess.run(
        [sys.executable, WORKER, *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="module")
def devices_run():
    if BACKEND not in ENGINES:
        return None
    return run_worker("devices")


def relative(a, b):
    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    return float(np.max(np.abs(a - b) / np.abs(b)))


def test_two_device_training_matches_one_device(devices_run):
    if BACKEND not in ENGINES:
        with pytest.raises(NotImplementedError, match="no distribution support"):
            distribute.data_parallel()
        return
    one, two = devices_run["one_device"], devices_run["data_parallel"]
    # Same times and noise per example, the global gradient clipped once: the runs
    # differ only by the order of floating-point sums.
    assert relative(two["loss"], one["loss"]) <= 1e-4
    assert relative(two["noise_loss"], one["noise_loss"]) <= 1e-4
    assert devices_run["weight_difference"] <= 1e-4 * devices_run["weight_scale"]
    assert two["skipped_updates"] == [0.0, 0.0]


def test_a_nan_on_one_device_skips_the_step_on_every_device(devices_run):
    if BACKEND not in ENGINES:
        with pytest.raises(NotImplementedError):
            distribute.data_parallel()
        return
    one, two = devices_run["nan_one_device"], devices_run["nan_data_parallel"]
    assert one["skipped_updates"] == [1.0, 1.0]  # one bad batch in each of 2 epochs
    assert two["skipped_updates"] == [1.0, 1.0]
    assert two["finite"] and np.all(np.isfinite(two["loss"]))
    assert relative(two["loss"], one["loss"]) <= 1e-4
    assert two["weight_sum"] == pytest.approx(one["weight_sum"], rel=1e-5)


def test_cli_train_distribute_matches_one_device(devices_run, tmp_path):
    if BACKEND not in ENGINES:
        from keras_cvdm import cli

        with pytest.raises(SystemExit, match="no distribution support"):
            cli.main(["train", "--task", "sr", "--output", str(tmp_path / "run"),
                      "--distribute", "data-parallel"])
        assert not (tmp_path / "run").exists()
        return
    one, two = devices_run["cli"]["null"], devices_run["cli"]["data-parallel"]
    assert two["distribute"] == "data-parallel" and one["distribute"] is None
    assert relative(two["final_loss"], one["final_loss"]) <= 1e-4


def test_model_parallel_splits_weights_and_matches_one_device(devices_run):
    if BACKEND != "jax":
        with pytest.raises(NotImplementedError, match="KERAS_BACKEND=jax"):
            distribute.model_parallel(2)
        return
    assert devices_run["model_parallel_sharded_weights"] > 10
    one = devices_run["one_device"]["loss"]
    assert relative(devices_run["model_parallel"]["loss"], one) <= 1e-4
    assert devices_run["model_parallel_weight_difference"] <= 1e-4 * devices_run["weight_scale"]


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_distributed_sampling_equals_one_device(devices_run, sampler):
    if BACKEND not in ENGINES:
        from keras_cvdm.backend import distribution

        assert distribution.sampling_shards() == 1  # no engine: one part, as ever
        return
    assert devices_run["sampling_shards"] == 2
    # 5 pairs over 2 devices: the last part is filled and trimmed.
    scale = devices_run[f"sample_scale_{sampler}"]
    assert devices_run[f"sample_difference_{sampler}"] <= 1e-5 * max(scale, 1.0)
    assert devices_run[f"sample_difference_{sampler}_inside"] <= 1e-5 * max(scale, 1.0)


def test_two_process_launch_matches_one_process(devices_run):
    if BACKEND not in ENGINES:
        with pytest.raises(NotImplementedError):
            distribute.initialize("127.0.0.1:1", 2, 0)
        return
    ports = free_ports(2 if BACKEND == "tensorflow" else 1)
    addresses = ",".join(f"127.0.0.1:{p}" for p in ports)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("XLA_FLAGS", None)
    procs = [
        subprocess.Popen([sys.executable, WORKER, "worker", addresses, "2", str(i)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for i in range(2)
    ]
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=600)
            lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
            assert proc.returncode == 0 and lines, err[-3000:]
            results.append(json.loads(lines[-1][len("RESULT "):]))
    finally:
        for proc in procs:
            proc.kill()
    one = devices_run["one_device"]
    for result in results:
        assert relative(result["history"]["loss"], one["loss"]) <= 1e-4
    assert results[0]["weight_sum"] == pytest.approx(results[1]["weight_sum"], rel=1e-6)
    # Sampling in a multi-process run: every process gets the same, readable samples.
    assert results[0]["samples_finite"] and results[1]["samples_finite"]
    assert results[0]["sample_sum"] == pytest.approx(results[1]["sample_sum"], rel=1e-5)


def test_process_rows_gives_each_process_its_part_of_every_global_batch(monkeypatch):
    x = np.arange(12)[:, None]
    parts = []
    for index in range(3):
        monkeypatch.setattr(distribute._engine, "feed_share", lambda i=index: (i, 3))
        xl, yl, local = distribute.process_rows(x, x + 100, 6)
        assert local == 2 and np.array_equal(yl, xl + 100)
        parts.append(xl[:, 0])
    # Global batch b is the processes' parts of it, in process order.
    for b in range(2):
        batch = np.concatenate([p[2 * b : 2 * b + 2] for p in parts])
        assert batch.tolist() == list(range(6 * b, 6 * b + 6))
    with pytest.raises(ValueError, match="multiple of 3"):
        distribute.process_rows(x, x, 4)


@pytest.mark.parametrize(
    "args, match",
    [(("", 2, 0), "empty"), (("127.0.0.1:1", 0, 0), "num_processes"),
     (("127.0.0.1:1", 2, 2), "process_id"), (("127.0.0.1:1", True, 0), "num_processes")],
)
def test_initialize_refuses_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        distribute.initialize(*args)


def test_model_parallel_refuses_a_split_that_does_not_divide():
    if BACKEND != "jax":
        with pytest.raises(NotImplementedError, match="KERAS_BACKEND=jax"):
            distribute.model_parallel(3)
        return
    with pytest.raises(ValueError, match="must divide"):
        distribute.model_parallel(3, devices=keras.distribution.list_devices() * 2)


@pytest.mark.parametrize(
    "setting", [{"clipnorm": 0.5}, {"global_clipnorm": 0.5}, {"clipvalue": 0.1}, {}]
)
def test_global_clip_is_the_optimizers_own_rule(setting):
    # The TensorFlow step clips the summed gradient itself under tf.distribute; it must
    # be the rule the optimizer applies on one device.
    from keras import ops

    from keras_cvdm import numerics

    rng = np.random.default_rng(0)
    grads = [ops.convert_to_tensor(rng.normal(size=s).astype("float32")) for s in ((3, 4), (5,))]
    optimizer = keras.optimizers.SGD(**setting)
    assert numerics.clips_gradients(optimizer) == bool(setting)
    ours = numerics.clip_gradients(optimizer, grads)
    theirs = optimizer._clip_gradients(grads)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(ops.convert_to_numpy(a), ops.convert_to_numpy(b), rtol=1e-6)
    if "global_clipnorm" in setting:
        total = np.sqrt(sum(float(np.sum(ops.convert_to_numpy(g) ** 2)) for g in ours))
        assert total == pytest.approx(0.5, rel=1e-5)


@pytest.mark.parametrize(
    "flags, match",
    [(["--num-processes", "2", "--job-addresses", "127.0.0.1:1"], "add --distribute"),
     (["--num-processes", "2", "--distribute", "data-parallel"], "needs --job-addresses")],
)
def test_cli_multi_process_flags_need_each_other(tmp_path, flags, match):
    from keras_cvdm import cli

    with pytest.raises(SystemExit, match=match):
        cli.main(["train", "--task", "sr", "--output", str(tmp_path / "run"), *flags])
    assert not (tmp_path / "run").exists()


def test_train_refuses_a_batch_that_does_not_split_over_the_devices(tmp_path, monkeypatch):
    import contextlib

    from keras_cvdm import training

    monkeypatch.setattr(training.keras_distribute, "data_parallel", contextlib.nullcontext)
    monkeypatch.setattr(training.keras_distribute, "num_batch_shards", lambda: 3)
    with pytest.raises(ValueError, match=r"multiple of the 3 devices.*--batch-size 3"):
        training.train(tmp_path / "run", task="sr", batch_size=4, distribute="data-parallel")
    with pytest.raises(ValueError, match="distribute"):
        training.train(tmp_path / "run", task="sr", distribute="model-parallel")
    assert not (tmp_path / "run").exists()


def test_process_part_serves_each_process_its_rows_of_each_batch(monkeypatch):
    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.ends = 0

        def __len__(self):
            return 2

        def __getitem__(self, i):
            x = np.arange(6 * i, 6 * i + 6)[:, None]
            return x, -x

        def on_epoch_end(self):
            self.ends += 1

    inner = Batches()
    for index in range(2):
        monkeypatch.setattr(distribute._engine, "feed_share", lambda i=index: (i, 2))
        part = distribute.ProcessPart(inner)
        assert len(part) == 2
        x, y = part[1]
        assert x[:, 0].tolist() == list(range(6 + 3 * index, 9 + 3 * index))
        assert np.array_equal(y, -x)
    part.on_epoch_end()
    assert inner.ends == 1  # the wrapped dataset still resamples per epoch
    monkeypatch.setattr(distribute._engine, "feed_share", lambda: (0, 4))
    with pytest.raises(ValueError, match="multiple of 4"):
        part[0]
