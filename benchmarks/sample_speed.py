"""Sampling speed per backend: compiled loop vs one denoiser call per step, and vs a naive loop.

    python benchmarks/sample_speed.py                  # all three backends, 64 and 256
    python benchmarks/sample_speed.py --backends tensorflow jax   # e.g. on a GPU machine

For each backend and size (batch 1, default U-Net, learned schedule):
- seconds per image for 200-step ancestral and 20-step DDIM sampling (`predict_samples`);
- the overhead ratio = sampling time ÷ (num_steps × one compiled denoiser forward at the
  same batch, `predict_on_batch` of the bare U-Net); goal ≤ 1.10;
- a naive loop as research code does it (a Python loop calling the denoiser through
  `predict_on_batch` each step and re-running the schedule network each step), and the
  speed-up over it;
- the process's peak memory (resident set) while the compiled samplers run, and separately
  while the bare U-Net runs through `predict_on_batch` and while the naive loop runs. On
  Linux the peak is reset before each stage (`/proc/self/clear_refs`), so each figure is that
  stage's own high-water mark; elsewhere it is the process's running maximum.
"""

import argparse
import gc
import json
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def reset_peak_rss():
    """Start a new high-water mark of resident memory; False where the system cannot
    (anything but Linux, or a refused write), and the peak stays the running maximum."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb():
    """Peak resident memory since the last `reset_peak_rss` (Linux) or since start."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB; bytes on macOS
    return maxrss / (2**20 if sys.platform == "darwin" else 1024)


