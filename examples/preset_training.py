"""The training run behind the shipped presets, shared by `train_qpi_preset.py` and
`train_sr_preset.py`.

A recipe (a JSON-ready dict) fixes everything: the model, the simulated dataset, the
optimiser, the number of steps and the seed. `run(recipe)` trains in chunks ("epochs"
of `steps_per_epoch` batches), evaluates on a held-out test set and writes a preset
folder (config, weights, metadata).

A run killed at any point resumes where it stopped when started again with the same
`--workdir` (and the same recipe and `--steps`), and ends with the weights of an
uninterrupted run. The work folder holds:

- `recipe.json`: the run's recipe; a rerun with another one is refused, except for the
  keys that act only after training (`AFTER_TRAINING`: the test images, the calibration),
  with which the finished weights are evaluated again;
- `backup/`: `keras.callbacks.BackupAndRestore`'s state after the last finished chunk
  (weights, optimizer, chunks done). The whole run's data is simulated up front in a
  fixed order, and a resumed run starts at the first chunk the backup lacks; the
  model's training noise (its `seed_generator`) is reset at each chunk's start to a
  state given by the seed and the chunk (`keras_cvdm.training.EpochData`), so each
  chunk sees the data and the noise it sees without a break;
- `log.csv`: one row per chunk (loss terms, `seconds`), cut on resuming to the chunks
  the backup holds, so each appears once;
- `final.weights.h5` then `trained.json`: the trained (EMA) weights, written atomically
  once training ends; from then on a rerun evaluates without training again;
- `metrics.json`: the evaluation's scores, with the weights' sha256, the number of test
  images and the calibration settings they belong to (a rerun that only lacks the preset
  reuses them).

A recipe may add a second stage, `refine`: from the first stage's final (moving-average)
weights, training goes on for `refine["steps"]` more steps with a fresh Adam without a
moving average (its own learning rate, cosine decay and clipping) on data of its own seed
(`refine["data_seed"]`). It runs in `refine/` inside the work folder, which holds the
same files for that stage, its recipe recording the sha256 of the weights it started
from; it resumes like the first stage, and the preset holds its final weights. A first
stage finished earlier is reused as it is: adding `refine` to a recipe does not change
the first stage's recipe.

The preset itself is written to a temporary folder and moved into place: `--output`
holds a complete preset or none.
"""

import argparse
import json
import os

from keras_cvdm.training import EpochData
from keras_cvdm.training.run_folder import (
    _completed_epochs,
    _read_history,
    _truncate_history,
    _write_json,
    _write_preset_folder,
)

RECIPE_FILE = "recipe.json"
BACKUP_DIR = "backup"
LOG_FILE = "log.csv"
FINAL_WEIGHTS = "final.weights.h5"
TRAINED_FILE = "trained.json"
METRICS_FILE = "metrics.json"
REFINE_DIR = "refine"
#: Runs whose simulated data exceeds this many bytes are simulated batch by batch.
MAX_IN_MEMORY = 2 * 1024**3


def parse_args(recipe, description, argv=None):
    """The command line of a recipe script (`argv`: default `sys.argv[1:]`)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--output", default=os.path.join("runs", recipe["name"], "preset"),
                        help="preset folder to write at the end")
    parser.add_argument("--workdir", default=os.path.join("runs", recipe["name"]),
                        help="checkpoints and logs (a rerun resumes from here)")
    parser.add_argument("--steps", type=int, default=recipe["steps"],
                        help="training steps of the first stage (the shipped preset's "
                        "value is the default; a recipe's refine stage keeps its own)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: all)")
    parser.add_argument("--overwrite", action="store_true", help="replace --output")
    parser.add_argument("--eval-images", type=int, default=recipe.get("eval_images", 8),
                        help="held-out test images per noise level (default: the number "
                        "behind the shipped preset's metadata)")
    parser.add_argument("--eval-only", action="store_true",
                        help="skip training: evaluate the final weights and write the preset")
    return parser.parse_args(argv)


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
    from keras_cvdm.layers import TIEMeanNetwork, UNetDenoiser, UNetRegressor

    m = recipe["model"]
    mean = m.get("mean_network")
    mean_network = None
    if mean and mean.get("type") == "tie":
        mean_network = TIEMeanNetwork(
            widths=tuple(mean["widths"]), regularizations=tuple(mean["regularizations"]),
            phase_span=mean["phase_span"], embedding_dim=mean.get("embedding_dim", 32),
            name="mean_network",
        )
    elif mean:
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


def _read_json(path):
    """The JSON value in `path`, or None if it is missing or unreadable (a torn write)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


