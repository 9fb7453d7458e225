import os
import signal
import time

import keras
import numpy as np
import pytest

from keras_cvdm import CVDM, LearnedSchedule
from keras_cvdm.layers import UNetDenoiser

BACKEND = keras.backend.backend()

if BACKEND == "torch":
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

if BACKEND == "jax":
    # Many tests build the same tiny architectures: each new model is a new `jax.jit`, but
    # its program is the same, and XLA's compile of it dominates a JAX test on a CPU. A
    # compilation cache for this session (fresh, so nothing carries over between runs)
    # compiles each distinct program once; subprocesses the tests start share it.
    import atexit
    import shutil
    import tempfile

    import jax

    _JAX_CACHE = tempfile.mkdtemp(prefix="keras-cvdm-tests-jax-cache-")
    atexit.register(shutil.rmtree, _JAX_CACHE, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _JAX_CACHE
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"
    jax.config.update("jax_compilation_cache_dir", _JAX_CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def tiny_denoiser(target_channels=1):
    return UNetDenoiser(target_channels, widths=(8, 16), embedding_dim=8, groups=4)


def tiny_model(schedule="learned", target_channels=1, seed=0, **kwargs):
    """A small CVDM (fast to compile and train) for tests."""
    if schedule == "learned":
        schedule = LearnedSchedule(target_channels, filters=8, hidden_units=16)
    return CVDM(
        target_channels=target_channels,
        schedule=schedule,
        denoiser=tiny_denoiser(target_channels),
        seed=seed,
        **kwargs,
    )


def compile_fast(model, optimizer=None):
    """Compile without XLA on TensorFlow (XLA's compile time dominates tiny tests)."""
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(1e-3),
        jit_compile=BACKEND == "jax",
    )
    return model


def conditional_task(n=64, size=16, seed=0):
    """A smooth deterministic conditional task: y = tanh(0.8 x₀ + 0.3 x₁) on blurred noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, size, size, 2))
    # 3×3 box blur (periodic) so the images have spatial structure.
    x = sum(np.roll(np.roll(x, i, 1), j, 2) for i in (-1, 0, 1) for j in (-1, 0, 1)) / 3.0
    y = np.tanh(0.8 * x[..., :1] + 0.3 * x[..., 1:])
    return x.astype("float32"), y.astype("float32")


@pytest.fixture
def task():
    return conditional_task()


@pytest.fixture(scope="module")
def tensorflow_eagerly():
    """On TensorFlow, run functions eagerly for a module's tests (no-op elsewhere)."""
    if BACKEND != "tensorflow":
        yield
        return
    import tensorflow as tf

    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


def kill_when(proc, ready, timeout, what, poll=0.05):
    """SIGKILL a subprocess as soon as `ready()` holds; fail if it exits or times out first.

    Args:
        proc: a `subprocess.Popen` started with `stderr=subprocess.PIPE`.
        ready: a callable returning True once the process reached the moment to kill it.
        timeout: seconds to wait for that moment.
        what: the moment, for the failure message.
        poll: seconds between checks.
    """
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, f"the run did not reach {what}"
            time.sleep(poll)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
