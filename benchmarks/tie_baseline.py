"""TIE baseline on the synthetic QPI test set: phase error against intensity noise.

The transport-of-intensity solution (`keras_cvdm.physics.tie_phase`, regularised FFT
Poisson solver, the paper's US-TIE comparison) is evaluated on
`keras_cvdm.data.qpi_test_set` (128×128, seed 10 000, the default broad phantom mix,
λ 0.521 µm, pixel 0.21 µm, ±1 µm, phase in [0, 3.5] rad) at relative noise std
0, 0.02, 0.05, 0.1 and 0.2. For each noise level the Tikhonov regularisation is
oracle-tuned on the test set itself over a log grid — the strongest fair version of the
baseline, so comparisons against it are conservative.

Errors (radians, mean over images):

- mean-aligned MAE: the estimate shifted to the true mean (phase from intensity is only
  defined up to a constant);
- absolute MAE: the estimate shifted so its minimum is 0 (the dataset convention that
  phase maps start at 0 rad; no oracle information).

Run:  python benchmarks/tie_baseline.py   (about half a minute on 2 CPU cores)
Writes benchmarks/results/tie_baseline.json and benchmarks/results/tie_baseline.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from keras_cvdm.data import QPI_DEFAULT_MIX, QPI_TEST_SEED, qpi_test_set
from keras_cvdm.metrics import phase_mae
from keras_cvdm.physics import (
    PAPER_DEFOCUS,
    PAPER_PHASE_MAX,
    PAPER_PIXEL_SIZE,
    PAPER_WAVELENGTH,
    tie_phase,
    tune_tie_regularization,
)

NOISE_LEVELS = (0.0, 0.02, 0.05, 0.1, 0.2)
REGULARIZATION_GRID = (0.0, *(float(10.0**e) for e in np.arange(-9.0, 3.01, 0.5)))


def evaluate(num_images: int, image_size: int, seed: int) -> dict:
    """Tune and evaluate TIE at every noise level; returns a JSON-ready dict."""
    start = time.perf_counter()
    rows = []
    for noise in NOISE_LEVELS:
        i_minus, i_plus, phase, kinds = qpi_test_set(
            num_images, image_size, noise, seed, return_kinds=True
        )
        best, errors = tune_tie_regularization(
            i_minus,
            i_plus,
            phase,
            PAPER_WAVELENGTH,
            PAPER_PIXEL_SIZE,
            PAPER_DEFOCUS,
            REGULARIZATION_GRID,
        )
        estimate = tie_phase(
            i_minus, i_plus, PAPER_WAVELENGTH, PAPER_PIXEL_SIZE, PAPER_DEFOCUS, best
        )
        aligned = phase_mae(estimate, phase, "mean")
        absolute = phase_mae(estimate, phase, "min")
        per_kind = {
            kind: float(np.mean([a for a, k in zip(aligned, kinds, strict=True) if k == kind]))
            for kind in sorted(set(kinds))
        }
        rows.append(
            {
                "noise_std": noise,
                "best_regularization": best,
                "mae_mean_aligned": float(np.mean(aligned)),
                "mae_mean_aligned_sem": float(np.std(aligned, ddof=1) / np.sqrt(len(aligned))),
                "mae_absolute_min_pinned": float(np.mean(absolute)),
                "mae_mean_aligned_per_kind": per_kind,
                "tuning_curve": {f"{k:.3g}": v for k, v in errors.items()},
            }
        )
    # Scale reference: the best constant estimate (the phase's own mean).
    _, _, phase = qpi_test_set(num_images, image_size, 0.0, seed)
    constant = phase_mae(np.zeros_like(phase), phase, "mean")
    return {
        "benchmark": "tie_baseline",
        "description": "TIE (regularised FFT Poisson solver, uniform in-focus intensity), "
        "regularisation oracle-tuned per noise level on the test set",
        "test_set": {
            "builder": "keras_cvdm.data.qpi_test_set",
            "num_images": num_images,
            "image_size": image_size,
            "seed": seed,
            "mix": QPI_DEFAULT_MIX,
            "kinds": {k: int(sum(1 for x in kinds if x == k)) for k in sorted(set(kinds))},
            "wavelength_um": PAPER_WAVELENGTH,
            "pixel_size_um": PAPER_PIXEL_SIZE,
            "defocus_um": PAPER_DEFOCUS,
            "phase_range_rad": [0.0, PAPER_PHASE_MAX],
            "noise": "additive Gaussian, std = noise_std x mean intensity, per image",
        },
        "regularization_grid": list(REGULARIZATION_GRID),
        "constant_estimate_mae_mean_aligned": float(np.mean(constant)),
        "results": rows,
        "runtime_s": round(time.perf_counter() - start, 1),
        "platform": {"python": platform.python_version(), "numpy": np.__version__},
    }


def _eps(value: float) -> str:
    return "0" if value == 0 else f"{value:.0e}"


def markdown(report: dict) -> str:
    """The results as a markdown section for benchmarks/RESULTS.md."""
    ts = report["test_set"]
    kinds = list(report["results"][0]["mae_mean_aligned_per_kind"])
    lines = [
        "## TIE baseline (`benchmarks/tie_baseline.py`, oracle-tuned regularisation)",
        "",
        f"Synthetic QPI test set: `qpi_test_set({ts['num_images']}, {ts['image_size']}, "
        f"noise_std, seed={ts['seed']})`, default phantom mix, λ {ts['wavelength_um']} µm, "
        f"pixel {ts['pixel_size_um']} µm, ±{ts['defocus_um']} µm, phase in "
        f"[0, {ts['phase_range_rad'][1]}] rad. Regularisation ε (rad/µm)⁴ picked per noise "
        "level on the test set from {0} ∪ a log grid 1e-9 … 1e3 (half decades). MAE in "
        "radians, mean over images "
        "(± standard error). *Aligned*: estimate shifted to the true mean. *Absolute*: "
        "estimate shifted so its minimum is 0 (the dataset's phase convention). For scale, "
        "the best constant estimate has an aligned MAE of "
        f"{report['constant_estimate_mae_mean_aligned']:.3f} rad.",
        "",
        "| noise std | best ε | MAE aligned | MAE absolute | "
        + " | ".join(k.replace("_", " ") for k in kinds)
        + " |",
        "|---|---|---|---|" + "---|" * len(kinds),
    ]
    for row in report["results"]:
        per_kind = " | ".join(f"{row['mae_mean_aligned_per_kind'][k]:.3f}" for k in kinds)
        lines.append(
            f"| {row['noise_std']:g} | {_eps(row['best_regularization'])} | "
            f"{row['mae_mean_aligned']:.3f} ± {row['mae_mean_aligned_sem']:.3f} | "
            f"{row['mae_absolute_min_pinned']:.3f} | {per_kind} |"
        )
    counts = ", ".join(f"{k}: {n}" for k, n in ts["kinds"].items())
    lines += [
        "",
        f"Per-kind columns: aligned MAE by phantom kind ({counts} images). "
        f"Runtime {report['runtime_s']} s (`python benchmarks/tie_baseline.py`).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=QPI_TEST_SEED)
    parser.add_argument(
        "--output-dir", type=Path, default=Path(__file__).resolve().parent / "results"
    )
    args = parser.parse_args()
    report = evaluate(args.num_images, args.image_size, args.seed)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "tie_baseline.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    (args.output_dir / "tie_baseline.md").write_text(table)
    print(table)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from report import build  # rebuild benchmarks/RESULTS.md with this section

    build()


if __name__ == "__main__":
    main()
