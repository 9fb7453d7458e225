"""The `keras-cvdm` command."""

import argparse
import json
import math
import os
import sys
import time


def _demo(args):
    import keras
    import numpy as np

    import keras_cvdm
    from keras_cvdm.data import qpi_test_set
    from keras_cvdm.evaluation import score_qpi
    from keras_cvdm.metrics import align_phase, coverage, phase_mae

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
    lam = model.schedule_map(keras_cvdm.qpi.condition(model, i_minus, i_plus))[..., 0]
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
        "coverage_2sigma": coverage(align_phase(mean, phase), std, phase),
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


def _ints(text):
    """`"8,16,32"` → `(8, 16, 32)` (for `--widths`)."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 8,16,32, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"widths must be positive integers, got {text!r}")
    return values


def _whole(minimum):
    """An argparse type: a whole number of at least `minimum` (`"8"`, not `"2.7"`)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(
                f"expected a whole number of at least {minimum}, got {text!r}"
            )
        return value
    parse.__name__ = f"whole number >= {minimum}"
    return parse


def _real(minimum, strict=False):
    """An argparse type: a finite number of at least (`strict`: above) `minimum`.

    `nan` and `inf`, which `float` accepts, are refused.
    """
    relation = "greater than" if strict else "at least"

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or (value <= minimum if strict else value < minimum):
            raise argparse.ArgumentTypeError(
                f"expected a finite number {relation} {minimum:g}, got {text!r}"
            )
        return value
    parse.__name__ = f"number {relation} {minimum:g}"
    return parse


POSITIVE = _whole(1)
NON_NEGATIVE = _whole(0)
POSITIVE_REAL = _real(0, strict=True)


def _add_sampling(parser, samples=8, seed=None):
    parser.add_argument("--samples", type=_whole(2), default=samples,
                        help=f"posterior samples per image, at least 2 (default {samples})")
    parser.add_argument("--steps", type=POSITIVE, default=None,
                        help="denoiser steps per sample (default: the model's)")
    parser.add_argument("--sampler", default=None,
                        help="ancestral, ddim, dpmpp2m or dpmpp2m_sde (default: the model's)")
    parser.add_argument("--seed", type=NON_NEGATIVE, default=seed,
                        help="integer seed for reproducible samples (default: "
                        + ("a fresh one, recorded in the output)" if seed is None else f"{seed})"))


def _add_tiling(parser):
    parser.add_argument("--tile", type=POSITIVE, default=None,
                        help="tile side in pixels for large images (default: whole image)")
    parser.add_argument("--overlap", type=NON_NEGATIVE, default=None,
                        help="tile overlap in pixels (default: a quarter of --tile)")


def _add_model_source(parser):
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", help="a built-in preset name, a preset folder or a URL")
    source.add_argument("--model", help="a model saved with model.save(FILE.keras)")


def _train(args):
    import logging

    from keras_cvdm import training

    # The run's messages (resumed, finished, preset written) on stdout, for this call.
    handler = logging.StreamHandler(sys.stdout)
    training.logger.addHandler(handler)
    training.logger.setLevel(logging.INFO)
    if args.num_processes > 1 or args.job_addresses or args.process_id:
        from keras_cvdm import distribute

        if args.distribute is None:
            raise ValueError(
                "--num-processes / --job-addresses / --process-id start a multi-process "
                "run: add --distribute data-parallel."
            )
        if not args.job_addresses:
            raise ValueError(
                "A multi-process run needs --job-addresses (host:port of process 0 on JAX; "
                "every process's host:port, comma-separated, on TensorFlow)."
            )
        distribute.initialize(args.job_addresses, args.num_processes, args.process_id)
    try:
        folder = training.train(
            args.output, distribute=args.distribute, task=args.task, data=args.data,
            epochs=args.epochs,
            steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size,
            image_size=args.image_size, seed=args.seed, learning_rate=args.learning_rate,
            from_preset=args.from_preset, widths=args.widths, tensorboard=args.tensorboard,
            preview_every=args.preview_every, overwrite=args.overwrite,
        )
    finally:
        training.logger.removeHandler(handler)
    return folder


