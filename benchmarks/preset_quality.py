"""Quality of the shipped presets on held-out simulated data, against tuned classical baselines.

    python benchmarks/preset_quality.py --from-metadata   # tabulate the stored numbers
    python benchmarks/preset_quality.py                   # re-evaluate (about an hour on 2 cores)

Both come from `keras_cvdm.evaluation.evaluate` (every score from `keras_cvdm.metrics`):

- `qpi`: aligned phase MAE (rad) on the QPI test set (`qpi_test_set`, seed 10 000, never
  used in training; 64 images of 128×128 per noise level, 0.05 and 0.1), per phantom kind,
  against the transport-of-intensity baseline with its regularisation tuned on the same
  images (an oracle), the posterior mean with its stored band blend with TIE
  (`keras_cvdm.calibration`); the Spearman ρ of the std with the absolute error, the coverage of
  mean ± 2σ and the calibration curve; an optics table (`evaluation.QPI_OPTICS_ROWS`, 8
  images per row at noise 0.05).
- `sr-microscopy`: PSNR and SSIM on the SR test set (seed 20 000) against Richardson–Lucy
  deconvolution of the cubic up-sampled input with its iteration count tuned on the same
  images, and against the up-sampled input; every estimate gets a per-image affine fit.

The training scripts (`examples/train_*_preset.py`) store the same numbers in each preset's
`metadata.json`; `--update-metadata` writes re-evaluated numbers back (weights untouched).
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def update_metadata(name, key, scores, sampling):
    """Replace a packaged preset's stored `validation[key]` by `scores`."""
    from keras_cvdm.presets import BUILTIN_DIR, METADATA_FILE

    path = os.path.join(BUILTIN_DIR, name, METADATA_FILE)
    with open(path) as f:
        metadata = json.load(f)
    metadata["validation"][key] = scores
    metadata["validation"]["sampling"] = dict(sampling)
    with open(path + ".tmp", "w") as f:
        json.dump(metadata, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(path + ".tmp", path)
    print(f"{path}: validation updated", flush=True)


def _qpi_lines(qpi, optics_table, calibration):
    lines = [
        "**`qpi`** — aligned phase MAE in radians (each estimate shifted to the true mean); TIE's "
        "regularisation is tuned on these very images. Ratio: CVDM / TIE. Coverage: fraction "
        "of pixels whose truth lies in mean ± 2σ (nominal 0.954).\n",
        "| noise std | CVDM | tuned TIE | ratio | ρ(std, abs. error) | ±2σ coverage | mean std |",
        "|---|---|---|---|---|---|---|",
    ]
    for noise, r in qpi.items():
        lines.append(
            f"| {noise} | {r['cvdm_mae_aligned']:.3f} | {r['tie_mae_aligned']:.3f} | "
            f"{r['cvdm_mae_aligned'] / r['tie_mae_aligned']:.2f} | "
            f"{r['std_error_spearman']:.2f} | {r['coverage_2sigma']:.3f} | "
            f"{r['mean_std_rad']:.3f} |"
        )
    if calibration:
        blend = calibration.get("band_blend")
        if blend:
            edges = blend["edges_cycles_per_pixel"]
            bands = ", ".join(
                f"{128 * lo:g}–{128 * hi:g}: {w:.2f}" if hi < 1 else f"≥ {128 * lo:g}: {w:.2f}"
                for lo, hi, w in zip(edges[:-1], edges[1:], blend["weights"]))
            lines.append(
                f"\nThe posterior mean is blended with the TIE solve per band of spatial "
                f"frequency (`keras_cvdm.calibration`; weight of the TIE by band, cycles per "
                f"128 pixels: {bands}), fitted on {calibration['fitted_on']}."
            )
        lines.append(
            f"\nThe std is multiplied by {calibration['std_scale']:.3f}, fitted on "
            f"{calibration['fitted_on']} (coverage of ±2σ there before: "
            f"{calibration['uncalibrated_coverage_2sigma']:.3f})."
        )
    noises = list(qpi)
    lines += ["\nCalibration curve (observed coverage of the central interval at each nominal "
              "level):\n",
              "| nominal | " + " | ".join(f"noise {n}" for n in noises) + " |",
              "|---|" + "---|" * len(noises)]
    for level in qpi[noises[0]]["calibration_curve"]:
        lines.append(f"| {level} | " + " | ".join(
            f"{qpi[n]['calibration_curve'][level]:.3f}" for n in noises) + " |")
    lines += ["\n`qpi` aligned MAE by phantom kind (CVDM / TIE, radians):\n",
              "| kind | images | " + " | ".join(f"noise {n}" for n in noises) + " |",
              "|---|---|" + "---|" * len(noises)]
    losses = []
    for kind, first in qpi[noises[0]]["by_kind"].items():
        cells = []
        for n in noises:
            k = qpi[n]["by_kind"][kind]
            wins = k["cvdm_mae_aligned"] < k["tie_mae_aligned"]
            cells.append(f"{k['cvdm_mae_aligned']:.3f} / {k['tie_mae_aligned']:.3f}"
                         + (" ✓" if wins else ""))
            if not wins:
                losses.append(f"{kind} (noise {n})")
        lines.append(f"| {kind} | {first['num_images']} | " + " | ".join(cells) + " |")
    lines.append("\n✓: CVDM lower. " + (f"TIE is better on {'; '.join(losses)}."
                                         if losses else "CVDM is lower on every kind."))
    if optics_table:
        lines += ["\nOptics table (8 test images per row; aligned MAE in radians; "
                  "s = λ·dz/p², the reference optics have s = 11.8):\n",
                  "| λ (µm) | pixel (µm) | defocus (µm) | s | noise | CVDM | tuned TIE | "
                  "ratio | ±2σ coverage | ρ |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for row in optics_table:
            o = row["optics"]
            s_px = o["wavelength"] * o["defocus"] / o["pixel_size"] ** 2
            for noise, r in row["levels"].items():
                lines.append(
                    f"| {o['wavelength']} | {o['pixel_size']} | {o['defocus']} | {s_px:.1f} | "
                    f"{noise} | {r['cvdm_mae_aligned']:.3f} | {r['tie_mae_aligned']:.3f} | "
                    f"{r['cvdm_mae_aligned'] / r['tie_mae_aligned']:.2f} | "
                    f"{r['coverage_2sigma']:.3f} | {r['std_error_spearman']:.2f} |")
    return lines


def _sr_lines(sr):
    rows = (("CVDM (posterior mean)", "cvdm"),
            (f"Richardson–Lucy, {sr['rl_iterations']} iterations (tuned)", "richardson_lucy"),
            ("cubic up-sampled input", "upsampled"))
    lines = [
        f"\n**`sr-microscopy`** — {sr['num_images']} test images, after a per-image affine fit "
        "to the target (SSIM: 11×11 Gaussian window, σ 1.5, `keras_cvdm.metrics.ssim`):\n",
        "| method | PSNR (dB) | SSIM |",
        "|---|---|---|",
    ]
    lines += [f"| {label} | {sr[f'{key}_psnr']:.2f} | {sr[f'{key}_ssim']:.3f} |"
              for label, key in rows]
    lines.append(f"\nSR: Spearman ρ(std, abs. error) {sr['std_error_spearman']:.2f}, ±2σ "
                 f"coverage {sr['coverage_2sigma']:.3f}.")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--qpi-images", type=int, default=64,
                        help="QPI test images per noise level")
    parser.add_argument("--sr-images", type=int, default=64, help="SR test images")
    parser.add_argument("--samples", type=int, default=8, help="posterior samples per image")
    parser.add_argument("--from-metadata", action="store_true",
                        help="do not re-evaluate: tabulate the numbers stored in each preset's "
                        "metadata.json by its training script")
    parser.add_argument("--update-metadata", action="store_true",
                        help="write the re-evaluated numbers into the packaged presets' "
                             "metadata.json (validation block)")
    parser.add_argument("--only", choices=("qpi", "sr"), default=None,
                        help="re-evaluate this preset only; the other's numbers are read from "
                        "its metadata.json")
    args = parser.parse_args()
    if args.update_metadata and args.from_metadata:
        parser.error("--update-metadata re-evaluates; it cannot be combined with --from-metadata")
    import keras
    from report import machine, write_section

    import keras_cvdm
    from keras_cvdm.evaluation import evaluate, flat_summary
    from keras_cvdm.evaluation import optics_table as optics_table_of

    start = time.time()
    qpi_model, sr_model = keras_cvdm.from_preset("qpi"), keras_cvdm.from_preset("sr-microscopy")
    calibration = qpi_model.metadata.get("calibration")
    stored = qpi_model.metadata["validation"]
    qpi, optics_table = stored["qpi_test_set"], stored.get("optics_table")
    sr = sr_model.metadata["validation"]["sr_test_set"]
    if not args.from_metadata and args.only in (None, "qpi"):
        levels = evaluate(qpi_model, num_images=args.qpi_images,
                          num_samples=args.samples)["levels"]
        qpi = {noise: flat_summary(level) for noise, level in levels.items()}
        optics_table = optics_table_of(qpi_model, num_samples=args.samples)
    if not args.from_metadata and args.only in (None, "sr"):
        sr = flat_summary(evaluate(sr_model, num_images=args.sr_images,
                                   num_samples=args.samples)["levels"]["simulated"])
    seconds = time.time() - start
    sampling = qpi_model.metadata["sampling"]
    if args.update_metadata and args.only in (None, "qpi"):
        update_metadata("qpi", "qpi_test_set", qpi, sampling)
        update_metadata("qpi", "optics_table", optics_table, sampling)
    if args.update_metadata and args.only in (None, "sr"):
        update_metadata("sr-microscopy", "sr_test_set", sr, sr_model.metadata["sampling"])
    lines = [
        "## Preset quality (`benchmarks/preset_quality.py`)\n",
        f"Machine: {machine()}; backend {keras.backend.backend()}. Held-out 128×128 simulated "
        f"images; {args.samples} posterior samples each ({sampling['sampler']}, "
        f"{sampling['num_steps']} steps), posterior mean scored. "
        + ("Numbers read from the presets' metadata.json (written by their training scripts "
           "with the same protocol)." if args.from_metadata
           else f"Runtime {seconds:.0f} s" + (f" (re-evaluated: {args.only} only; the other "
                                              "from its metadata.json)." if args.only else "."))
        + "\n",
    ]
    lines += _qpi_lines(qpi, optics_table, calibration)
    lines += _sr_lines(sr)
    write_section("preset_quality", "\n".join(lines),
                  {"qpi": qpi, "optics_table": optics_table, "calibration": calibration,
                   "sr": sr})


if __name__ == "__main__":
    main()
