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
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence

import keras
import numpy as np

from keras_cvdm import io as _io
from keras_cvdm import validation
from keras_cvdm.data import qpi_data, sr_data
from keras_cvdm.data.augment import augment as _augment
from keras_cvdm.data.base import SeededDataset
from keras_cvdm.data.normalization import (
    QPINormalization,
    SRNormalization,
    normalization_from_dict,
)
from keras_cvdm.data.paired import paired_dataset
from keras_cvdm.physics import microscopy
from keras_cvdm.physics.propagation import (
    PAPER_DEFOCUS,
    PAPER_PHASE_MAX,
    PAPER_PIXEL_SIZE,
    PAPER_WAVELENGTH,
)

TASKS = ("qpi", "sr")
CONFIG_FILE = "train_config.json"
BACKUP_DIR = "backup"
HISTORY_FILE = "history.csv"
CHECKPOINT_FILE = "checkpoint.keras"
PREVIEW_DIR = "previews"
LOG_DIR = "logs"
PRESET_DIR = "preset"
_PARTIAL_PRESET = ".preset.partial"
_OLD_PRESET = ".preset.old"
#: Everything `train` writes in its output folder (what `overwrite=True` removes).
RUN_FILES = (CONFIG_FILE, BACKUP_DIR, HISTORY_FILE, CHECKPOINT_FILE, PREVIEW_DIR, LOG_DIR,
             PRESET_DIR, _PARTIAL_PRESET, _OLD_PRESET)
#: Settings that shape the trained model: a rerun in the same folder must repeat them.
RUN_SETTINGS = ("task", "data", "steps_per_epoch", "batch_size", "image_size", "seed",
                "learning_rate", "from_preset", "widths")
#: The optimizer of every run (as in the shipped presets' recipes), at a constant rate so
#: that a run can be continued with more epochs.
GLOBAL_CLIPNORM = 1.0
#: Sampling defaults written to a new model's metadata.
SAMPLING = {"sampler": "ddim", "num_steps": 20}