#: Recipe keys that act only once training is over (evaluation and calibration): a run
#: found in the work folder is resumed, or evaluated again, whatever they say.
AFTER_TRAINING = ("eval_images", "calibration")


def _check_workdir(workdir, recipe):
    """Record `recipe` in `workdir`, or check it is the recipe of the run found there.

    Keys in `AFTER_TRAINING` are not compared: the folder keeps the recipe it was trained
    with, and a changed evaluation or calibration applies to its weights as they are.
    """
    path = os.path.join(workdir, RECIPE_FILE)
    recipe = json.loads(json.dumps(recipe))
    earlier = _read_json(path)
    if earlier is None:
        found = [name for name in (BACKUP_DIR, LOG_FILE, FINAL_WEIGHTS, TRAINED_FILE)
                 if os.path.exists(os.path.join(workdir, name))]
        if found:
            raise SystemExit(
                f"{workdir} holds {', '.join(found)} but no readable {RECIPE_FILE}: a run "
                "of an earlier version of this script, which cannot be resumed exactly. "
                "Delete those files or pass another --workdir."
            )
        _write_json(path, recipe)
        return
    changed = sorted(k for k in set(earlier) | set(recipe)
                     if k not in AFTER_TRAINING and earlier.get(k) != recipe.get(k))
    if changed == ["starts_from"]:
        raise SystemExit(
            f"{workdir} holds a refine stage that started from other first-stage weights "
            "than those now in the work folder. Delete that folder to refine the new ones."
        )
    if changed:
        raise SystemExit(
            f"{workdir} holds a run of another recipe (it differs in: {', '.join(changed)}). "
            "Rerun with that recipe (and its --steps) to resume it, or pass another "
            "--workdir to start a new run."
        )


def _in_memory(dataset, skip_batches):
    """All batches of a simulated dataset as one `tf.data` pipeline, from `skip_batches` on.

    The whole run's data is simulated up front (hundreds of MB at most): fed batch by
    batch from the Python dataset, TensorFlow on this CPU spent ~45% of each training
    step in the kernel mapping fresh memory; from in-memory tensors it spends ~1%.
    """
    import numpy as np
    import tensorflow as tf

    if not 0 <= skip_batches < len(dataset):
        raise ValueError(
            f"Cannot start at batch {skip_batches} of a dataset of {len(dataset)}: the "
            "backup and the recipe disagree; pass another --workdir."
        )
    first = dataset[skip_batches]
    size = sum(a.nbytes for a in first) * (len(dataset) - skip_batches)
    if size > MAX_IN_MEMORY:
        # Too large to hold whole (whole 128² fields over thousands of steps): simulated
        # batch by batch, in order, a few ahead of the training step.
        def batches():
            for i in range(skip_batches, len(dataset)):
                yield dataset[i]

        signature = tuple(tf.TensorSpec((None,) + a.shape[1:], a.dtype) for a in first)
        return tf.data.Dataset.from_generator(batches, output_signature=signature).prefetch(4)
    batches = [first] + [dataset[i] for i in range(skip_batches + 1, len(dataset))]
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(dataset.batch_size)


