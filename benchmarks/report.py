"""Assemble benchmarks/RESULTS.md from the per-benchmark tables in benchmarks/results/."""

import os
import platform

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
ORDER = ["preset_quality", "physics_mean", "error_spectrum", "quality", "train_speed",
         "train_speed_gpu", "sample_speed", "sample_speed_gpu", "scaling", "scaling_gpu",
         "tiling", "tie_baseline"]


def machine():
    """A one-line description of the machine a benchmark ran on."""
    return (
        f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}, "
        f"Python {platform.python_version()}"
    )


def median_seconds(fn, repeats, warmups=1):
    """Median wall time of `fn()` over `repeats` calls, after `warmups` untimed ones."""
    import time

    import numpy as np

    for _ in range(warmups):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def accelerator():
    """The GPUs `nvidia-smi` lists, or "CPU only"."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True)
        names = [line.strip() for line in out.stdout.splitlines() if line.strip()]
        if out.returncode == 0 and names:
            return f"{len(names)} × {names[0]}"
    return "CPU only"


def section_note(section):
    """What a section's heading adds for the GPU sections that `benchmarks/gpu.sh` writes."""
    return "" if "_gpu" not in section else ", `benchmarks/gpu.sh`"


def run_workers(script, backends, args, threads=None, reuse=None):
    """Run `script --worker ARGS` once per backend (Keras fixes the backend at import).

    Each worker prints its results as JSON on its last line; returns {backend: result}.
    `reuse`: a results JSON written earlier by the same benchmark; backends found in its
    `"results"` are taken from it instead of being measured again.
    """
    import json
    import subprocess
    import sys

    earlier = {}
    if reuse:
        with open(reuse) as f:
            earlier = json.load(f)["results"]
    results = {}
    for backend in backends:
        if backend in earlier:
            results[backend] = earlier[backend]
            print(backend, "(reused from", reuse + ")", flush=True)
            continue
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
        if backend == "torch" and threads:
            env.setdefault("OMP_NUM_THREADS", str(threads))
        cmd = [sys.executable, script, "--worker", *map(str, args)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"{backend} worker failed:\n{out.stderr[-3000:]}")
        results[backend] = json.loads(out.stdout.strip().splitlines()[-1])
        print(backend, results[backend], flush=True)
    return results


def write_section(name, markdown, payload):
    """Write results/<name>.md and results/<name>.json, then rebuild RESULTS.md."""
    import json

    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{name}.md"), "w") as f:
        f.write(markdown.rstrip() + "\n")
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as f:
        json.dump(payload, f, indent=2)
    build()


def build():
    names = [n for n in ORDER if os.path.exists(os.path.join(RESULTS, f"{n}.md"))]
    parts = [
        "# Benchmark results\n",
        "Produced by the scripts in `benchmarks/`; each section names its command, machine and "
        "backend. Machine-readable numbers are in `benchmarks/results/*.json`.\n",
    ]
    for name in names:
        with open(os.path.join(RESULTS, f"{name}.md")) as f:
            parts.append(f.read().rstrip() + "\n")
    with open(os.path.join(HERE, "RESULTS.md"), "w") as f:
        f.write("\n".join(parts))


if __name__ == "__main__":
    build()