def measure(sizes, naive_steps):
    import keras
    import numpy as np
    from keras import ops

    from keras_cvdm import CVDM
    from keras_cvdm.sampling import ancestral_step, predict_clean

    rows = []
    for size in sizes:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(1, size, size, 2)).astype("float32")
        per_stage = reset_peak_rss()
        model = CVDM(target_channels=1, seed=0)
        model.build(x.shape)
        row = {"size": size, "peak_rss_per_stage": per_stage}
        # The compiled samplers first, so that their peak memory is their own.
        for sampler, steps in (("ancestral", 200), ("ddim", 20)):
            model.predict_samples(x, num_steps=steps, sampler=sampler, seed=0, verbose=0)
            start = time.perf_counter()
            model.predict_samples(x, num_steps=steps, sampler=sampler, seed=1, verbose=0)
            row[f"{sampler}{steps}_s"] = time.perf_counter() - start
        row["peak_rss_mb"] = peak_rss_mb()
        # One compiled forward of the bare U-Net, the unit the overheads are measured in.
        reset_peak_rss()
        z_in, x_in, g_in = (keras.Input((size, size, c)) for c in (1, 2, 1))
        bare = keras.Model([z_in, x_in, g_in], model.denoiser([z_in, x_in, g_in]))
        lam_in = keras.Input((size, size, 2))
        lam_model = keras.Model(lam_in, model.schedule.network(lam_in))
        z = rng.normal(size=(1, size, size, 1)).astype("float32")
        g = np.full((1, size, size, 1), 0.5, "float32")
        bare.predict_on_batch([z, x, g])
        times = []
        for _ in range(10):
            start = time.perf_counter()
            bare.predict_on_batch([z, x, g])
            times.append(time.perf_counter() - start)
        forward = float(np.median(times))
        row["denoiser_forward_s"] = forward
        row["forward_peak_rss_mb"] = peak_rss_mb()
        for sampler, steps in (("ancestral", 200), ("ddim", 20)):
            row[f"{sampler}{steps}_overhead"] = row[f"{sampler}{steps}_s"] / (steps * forward)
        # The naive loop: schedule network and denoiser called from Python at every step.
        reset_peak_rss()
        lam_model.predict_on_batch(x)
        phi = model.schedule.phi_network
        start = time.perf_counter()
        zt = rng.normal(size=z.shape).astype("float32")
        for i in range(naive_steps, 0, -1):
            lam = (np.asarray(ops.softplus(lam_model.predict_on_batch(x)))
                   + model.schedule.min_lambda)
            t, s = i / naive_steps, (i - 1) / naive_steps
            phis = ops.convert_to_numpy(phi(ops.convert_to_tensor([t, s], "float32"))[0])
            gt, gs = (np.clip(np.exp(-lam * p), 1e-6, 1 - 1e-5) for p in phis)
            eps = bare.predict_on_batch([zt, x, gt])
            zt_, eps_, gt_, gs_, noise = (
                ops.convert_to_tensor(np.asarray(a, "float32"))
                for a in (zt, eps, gt, gs, rng.normal(size=z.shape))
            )
            y_hat = predict_clean(zt_, eps_, gt_, True)
            zt = ops.convert_to_numpy(ancestral_step(zt_, y_hat, gt_, gs_, noise))
        naive = (time.perf_counter() - start) * 200 / naive_steps
        row["naive_ancestral200_s"] = naive
        row["speedup_over_naive"] = naive / row["ancestral200_s"]
        row["naive_peak_rss_mb"] = peak_rss_mb()
        rows.append(row)
        del model, bare, lam_model
        gc.collect()
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 256])
    parser.add_argument("--naive-steps", type=int, default=50,
                        help="steps of the naive loop actually run (scaled to 200)")
    parser.add_argument("--reuse", help="earlier results JSON: backends in it are not re-measured")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.sizes, args.naive_steps)))
        return
    import keras  # noqa: F401  (device description only)
    from report import machine, run_workers, write_section

    results = run_workers(
        __file__, args.backends, ["--naive-steps", args.naive_steps, "--sizes", *args.sizes],
        threads=os.cpu_count(), reuse=args.reuse,
    )
    per_stage = all(r.get("peak_rss_per_stage", False) for rows in results.values()
                    for r in rows)
    peak_kind = ("each stage's own high-water mark" if per_stage else
                 "the process's running maximum (per-stage reset unavailable here)")
    lines = [
        "## Sampling speed (`benchmarks/sample_speed.py`)\n",
        f"Machine: {machine()}; CPU only. Default `CVDM` (U-Net widths 32/64/128, learned "
        "schedule), one image, one sample. *Overhead* = sampling time ÷ (steps × one compiled "
        "denoiser forward, `predict_on_batch`, same batch); goal ≤ 1.10. *Naive* = a Python "
        "loop of `predict_on_batch` calls that also re-runs the schedule network every step "
        f"(measured over {args.naive_steps} steps, scaled to 200). *Peak RSS*: the process's "
        "resident memory while the samplers run, and while the bare U-Net's forward "
        f"(`predict_on_batch`) runs, {peak_kind}.\n",
        "| backend | size | forward (s) | ancestral-200 (s/image) | overhead | DDIM-20 (s/image) "
        "| overhead | naive-200 (s) | speed-up | peak RSS sampling (MB) | peak RSS forward (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for backend, rows in results.items():
        for r in rows:
            lines.append(
                f"| {backend} | {r['size']}×{r['size']} | {r['denoiser_forward_s']:.4f} | "
                f"{r['ancestral200_s']:.2f} | {r['ancestral200_overhead']:.2f} | "
                f"{r['ddim20_s']:.2f} | {r['ddim20_overhead']:.2f} | "
                f"{r['naive_ancestral200_s']:.2f} | {r['speedup_over_naive']:.2f}× | "
                f"{r['peak_rss_mb']:.0f} | {r.get('forward_peak_rss_mb', float('nan')):.0f} |"
            )
    lines.append(
        "\nGPU figures: pending (no GPU was available when these were measured; the script "
        "runs unchanged on a GPU for TensorFlow and JAX)."
    )
    write_section("sample_speed", "\n".join(lines), {"results": results})


if __name__ == "__main__":
    main()