def _train(model, recipe, make_dataset, workdir, epochs, chunk):
    """Train `model` to the end of the run, resuming from `workdir`; the training seconds.

    Afterwards `model` holds the final (EMA) weights, also in `workdir/final.weights.h5`.
    """
    import keras

    final = os.path.join(workdir, FINAL_WEIGHTS)
    trained = _read_json(os.path.join(workdir, TRAINED_FILE))
    if (isinstance(trained, dict) and trained.get("epochs") == epochs
            and os.path.exists(final)):
        model.optimizer.build(model.trainable_variables)
        model.load_weights(final)
        print(f"training was done earlier: {final}", flush=True)
        return trained.get("seconds", 0)
    backup = os.path.join(workdir, BACKUP_DIR)
    log = os.path.join(workdir, LOG_FILE)
    done = _completed_epochs(backup)  # the epochs Keras recorded as finished
    _truncate_history(log, done)
    restore = keras.callbacks.BackupAndRestore(
        backup, double_checkpoint=True, delete_checkpoint=False
    )
    if done < epochs:
        if done:
            print(f"resuming from {backup}: {done} of {epochs} chunks done", flush=True)
        train = _in_memory(make_dataset(recipe, num_batches=epochs * chunk), done * chunk)
        callbacks = [
            EpochData(None, recipe["seed"]),  # before the logger: adds `seconds`
            keras.callbacks.CSVLogger(log, append=True),
            restore,  # last: an epoch's row is written before the backup records it
        ]
        model.fit(train, epochs=epochs, steps_per_epoch=chunk, callbacks=callbacks,
                  shuffle=False, verbose=2)  # the data's order is the run's
    else:
        # Every chunk is in the backup, the final weights are not: what `fit` does after
        # its last epoch, from the backup.
        restore.set_model(model)
        restore.on_train_begin()
        model.optimizer.finalize_variable_values(model.trainable_variables)
    seconds = round(sum(float(r.get("seconds") or 0.0) for r in _read_history(log)), 1)
    partial = os.path.join(workdir, "final.partial.weights.h5")
    model.save_weights(partial, overwrite=True)
    os.replace(partial, final)
    _write_json(os.path.join(workdir, TRAINED_FILE),
                {"epochs": epochs, "steps_per_epoch": chunk, "seconds": seconds})
    return seconds


def _compile(model, optimizer, decay_steps):
    """Adam with cosine decay over `decay_steps` (a moving average if it has `ema_momentum`)."""
    import keras

    lr = keras.optimizers.schedules.CosineDecay(
        optimizer["learning_rate"], decay_steps=decay_steps,
        alpha=optimizer["final_lr_fraction"],
    )
    ema = optimizer.get("ema_momentum")
    average = {"use_ema": True, "ema_momentum": ema} if ema is not None else {}
    model.compile(optimizer=keras.optimizers.Adam(
        lr, global_clipnorm=optimizer["global_clipnorm"], **average))


def _stage_recipe(first, refine, workdir):
    """The recipe of the `refine` stage (module docstring) after `first`, run in `workdir`."""
    from keras_cvdm.presets.loader import sha256_of

    if refine["data_seed"] == first["seed"]:
        raise SystemExit(
            f"refine's data_seed ({refine['data_seed']}) is the first stage's seed: the stage "
            "would replay the first stage's data. Give it a seed of its own."
        )
    return dict(first, seed=refine["data_seed"], steps=refine["steps"],
                optimizer={k: v for k, v in refine.items() if k not in ("steps", "data_seed")},
                starts_from=sha256_of(os.path.join(workdir, FINAL_WEIGHTS)))


def _start_stage(model, first, refine, workdir):
    """Check (or record) the `refine` stage's recipe in its folder and compile its optimizer.

    Returns:
        `(stage recipe, stage folder, chunks)`.
    """
    stage_dir = os.path.join(workdir, REFINE_DIR)
    os.makedirs(stage_dir, exist_ok=True)
    stage = _stage_recipe(first, refine, workdir)
    _check_workdir(stage_dir, stage)
    epochs = max(1, round(stage["steps"] / stage["steps_per_epoch"]))
    _compile(model, stage["optimizer"], epochs * stage["steps_per_epoch"])
    return stage, stage_dir, epochs


def _evaluate(model, evaluate, num_images, workdir, calibration=None):
    """`evaluate(model, num_images)`, or the scores an earlier run got for these weights.

    Scores are reused only for the same weights, test images and calibration settings.
    """
    from keras_cvdm.presets.loader import sha256_of

    path = os.path.join(workdir, METRICS_FILE)
    key = {"eval_images": num_images, "calibration": calibration,
           "weights_sha256": sha256_of(os.path.join(workdir, FINAL_WEIGHTS))}
    cached = _read_json(path)
    if isinstance(cached, dict) and all(cached.get(k) == v for k, v in key.items()):
        print(f"evaluated earlier: {path}", flush=True)
        return cached["metrics"]
    metrics = evaluate(model, num_images)
    _write_json(path, dict(key, metrics=metrics))
    return metrics


