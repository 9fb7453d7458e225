"""Sampling speed per backend: compiled loop vs one denoiser call per step, and vs a naive loop.

    python benchmarks/sample_speed.py                  # all three backends, 64 and 256
    python benchmarks/sample_speed.py --backends tensorflow jax   # e.g. on a GPU machine

For each backend and size (batch 1, default U-Net, learned schedule):
- seconds per image for 200-step ancestral, 20-step DDIM and the recommended 20-step
  sampler, DPM-Solver++(2M) SDE (`predict_samples`), and the 20-step sampler's speed-up
  over ancestral-200 and over the naive loop (equal quality: `benchmarks/quality.py`
  scores the two samplers on the same trained models);
- the overhead ratio = sampling time ÷ (num_steps × one compiled denoiser forward at the
  same batch, `predict_on_batch` of the bare U-Net); goal ≤ 1.10;
- a naive loop as research code does it (a Python loop calling the denoiser through
  `predict_on_batch` each step and re-running the schedule network each step), and the
  speed-up over it;
- the process's peak memory (resident set) while the compiled samplers run, and separately
  while the bare U-Net runs through `predict_on_batch` and while the naive loop runs. On
  Linux the peak is reset before each stage (`/proc/self/clear_refs`), so each figure is that
  stage's own high-water mark; elsewhere it is the process's running maximum.

Then, at the first size, what each engine's compiler and bfloat16 buy: TensorFlow's
sampling loop under XLA (`jit_compile=True`), PyTorch's `torch.compile` of the denoiser,
and the `qpi` preset's 20-step sampling with the denoiser in `mixed_bfloat16` against
float32 (seconds per image and the phase error on 8 test images of the package's
simulator, so the quality effect is measured with the speed).
"""

import argparse
import functools
import gc
import json
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from report import median_seconds  # noqa: E402

from keras_cvdm.sampling import RECOMMENDED  # noqa: E402


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


FAST = (RECOMMENDED["sampler"], RECOMMENDED["num_steps"])  # the presets' default sampler
SAMPLERS = (("ancestral", 200), ("ddim", 20), FAST)


def compilers(size):
    """TensorFlow XLA sampling loop / `torch.compile` denoiser against the default path."""
    import keras
    import numpy as np
    from keras import ops

    from keras_cvdm import CVDM

    backend = keras.backend.backend()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, size, size, 2)).astype("float32")
    model = CVDM(target_channels=1, seed=0)
    model.build(x.shape)
    if backend == "tensorflow":
        from keras_cvdm.backend.tensorflow_sampler import make_sampler

        z = ops.convert_to_tensor(rng.normal(size=(1, size, size, 1)).astype("float32"))
        xt, keys = ops.convert_to_tensor(x), ops.convert_to_tensor([[1, 0]], "int32")
        graph = make_sampler(model, FAST[1], FAST[0], True)
        xla = make_sampler(model, FAST[1], FAST[0], True, jit_compile=True)
        start = time.perf_counter()
        xla(xt, z, keys)
        compile_s = time.perf_counter() - start
        return {"variant": "XLA sampling loop (jit_compile=True)",
                "default_s": median_seconds(lambda: graph(xt, z, keys).numpy(), 3),
                "compiled_s": median_seconds(lambda: xla(xt, z, keys).numpy(), 3),
                "compile_s": compile_s, "unit": "s per 20-step sample"}
    if backend == "torch":
        import torch

        z, xt = torch.randn(1, size, size, 1), torch.tensor(x)
        g = torch.full((1, size, size, 1), 0.5)
        denoiser = model.denoiser
        with torch.no_grad():
            compiled = torch.compile(denoiser)
            start = time.perf_counter()
            compiled([z, xt, g])
            compile_s = time.perf_counter() - start
            return {"variant": "torch.compile of the denoiser",
                    "default_s": median_seconds(lambda: denoiser([z, xt, g]), 10),
                    "compiled_s": median_seconds(lambda: compiled([z, xt, g]), 10),
                    "compile_s": compile_s, "unit": "s per denoiser call"}
    return None  # JAX: the loop is already one jax.jit


