"""The `keras-cvdm` command."""

import argparse
import json
import os
import sys
import time


def _demo(args):
    import keras
    import numpy as np

    import keras_cvdm
    from keras_cvdm import tasks
    from keras_cvdm.data import qpi_test_set
    from keras_cvdm.evaluation import score_qpi
    from keras_cvdm.metrics import phase_mae

    if os.path.exists(args.output) and not os.path.isdir(args.output):
        sys.exit(f"--output {args.output!r} exists and is not a folder; choose another path.")
    os.makedirs(args.output, exist_ok=True)
    figure = os.path.join(args.output, "qpi_demo.png")
    metrics_path = os.path.join(args.output, "qpi_demo_metrics.json")
    for path in (figure, metrics_path):
        if os.path.exists(path) and not args.overwrite:
            sys.exit(f"{path} exists; pass --overwrite or choose another --output folder.")

    model = keras_cvdm.from_preset("qpi")
    optics = model.metadata["forward_model"]
    print(
        f"keras-cvdm demo on {keras.backend.backend()}: the pretrained `qpi` preset "
        f"(λ {optics['wavelength_um']} µm, pixel {optics['pixel_size_um']} µm, "
        f"±{optics['defocus_um']} µm defocus) on {args.num_images} simulated "
        f"{args.image_size}×{args.image_size} phase objects with intensity noise std "
        f"{args.noise} (held-out test seed)."
    )
    i_minus, i_plus, phase, kinds = qpi_test_set(
        args.num_images, args.image_size, args.noise, return_kinds=True
    )
    start = time.time()
    mean, std = keras_cvdm.qpi.reconstruct(
        model, i_minus, i_plus, num_samples=args.samples, seed=0, verbose=1
    )
    seconds = time.time() - start
    scores = score_qpi(mean, std, i_minus, i_plus, phase)
    tie, cvdm_mae, tie_mae = scores["tie"], scores["cvdm_mae"], scores["tie_mae"]
    norm = tasks.normalization(model, "qpi")
    x = norm.pair_to_model(i_minus, i_plus)
    lam = model.schedule_map(x)[..., 0]
    metrics = {
        "backend": keras.backend.backend(),
        "images": args.num_images,
        "noise_std": args.noise,
        "samples_per_image": args.samples,
        "seconds_per_image": round(seconds / args.num_images, 2),
        "cvdm_mae_rad_mean_aligned": float(np.mean(cvdm_mae)),
        "tie_tuned_mae_rad_mean_aligned": float(np.mean(tie_mae)),
        "cvdm_mae_rad_absolute": float(np.mean(phase_mae(mean, phase, alignment="min"))),
        "mean_std_rad": float(np.mean(std)),
        "std_error_spearman": scores["std_error_spearman"],
        "per_image": [
            {"kind": str(k), "cvdm_mae_rad": float(c), "tie_tuned_mae_rad": float(t)}
            for k, c, t in zip(kinds, cvdm_mae, tie_mae)
        ],
    }
    with open(metrics_path, "w") as f:
        json.dump(metrics, f, indent=2)
    for key, value in metrics.items():
        if key != "per_image":
            print(f"  {key}: {value}")
    print("  per image (phase MAE, mean-aligned, rad):")
    for row in metrics["per_image"]:
        print(f"    {row['kind']:<22} CVDM {row['cvdm_mae_rad']:.3f}   "
              f"tuned TIE {row['tie_tuned_mae_rad']:.3f}")
    held_out = model.metadata.get("validation", {}).get("qpi_test_set", {})
    if held_out:
        print("  the preset's held-out evaluation (metadata.json; MAE rad, CVDM / tuned TIE):")
        for noise, row in held_out.items():
            print(f"    noise {noise}: {row['cvdm_mae_aligned']:.3f} / "
                  f"{row['tie_mae_aligned']:.3f} on {row['num_images']} images")

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
        (mean[0], "CVDM mean (rad)", "viridis"),
        (tie[0] - tie[0].mean() + phase[0].mean(), "tuned TIE (rad)", "viridis"),
        (std[0], "CVDM std (rad)", "magma"),
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


def main(argv: list[str] | None = None) -> None:
    """The `keras-cvdm` command.

    Args:
        argv: the arguments after the program name (default: `sys.argv[1:]`).

    Returns:
        None; `keras-cvdm demo` writes its figure and metrics under `--output`.

    Examples:
        >>> main(["demo", "--help"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        SystemExit: 0
    """
    parser = argparse.ArgumentParser(prog="keras-cvdm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="reconstruct simulated phase objects with the pretrained qpi preset",
    )
    demo.add_argument("--output", default="demo_output", help="folder for the figure")
    demo.add_argument("--num-images", type=int, default=4, help="test images")
    demo.add_argument("--image-size", type=int, default=128)
    demo.add_argument("--noise", type=float, default=0.05, help="intensity noise std")
    demo.add_argument("--samples", type=int, default=8, help="posterior samples per image")
    demo.add_argument("--overwrite", action="store_true", help="replace earlier outputs")
    args = parser.parse_args(argv)
    if args.command == "demo":
        _demo(args)


if __name__ == "__main__":
    main()
