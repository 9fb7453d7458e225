"""The training run behind the shipped presets, shared by `train_qpi_preset.py` and
`train_sr_preset.py`.

A recipe (a JSON-ready dict) fixes everything: the model, the simulated dataset, the
optimiser, the number of steps and the seed. `run(recipe)` trains in chunks ("epochs"
of `steps_per_epoch` batches) with `keras.callbacks.BackupAndRestore`, so an interrupted
run resumes from its last chunk when started again with the same `--workdir`; then it
evaluates on a held-out test set and writes a preset folder (config, weights, metadata).
"""

import argparse
import json
import os
import time


def parse_args(recipe, description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--output", default=os.path.join("runs", recipe["name"], "preset"),
                        help="preset folder to write at the end")
    parser.add_argument("--workdir", default=os.path.join("runs", recipe["name"]),
                        help="checkpoints and logs (a rerun resumes from here)")
    parser.add_argument("--steps", type=int, default=recipe["steps"],
                        help="training steps (the shipped preset's value is the default)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: all)")
    parser.add_argument("--overwrite", action="store_true", help="replace --output")
    parser.add_argument("--eval-images", type=int, default=recipe.get("eval_images", 8),
                        help="held-out test images per noise level (default: the number "
                        "behind the shipped preset's metadata)")
    parser.add_argument("--eval-only", action="store_true",
                        help="skip training: evaluate the last checkpoint and write the preset")
    return parser.parse_args()


def set_threads(threads):
    if not threads:
        return
    import keras

    os.environ["OMP_NUM_THREADS"] = str(threads)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    elif keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(threads)


def build_model(recipe):
    import keras_cvdm
    from keras_cvdm.layers import UNetDenoiser, UNetRegressor

    m = recipe["model"]
    mean = m.get("mean_network")
    mean_network = None
    if mean:
        mean_network = UNetRegressor(
            m["target_channels"], widths=tuple(mean["widths"]),
            embedding_dim=mean.get("embedding_dim", 32), name="mean_network",
        )
    denoiser = UNetDenoiser(
        m["target_channels"],
        widths=tuple(m["widths"]),
        attention_levels=tuple(m.get("attention_levels", ())),
        embedding_dim=m["embedding_dim"],
        name="denoiser",
    )
    return keras_cvdm.CVDM(
        target_channels=m["target_channels"],
        denoiser=denoiser,
        residual=m.get("residual", False),
        zero_mean=mean_network is not None,
        mean_network=mean_network,
        target_scale=m.get("target_scale", 1.0),
        seed=recipe["seed"],
    )


def _completed_epochs(backup):
    """Epochs a BackupAndRestore folder says are done (0 for a fresh run)."""
    path = os.path.join(backup, "training_metadata.json")
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return int(json.load(f).get("epoch", -1)) + 1


def _in_memory(dataset, skip_batches):
    """All batches of a simulated dataset as one `tf.data` pipeline, from `skip_batches` on.

    The whole run's data is simulated up front (hundreds of MB at most): fed batch by
    batch from the Python dataset, TensorFlow on this CPU spent ~45% of each training
    step in the kernel mapping fresh memory; from in-memory tensors it spends ~1%.
    """
    import numpy as np
    import tensorflow as tf

    batches = [dataset[i] for i in range(skip_batches, len(dataset))]
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(dataset.batch_size)


def run(recipe, make_dataset, evaluate, args):
    """Train `recipe`, evaluate with `evaluate(model, num_images) -> dict`, write the preset."""
    import keras

    import keras_cvdm

    set_threads(args.threads)
    keras.utils.set_random_seed(recipe["seed"])
    recipe = dict(recipe, steps=args.steps)
    if os.path.exists(os.path.join(args.output, "config.json")) and not args.overwrite:
        raise SystemExit(
            f"{args.output} already holds a preset; pass --overwrite or another --output."
        )
    os.makedirs(args.workdir, exist_ok=True)
    chunk = recipe["steps_per_epoch"]
    epochs = max(1, round(recipe["steps"] / chunk))
    model = build_model(recipe)
    opt = recipe["optimizer"]
    lr = keras.optimizers.schedules.CosineDecay(
        opt["learning_rate"], decay_steps=epochs * chunk, alpha=opt["final_lr_fraction"]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(
            lr, global_clipnorm=opt["global_clipnorm"], use_ema=True,
            ema_momentum=opt["ema_momentum"],
        )
    )
    model.build((None, None, None, recipe["model"]["condition_channels"]))
    weights = os.path.join(args.workdir, "final.weights.h5")
    start = time.time()
    if not args.eval_only:
        backup = os.path.join(args.workdir, "backup")
        done = _completed_epochs(backup)
        train = _in_memory(make_dataset(recipe, num_batches=epochs * chunk), done * chunk)
        callbacks = [
            keras.callbacks.BackupAndRestore(backup),
            keras.callbacks.CSVLogger(os.path.join(args.workdir, "log.csv"), append=True),
        ]
        model.fit(train, epochs=epochs, steps_per_epoch=chunk, callbacks=callbacks, verbose=2)
        model.save_weights(weights, overwrite=True)
    else:
        model.load_weights(weights)
    train_seconds = time.time() - start
    print(f"training: {train_seconds:.0f} s; evaluating", flush=True)
    model.metadata = dict(recipe["metadata"])
    metrics = evaluate(model, args.eval_images)
    print(json.dumps(metrics, indent=2), flush=True)
    metadata = dict(recipe["metadata"])
    metadata["training"] = {
        key: recipe[key] for key in ("steps", "batch_size", "image_size", "seed", "optimizer")
    }
    metadata["training"].update(
        backend=keras.backend.backend(),
        dataset=recipe["dataset"],
        model=recipe["model"],
        seconds=round(train_seconds),
        script=f"examples/train_{recipe['script']}_preset.py",
    )
    metadata["validation"] = metrics
    keras_cvdm.save_preset(model, args.output, metadata, overwrite=args.overwrite)
    print(f"preset written to {args.output}")
