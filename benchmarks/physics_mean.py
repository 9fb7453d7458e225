"""Which physics the QPI mean network needs: three mean networks at one training budget.

    KERAS_BACKEND=tensorflow python benchmarks/physics_mean.py [--steps 400]

The mean `μ(x)` carries the accuracy of a zero-mean CVDM (the diffusion adds the
residual's spread). Each variant is trained alone, with MSE, on the same simulated
whole 128×128 fields over the `qpi` preset's range of optics and noise (the recipe of
`examples/train_qpi_preset.py`, smaller U-Nets), and scored on validation fields (seed
20 000, never the test set) by aligned phase MAE (rad):

- `unet`: a U-Net on the measurement (two normalised intensities, the optics code);
- `tie_channels`: the same U-Net also given the three TIE estimates as channels;
- `tie_plus_correction`: the middle TIE estimate plus the U-Net's correction
  (`keras_cvdm.layers.TIEMeanNetwork`, the preset's choice);
- `tie_tuned`: TIE alone with its regularisation tuned on the validation images (an
  oracle).

Writes the "Physics in the mean network" section of RESULTS.md and
`results/physics_mean.json`.
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

OPTICS_RANGE = {"wavelength_um": (0.45, 0.65), "pixel_size_um": (0.15, 0.35),
                "defocus_um": (0.5, 2.0)}
VALIDATION = (  # (name, noise, optics)
    ("reference optics, noise 0.05", 0.05, {}),
    ("reference optics, noise 0.1", 0.1, {}),
    ("λ 0.45, pixel 0.35, dz 0.5 µm, noise 0.05", 0.05,
     {"wavelength": 0.45, "pixel_size": 0.35, "defocus": 0.5}),
    ("λ 0.65, pixel 0.15, dz 2 µm, noise 0.05", 0.05,
     {"wavelength": 0.65, "pixel_size": 0.15, "defocus": 2.0}),
)
VALIDATION_SEED = 20_000


def build(variant, widths):
    import keras

    from keras_cvdm.layers import TIEMeanNetwork, UNetRegressor

    class Mean(keras.Model):
        def __init__(self):
            super().__init__()
            self.tie = TIEMeanNetwork(widths=widths)
            self.unet = UNetRegressor(1, widths=widths)

        def call(self, x):
            if variant == "tie_plus_correction":
                return self.tie(x)
            if variant == "tie_channels":
                return self.unet(keras.ops.concatenate([x, self.tie.physics(x)], axis=-1))
            return self.unet(x)

    return Mean()


def validation_sets():
    import numpy as np

    from keras_cvdm.data import QPINormalization, qpi_test_set
    from keras_cvdm.physics import PAPER_DEFOCUS, PAPER_PIXEL_SIZE, PAPER_WAVELENGTH

    norm = QPINormalization(optics_channel=True)
    sets = []
    for name, noise, changed in VALIDATION:
        optics = {"wavelength": PAPER_WAVELENGTH, "pixel_size": PAPER_PIXEL_SIZE,
                  "defocus": PAPER_DEFOCUS, **changed}
        i_minus, i_plus, phase = qpi_test_set(16, 128, noise, seed=VALIDATION_SEED, **optics)
        x = norm.pair_to_model(i_minus, i_plus, {f"{k}_um": v for k, v in optics.items()})
        sets.append((name, optics, i_minus, i_plus, phase, x.astype(np.float32)))
    return norm, sets


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=400, help="training steps per variant")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--widths", default="16,32,64,64")
    parser.add_argument("--variants", default="unet,tie_channels,tie_plus_correction",
                        help="variants to train; the others' scores (and the tuned TIE's) are "
                        "taken from results/physics_mean.json if it was written with the same "
                        "steps, batch size and widths")
    args = parser.parse_args()
    import keras
    import numpy as np
    from report import machine, write_section

    from keras_cvdm.data import qpi_dataset
    from keras_cvdm.evaluation import _tuned_tie
    from keras_cvdm.metrics import phase_mae

    widths = tuple(int(w) for w in args.widths.split(","))
    norm, sets = validation_sets()
    start = time.time()
    variants = args.variants.split(",")
    earlier = {}
    path = os.path.join(HERE, "results", "physics_mean.json")
    if os.path.exists(path):
        with open(path) as f:
            earlier = json.load(f)
    same = (earlier.get("steps"), earlier.get("batch_size"), earlier.get("widths")) == (
        args.steps, args.batch_size, list(widths))
    scores = {"tie_tuned": {name: float(np.mean(phase_mae(
        _tuned_tie(i_minus, i_plus, phase, optics, ("periodic",))[0], phase)))
        for name, optics, i_minus, i_plus, phase, _ in sets}}
    seconds = {}
    for variant in ("unet", "tie_channels", "tie_plus_correction"):
        if variant not in variants:
            if same and variant in earlier.get("scores", {}):
                scores[variant] = earlier["scores"][variant]
                seconds[variant] = earlier["seconds"][variant]
            continue
        keras.utils.set_random_seed(0)
        data = qpi_dataset(batch_size=args.batch_size, image_size=128, num_batches=args.steps,
                           seed=3, normalization=norm, optics_range=OPTICS_RANGE)
        model = build(variant, widths)
        lr = keras.optimizers.schedules.CosineDecay(1e-3, args.steps, alpha=0.05)
        model.compile(optimizer=keras.optimizers.Adam(lr, global_clipnorm=1.0), loss="mse")
        begin = time.time()
        model.fit(data, epochs=1, verbose=0)
        seconds[variant] = round(time.time() - begin, 1)
        scores[variant] = {}
        for name, _, _, _, phase, x in sets:
            mean = norm.denormalize_phase(model.predict(x, batch_size=8, verbose=0)[..., 0])
            scores[variant][name] = float(np.mean(phase_mae(mean, phase)))
        print(variant, scores[variant], flush=True)
    names = [name for name, *_ in VALIDATION]
    lines = [
        "## Physics in the mean network (`benchmarks/physics_mean.py`)\n",
        f"Machine: {machine()}; backend {keras.backend.backend()}. Mean networks alone (MSE), "
        f"{args.steps} steps of batch {args.batch_size} on whole 128² simulated fields over "
        f"the preset's optics range, U-Net widths {list(widths)}; aligned phase MAE (rad) "
        "on 16 validation fields (seed 20 000) per row. Runtime "
        f"{time.time() - start:.0f} s (trained in this run: {', '.join(variants)}).\n",
        "| validation | " + " | ".join(scores) + " |",
        "|---|" + "---|" * len(scores),
    ]
    for name in names:
        best = min(scores, key=lambda v: scores[v][name])
        lines.append(f"| {name} | " + " | ".join(
            f"**{scores[v][name]:.3f}**" if v == best else f"{scores[v][name]:.3f}"
            for v in scores) + " |")
    lines.append(
        "\n`tie_tuned` is TIE alone with its regularisation tuned on these very images (an "
        "oracle). Bold: the lowest in the row. Training seconds per variant: "
        + ", ".join(f"{v} {s:.0f} s" for v, s in seconds.items()) + "."
        + (f" Not retrained here (same settings, from an earlier run): "
           f"{', '.join(v for v in seconds if v not in variants)}."
           if any(v not in variants for v in seconds) else "")
    )
    write_section("physics_mean", "\n".join(lines),
                  {"scores": scores, "seconds": seconds, "steps": args.steps,
                   "batch_size": args.batch_size, "widths": list(widths),
                   "backend": keras.backend.backend()})


if __name__ == "__main__":
    main()
