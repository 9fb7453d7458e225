"""From image files to result files: the work behind `keras-cvdm predict`.

`predict_files` reads the user's measurements (`keras_cvdm.io.read_planes`: TIFF,
PNG or NPY; a multi-page stack gives one result per plane), runs the model's task
(`qpi.reconstruct` or `sr.reconstruct`, tiled when asked), and writes into one folder:

- `mean.tif`, `std.tif`: float32 posterior mean and standard deviation in physical
  units (radians for QPI, the input's units for SR); `(H, W)` for one result, a
  multi-page `(N, H, W)` stack for `N`;
- `samples.tif` (with `save_samples`): the posterior samples, pages ordered
  image-major (page `n · K + k` is sample `k` of result `n`);
- `prediction.json`: what produced them — the model (preset or file, sha256 of its
  weights), inputs, optics, sampler, steps, samples, the seed actually used, tiling,
  the calibration the model applied (`keras_cvdm.calibration`: band blend, std factor),
  package, Keras and backend versions, elapsed seconds.

Nothing is written until every input has been read and checked, and an existing result
is never replaced unless `overwrite=True`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import keras
import numpy as np

from keras_cvdm import io, qpi, sampling, sr, tasks
from keras_cvdm.version import __version__

MEAN_FILE, STD_FILE, SAMPLES_FILE, RECORD_FILE = (
    "mean.tif", "std.tif", "samples.tif", "prediction.json"
)


def load_model(preset=None, model_file=None):
    """A model from a preset (name, folder, URL) or a `.keras` file, and where it came from.

    Args:
        preset: a built-in preset name or a preset folder (see `keras_cvdm.from_preset`).
        model_file: a file written by `model.save("name.keras")`.

    Returns:
        `(model, source)`: the `CVDM` and a JSON-ready dict naming the preset or file and
        the sha256 of its weights.

    Examples:
        >>> model, source = load_model(preset="qpi")
        >>> source["preset"], len(source["weights_sha256"])
        ('qpi', 64)
    """
    from keras_cvdm.model import CVDM
    from keras_cvdm.presets import from_preset, loader

    if (preset is None) == (model_file is None):
        raise ValueError("Give exactly one model: a preset (name or folder) or a .keras file.")
    if preset is not None:
        model = from_preset(preset)
        digest = model.metadata.get("weights_sha256")
        return model, {"preset": os.fspath(preset), "weights_sha256": digest}
    path = Path(model_file)
    if path.suffix != ".keras":
        raise ValueError(
            f"{path} is not a .keras file; pass a model saved with model.save('name.keras'), "
            "or a preset folder with --preset."
        )
    if not path.is_file():
        raise FileNotFoundError(f"Model file {path} does not exist.")
    model = keras.saving.load_model(path, safe_mode=True)
    if not isinstance(model, CVDM):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a keras_cvdm CVDM.")
    return model, {"model_file": str(path), "sha256": loader.sha256_of(path)}


def read_inputs(task, inputs, stacks=None):
    """The measurement files of `task` as arrays: QPI `(i_minus, i_plus)`, SR `(image,)`.

    Args:
        task: `"qpi"` or `"sr"`.
        inputs: a list of paths. QPI: two single-plane files (−dz then +dz), two stacks
            of equal length (one result per plane pair), or one two-plane stack. SR: one
            file (a stack gives one result per plane).
        stacks: the files already read with `io.read_planes(path, scale=False)`, in the
            order of `inputs` (default: read them here).

    Returns:
        A tuple of `(N, H, W)` float arrays.

    Examples:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "pair.npy")
        >>> np.save(path, np.ones((2, 8, 8), np.float32))
        >>> [a.shape for a in read_inputs("qpi", [path])]
        [(1, 8, 8), (1, 8, 8)]
    """
    inputs = [Path(p) for p in inputs]
    if stacks is None:
        stacks = _read(inputs)
    if task == "sr":
        if len(stacks) != 1:
            raise ValueError(
                f"Super-resolution takes one input file (a stack gives one result per "
                f"plane), got {len(stacks)}: run predict once per file."
            )
        return (stacks[0],)
    if task != "qpi":
        raise ValueError(f"The model's task {task!r} is not one `predict` knows (qpi, sr).")
    if len(stacks) == 1:
        if len(stacks[0]) != 2:
            raise ValueError(
                f"{inputs[0]} holds {len(stacks[0])} plane(s); QPI needs two: pass the "
                "−dz and +dz images as two files, or one stack of exactly two planes."
            )
        return stacks[0][:1], stacks[0][1:]
    if len(stacks) != 2:
        raise ValueError(f"QPI takes two input files (−dz then +dz), got {len(stacks)}.")
    if stacks[0].shape != stacks[1].shape:
        raise ValueError(
            f"The −dz and +dz inputs differ in shape: {inputs[0]} is {stacks[0].shape} "
            f"(planes, H, W), {inputs[1]} is {stacks[1].shape}; they must match."
        )
    return stacks[0], stacks[1]


def _read(inputs):
    # Unscaled: results come back in the file's own units (camera counts stay counts).
    return [io.read_planes(p, scale=False).astype(np.float32) for p in inputs]


def predict_files(inputs, output, *, preset=None, model_file=None, num_samples=8,
                  num_steps=None, sampler=None, seed=None, batch_size=16, tile=None,
                  overlap=None, wavelength=None, pixel_size=None, defocus=None,
                  save_samples=False, overwrite=False, verbose=0):
    """Posterior mean and std maps of measurement files, written into `output`.

    Args:
        inputs: input paths (see `read_inputs`).
        output: the results folder (created if needed).
        preset, model_file: the model (exactly one; see `load_model`).
        num_samples: posterior samples per image (≥ 2).
        num_steps, sampler: sampling settings (default: the model's).
        seed: integer seed; None draws one, recorded in `prediction.json`.
        batch_size: (image or tile, sample) pairs per model call.
        tile, overlap: tiled prediction (see `qpi.reconstruct`); None: whole images.
        wavelength, pixel_size, defocus: QPI optics in micrometres (default: the model's).
        save_samples: also write `samples.tif`.
        overwrite: replace results already in `output` (otherwise `FileExistsError`
            before anything is computed or written).
        verbose: progress bar (0: silent).

    Returns:
        The record written to `prediction.json` (a dict).

    Examples:
        >>> import numpy as np, tempfile, os
        >>> folder = tempfile.mkdtemp()
        >>> pair = os.path.join(folder, "pair.npy")
        >>> np.save(pair, 1 + 0.1 * np.random.default_rng(0).random((2, 16, 16)))
        >>> record = predict_files([pair], os.path.join(folder, "out"), preset="qpi",
        ...                        num_samples=2, num_steps=2, seed=0)
        >>> record["units"], sorted(os.listdir(os.path.join(folder, "out")))
        ('rad', ['mean.tif', 'prediction.json', 'std.tif'])
    """
    start = time.time()
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise NotADirectoryError(f"--output {output} is a file; choose a folder.")
    names = [MEAN_FILE, STD_FILE, RECORD_FILE] + ([SAMPLES_FILE] if save_samples else [])
    existing = [name for name in names if (output / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{output} already holds {', '.join(existing)}; pass --overwrite on the command "
            "line (overwrite=True in Python) to replace them, or choose another output folder."
        )
    stacks = _read(inputs)  # unreadable or colour files fail now, before the model loads
    model, source = load_model(preset=preset, model_file=model_file)
    task = model.metadata.get("task")
    arrays = read_inputs(task, inputs, stacks)
    seed = sampling.resolve_seed(seed)
    common = dict(num_samples=num_samples, seed=seed, num_steps=num_steps, sampler=sampler,
                  tile=tile, overlap=overlap, batch_size=batch_size,
                  return_samples=save_samples, verbose=verbose)
    record = {"task": task, "model": source, "inputs": [str(p) for p in inputs]}
    if task == "qpi":
        optics = dict(wavelength=wavelength, pixel_size=pixel_size, defocus=defocus)
        record["optics"] = tasks.check_optics(model, **optics)
        results = qpi.reconstruct(model, *arrays, **common, **optics)
        record["units"] = "rad"
    else:
        if any(v is not None for v in (wavelength, pixel_size, defocus)):
            raise ValueError("--wavelength, --pixel-size and --defocus apply to QPI models only.")
        results = sr.reconstruct(model, *arrays, **common)
        record["units"] = "the input file's units"
    mean, std = results[0], results[1]
    num_steps, sampler = tasks.sampling_defaults(model, num_steps, sampler)
    overlap = tasks.default_overlap(tile) if tile is not None and overlap is None else overlap
    record.update(
        sampler=sampler, steps=int(num_steps), samples=int(num_samples), seed=seed,
        batch_size=int(batch_size), tile=tile, overlap=overlap,
        shape=list(mean.shape[1:]), results=len(mean),
        calibration=(getattr(model, "metadata", None) or {}).get("calibration"),
        versions={"keras_cvdm": __version__, "keras": keras.__version__,
                  "backend": keras.backend.backend()},
    )
    output.mkdir(parents=True, exist_ok=True)
    single = len(mean) == 1
    for name, array in ((MEAN_FILE, mean), (STD_FILE, std)):
        if single:
            io.write_image(output / name, array[0].astype(np.float32), overwrite=overwrite)
        else:
            io.write_stack(output / name, array.astype(np.float32), overwrite=overwrite)
    if save_samples:
        samples = results[2]
        pages = samples.reshape((-1,) + samples.shape[-2:]).astype(np.float32)
        io.write_stack(output / SAMPLES_FILE, pages, overwrite=overwrite)
        record["samples_layout"] = "pages image-major: page n*samples + k is sample k of result n"
    record["elapsed_seconds"] = round(time.time() - start, 2)
    with open(output / RECORD_FILE, "w") as f:
        json.dump(record, f, indent=2)
    return record