def run(recipe, make_dataset, evaluate, args):
    """Train `recipe`, evaluate with `evaluate(model, num_images) -> dict`, write the preset.

    Args:
        recipe (dict): the recipe (see `train_qpi_preset.RECIPE`).
        make_dataset (callable): `make_dataset(recipe, num_batches)`, a dataset whose
            `dataset[i]` is batch `i` of the run (`len` and `batch_size` as a `PyDataset`).
        evaluate (callable): `evaluate(model, num_images)`, JSON-ready scores.
        args (argparse.Namespace): from `parse_args`.
    """
    import keras

    set_threads(args.threads)
    keras.utils.set_random_seed(recipe["seed"])
    recipe = dict(recipe, steps=args.steps)
    if os.path.exists(os.path.join(args.output, "config.json")) and not args.overwrite:
        raise SystemExit(
            f"{args.output} already holds a preset; pass --overwrite or another --output."
        )
    os.makedirs(args.workdir, exist_ok=True)
    first = {k: v for k, v in recipe.items() if k != "refine"}
    _check_workdir(args.workdir, first)
    chunk = recipe["steps_per_epoch"]
    epochs = max(1, round(recipe["steps"] / chunk))
    model = build_model(recipe)
    _compile(model, recipe["optimizer"], epochs * chunk)
    model.build((None, None, None, recipe["model"]["condition_channels"]))
    # The folder that holds the run's last stage.
    last = os.path.join(args.workdir, REFINE_DIR) if "refine" in recipe else args.workdir
    if args.eval_only:
        if "refine" in recipe and os.path.exists(os.path.join(args.workdir, FINAL_WEIGHTS)):
            # The stage's weights must be those of this recipe's stage, and its optimizer
            # the one they were saved with.
            _start_stage(model, first, recipe["refine"], args.workdir)
        final = os.path.join(last, FINAL_WEIGHTS)
        done = [_read_json(os.path.join(d, TRAINED_FILE)) for d in {args.workdir, last}]
        if not all(isinstance(t, dict) for t in done) or not os.path.exists(final):
            raise SystemExit(
                f"{last} holds no finished training ({TRAINED_FILE}, "
                f"{FINAL_WEIGHTS}); run without --eval-only first."
            )
        model.optimizer.build(model.trainable_variables)
        model.load_weights(final)
        train_seconds = sum(t.get("seconds", 0) for t in done)
    else:
        train_seconds = _train(model, first, make_dataset, args.workdir, epochs, chunk)
        if "refine" in recipe:
            stage, stage_dir, stage_epochs = _start_stage(model, first, recipe["refine"],
                                                          args.workdir)
            train_seconds += _train(model, stage, make_dataset, stage_dir, stage_epochs, chunk)
    print(f"training: {train_seconds:.0f} s; evaluating", flush=True)
    model.metadata = dict(recipe["metadata"])
    metrics = _evaluate(model, evaluate, args.eval_images, last, recipe.get("calibration"))
    print(json.dumps(metrics, indent=2), flush=True)
    metadata = dict(recipe["metadata"])
    metadata["training"] = {
        key: recipe[key] for key in ("steps", "batch_size", "image_size", "seed", "optimizer")
        + (("refine",) if "refine" in recipe else ())
    }
    metadata["training"].update(
        backend=keras.backend.backend(),
        dataset=recipe["dataset"],
        model=recipe["model"],
        seconds=round(train_seconds),
        script=f"examples/train_{recipe['script']}_preset.py",
    )
    metadata["validation"] = metrics
    if "calibration" in metrics:  # fitted on validation data (keras_cvdm.calibration)
        metadata["calibration"] = metrics["calibration"]
    _write_preset_folder(model, args.output, metadata)
    print(f"preset written to {args.output}")