#: The simulated QPI data of a new model: the paper's optics (the `qpi` preset's).
QPI_FORWARD_MODEL = {
    "wavelength_um": PAPER_WAVELENGTH,
    "pixel_size_um": PAPER_PIXEL_SIZE,
    "defocus_um": PAPER_DEFOCUS,
    "phase_range_rad": [0.0, PAPER_PHASE_MAX],
    "noise_std_range": [0.0, 0.2],
    "noise": "Gaussian, std = s · mean intensity, s ~ U(0, 0.2)",
}
#: The simulated SR data of a new model (the `sr-microscopy` preset's).
SR_FORWARD_MODEL = {
    "factor": 2, "psf": "airy", "wavelength_um": 0.488, "na": 1.3, "pixel_size_um": 0.0313,
    "photons": [20.0, 1000.0], "read_noise_std": [0.0, 2.0], "background": [0.0, 0.1],
    "target_resolution_gain": 2.0, "upsample_method": "cubic",
}
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
          tensorboard=False, preview_every=1, overwrite=False, verbose="auto") -> str:
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
        verbose (int | str): `model.fit`'s verbosity; `"auto"`: a progress bar on a
            terminal, one line per epoch otherwise; 0: silent.

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
        history = model.fit(dataset, epochs=epochs, callbacks=callbacks, shuffle=False,
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


# ---------------------------------------------------------------------- architecture


def default_architecture(task: str, widths: Sequence[int] | None = None) -> dict:
    """The model a new run trains: the shipped presets' recipe, or a smaller one.

    QPI: a zero-mean CVDM whose U-Net mean network (widths 32, 64, 96, 96) predicts the
    mean phase and whose denoiser (16, 32, 64) diffuses the residual scaled by 1/0.1.
    SR: a residual CVDM with a (32, 64, 128) denoiser. Both have the learned schedule.
    With `widths`, the denoiser and the mean network take these widths and the embedding,
    the schedule network and the group count shrink with the first width.

    Args:
        task (str): `"qpi"` or `"sr"`.
        widths (Sequence[int] | None): U-Net widths, or None for the presets'.

    Returns:
        dict: a JSON-ready description (recorded in the preset's training metadata).

    Examples:
        >>> default_architecture("qpi")["mean_network"]["widths"]
        [32, 64, 96, 96]
        >>> tiny = default_architecture("qpi", (8, 16))
        >>> tiny["widths"], tiny["mean_network"]["widths"], tiny["embedding_dim"]
        ([8, 16], [8, 16], 8)
    """
    qpi = task == "qpi"
    arch = {
        "target_channels": 1, "condition_channels": 2 if qpi else 1,
        "widths": [16, 32, 64] if qpi else [32, 64, 128], "attention_levels": [],
        "embedding_dim": 32, "groups": 8, "schedule": "learned",
        "schedule_filters": 32, "schedule_hidden_units": 64,
    }
    if widths is not None:
        first = int(widths[0])
        arch.update(
            widths=[int(w) for w in widths], embedding_dim=min(32, max(8, first)),
            groups=math.gcd(8, *[int(w) for w in widths]),
            schedule_filters=min(32, first), schedule_hidden_units=min(64, 2 * first),
        )
    if qpi:
        mean_widths = [32, 64, 96, 96] if widths is None else list(arch["widths"])
        arch.update(mean_network={"widths": mean_widths, "embedding_dim": arch["embedding_dim"]},
                    target_scale=0.1)
    else:
        arch.update(residual=True)
    return arch


def build_model(architecture: dict, seed: int | None = None):
    """A built, uncompiled `CVDM` from `default_architecture`'s description.

    Args:
        architecture (dict): as returned by `default_architecture`.
        seed (int | None): the model's seed (training times and noise).

    Returns:
        CVDM: the model, built for `architecture["condition_channels"]` input channels.

    Examples:
        >>> model = build_model(default_architecture("sr", (8, 16)), seed=0)
        >>> model.residual, model.condition_channels, model.downsampling_factor
        (True, 1, 2)
    """
    from keras_cvdm.layers import UNetDenoiser, UNetRegressor
    from keras_cvdm.model import CVDM
    from keras_cvdm.schedules import LearnedSchedule

    arch = architecture
    channels = arch["target_channels"]
    mean = arch.get("mean_network")
    mean_network = None
    if mean:
        mean_network = UNetRegressor(
            channels, widths=tuple(mean["widths"]), embedding_dim=mean["embedding_dim"],
            groups=arch["groups"], name="mean_network",
        )
    denoiser = UNetDenoiser(
        channels, widths=tuple(arch["widths"]), attention_levels=tuple(arch["attention_levels"]),
        embedding_dim=arch["embedding_dim"], groups=arch["groups"], name="denoiser",
    )
    schedule = LearnedSchedule(
        channels, filters=arch["schedule_filters"], hidden_units=arch["schedule_hidden_units"],
        name="schedule",
    )
    model = CVDM(
        target_channels=channels, schedule=schedule, denoiser=denoiser,
        residual=arch.get("residual", False), zero_mean=mean_network is not None,
        mean_network=mean_network, target_scale=arch.get("target_scale", 1.0), seed=seed,
    )
    model.build((None, None, None, arch["condition_channels"]))
    return model


# ---------------------------------------------------------------------- data


def _downsampling_factor(architecture):
    """Image sides must be multiples of this (`CVDM.downsampling_factor`, before building)."""
    levels = [len(architecture["widths"])]
    if architecture.get("mean_network"):
        levels.append(len(architecture["mean_network"]["widths"]))
    return 2 ** (max(levels) - 1)


def _simulation_forward_model(task, inherited):
    """The simulator's settings: a preset's recorded optics over the defaults."""
    defaults = QPI_FORWARD_MODEL if task == "qpi" else SR_FORWARD_MODEL
    inherited = {k: v for k, v in (inherited or {}).items() if k != "source"}
    return {**copy.deepcopy(defaults), **copy.deepcopy(inherited)}


def _simulated_data(task, forward, norm, batch_size, image_size, steps_per_epoch, seed):
    """The training dataset, a fixed held-out preview batch and a description."""
    if task == "qpi":
        optics = {"noise_std": tuple(forward["noise_std_range"]),
                  "wavelength": forward["wavelength_um"],
                  "pixel_size": forward["pixel_size_um"], "defocus": forward["defocus_um"],
                  "normalization": norm}
        make, test_seed, function = qpi_data.qpi_dataset, qpi_data.QPI_TEST_SEED, "qpi_dataset"
    else:
        factor = int(forward["factor"])
        if image_size % factor:
            raise ValueError(
                f"`image_size` {image_size} must be a multiple of the SR factor {factor}."
            )
        optics = {"factor": factor, "psf": forward["psf"],
                  "wavelength": forward["wavelength_um"], "na": forward["na"],
                  "pixel_size": forward["pixel_size_um"], "photons": tuple(forward["photons"]),
                  "read_noise_std": tuple(forward["read_noise_std"]),
                  "background": tuple(forward["background"]),
                  "target_resolution_gain": forward["target_resolution_gain"],
                  "upsample_method": forward["upsample_method"], "normalization": norm}
        make, test_seed, function = sr_data.sr_dataset, sr_data.SR_TEST_SEED, "sr_dataset"
    dataset = make(batch_size=batch_size, image_size=image_size, num_batches=steps_per_epoch,
                   seed=seed, resample_each_epoch=True, **optics)
    preview = make(batch_size=2, image_size=image_size, num_batches=1, seed=test_seed,
                   augment=False, **optics)[0]
    description = {"function": f"keras_cvdm.data.{function}", "mix": "default",
                   "augment": True, "resample_each_epoch": True, "preview_seed": test_seed}
    return dataset, preview, description


def task_normalizer(norm):
    """The per-sample `(x, y) -> (x, y)` map from raw pairs to model units.

    It is what `qpi.reconstruct` and `sr.reconstruct` apply to their input at inference:
    QPI `normalize_intensities(x)` and `normalize_phase(y)`; SR `normalize_input(x)` and
    `normalize_target(y)` (`x` already on `y`'s grid).

    Args:
        norm (QPINormalization | SRNormalization): the task's normalisation.

    Returns:
        Callable: `fn(x, y) -> (x, y)` on channels-last float arrays of one sample.

    Examples:
        >>> import numpy as np
        >>> fn = task_normalizer(QPINormalization())
        >>> x, y = fn(np.ones((4, 4, 2)), np.full((4, 4, 1), 3.5))
        >>> float(x.max()), float(y.min())
        (0.0, 1.0)
    """
    if isinstance(norm, QPINormalization):
        def normalize(x, y):
            return norm.normalize_intensities(x), norm.normalize_phase(y)
    else:
        def normalize(x, y):
            return norm.normalize_input(x)[0], norm.normalize_target(y)[0]
    return normalize


class PairedTrainingData(SeededDataset):
    """Random crops of stored `(x, y)` pairs, normalised, `steps_per_epoch` batches an epoch.

    The pairs are read by `keras_cvdm.data.paired_dataset` (a folder with `x/` and `y/`,
    or an `.npz` with arrays `x` and `y`). Batch `i` of epoch `e` depends only on
    `(seed, e, i)`: the pairs are visited in seeded random order (each pair once before
    any repeats), each cropped at a random window of `image_size` on `y`'s grid (the
    matching window of a coarser `x`, then cubic up-sampling), flipped/rotated at random
    and normalised by `task_normalizer(norm)`.

    Args:
        source (str | os.PathLike): the paired data.
        task (str): `"qpi"` (x: 2 channels; y: phase, 1 channel, same grid) or `"sr"`
            (x and y: 1 channel; y an integer factor finer or on the same grid).
        norm (QPINormalization | SRNormalization): the task's normalisation.
        batch_size (int): examples per batch.
        image_size (int): crop side on `y`'s grid.
        num_batches (int): batches per epoch.
        seed (int): seed of the order, crops and flips.

    Examples:
        >>> import numpy as np, os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "pairs.npz")
        >>> rng = np.random.default_rng(0)
        >>> np.savez(path, x=rng.random((3, 8, 8)), y=rng.random((3, 16, 16)))
        >>> ds = PairedTrainingData(path, "sr", SRNormalization(), 2, 8, num_batches=4)
        >>> len(ds), ds.factor, ds[3][0].shape
        (4, 2, (2, 8, 8, 1))
    """

    def __init__(self, source, task, norm, batch_size, image_size, num_batches, seed=0):
        super().__init__(seed, resample_each_epoch=True)
        self.pairs = paired_dataset(source, batch_size=1, shuffle=False).pairs
        self.task = task
        self.normalize = task_normalizer(norm)
        self.batch_size = int(batch_size)
        self.image_size = int(image_size)
        self._num_batches = int(num_batches)
        x, y = self._pair(0)
        self.factor = self._factor(0, x, y)
        if task == "sr" and self.image_size % self.factor:
            raise ValueError(
                f"`image_size` {self.image_size} must be a multiple of the data's SR factor "
                f"{self.factor} (y is {self.factor}x finer than x)."
            )

    def __len__(self) -> int:
        return self._num_batches

    def _pair(self, i):
        """Pair `i`, channels last, checked against the task."""
        x, y = self.pairs.get(int(i))
        want_x = 2 if self.task == "qpi" else 1
        # A stack of pages (C, H, W) read from a multi-page TIFF: channels to the end.
        if x.ndim == 3 and x.shape[0] == want_x and x.shape[-1] != want_x:
            x = np.moveaxis(x, 0, -1)
        if y.ndim == 3 and y.shape[0] == 1 and y.shape[-1] != 1:
            y = np.moveaxis(y, 0, -1)
        if x.shape[-1] != want_x or y.shape[-1] != 1:
            what = ("x: the two intensities I(-dz), I(+dz) as 2 channels; y: the phase, "
                    "1 channel" if self.task == "qpi"
                    else "x: one low-resolution image (1 channel); y: its target (1 channel)")
            raise ValueError(
                f"Pair {i} of the {self.task.upper()} data has x with {x.shape[-1]} and y with "
                f"{y.shape[-1]} channel(s) (shapes {x.shape}, {y.shape}); {self.task} needs "
                f"{what}. Check --task or the data."
            )
        return x, y

    def _factor(self, i, x, y):
        (hx, wx), (hy, wy) = x.shape[:2], y.shape[:2]
        factor = hy // hx if hx else 0
        if factor < 1 or (hy, wy) != (factor * hx, factor * wx):
            raise ValueError(
                f"Pair {i}: x is {hx}x{wx} but y is {hy}x{wy}; y must be on x's grid or an "
                "integer factor finer in both directions."
            )
        if self.task == "qpi" and factor != 1:
            raise ValueError(
                f"Pair {i}: QPI intensities x ({hx}x{wx}) and phase y ({hy}x{wy}) must have "
                "the same size."
            )
        if hasattr(self, "factor") and factor != self.factor:
            raise ValueError(
                f"Pair {i}: y is {factor}x finer than x, but pair 0's is {self.factor}x; all "
                "pairs need one factor."
            )
        if min(hy, wy) < self.image_size:
            raise ValueError(
                f"Pair {i} is {hy}x{wy} (on y's grid), smaller than image_size "
                f"{self.image_size}; lower --image-size to at most {min(hy, wy)} or remove "
                "the small images."
            )
        return factor

    def _crop(self, i, rng, centre=False):
        x, y = self._pair(i)
        f = self._factor(i, x, y)
        size, (hy, wy) = self.image_size, y.shape[:2]
        if centre:
            r, c = (hy - size) // (2 * f), (wy - size) // (2 * f)
        else:
            r = int(rng.integers(0, (hy - size) // f + 1))
            c = int(rng.integers(0, (wy - size) // f + 1))
        y = y[r * f:r * f + size, c * f:c * f + size]
        x = x[r:r + size // f, c:c + size // f]
        if f > 1:
            x = np.moveaxis(microscopy.upsample(np.moveaxis(x, -1, 0), f), 0, -1)
        return x, y

    def _sample(self, i, rng, centre=False):
        x, y = self._crop(i, rng, centre)
        if not centre:
            x, y = _augment((x, y), rng, axes=(0, 1))
        x, y = self.normalize(x, y)
        return np.asarray(x, np.float32), np.asarray(y, np.float32)

    def sample_ids(self, index: int) -> list[int]:
        """The pairs of batch `index` of the current epoch (each pair once per cycle)."""
        n = len(self.pairs)
        start = (self.epoch_key * len(self) + int(index)) * self.batch_size
        orders = {}
        ids = []
        for position in range(start, start + self.batch_size):
            cycle, k = divmod(position, n)
            if cycle not in orders:
                orders[cycle] = np.random.default_rng([self.seed, cycle, 5]).permutation(n)
            ids.append(int(orders[cycle][k]))
        return ids

    def __getitem__(self, index):
        index = self._check_index(index)
        rng = np.random.default_rng([self.seed, self.epoch_key, index, 7])
        samples = [self._sample(i, rng) for i in self.sample_ids(index)]
        return np.stack([s[0] for s in samples]), np.stack([s[1] for s in samples])

    def fixed_batch(self, n: int = 2):
        """Centre crops of the first `n` pairs, not augmented (the preview batch)."""
        samples = [self._sample(i, None, centre=True) for i in range(min(n, len(self.pairs)))]
        return np.stack([s[0] for s in samples]), np.stack([s[1] for s in samples])


# ---------------------------------------------------------------------- callbacks


class EpochData(keras.callbacks.Callback):
    """Keys the data and the model's noise to the epoch Keras runs, and times the epochs.

    At each epoch's start it sets `dataset.epoch` to Keras's epoch index, so a run resumed
    by `BackupAndRestore` at epoch `e` sees the batches an uninterrupted run sees at `e`
    (and not those of the dataset's own `on_epoch_end` count, which restarts at 0 in a new
    process). It also sets the model's `seed_generator` (the diffusion times and noise of
    training, which a weights backup does not hold) to a state given by `seed` and the
    epoch. Fit with `shuffle=False` (the datasets draw their own random order), so the
    batch order is fixed too. At the epoch's end it adds `seconds` to the logs (a
    `history.csv` column): place it before the callbacks that write the logs.

    Args:
        dataset (SeededDataset): the training dataset.
        seed (int): seeds the model's noise of each epoch.

    Examples:
        >>> from keras_cvdm.data import qpi_dataset
        >>> ds = qpi_dataset(2, 16, 1, resample_each_epoch=True)
        >>> EpochData(ds).on_epoch_begin(3)
        >>> ds.epoch_key
        3
    """

    def __init__(self, dataset, seed: int = 0):
        super().__init__()
        self.dataset = dataset
        self.seed = int(seed)
        self._start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.dataset.epoch = int(epoch)
        generator = getattr(self._model_or_none(), "seed_generator", None)
        if generator is not None:
            key = np.random.default_rng([self.seed, int(epoch), 11]).integers(2**31 - 1)
            state = generator.state
            state.assign(keras.ops.convert_to_tensor(np.array([key, 0]), dtype=state.dtype))
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["seconds"] = round(time.perf_counter() - self._start, 3)

    def _model_or_none(self):
        try:
            return self.model
        except AttributeError:
            return None


class PreviewCallback(keras.callbacks.Callback):
    """Writes a PNG of the model's posterior on a fixed batch every `every` epochs.

    Rows are the examples; columns are the input channels, the target, the posterior mean
    and the posterior standard deviation, each panel scaled to `[0, 1]` on its own. The
    posterior comes from `model.predict_uncertainty` (DDIM, fixed seed), so previews of
    different epochs are comparable. Files are `folder/epoch_0003.png` (after 3 epochs).

    Args:
        x (np.ndarray): model-space conditions `(N, H, W, C)`.
        y (np.ndarray): model-space targets `(N, H, W, 1)`.
        folder (str | os.PathLike): where the PNGs go.
        every (int): epochs between previews (the last epoch always gets one).
        num_samples (int): posterior samples per example.
        num_steps (int): DDIM steps.
        seed (int): sampling seed.

    Examples:
        >>> import numpy as np, tempfile
        >>> model = build_model(default_architecture("sr", (8, 16)), seed=0)
        >>> x, y = np.zeros((2, 16, 16, 1), "float32"), np.ones((2, 16, 16, 1), "float32")
        >>> folder = tempfile.mkdtemp()
        >>> preview = PreviewCallback(x, y, folder, num_steps=2)
        >>> preview.set_model(model)
        >>> preview.write(0).name
        'epoch_0001.png'
    """

    def __init__(self, x, y, folder, every=1, num_samples=4, num_steps=10, seed=0):
        super().__init__()
        self.x = np.asarray(x, np.float32)
        self.y = np.asarray(y, np.float32)
        self.folder = os.fspath(folder)
        self.every = max(1, int(every))
        self.num_samples = int(num_samples)
        self.num_steps = int(num_steps)
        self.seed = int(seed)

    def on_epoch_end(self, epoch, logs=None):
        last = self.params.get("epochs") if self.params else None
        if (epoch + 1) % self.every == 0 or epoch + 1 == last:
            self.write(epoch)

    def write(self, epoch):
        """Sample the posterior and write the preview of (0-based) `epoch`; its path."""
        mean, std = self.model.predict_uncertainty(
            self.x, num_samples=self.num_samples, num_steps=self.num_steps, sampler="ddim",
            seed=self.seed, verbose=0,
        )
        grid = preview_grid(self.x, self.y, mean, std)
        path = os.path.join(self.folder, f"epoch_{epoch + 1:04d}.png")
        return _io.write_image(path, grid, overwrite=True, dtype="uint8")


def preview_grid(x, y, mean, std, gap: int = 2) -> np.ndarray:
    """Panels of `x`'s channels, `y`, `mean` and `std` in a grid, each scaled to `[0, 1]`.

    Args:
        x (np.ndarray): `(N, H, W, C)`.
        y, mean, std (np.ndarray): `(N, H, W, 1)` (or `(N, H, W)`).
        gap (int): white pixels between panels.

    Returns:
        np.ndarray: float32 `(N·H + (N−1)·gap, (C+3)·W + (C+2)·gap)` in `[0, 1]`.

    Examples:
        >>> import numpy as np
        >>> preview_grid(np.zeros((2, 8, 8, 2)), *[np.ones((2, 8, 8, 1))] * 3).shape
        (18, 48)
    """
    x = np.asarray(x, np.float64)
    columns = [x[..., c] for c in range(x.shape[-1])]
    columns += [np.asarray(a, np.float64).reshape(x.shape[:3]) for a in (y, mean, std)]
    n, h, w = x.shape[:3]
    grid = np.ones((n * h + (n - 1) * gap, len(columns) * w + (len(columns) - 1) * gap))
    for j, column in enumerate(columns):
        for i in range(n):
            panel = np.nan_to_num(column[i])
            lo, hi = panel.min(), panel.max()
            panel = (panel - lo) / (hi - lo) if hi > lo else np.zeros_like(panel)
            grid[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = panel
    return grid.astype(np.float32)


def _check_tensorboard():
    """Keras's TensorBoard callback writes with `tf.summary`: TensorFlow and TensorBoard."""
    import importlib.util

    missing = [name for name in ("tensorflow", "tensorboard")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(
            f"tensorboard=True (--tensorboard) needs the package(s) {', '.join(missing)} "
            f"(Keras writes TensorBoard logs with tf.summary, whatever the backend); "
            f"pip install {' '.join(missing)}, or drop the option."
        )


# ---------------------------------------------------------------------- the run folder


def _prepare_output(output, config, overwrite) -> bool:
    """Check `output` against `config` and record it; True if the run is already complete."""
    os.makedirs(output, exist_ok=True)
    path = os.path.join(output, CONFIG_FILE)
    if overwrite:
        clear_run(output)
    elif os.path.exists(path):
        with open(path) as f:
            earlier = json.load(f)
        changed = [k for k in RUN_SETTINGS if earlier.get(k) != config[k]]
        if changed and not _has_results(output):
            clear_run(output)  # the earlier run stopped before its first epoch: nothing lost
            changed = []
        elif changed:
            listed = "; ".join(f"{k}: {earlier.get(k)!r} then, {config[k]!r} now" for k in changed)
            raise ValueError(
                f"{output} holds a run with other settings ({listed}). Repeat its settings "
                "to resume or continue it (only epochs may change), or start a new run in "
                "another folder (--output), or discard it with --overwrite (overwrite=True)."
            )
        done = _completed_epochs(os.path.join(output, BACKUP_DIR))
        if config["epochs"] < done:
            raise ValueError(
                f"{output} has {done} epochs done, more than epochs={config['epochs']}; pass "
                f"--epochs {done} or more to use or continue it, or --overwrite."
            )
        if _finished(output, config["epochs"]):
            _write_json(path, {**earlier, "tensorboard": config["tensorboard"],
                               "preview_every": config["preview_every"]})
            return True
    else:
        found = [name for name in RUN_FILES if os.path.exists(os.path.join(output, name))]
        if found:
            raise ValueError(
                f"{output} holds {', '.join(found)} but no {CONFIG_FILE} (not a run of this "
                "version, or damaged); use another folder (--output) or discard them with "
                "--overwrite (overwrite=True)."
            )
    _write_json(path, config)
    return False


def clear_run(output) -> None:
    """Delete what `train` wrote in `output` (the entries of `RUN_FILES`), nothing else.

    Args:
        output (str | os.PathLike): a run folder.

    Examples:
        >>> import os, tempfile
        >>> out = tempfile.mkdtemp()
        >>> for name in ("history.csv", "notes.txt"):
        ...     open(os.path.join(out, name), "w").close()
        >>> clear_run(out)
        >>> os.listdir(out)
        ['notes.txt']
    """
    for name in RUN_FILES:
        path = os.path.join(output, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)


def _has_results(output) -> bool:
    """Whether a run folder holds a completed epoch or a preset (something to lose)."""
    return bool(_completed_epochs(os.path.join(output, BACKUP_DIR))) or os.path.exists(
        os.path.join(output, PRESET_DIR)
    )


def _finished(output, epochs) -> bool:
    """A preset of this run, trained for `epochs`, is in place."""
    path = os.path.join(output, PRESET_DIR, "metadata.json")
    try:
        with open(path) as f:
            return json.load(f).get("training", {}).get("epochs") == epochs
    except (OSError, ValueError):
        return False


def _completed_epochs(backup) -> int:
    """Epochs held by a `BackupAndRestore` folder (0 if none); repairs a torn save.

    Keras writes the weights, then `training_metadata.json` (`{"epoch": epochs done}`);
    with `double_checkpoint=True` the previous pair is first copied to `*.bkp`. A kill
    while the JSON is written leaves it unreadable: the previous pair is put back.
    """
    meta = os.path.join(backup, "training_metadata.json")
    weights = os.path.join(backup, "latest.weights.h5")
    if not os.path.exists(meta):
        return 0
    try:
        with open(meta) as f:
            return int(json.load(f)["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if os.path.exists(meta + ".bkp") and os.path.exists(weights + ".bkp"):
        shutil.copyfile(weights + ".bkp", weights)
        shutil.copyfile(meta + ".bkp", meta)
        return _completed_epochs(backup)
    shutil.rmtree(backup)  # nothing usable: start again
    return 0


def _truncate_history(path, done) -> None:
    """Keep the header and the rows of epochs `< done` (the backup's); no file if none."""
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        lines = f.read().splitlines(keepends=True)
    kept = lines[:1]
    for line in lines[1:]:
        try:
            epoch = int(line.split(",", 1)[0])
        except ValueError:
            continue  # a torn last line
        if epoch < done and line.endswith("\n"):
            kept.append(line)
    if len(kept) <= 1:
        os.remove(path)
        return
    with open(path, "w", newline="") as f:
        f.writelines(kept)


def _read_history(path) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


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


def _write_preset(model, output, metadata) -> None:
    """Write to a temporary folder, check it, then move it into place.

    `output/preset` is thus complete or absent. `save_preset` itself rebuilds the model
    from the config it writes (to save the weights without the optimizer), so the config
    loads; the check here re-reads the files and the weights' recorded sha256.
    """
    from keras_cvdm.presets import loader

    final = os.path.join(output, PRESET_DIR)
    partial = os.path.join(output, _PARTIAL_PRESET)
    old = os.path.join(output, _OLD_PRESET)
    for path in (partial, old):
        if os.path.exists(path):
            shutil.rmtree(path)
    written = loader.save_preset(model, partial, metadata)
    with open(os.path.join(partial, loader.CONFIG_FILE)) as f:
        json.load(f)
    with open(os.path.join(partial, loader.METADATA_FILE)) as f:
        if json.load(f) != written:
            raise OSError(f"{partial}: metadata.json does not read back as written.")
    weights = os.path.join(partial, loader.WEIGHTS_FILE)
    if loader.sha256_of(weights) != written["weights_sha256"]:
        raise OSError(f"{weights} does not read back as written (sha256 differs).")
    if os.path.exists(final):
        os.replace(final, old)
    os.replace(partial, final)
    if os.path.exists(old):
        shutil.rmtree(old)


def _write_json(path, value) -> None:
    partial = path + ".partial"
    with open(partial, "w") as f:
        json.dump(value, f, indent=2)
    os.replace(partial, path)


# ---------------------------------------------------------------------- checks


def _check_widths(widths):
    if widths is None:
        return None
    if isinstance(widths, str):
        try:
            widths = [int(w) for w in widths.split(",")]
        except ValueError:
            raise ValueError(
                f"`widths` must be integers such as (8, 16) or '8,16', got {widths!r}."
            ) from None
    widths = list(widths)
    if not widths or any(isinstance(w, bool) or not isinstance(w, int | np.integer) or w < 1
                         for w in widths):
        raise ValueError(f"`widths` must be positive integers such as (8, 16), got {widths!r}.")
    return tuple(int(w) for w in widths)


def _say(verbose, message):
    if verbose:
        print(message, flush=True)


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