def _predict(args):
    from keras_cvdm import prediction

    prediction.predict_files(
        args.input, args.output, preset=args.preset, model_file=args.model,
        num_samples=args.samples, num_steps=args.steps, sampler=args.sampler, seed=args.seed,
        batch_size=args.batch_size, tile=args.tile, overlap=args.overlap,
        wavelength=args.wavelength, pixel_size=args.pixel_size, defocus=args.defocus,
        save_samples=args.save_samples, overwrite=args.overwrite,
        verbose=1 if sys.stdout.isatty() else 0,
    )


def _evaluate(args):
    import keras

    from keras_cvdm import evaluation, prediction

    if args.json and os.path.exists(args.json) and not args.overwrite:
        sys.exit(f"{args.json} exists; pass --overwrite or choose another --json path.")
    model, source = prediction.load_model(preset=args.preset, model_file=args.model)
    results = evaluation.evaluate(
        model, data=args.data, num_images=args.num_images, image_size=args.image_size,
        noise_levels=args.noise, num_samples=args.samples, seed=args.seed,
        num_steps=args.steps, sampler=args.sampler, tile=args.tile, overlap=args.overlap,
    )
    results = {"model": source, "backend": keras.backend.backend(), **results}
    print(evaluation.format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"results: {args.json}")


def _presets(args):
    from keras_cvdm.presets import describe_preset, list_presets

    names = args.names or list_presets()
    for name in names:
        row = describe_preset(name)
        print(f"{row['name']}  (task {row['task']}, weights {row['weights_mb']} MB, "
              f"default sampler {row['sampling'].get('sampler')}-"
              f"{row['sampling'].get('num_steps')})")
        print(f"  {row['description']}")
        optics = ", ".join(f"{k} {v}" for k, v in row["optics"].items()
                           if not isinstance(v, str))
        print(f"  optics: {optics}")
        for key, value in row["scores"].items():
            if key.split("/")[-1] not in ("num_images", "image_size", "tie_regularization"):
                print(f"  {key}: {value:.3f}")


