"""The `keras-cvdm` command."""

import argparse
import json
import os
import sys
import time


def _demo(args):
    import keras
    import numpy as np

    from keras_cvdm import CVDM
    from keras_cvdm.data import QPINormalization, qpi_dataset, qpi_test_set
    from keras_cvdm.layers import UNetDenoiser
    from keras_cvdm.physics import phase_mae, tie_phase, tune_tie_regularization

    if os.path.exists(args.output) and not os.path.isdir(args.output):
        sys.exit(f"--output {args.output!r} exists and is not a folder; choose another path.")
    os.makedirs(args.output, exist_ok=True)
    figure = os.path.join(args.output, "qpi_demo.png")
    metrics_path = os.path.join(args.output, "qpi_demo_metrics.json")
    for path in (figure, metrics_path):
        if os.path.exists(path) and not args.overwrite:
            sys.exit(f"{path} exists; pass --overwrite or choose another --output folder.")

    size, norm = args.image_size, QPINormalization()
    print(
        f"keras-cvdm demo on {keras.backend.backend()}: two-shot QPI (λ 0.521 µm, pixel "
        f"0.21 µm, ±1 µm defocus), {args.steps} training steps at {size}×{size} on "
        "simulated phantoms. A short CPU training run, not a pretrained preset."
    )
    train = qpi_dataset(
        batch_size=8, image_size=size, num_batches=args.steps, seed=0, resample_each_epoch=True
    )
    model = CVDM(
        target_channels=1,
        denoiser=UNetDenoiser(1, widths=(16, 32, 64), embedding_dim=16),
        seed=0,
    )
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    start = time.time()
    model.fit(train, epochs=1, verbose=2)
    train_seconds = time.time() - start

    i_minus, i_plus, phase = qpi_test_set(
        num_images=4, image_size=size, noise_std=args.noise, seed=10_000
    )
    x = norm.pair_to_model(i_minus, i_plus)
    start = time.time()
    mean, std = model.predict_uncertainty(
        x, num_samples=8, num_steps=args.sample_steps, sampler="ddim", seed=0, verbose=0
    )
    sample_seconds = time.time() - start
    phase_mean = norm.denormalize_phase(mean[..., 0])
    phase_std = std[..., 0] * (norm.phase_max - norm.phase_min) / 2.0
    eps, _ = tune_tie_regularization(i_minus, i_plus, phase)
    tie = tie_phase(i_minus, i_plus, regularization=eps)
    lam = model.schedule_map(x)[..., 0]
    error = np.abs(phase_mean - phase_mean.mean(axis=(1, 2), keepdims=True)
                   - (phase - phase.mean(axis=(1, 2), keepdims=True)))
    metrics = {
        "backend": keras.backend.backend(),
        "training_steps": args.steps,
        "training_seconds": round(train_seconds, 1),
        "sampling_seconds_per_image_8_samples": round(sample_seconds / len(x), 2),
        "noise_std": args.noise,
        "cvdm_mae_rad_mean_aligned": float(np.mean(phase_mae(phase_mean, phase))),
        "tie_tuned_mae_rad_mean_aligned": float(np.mean(phase_mae(tie, phase))),
        "mean_std_rad": float(np.mean(phase_std)),
        "std_error_correlation": float(np.corrcoef(phase_std.ravel(), error.ravel())[0, 1]),
    }
    with open(metrics_path, "w") as f:
        json.dump(metrics, f, indent=2)
    for key, value in metrics.items():
        print(f"  {key}: {value}")

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install keras-cvdm[plot]); no figure written.")
        return
    panels = [
        (i_minus[0], "I(−dz)", "gray"),
        (i_plus[0], "I(+dz)", "gray"),
        (phase[0], "true phase (rad)", "viridis"),
        (phase_mean[0] - phase_mean[0].mean() + phase[0].mean(), "CVDM mean (rad)", "viridis"),
        (tie[0] - tie[0].mean() + phase[0].mean(), "tuned TIE (rad)", "viridis"),
        (phase_std[0], "CVDM std (rad)", "magma"),
        (lam[0], "schedule map λ(x)", "cividis"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.9))
    for ax, (image, title, cmap) in zip(axes, panels):
        im = ax.imshow(image, cmap=cmap)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    fig.tight_layout()
    fig.savefig(figure, dpi=110)
    print(f"figure: {figure}\nmetrics: {metrics_path}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="keras-cvdm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="train a small CVDM on simulated QPI data, reconstruct phase with uncertainty",
    )
    demo.add_argument("--output", default="demo_output", help="folder for the figure")
    demo.add_argument("--steps", type=int, default=600, help="training steps (batch 8)")
    demo.add_argument("--image-size", type=int, default=32)
    demo.add_argument("--noise", type=float, default=0.05, help="intensity noise std")
    demo.add_argument("--sample-steps", type=int, default=25, help="DDIM steps")
    demo.add_argument("--overwrite", action="store_true", help="replace earlier outputs")
    args = parser.parse_args(argv)
    if args.command == "demo":
        _demo(args)


if __name__ == "__main__":
    main()
