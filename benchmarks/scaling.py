"""Data-parallel training throughput on 1, 2 and 4 devices (keras_cvdm.distribute).

    python benchmarks/scaling.py                 # JAX and TensorFlow, 1/2/4 devices
    python benchmarks/scaling.py --section scaling_gpu   # on a machine with ≥ 4 GPUs

Each (backend, device count) runs in its own process: JAX gets N host devices from
`XLA_FLAGS=--xla_force_host_platform_device_count=N` and TensorFlow N logical CPUs when
there is no GPU; with GPUs the first N are used. The global batch is fixed, so ideal
scaling divides the step time by N. On fake CPU devices that share the same cores the
speed-up cannot appear: those rows measure the engine's overhead only.
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def measure(devices, size, batch, repeats):
    backend = os.environ["KERAS_BACKEND"]
    if backend == "jax":
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
        import jax

        pool = [d for d in jax.devices() if d.platform == "gpu"] or jax.devices("cpu")
        names = [f"{d.platform}:{d.id}" for d in pool[:devices]]
    else:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            names = [f"/gpu:{i}" for i in range(min(devices, len(gpus)))]
        else:
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * devices
            )
            names = [f"/cpu:{i}" for i in range(devices)]
    if len(names) < devices:
        raise SystemExit(f"only {len(names)} device(s) for {devices}")

    import keras
    import numpy as np
    from report import median_seconds

    from keras_cvdm import CVDM, distribute
    from keras_cvdm.layers import UNetDenoiser

    if batch % devices:
        raise SystemExit(f"--batch {batch} must be a multiple of every device count")
    steps = 4
    rng = np.random.default_rng(0)
    x = rng.random((batch * steps, size, size, 2)).astype("float32")
    y = (rng.random((batch * steps, size, size, 1)) * 2 - 1).astype("float32")
    with distribute.data_parallel(names):
        model = CVDM(denoiser=UNetDenoiser(1, widths=(16, 32, 64)), seed=0)
        model.build((None, size, size, 2))
        model.compile(optimizer=keras.optimizers.Adam(1e-4, global_clipnorm=1.0))
        # `fit`, not `train_on_batch`: under tf.distribute only `fit` splits the batch.
        seconds = median_seconds(
            lambda: model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0),
            repeats, warmups=1,
        ) / steps
    return {"devices": devices, "step_s": seconds, "steps_per_s": 1.0 / seconds}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", nargs="+", default=["jax", "tensorflow"])
    parser.add_argument("--devices", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8, help="global batch (÷ every count)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--section", default="scaling",
                        help="results name (scaling_gpu on a multi-GPU machine)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.devices[0], args.size, args.batch, args.repeats)))
        return
    from report import accelerator, machine, run_workers, write_section

    results = {backend: [] for backend in args.backends}
    for backend in args.backends:
        for n in args.devices:
            results[backend] += run_workers(
                __file__, [backend],
                ["--devices", n, "--size", args.size, "--batch", args.batch,
                 "--repeats", args.repeats],
            ).values()
    lines = [
        "## Data-parallel scaling (`benchmarks/scaling.py`"
        f"{', multi-GPU' if args.section != 'scaling' else ''})\n",
        f"Machine: {machine()}; {accelerator()}. `keras_cvdm.distribute.data_parallel`, "
        f"CVDM with U-Net widths 16/32/64, {args.size}×{args.size}, global batch "
        f"{args.batch}, `fit` steps (median of {args.repeats} 4-step epochs after warm-up). "
        "*Efficiency* = speed-up ÷ (N ÷ the smallest N): 1.0 is perfect scaling.\n",
        "| backend | devices | step (s) | steps/s | speed-up | efficiency |",
        "|---|---|---|---|---|---|",
    ]
    for backend, rows in results.items():
        least = min(args.devices)
        base = next(r["step_s"] for r in rows if r["devices"] == least)
        for r in rows:
            speedup = base / r["step_s"]
            lines.append(
                f"| {backend} | {r['devices']} | {r['step_s']:.3f} | {r['steps_per_s']:.2f} | "
                f"{speedup:.2f}× | {speedup / (r['devices'] / least):.2f} |"
            )
    if args.section == "scaling":
        lines.append(
            "\nOn this CPU the N devices are fake (JAX host devices, TensorFlow logical "
            "CPUs) sharing the same cores, so the rows show the engine's splitting and "
            "all-reduce overhead, not scaling (a gain at 2 devices only means both cores "
            "were put to work at once). The scaling efficiency on real "
            "devices needs a multi-GPU machine (`--section scaling_gpu`): pending, no such "
            "machine was available.")
    write_section(args.section, "\n".join(lines), {"size": args.size, "batch": args.batch,
                                                   "results": results})


if __name__ == "__main__":
    main()