def main(argv: list[str] | None = None) -> None:
    """The `keras-cvdm` command: `demo`, `predict`, `train`, `evaluate`, `presets`.

    Args:
        argv: the arguments after the program name (default: `sys.argv[1:]`).

    Returns:
        None; each command prints what it did and writes its files under `--output`.

    Examples:
        >>> main(["demo", "--help"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        SystemExit: 0
    """
    parser = argparse.ArgumentParser(
        prog="keras-cvdm",
        description="Conditional variational diffusion models for phase imaging and "
        "super-resolution microscopy, with per-pixel uncertainty. The Keras backend comes "
        "from KERAS_BACKEND (tensorflow, jax or torch).",
    )
    from keras_cvdm.version import __version__

    parser.add_argument("--version", action="version", version=f"keras-cvdm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    shown = argparse.ArgumentDefaultsHelpFormatter  # every option's help shows its default
    demo = sub.add_parser(
        "demo", formatter_class=shown,
        help="reconstruct simulated phase objects with the pretrained qpi preset",
    )
    demo.add_argument("--output", default="demo_output", help="folder for the figure")
    demo.add_argument("--num-images", type=POSITIVE, default=4, help="test images")
    demo.add_argument("--image-size", type=POSITIVE, default=128, help="image side")
    demo.add_argument("--noise", type=_real(0), default=0.05, help="intensity noise std")
    demo.add_argument("--samples", type=_whole(2), default=8, help="posterior samples per image")
    demo.add_argument("--overwrite", action="store_true", help="replace earlier outputs")

    predict = sub.add_parser(
        "predict", formatter_class=shown,
        help="posterior mean and std maps from your own image files",
        description="QPI: two single-plane files (-dz then +dz) or one two-plane stack; "
        "SR: one file. TIFF (8/16-bit, float, multi-page: one result per plane), PNG or "
        "NPY. Writes OUTPUT/mean.tif, OUTPUT/std.tif (float32, radians for QPI) and "
        "OUTPUT/prediction.json.",
    )
    _add_model_source(predict)
    predict.add_argument("--input", nargs="+", required=True, help="input image file(s)")
    predict.add_argument("--output", required=True, help="folder for the results")
    _add_sampling(predict)
    predict.add_argument("--batch-size", type=POSITIVE, default=16,
                         help="(tile, sample) pairs per model call: bounds memory")
    _add_tiling(predict)
    predict.add_argument("--wavelength", type=POSITIVE_REAL, default=None,
                         help="QPI: wavelength (µm)")
    predict.add_argument("--pixel-size", type=POSITIVE_REAL, default=None,
                         help="QPI: pixel size in the sample plane (µm)")
    predict.add_argument("--defocus", type=POSITIVE_REAL, default=None,
                         help="QPI: defocus ±dz (µm)")
    predict.add_argument("--save-samples", action="store_true",
                         help="also write the posterior samples to OUTPUT/samples.tif")
    predict.add_argument("--overwrite", action="store_true", help="replace earlier results")

    train = sub.add_parser(
        "train", formatter_class=shown,
        help="train a model on simulated data or your paired images",
        description="Trains with Keras callbacks; rerunning the same command after a crash "
        "resumes from OUTPUT/backup. Writes OUTPUT/history.csv, previews and OUTPUT/preset.",
    )
    train.add_argument("--task", choices=("qpi", "sr"), default=None,
                       help="the task (simulated data when --data is not given)")
    train.add_argument("--data", default=None,
                       help="paired data: a folder with x/ and y/ (same names) or an .npz")
    train.add_argument("--output", required=True, help="folder for the run and its preset")
    train.add_argument("--epochs", type=POSITIVE, default=10,
                       help="epochs in all (raise to continue)")
    train.add_argument("--steps-per-epoch", type=POSITIVE, default=50, help="batches per epoch")
    train.add_argument("--batch-size", type=POSITIVE, default=8, help="examples per batch")
    train.add_argument("--image-size", type=POSITIVE, default=64, help="training crop side")
    train.add_argument("--seed", type=NON_NEGATIVE, default=0, help="seeds the model and data")
    train.add_argument("--learning-rate", type=POSITIVE_REAL, default=1e-3, help="Adam's rate")
    train.add_argument("--from-preset", default=None, help="fine-tune this preset")
    train.add_argument("--widths", type=_ints, default=None,
                       help="U-Net widths, e.g. 8,16 (None: the presets' architecture)")
    train.add_argument("--tensorboard", action="store_true",
                       help="also log to OUTPUT/logs for TensorBoard")
    train.add_argument("--preview-every", type=NON_NEGATIVE, default=1,
                       help="write a preview PNG every N epochs (0: never)")
    train.add_argument("--distribute", choices=("data-parallel",), default=None,
                       help="train on every device (JAX keras.distribution, TensorFlow "
                            "tf.distribute); the same result as one device")
    train.add_argument("--job-addresses", default=None,
                       help="multi-process run: host:port of process 0 (JAX) or of every "
                            "process, comma-separated (TensorFlow)")
    train.add_argument("--num-processes", type=POSITIVE, default=1,
                       help="processes in a multi-process run")
    train.add_argument("--process-id", type=NON_NEGATIVE, default=0,
                       help="this process's index in a multi-process run")
    train.add_argument("--overwrite", action="store_true",
                       help="discard an earlier run in OUTPUT and start again")

    evaluate = sub.add_parser(
        "evaluate", formatter_class=shown,
        help="score a model against ground truth and the classical baseline",
    )
    _add_model_source(evaluate)
    evaluate.add_argument("--data", default=None,
                          help="paired folder (x/, y/) or .npz; default: the simulated test set")
    evaluate.add_argument("--num-images", type=POSITIVE, default=64,
                          help="simulated test images per noise level")
    evaluate.add_argument("--image-size", type=POSITIVE, default=128,
                          help="simulated image side")
    evaluate.add_argument("--noise", type=_real(0), nargs="+", default=None,
                          help="QPI intensity noise levels (default 0.05 0.1)")
    _add_sampling(evaluate, seed=0)
    _add_tiling(evaluate)
    evaluate.add_argument("--json", default=None, help="also write the results to this file")
    evaluate.add_argument("--overwrite", action="store_true", help="replace --json")

    presets = sub.add_parser("presets", formatter_class=shown,
                             help="the built-in presets: task, optics, size, scores")
    presets.add_argument("names", nargs="*",
                         help="preset names or folders (default: every built-in preset)")
    args = parser.parse_args(argv)
    commands = {"demo": _demo, "predict": _predict, "train": _train, "evaluate": _evaluate,
                "presets": _presets}
    try:
        commands[args.command](args)
    except (ValueError, FileExistsError, FileNotFoundError, NotADirectoryError,
            RuntimeError, ImportError) as error:
        # A user's mistake or a diverged run: the message names it and the fix.
        sys.exit(f"keras-cvdm {args.command}: error: {error}")


if __name__ == "__main__":
    main()