def bfloat16_effect(size, num_images=8, num_samples=4):
    """The `qpi` preset's 20-step sampling with its denoiser in float32 and mixed_bfloat16."""
    import numpy as np

    import keras_cvdm
    from keras_cvdm import CVDM, qpi
    from keras_cvdm.data import qpi_test_set

    i_minus, i_plus, phase = qpi_test_set(num_images, size, noise_std=0.05)
    base = keras_cvdm.from_preset("qpi")
    config = base.get_config()
    config["denoiser"]["config"]["dtype"] = "mixed_bfloat16"
    half = CVDM.from_config(config)
    half.build((None, size, size, 2))
    half.set_weights(base.get_weights())
    row = {"images": num_images, "samples": num_samples,
           "compute_dtype": str(half.denoiser.compute_dtype)}
    for name, model in (("float32", base), ("mixed_bfloat16", half)):
        def run(model=model):
            return qpi.reconstruct(model, i_minus, i_plus, num_samples=num_samples, seed=0,
                                   num_steps=FAST[1], sampler=FAST[0])[0]

        row[f"{name}_s"] = median_seconds(run, 1) / (num_images * num_samples)
        mean = run()
        error = (mean - mean.mean((1, 2), keepdims=True)) - (
            phase - phase.mean((1, 2), keepdims=True))
        row[f"{name}_mae"] = float(np.abs(error).mean())
    return row


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
        for sampler, steps in SAMPLERS:
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
        forward = median_seconds(functools.partial(bare.predict_on_batch, [z, x, g]), 10)
        row["denoiser_forward_s"] = forward
        row["forward_peak_rss_mb"] = peak_rss_mb()
        for sampler, steps in SAMPLERS:
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
        fast = row[f"{FAST[0]}{FAST[1]}_s"]
        row["fast20_speedup_over_ancestral200"] = row["ancestral200_s"] / fast
        row["fast20_speedup_over_naive"] = naive / fast
        row["naive_peak_rss_mb"] = peak_rss_mb()
        rows.append(row)
        del model, bare, lam_model
        gc.collect()
    return {"rows": rows, "compiler": compilers(sizes[0]), "bfloat16": bfloat16_effect(sizes[0])}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 256])
    parser.add_argument("--naive-steps", type=int, default=50,
                        help="steps of the naive loop actually run (scaled to 200)")
    parser.add_argument("--reuse", help="earlier results JSON: backends in it are not re-measured")
    parser.add_argument("--section", default="sample_speed",
                        help="results name (benchmarks/gpu.sh writes sample_speed_gpu)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.sizes, args.naive_steps)))
        return
    import keras  # noqa: F401  (device description only)
    from report import accelerator, machine, run_workers, section_note, write_section

    results = run_workers(
        __file__, args.backends, ["--naive-steps", args.naive_steps, "--sizes", *args.sizes],
        threads=os.cpu_count(), reuse=args.reuse,
    )
    # A reused result from before the compiler/bfloat16 stages is a bare list of rows.
    results = {b: r if isinstance(r, dict) else {"rows": r} for b, r in results.items()}
    per_stage = all(r.get("peak_rss_per_stage", False) for res in results.values()
                    for r in res["rows"])
    peak_kind = ("each stage's own high-water mark" if per_stage else
                 "the process's running maximum (per-stage reset unavailable here)")
    lines = [
        f"## Sampling speed (`benchmarks/sample_speed.py`{section_note(args.section)})\n",
        f"Machine: {machine()}; {accelerator()}. Default `CVDM` (U-Net widths 32/64/128, learned "
        "schedule), one image, one sample. *Fast-20* = the presets' default sampler, "
        "DPM-Solver++(2M) SDE with 20 steps, whose quality matches ancestral-200 on the same "
        "trained models (`benchmarks/quality.py`, `learned_fast20`). *Overhead* = sampling "
        "time ÷ (steps × one compiled denoiser forward, `predict_on_batch`, same batch); goal "
        "≤ 1.10. *Naive* = a Python loop of `predict_on_batch` calls that also re-runs the "
        "schedule network every step, as the reference implementation samples (measured "
        f"over {args.naive_steps} steps, scaled to 200). *Peak RSS*: the process's "
        "resident memory while the samplers run, and while the bare U-Net's forward "
        f"(`predict_on_batch`) runs, {peak_kind}.\n",
        "| backend | size | forward (s) | ancestral-200 (s/image) | overhead | DDIM-20 (s/image) "
        "| overhead | fast-20 (s/image) | overhead | naive-200 (s) | fast-20 speed-up over "
        "ancestral-200 / naive-200 | peak RSS sampling (MB) | peak RSS forward (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    fast = f"{FAST[0]}{FAST[1]}"
    for backend, res in results.items():
        for r in res["rows"]:
            speedups = (f"{r['fast20_speedup_over_ancestral200']:.1f}× / "
                        f"{r['fast20_speedup_over_naive']:.1f}×" if fast + "_s" in r else "—")
            lines.append(
                f"| {backend} | {r['size']}×{r['size']} | {r['denoiser_forward_s']:.4f} | "
                f"{r['ancestral200_s']:.2f} | {r['ancestral200_overhead']:.2f} | "
                f"{r['ddim20_s']:.2f} | {r['ddim20_overhead']:.2f} | "
                f"{r.get(fast + '_s', float('nan')):.2f} | "
                f"{r.get(fast + '_overhead', float('nan')):.2f} | "
                f"{r['naive_ancestral200_s']:.2f} | {speedups} | "
                f"{r['peak_rss_mb']:.0f} | {r.get('forward_peak_rss_mb', float('nan')):.0f} |"
            )
    size = args.sizes[0]
    lines += [
        f"\n**Compilers and bfloat16** ({size}×{size}). Compiler rows: the engine's compiler "
        "against its default path, same work. bfloat16 rows: the `qpi` preset's fast-20 "
        "sampling with its denoiser under `mixed_bfloat16` (schedule and sampler arithmetic "
        "stay float32) against float32: seconds per sample and the mean phase error (rad, "
        "mean offset removed) on the simulator's test images at noise 0.05, same seeds.\n",
        "| backend | variant | default | compiled / bfloat16 | ratio | compile (s) | "
        "phase MAE float32 → bfloat16 |",
        "|---|---|---|---|---|---|---|",
    ]
    for backend, res in results.items():
        c = res.get("compiler")
        if c:
            lines.append(
                f"| {backend} | {c['variant']} ({c['unit']}) | {c['default_s']:.4f} | "
                f"{c['compiled_s']:.4f} | {c['default_s'] / c['compiled_s']:.2f}× | "
                f"{c['compile_s']:.0f} | — |")
        b = res.get("bfloat16")
        if b:
            lines.append(
                f"| {backend} | mixed_bfloat16 denoiser (s per sample, {b['images']} images × "
                f"{b['samples']} samples) | {b['float32_s']:.3f} | {b['mixed_bfloat16_s']:.3f} | "
                f"{b['float32_s'] / b['mixed_bfloat16_s']:.2f}× | — | "
                f"{b['float32_mae']:.4f} → {b['mixed_bfloat16_mae']:.4f} |")
    if args.section == "sample_speed":
        lines.append(
            "\nGPU figures: `benchmarks/gpu.sh` (256×256, TensorFlow and JAX, bfloat16 where "
            "supported) writes them in their own section when run on a GPU machine; pending "
            "until then.")
    write_section(args.section, "\n".join(lines), {"results": results})


if __name__ == "__main__":
    main()
