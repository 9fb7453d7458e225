"""The run folder of `train`: its files, its recorded settings, resuming, the preset.

- the names of what a run writes (`RUN_FILES`) and the settings a rerun must repeat
  (`RUN_SETTINGS`);
- `_prepare_output`: checks a folder against a run's settings and records them;
  `clear_run` deletes a run's files;
- `_completed_epochs`, `_truncate_history`: what `BackupAndRestore` holds, and the
  history rows that go with it;
- `_write_preset` (`_write_preset_folder` for any folder): the preset written to a
  temporary folder, checked, moved into place.
"""

from __future__ import annotations

import csv
import json
import os
import shutil

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
    while the JSON is written leaves it unreadable: the previous pair is put back. A kill
    during the very first save leaves weights and no JSON: they are removed.
    """
    meta = os.path.join(backup, "training_metadata.json")
    weights = os.path.join(backup, "latest.weights.h5")
    if not os.path.exists(meta):
        # No save finished: a weights file here is the first save, cut off while it was
        # written (Keras would fail to load it, with no earlier pair to fall back on).
        if os.path.exists(weights):
            os.remove(weights)
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


def _write_preset(model, output, metadata) -> None:
    """Write `output/preset` (complete or absent, see `_write_preset_folder`)."""
    _write_preset_folder(model, os.path.join(output, PRESET_DIR), metadata)


def _write_preset_folder(model, final, metadata) -> None:
    """Write the preset `final` to a temporary sibling folder, check it, move it into place.

    `final` is thus complete or absent (an earlier preset there is replaced only by a
    complete one). The siblings are `.NAME.partial` and `.NAME.old`. `save_preset` itself
    rebuilds the model from the config it writes (to save the weights without the
    optimizer), so the config loads; the check here re-reads the files and the weights'
    recorded sha256.
    """
    from keras_cvdm.presets import loader

    final = os.path.abspath(os.fspath(final))
    parent, name = os.path.split(final)
    partial = os.path.join(parent, f".{name}.partial")
    old = os.path.join(parent, f".{name}.old")
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
