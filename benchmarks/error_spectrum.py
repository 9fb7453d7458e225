"""At which spatial scales the `qpi` preset's phase is wrong, against tuned TIE.

    KERAS_BACKEND=tensorflow python benchmarks/error_spectrum.py [--num-images 64]

On the QPI test set (seed 10 000, 128×128, noise 0.05 and 0.1, the preset's optics) the
aligned phase error of three estimates is split into bands of spatial frequency
(`keras_cvdm.metrics.band_errors`, cycles per field):

- `cvdm`: the posterior mean (8 samples, the preset's sampler, seed 0, with the preset's
  band blend with TIE, as `keras_cvdm.evaluation.evaluate`);
- `mean network`: `μ(x)` alone (the TIE solve plus its learned correction, no diffusion);
- `tie`: TIE with its regularisation tuned on the same images (an oracle).

Substitutions then bound what each scale is worth: the posterior mean with its lowest
band (0.5–1.5 cycles, the slowest modes, which the transport-of-intensity equation
measures through `ω²` and so worst) taken from the truth; with its middle bands
(1.5–24 cycles) taken from tuned TIE; and, in every band of each image, the best blend
`(1 − w)·cvdm + w·TIE_ε₁` (`w` in [0, 1] chosen with the truth; `TIE_ε₁` the least
regularised of the TIE estimates inside the mean network): how far a per-image,
per-scale choice between the model and a physics estimate it already computes could go.

A last row per group asks how much of the slowest modes a linear reading of the
intensities holds: the truth with its lowest band replaced by the best per-frequency linear
filter of the unregularised TIE solve (`linear floor`: one least-squares gain per frequency
magnitude, fitted per phantom kind on four times as many validation fields, of their own
seed). Its lowest-band RMS is what such a filter, even one told the object's kind, leaves
there; its MAE is what would remain if every other scale were exact. It is not a bound
for every estimator: the intensities depend nonlinearly on the phase, and an estimator
that reads all scales together, or knows the object (a flat background), can go below it.

Writes the "Error by spatial scale" section of RESULTS.md and
`results/error_spectrum.json` (every kind's numbers).
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

EDGES = (0.5, 1.5, 3.0, 6.0, 12.0, 24.0, float("inf"))
LOWEST = (0.5, 1.5)
MIDDLE = (1.5, 24.0)
NOISE_LEVELS = (0.05, 0.1)
#: Seed of the validation fields the linear floor's gains are fitted on (the preset's
#: calibration fields; neither the test set's nor a training seed).
VALIDATION_SEED = 20_000
SHOWN_KINDS = ("all", "gaussian_random_field", "cells")


def with_band(estimate, source, band):
    """`estimate` with its Fourier coefficients in `band` (cycles per field) from `source`."""
    import numpy as np

    from keras_cvdm.metrics import frequency_bands

    inside = frequency_bands(*estimate.shape[-2:], band)[0]
    spectrum = np.where(inside, np.fft.fft2(source), np.fft.fft2(estimate))
    return np.real(np.fft.ifft2(spectrum))


def best_blend(estimate, source, truth, edges=EDGES):
    """`estimate + w·(source − estimate)` in each band, `w` in [0, 1] closest to `truth`.

    `w` is the least-squares weight over the band's Fourier coefficients, per image and
    band (`edges`, cycles per field), clipped to [0, 1]; frequencies outside every band
    (the mean, below the first edge) stay the estimate's.
    """
    import numpy as np

    from keras_cvdm.metrics import frequency_bands

    e, s, t = (np.fft.fft2(a) for a in (estimate, source, truth))
    blended = e.copy()
    for inside in frequency_bands(*estimate.shape[-2:], edges):
        step, wanted = (s - e)[..., inside], (t - e)[..., inside]
        w = np.real(np.sum(np.conj(step) * wanted, axis=-1)) / np.maximum(
            np.sum(np.abs(step) ** 2, axis=-1), 1e-30)
        blended[..., inside] += np.clip(w, 0.0, 1.0)[..., None] * step
    return np.real(np.fft.ifft2(blended))


def band_gain(source, truth, band):
    """Least-squares gains from `source` to `truth` inside `band`, as an `(H, W)` map.

    One real gain per frequency magnitude (each ring `|k|²` of the FFT grid inside the
    band, cycles per field), pooled over the leading axes: the best linear estimate of
    `truth`'s coefficients from `source`'s alone, `Re Σ conj(s)·t / Σ |s|²`. For a truth
    of power `P` seen with independent noise of power `N` it is the Wiener gain
    `P / (P + N)`. Zero outside the band.
    """
    import numpy as np

    from keras_cvdm.metrics import frequency_bands, radial_frequency

    s, t = np.fft.fft2(source), np.fft.fft2(truth)
    inside = frequency_bands(*source.shape[-2:], band)[0]
    rings = np.round(radial_frequency(*source.shape[-2:]) ** 2, 6)
    gain = np.zeros(inside.shape)
    for ring in np.unique(rings[inside]):
        at = rings == ring
        gain[at] = np.real(np.sum(np.conj(s[..., at]) * t[..., at])) / max(
            np.sum(np.abs(s[..., at]) ** 2), 1e-30)
    return gain


def apply_gain(source, gain):
    """`source` filtered by the Fourier gain map `gain` (`band_gain`)."""
    import numpy as np

    return np.real(np.fft.ifft2(gain * np.fft.fft2(source)))


def linear_floor_gains(noise, num_images):
    """`band_gain` of the lowest band from unregularised TIE, per kind, on validation fields."""
    import numpy as np

    from keras_cvdm.data import qpi_test_set
    from keras_cvdm.physics import tie_phase

    i_minus, i_plus, phase, kinds = qpi_test_set(num_images, 128, noise, seed=VALIDATION_SEED,
                                                 return_kinds=True)
    raw = tie_phase(i_minus, i_plus, regularization=0.0)
    kinds = np.asarray(kinds)
    return {k: band_gain(raw[kinds == k], phase[kinds == k], LOWEST) for k in set(kinds)}


def band_label(lo, hi):
    return f"≥ {lo:g}" if hi == float("inf") else f"{lo:g}–{hi:g}"


def score_level(model, noise, num_images, num_samples):
    import keras
    import numpy as np

    from keras_cvdm import qpi
    from keras_cvdm.data import qpi_test_set
    from keras_cvdm.evaluation import _tuned_tie
    from keras_cvdm.metrics import align_phase, band_errors, phase_mae
    from keras_cvdm.physics import tie_phase
    from keras_cvdm.tasks import normalization

    i_minus, i_plus, phase, kinds = qpi_test_set(num_images, 128, noise, return_kinds=True)
    posterior = qpi.reconstruct(model, i_minus, i_plus, num_samples=num_samples, seed=0)[0]
    x = qpi.condition(model, i_minus, i_plus)

    def in_batches(fn):
        return np.concatenate([keras.ops.convert_to_numpy(fn(x[i:i + 8]))
                               for i in range(0, len(x), 8)])

    norm = normalization(model, "qpi")
    mu = norm.denormalize_phase(in_batches(model.mean_network)[..., 0])
    # The least regularised TIE estimate, model units → rad (zero mean).
    span = norm.phase_max - norm.phase_min
    tie_eps1 = in_batches(model.mean_network.physics)[..., 0] * span / 2
    tie = _tuned_tie(i_minus, i_plus, phase, {}, ("periodic",))[0]
    kinds = np.asarray(kinds)
    raw = tie_phase(i_minus, i_plus, regularization=0.0)
    floor = phase.astype(np.float64)
    for kind, gain in linear_floor_gains(noise, 4 * num_images).items():
        at = kinds == kind
        floor[at] = with_band(phase[at], apply_gain(raw[at], gain), LOWEST)
    estimates = {name: align_phase(e, phase) for name, e in
                 (("cvdm", posterior), ("mean network", mu), ("tie", tie),
                  ("linear floor", floor))}
    groups = {"all": np.ones(len(kinds), bool)} | {k: kinds == k for k in sorted(set(kinds))}
    bands = {name: band_errors(e, phase, EDGES) for name, e in estimates.items()}
    substituted = {
        "cvdm, lowest band exact": with_band(estimates["cvdm"], phase, LOWEST),
        "cvdm, middle bands from tie": with_band(estimates["cvdm"], estimates["tie"], MIDDLE),
        "cvdm, best blend with tie_ε₁": best_blend(estimates["cvdm"], tie_eps1, phase),
    }
    mae = {name: phase_mae(e, phase) for name, e in (estimates | substituted).items()}
    return {
        group: {
            "images": int(chosen.sum()),
            "band_rms": {name: np.sqrt((b[chosen] ** 2).mean(axis=0)).round(4).tolist()
                         for name, b in bands.items()},
            "mae": {name: round(float(m[chosen].mean()), 4) for name, m in mae.items()},
        }
        for group, chosen in groups.items()
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num-images", type=int, default=64, help="test images per noise level")
    parser.add_argument("--num-samples", type=int, default=8, help="posterior samples per image")
    args = parser.parse_args()
    import keras
    from report import machine, write_section

    import keras_cvdm

    start = time.time()
    model = keras_cvdm.from_preset("qpi")
    levels = {str(noise): score_level(model, noise, args.num_images, args.num_samples)
              for noise in NOISE_LEVELS}
    bands = [band_label(lo, hi) for lo, hi in zip(EDGES[:-1], EDGES[1:])]
    lines = [
        "## Error by spatial scale (`benchmarks/error_spectrum.py`)\n",
        f"Machine: {machine()}; backend {keras.backend.backend()}; runtime "
        f"{time.time() - start:.0f} s. `qpi` preset on the QPI test set ({args.num_images} "
        f"images per noise level, {args.num_samples} samples). RMS of the aligned phase "
        "error (rad) in bands of spatial frequency (cycles per 128-pixel field; "
        "`metrics.band_errors`), pooled over the images; the squares of a row add up to "
        "its mean squared error. `cvdm` is the posterior mean with the preset's band blend "
        "with TIE (`keras_cvdm.calibration`), `mean network` μ(x) alone. `tie` is tuned on "
        "these very images (an oracle). `linear "
        "floor` is the truth with its lowest band from the best per-frequency linear filter of the "
        "unregularised TIE solve (gains per kind fitted on validation fields), every other "
        "band exact: what that filter leaves in the slowest modes.\n",
        "| noise | images | estimate | MAE | " + " | ".join(bands) + " |",
        "|---|---|---|---|" + "---|" * len(bands),
    ]
    for noise, groups in levels.items():
        for group in SHOWN_KINDS:
            scores = groups[group]
            for name, rms in scores["band_rms"].items():
                lines.append(f"| {noise} | {group} ({scores['images']}) | {name} | "
                             f"{scores['mae'][name]:.3f} | "
                             + " | ".join(f"{v:.3f}" for v in rms) + " |")
    lines += [
        "\nWhat each scale is worth (aligned MAE, rad, all images): the posterior mean with "
        f"its lowest band ({band_label(*LOWEST)} cycles) replaced by the truth's, and with "
        f"its middle bands ({band_label(*MIDDLE)} cycles) replaced by tuned TIE's, and its "
        "best blend in every band of each image with the mean network's least regularised "
        "TIE estimate (weights in [0, 1] chosen with the truth: an oracle).\n",
        "| noise | cvdm | lowest band exact | middle bands from tie | best blend with TIE_ε₁ "
        "| tie |",
        "|---|---|---|---|---|---|",
    ]
    for noise, groups in levels.items():
        m = groups["all"]["mae"]
        lines.append(f"| {noise} | {m['cvdm']:.3f} | {m['cvdm, lowest band exact']:.3f} | "
                     f"{m['cvdm, middle bands from tie']:.3f} | "
                     f"{m['cvdm, best blend with tie_ε₁']:.3f} | {m['tie']:.3f} |")
    write_section("error_spectrum", "\n".join(lines),
                  {"edges": [e if e != float("inf") else "inf" for e in EDGES],
                   "levels": levels, "num_images": args.num_images,
                   "num_samples": args.num_samples, "backend": keras.backend.backend()})


if __name__ == "__main__":
    main()
