"""Training-step time of CVDM per backend, and its ratio to the bare denoiser's step.

    python benchmarks/train_speed.py            # all three backends, 64×64 and 256×256

The ratio (CVDM train step ÷ denoiser forward+backward+Adam at the same batch) shows
what the learned schedule and the regularised loss cost on top of the U-Net; goal ≤ 1.25.
Each backend runs in its own process (Keras fixes the backend at import).
"""

import argparse
import functools
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from report import median_seconds  # noqa: E402


def measure(sizes, batch, repeats, policies=("float32",)):
    import keras

    rows = []
    for policy in policies:
        keras.config.set_dtype_policy(policy)
        rows += [{**row, "dtype_policy": policy} for row in measure_policy(sizes, batch, repeats)]
    keras.config.set_dtype_policy("float32")
    return rows


def measure_policy(sizes, batch, repeats):
    import keras
    import numpy as np

    from keras_cvdm import CVDM
    from keras_cvdm.layers import UNetDenoiser

    rows = []
    for size in sizes:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(batch, size, size, 2)).astype("float32")
        y = np.tanh(x[..., :1]).astype("float32")
        model = CVDM(target_channels=1, seed=0)
        model.compile(optimizer=keras.optimizers.Adam(1e-4))
        model.build(x.shape)
        # The bare denoiser as a Keras model with an MSE loss: its own forward+backward.
        z_in = keras.Input((size, size, 1))
        x_in = keras.Input((size, size, 2))
        g_in = keras.Input((size, size, 1))
        denoiser = UNetDenoiser(1)
        bare = keras.Model([z_in, x_in, g_in], denoiser([z_in, x_in, g_in]))
        bare.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mse")
        gamma = rng.uniform(0.01, 0.99, size=(batch, size, size, 1)).astype("float32")

        # Two untimed calls: compile, then warm up.
        cvdm_s = median_seconds(functools.partial(model.train_on_batch, x, y), repeats, 2)
        bare_s = median_seconds(functools.partial(bare.train_on_batch, [y, x, gamma], y),
                                repeats, 2)
        rows.append(
            {
                "size": size,
                "batch": batch,
                "cvdm_step_s": cvdm_s,
                "denoiser_step_s": bare_s,
                "ratio": cvdm_s / bare_s,
                "denoiser_params": int(model.denoiser.count_params()),
                "schedule_params": int(model.schedule.count_params()),
            }
        )
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 256])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype-policies", nargs="+", default=["float32"],
                        help="Keras dtype policies to measure, e.g. float32 mixed_bfloat16")
    parser.add_argument("--section", default="train_speed",
                        help="results name (benchmarks/gpu.sh writes train_speed_gpu)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.sizes, args.batch, args.repeats, args.dtype_policies)))
        return
    from report import accelerator, machine, run_workers, section_note, write_section

    results = run_workers(
        __file__, args.backends,
        ["--batch", args.batch, "--repeats", args.repeats, "--sizes", *args.sizes,
         "--dtype-policies", *args.dtype_policies],
    )
    lines = [
        f"## Training speed (`benchmarks/train_speed.py`{section_note(args.section)})\n",
        f"Machine: {machine()}; {accelerator()}. Default `CVDM` (U-Net widths 32/64/128, learned "
        f"schedule), batch {args.batch}, median of {args.repeats} `train_on_batch` calls after "
        "warm-up. *Ratio* = CVDM step ÷ the same U-Net's own forward+backward+Adam step "
        "(goal ≤ 1.25).\n",
        "| backend | dtype policy | size | CVDM step (s) | denoiser step (s) | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for backend, rows in results.items():
        for r in rows:
            lines.append(
                f"| {backend} | {r.get('dtype_policy', 'float32')} | {r['size']}×{r['size']} | "
                f"{r['cvdm_step_s']:.3f} | {r['denoiser_step_s']:.3f} | {r['ratio']:.2f} |"
            )
    if args.section == "train_speed":
        lines.append(
            "\nGPU figures: `benchmarks/gpu.sh` (256×256, TensorFlow and JAX, float32 and "
            "mixed_bfloat16) writes them in their own section when run on a GPU machine; "
            "pending until then.")
    write_section(args.section, "\n".join(lines), {"batch": args.batch, "results": results})


if __name__ == "__main__":
    main()
