"""Training a CVDM on simulated or paired data: the workflow behind `keras-cvdm train`.

`train(output, task=..., data=...)` trains with `model.fit` and Keras callbacks and ends
with a preset folder that `keras_cvdm.from_preset` loads and `keras_cvdm.qpi.reconstruct` /
`keras_cvdm.sr.reconstruct` run on. One run lives in one folder:

- `train_config.json`: the run's settings; a rerun must use the same ones;
- `backup/`: `keras.callbacks.BackupAndRestore`'s state (weights, optimizer, epochs done);
- `history.csv`: one row per epoch (`keras.callbacks.CSVLogger`), `epoch` counting from 0,
  with the loss terms and the epoch's `seconds`;
- `checkpoint.keras`: the whole model after the latest epoch
  (`keras.callbacks.ModelCheckpoint`; `keras.saving.load_model` reads it);
- `previews/epoch_0003.png`: after every `preview_every` epochs, a fixed batch of two
  examples: input channels, target, posterior mean and posterior std (rows: examples);
- `logs/`: TensorBoard event files (`tensorboard=True`);
- `preset/`: the result (`config.json`, `model.weights.h5`, `metadata.json`).

Interrupted runs resume: rerunning the same call (or command) after a crash or a
`kill -9` restores the weights, the optimizer and the epoch counter from `backup/`, drops
from `history.csv` any row of an epoch the backup does not hold, and serves each later
epoch exactly the batches an uninterrupted run would (the datasets are keyed by epoch,
`keras_cvdm.data.base.SeededDataset`). A finished run's rerun returns its preset at once;
raising `epochs` continues it.

The package holds one concept a module; this one holds `train` and re-exports the rest:

- `architecture`: `default_architecture`, `build_model` (the model of a new run);
- `data`: the simulated and paired training data (`PairedTrainingData`, `task_normalizer`);
- `callbacks`: `EpochData`, `PreviewCallback`, `preview_grid`;
- `run_folder`: the run folder's files and settings, resuming, writing the preset,
  `clear_run`.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import sys
import time

import keras

from keras_cvdm import distribute as keras_distribute
from keras_cvdm import sampling, validation
from keras_cvdm.data.normalization import (
    QPINormalization,
    SRNormalization,
    normalization_from_dict,
)
from keras_cvdm.training.architecture import (
    _check_widths,
    _downsampling_factor,
    build_model,
    default_architecture,
)
from keras_cvdm.training.callbacks import (
    EpochData,
    PreviewCallback,
    _check_tensorboard,
    preview_grid,
)
from keras_cvdm.training.data import QPI_FORWARD_MODEL as QPI_FORWARD_MODEL
from keras_cvdm.training.data import SR_FORWARD_MODEL as SR_FORWARD_MODEL
from keras_cvdm.training.data import (
    PairedTrainingData,
    _simulated_data,
    _simulation_forward_model,
    task_normalizer,
)
from keras_cvdm.training.run_folder import (
    BACKUP_DIR,
    CHECKPOINT_FILE,
    HISTORY_FILE,
    LOG_DIR,
    PRESET_DIR,
    PREVIEW_DIR,
    _completed_epochs,
    _prepare_output,
    _read_history,
    _truncate_history,
    _write_preset,
    clear_run,
)
from keras_cvdm.training.run_folder import CONFIG_FILE as CONFIG_FILE
from keras_cvdm.training.run_folder import RUN_FILES as RUN_FILES
from keras_cvdm.training.run_folder import RUN_SETTINGS as RUN_SETTINGS

TASKS = ("qpi", "sr")
#: The optimizer of every run (as in the shipped presets' recipes), at a constant rate so
#: that a run can be continued with more epochs.
GLOBAL_CLIPNORM = 1.0
#: Sampling defaults written to a new model's metadata.
SAMPLING = dict(sampling.RECOMMENDED)

_DESCRIPTIONS = {
    "qpi": {
        "description": "Two-shot quantitative phase imaging: phase (rad) from intensities at "
                       "-dz and +dz, with per-pixel uncertainty (trained with keras-cvdm "
                       "train).",
        "input": "channels (I(-dz), I(+dz)), raw intensities, any unit",
        "output": "phase in radians",
    },
    "sr": {
        "description": "Super-resolution of wide-field images, with per-pixel uncertainty "
                       "(trained with keras-cvdm train).",
        "input": "one wide-field image on the coarse grid, any unit",
        "output": "the image on the finer grid, in the input's units",
    },
}


def train(output, *, task=None, data=None, epochs=10, steps_per_epoch=50, batch_size=8,
          image_size=64, seed=0, learning_rate=1e-3, from_preset=None, widths=None,
          tensorboard=False, preview_every=1, overwrite=False, verbose="auto",
          distribute=None) -> str:
    """Train a CVDM and write output/preset/ (a preset folder); returns that folder's path.

    Data. Without `data`, batches are simulated by the task's simulator
    (`keras_cvdm.data.qpi_dataset`, `keras_cvdm.data.sr_dataset`; fresh samples every
    epoch, seeded). With `data`, the pairs are read by `keras_cvdm.data.paired_dataset`: a
    folder with sub-folders `x/` and `y/` holding same-named images, or an `.npz` file with
    arrays `x` and `y`. QPI: `x` holds the raw intensities `I(-dz)`, `I(+dz)` as two
    channels (an `(H, W, 2)` image or a 2-page TIFF) and `y` the phase in radians (float
    TIFF or `.npz`: integer images are scaled to `[0, 1]` when read). SR: `x` is the
    low-resolution image and `y` the target on a grid an integer factor finer (or the same
    grid); that factor is recorded in the preset. Pairs may differ in size: every epoch
    each example is a random `image_size` × `image_size` crop (on `y`'s grid, the matching
    window of `x`; seeded by `seed`, the epoch and the batch) with a random flip/rotation,
    so images must be at least `image_size` on each side; `steps_per_epoch` batches make an
    epoch, visiting the pairs in seeded random order. Each crop is normalised as
    `qpi.reconstruct` / `sr.reconstruct` normalise their input (QPI: intensities by their
    mean, phase linearly; SR: percentiles after cubic up-sampling of `x`).

    Model. A new model has the architecture of the shipped presets (QPI: a zero-mean CVDM
    with a U-Net mean network; SR: a residual CVDM); `widths` replaces the U-Net widths
    of the denoiser and the mean network and shrinks the other parts with them (for small
    or quick runs, e.g. `(8, 16)`). With `from_preset` the preset's model and metadata
    (task, normalisation, optics, sampling) are kept and fine-tuned; simulated data then
    use the preset's optics. The optimiser is Adam at a constant `learning_rate` with
    global gradient clipping at 1.0.

    Resuming and safety. The first call records its settings in
    `output/train_config.json`. Calling again with the same settings resumes an
    interrupted run from `output/backup` (or, when the run had finished, returns its
    preset without training); only `epochs` may change (not below the epochs done), to
    continue a run; `tensorboard` and `preview_every` only change the logging. Other
    changes raise a `ValueError` unless `overwrite=True`, which deletes the earlier run's
    files (those of `RUN_FILES`) first. The preset is written to a temporary folder,
    checked, then moved to `output/preset`: it is complete or absent.

    Args:
        output (str | os.PathLike): the run's folder (created if needed).
        task (str | None): `"qpi"` or `"sr"`; default: the task of `from_preset`.
        data (str | os.PathLike | None): paired data (see above), or None to simulate.
        epochs (int): epochs to train in all (a rerun continues up to it).
        steps_per_epoch (int): batches per epoch.
        batch_size (int): examples per batch.
        image_size (int): side of the training images (a multiple of the model's
            down-sampling factor, 8 for the default QPI model, and of the SR factor).
        seed (int): seeds Keras, the model and the data.
        learning_rate (float): Adam's learning rate.
        from_preset (str | None): a preset name or folder to fine-tune.
        widths (Sequence[int] | None): U-Net widths of a new model (default: the presets').
        tensorboard (bool): also log to `output/logs` for TensorBoard (needs the
            `tensorflow` and `tensorboard` packages, whatever the backend).
        preview_every (int): write a preview PNG every this many epochs (0: never).
        overwrite (bool): discard an earlier run in `output` and start again.
        distribute (str | None): `"data-parallel"` trains on every device of the
            backend's engine (`keras_cvdm.distribute.data_parallel`; JAX or TensorFlow),
            with the same batches and the same result as one device up to rounding;
            `batch_size` must be a multiple of the device count. In a multi-process run
            (`keras_cvdm.distribute.initialize` first, in every process) each process
            feeds its part of every batch; give each process its own `output` (the
            presets they write are the same). None: one device.
        verbose (int | str): `model.fit`'s verbosity; `"auto"`: a progress bar on a
            terminal, one line per epoch otherwise; 0: silent. Unless 0, the run's
            messages (resumed, finished, preset written) go to the `logger` of this
            module at INFO level.

    Returns:
        str: the path of the preset folder, `output/preset`.

    Raises:
        ValueError: a setting or the data is unusable, or `output` holds a run with other
            settings; the message names the fix.
        RuntimeError: the loss became NaN or infinite (the backup keeps the last good
            epoch).

    Examples:
        >>> import os, tempfile
        >>> import keras_cvdm
        >>> out = os.path.join(tempfile.mkdtemp(), "run")
        >>> preset = train(out, task="sr", epochs=1, steps_per_epoch=1, batch_size=2,
        ...                image_size=16, widths=(8, 16), preview_every=0, verbose=0)
        >>> sorted(os.listdir(preset))
        ['config.json', 'metadata.json', 'model.weights.h5']
        >>> keras_cvdm.from_preset(preset).metadata["training"]["epochs"]
        1
    """
    if distribute not in (None, "data-parallel"):
        raise ValueError(
            f"`distribute` must be None or 'data-parallel', got {distribute!r}."
        )
    arguments = dict(
        task=task, data=data, epochs=epochs, steps_per_epoch=steps_per_epoch,
        batch_size=batch_size, image_size=image_size, seed=seed, learning_rate=learning_rate,
        from_preset=from_preset, widths=widths, tensorboard=tensorboard,
        preview_every=preview_every, overwrite=overwrite, verbose=verbose,
    )
    if distribute is None:
        return _train(output, distribute=None, **arguments)
    with keras_distribute.data_parallel():
        shards = keras_distribute.num_batch_shards()
        if validation.check_int(batch_size, "batch_size", minimum=1) % shards:
            raise ValueError(
                f"`batch_size` {batch_size} must be a multiple of the {shards} devices it is "
                f"split over (--batch-size {max(shards, batch_size // shards * shards)})."
            )
        return _train(output, distribute=distribute, **arguments)


def _train(output, *, task, data, epochs, steps_per_epoch, batch_size, image_size, seed,
           learning_rate, from_preset, widths, tensorboard, preview_every, overwrite, verbose,
           distribute):
    """`train`'s body, run inside the distribution's scope when there is one."""
    started = time.perf_counter()
    output = os.path.abspath(os.fspath(output))
    epochs = validation.check_int(epochs, "epochs", minimum=1)
    steps_per_epoch = validation.check_int(steps_per_epoch, "steps_per_epoch", minimum=1)
    batch_size = validation.check_int(batch_size, "batch_size", minimum=1)
    image_size = validation.check_int(image_size, "image_size", minimum=2)
    seed = validation.check_int(seed, "seed", minimum=0)
    preview_every = validation.check_int(preview_every, "preview_every", minimum=0)
    if isinstance(learning_rate, bool) or not (
        isinstance(learning_rate, int | float) and math.isfinite(learning_rate)
        and learning_rate > 0
    ):
        raise ValueError(f"`learning_rate` must be a positive number, got {learning_rate!r}.")
    learning_rate = float(learning_rate)
    widths = _check_widths(widths)
    if task is not None and task not in TASKS:
        raise ValueError(f"`task` must be 'qpi' or 'sr', got {task!r}.")
    if from_preset is not None and widths is not None:
        raise ValueError(
            "`widths` sets the architecture of a new model; a fine-tuned preset keeps its "
            "own. Drop `widths` (--widths) or `from_preset` (--from-preset)."
        )
    if data is not None:
        data = os.path.abspath(os.fspath(data))
        if not os.path.exists(data):
            raise ValueError(
                f"The data {data} does not exist; pass a folder with x/ and y/ sub-folders "
                "or an .npz file with arrays x and y (--data), or leave it out to train on "
                "simulated data."
            )
    if tensorboard:
        _check_tensorboard()
    verbose = (1 if sys.stdout.isatty() else 2) if verbose == "auto" else verbose
    keras.utils.set_random_seed(seed)

    model = None
    preset_name = None
    if from_preset is not None:
        from keras_cvdm.presets import from_preset as _load_preset

        preset_name = os.fspath(from_preset)
        if os.path.isdir(preset_name):
            preset_name = os.path.abspath(preset_name)
        # The task is checked from metadata.json before the (slower) model is loaded.
        trained_task = _preset_task(preset_name)
        if task is None or trained_task in (None, task):
            model = _load_preset(preset_name, seed=seed)
            trained_task = model.metadata.get("task")
        if trained_task not in TASKS:
            raise ValueError(
                f"The preset {preset_name!r} records no task ('qpi' or 'sr') in its metadata; "
                "fine-tune a preset written by keras-cvdm."
            )
        if task is not None and task != trained_task:
            raise ValueError(
                f"The preset {preset_name!r} was trained for the task {trained_task!r}, not "
                f"{task!r}; leave `task` (--task) out or pass --task {trained_task}."
            )
        task = trained_task
    if task is None:
        raise ValueError(
            "Which task? Pass task='qpi' or task='sr' (--task qpi|sr), or from_preset= "
            "(--from-preset) to fine-tune a preset; add data= (--data) for your own pairs."
        )

    config = {
        "task": task, "data": data, "epochs": epochs, "steps_per_epoch": steps_per_epoch,
        "batch_size": batch_size, "image_size": image_size, "seed": seed,
        "learning_rate": learning_rate, "from_preset": preset_name,
        "widths": None if widths is None else list(widths), "tensorboard": bool(tensorboard),
        "preview_every": preview_every,
    }
    preset_dir = os.path.join(output, PRESET_DIR)
    backup = os.path.join(output, BACKUP_DIR)

    # -- task, normalisation, optics and data
    if model is not None:
        metadata = _inherited_metadata(model.metadata)
        norm = normalization_from_dict(metadata.get("normalization", {"type": task}))
    else:
        norm = QPINormalization() if task == "qpi" else SRNormalization()
        metadata = {"task": task, **_DESCRIPTIONS[task], "normalization": norm.to_dict(),
                    "sampling": dict(SAMPLING)}
    if not isinstance(norm, QPINormalization if task == "qpi" else SRNormalization):
        raise ValueError(f"The preset's normalisation is not a {task.upper()} normalisation.")
    if data is None:
        forward = _simulation_forward_model(task, metadata.get("forward_model"))
        dataset, preview_data, description = _simulated_data(
            task, forward, norm, batch_size, image_size, steps_per_epoch, seed
        )
        metadata["forward_model"] = forward
        if task == "qpi" and model is None:
            lo, hi = norm.phase_min, norm.phase_max
            metadata["phase_convention"] = (
                f"training phase maps span [{lo}, {hi}] rad with their minimum (the "
                f"background) at {lo} rad; intensities fix phase only up to a constant, "
                "which the model infers from this convention"
            )
    else:
        if getattr(norm, "optics_channel", False):
            raise ValueError(
                "This preset takes the optics of each image as an input channel (its mean "
                "network solves the TIE with them), and stored pairs do not record them: "
                "fine-tune it on simulated data (no --data), or train a new model on the "
                "pairs (no --from-preset)."
            )
        dataset = PairedTrainingData(
            data, task, norm, batch_size, image_size, steps_per_epoch, seed
        )
        preview_data = dataset.fixed_batch(2)
        description = {"function": "keras_cvdm.data.paired_dataset", "path": data,
                       "pairs": len(dataset.pairs), "factor": dataset.factor,
                       "crop": f"random {image_size}x{image_size} crops, seeded per epoch",
                       "augment": True}
        forward = dict(metadata.get("forward_model") or {})
        if task == "sr":
            trained = forward.get("factor")
            if trained is not None and trained != dataset.factor:
                raise ValueError(
                    f"The preset was trained for {trained}x super-resolution but the data's "
                    f"y is {dataset.factor}x finer than x; use data with factor {trained} or "
                    "train a new model (no --from-preset)."
                )
            forward.update(factor=dataset.factor, upsample_method="cubic")
        if model is None:
            forward["source"] = f"paired data ({os.path.basename(data)}); optics not recorded"
            if task == "qpi":
                metadata["phase_convention"] = "as in the training targets y (radians)"
        metadata["forward_model"] = forward

    # -- model (every check comes before the run folder is touched)
    if model is None:
        architecture = default_architecture(task, widths)
        factor = _downsampling_factor(architecture)
    else:
        architecture = None
        factor = model.downsampling_factor
        condition_channels = preview_data[0].shape[-1]
        if model.condition_channels != condition_channels:
            raise ValueError(
                f"The preset's model takes {model.condition_channels} input channel(s) but "
                f"the data has {condition_channels}."
            )
    if image_size % factor:
        raise ValueError(
            f"`image_size` {image_size} must be a multiple of the model's down-sampling "
            f"factor {factor} (--image-size {max(factor, image_size // factor * factor)})."
        )
    if _prepare_output(output, config, overwrite):
        _say(verbose, f"{output}: the run is complete; its preset is {preset_dir}")
        return preset_dir
    if model is None:
        model = build_model(architecture, seed)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate, global_clipnorm=GLOBAL_CLIPNORM)
    )

    # -- callbacks, in the order they run at each epoch's end: the history row, the
    # checkpoint and the preview are written before the backup records the epoch, so a
    # kill in between repeats the epoch and its row is rewritten, never lost.
    done = _completed_epochs(backup)
    _truncate_history(os.path.join(output, HISTORY_FILE), done)
    dataset.epoch = done
    callbacks = [
        EpochData(dataset, seed),
        keras.callbacks.TerminateOnNaN(raise_error=True),
        keras.callbacks.CSVLogger(os.path.join(output, HISTORY_FILE), append=True),
        keras.callbacks.ModelCheckpoint(os.path.join(output, CHECKPOINT_FILE)),
    ]
    if preview_every:
        callbacks.append(PreviewCallback(*preview_data, os.path.join(output, PREVIEW_DIR),
                                         every=preview_every, seed=seed))
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(output, LOG_DIR),
                                                     write_graph=False))
    callbacks.append(keras.callbacks.BackupAndRestore(
        backup, double_checkpoint=True, delete_checkpoint=False
    ))
    if done:
        _say(verbose, f"resuming from {backup}: {done} of {epochs} epochs done")
    try:
        fed = dataset if distribute is None else keras_distribute.ProcessPart(dataset)
        history = model.fit(fed, epochs=epochs, callbacks=callbacks, shuffle=False,
                            verbose=verbose)
    except RuntimeError as error:
        if "NaN or Inf loss" not in str(error):
            raise
        raise RuntimeError(
            f"Training diverged ({error}). {backup} keeps the last good epoch; lower the "
            "learning rate (--learning-rate) and start again with --overwrite."
        ) from error

    # -- the preset
    rows = _read_history(os.path.join(output, HISTORY_FILE))
    last = history.history.get("loss", [])
    final_loss = last[-1] if last else (rows[-1].get("loss") if rows else None)
    metadata["training"] = {
        "function": "keras_cvdm.training.train",
        "arguments": {k: config[k] for k in ("task", "data", "epochs", "steps_per_epoch",
                                             "batch_size", "image_size", "seed",
                                             "learning_rate", "from_preset", "widths")},
        "epochs": epochs,
        "steps": epochs * steps_per_epoch,
        "batch_size": batch_size,
        "image_size": image_size,
        "seed": seed,
        "optimizer": {"name": "adam", "learning_rate": learning_rate,
                      "global_clipnorm": GLOBAL_CLIPNORM},
        "backend": keras.backend.backend(),
        "distribute": distribute,
        "seconds": round(sum(float(r.get("seconds") or 0.0) for r in rows), 1),
        "dataset": description,
        "final_loss": None if final_loss is None else float(final_loss),
    }
    if architecture is not None:
        metadata["training"]["model"] = architecture
    else:
        metadata["training"]["fine_tuned_from"] = {
            "preset": preset_name, "training": model.metadata.get("training"),
        }
    _write_preset(model, output, metadata)
    _say(verbose, f"preset written to {preset_dir} ({time.perf_counter() - started:.0f} s)")
    return preset_dir


def _preset_task(name):
    """The task in a built-in or local preset's metadata.json (None if not found there)."""
    from keras_cvdm.presets import registry

    folder = registry.builtin_folder(name) if name in registry.BUILTIN_PRESETS else name
    try:
        with open(os.path.join(folder, "metadata.json")) as f:
            return json.load(f).get("task")
    except (OSError, ValueError, AttributeError):
        return None


def _inherited_metadata(metadata) -> dict:
    """A preset's metadata without what described its own weights (scores, checksum)."""
    metadata = copy.deepcopy(dict(metadata))
    for key in ("validation", "weights_sha256", "keras_cvdm_version", "keras_version",
                "training"):
        metadata.pop(key, None)
    return metadata


#: Where `train` reports its run (resumed, finished, preset written); `keras-cvdm train`
#: prints it. Python callers see it with `logging.basicConfig(level=logging.INFO)`.
logger = logging.getLogger(__name__)


def _say(verbose, message):
    if verbose:
        logger.info(message)


__all__ = [
    "EpochData",
    "PairedTrainingData",
    "PreviewCallback",
    "build_model",
    "clear_run",
    "default_architecture",
    "preview_grid",
    "task_normalizer",
    "train",
]
