"""`keras_cvdm.training.train`: the run folder, resuming after a kill, paired data, presets.

Tracing a new model costs TensorFlow about a minute on this CPU, so on TensorFlow the runs
of this module (and the killed subprocess) run eagerly, as in test_model.py.
"""

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tifffile

import keras_cvdm
from keras_cvdm import cli, training
from keras_cvdm.data import QPIDataset, QPINormalization, SRNormalization, qpi_test_set
from tests.conftest import kill_when

BACKEND = keras.backend.backend()
HAS_TENSORBOARD = all(importlib.util.find_spec(m) for m in ("tensorflow", "tensorboard"))
TINY = dict(steps_per_epoch=1, batch_size=2, image_size=16, widths=(8, 16), seed=0,
            preview_every=0, verbose=0)
RUN = dict(TINY, task="qpi", epochs=2, steps_per_epoch=2, preview_every=2)


# On TensorFlow these tests run functions eagerly (tracing a model costs ~70 s, more than
# the few steps it would save).
pytestmark = pytest.mark.usefixtures("tensorflow_eagerly")


@pytest.fixture(scope="module")
def qpi_run(tmp_path_factory):
    """One tiny simulated QPI run (2 epochs of 2 steps, a preview after epoch 2)."""
    out = str(tmp_path_factory.mktemp("qpi") / "run")
    preset = training.train(out, tensorboard=HAS_TENSORBOARD, **RUN)
    assert preset == os.path.join(out, "preset")
    return out


def history(out):
    with open(os.path.join(out, "history.csv"), newline="") as f:
        return list(csv.DictReader(f))


def epochs_of(out):
    return [int(row["epoch"]) for row in history(out)]


def copy_run(out, tmp_path):
    target = str(tmp_path / "copy")
    shutil.copytree(out, target)
    return target


# ---------------------------------------------------------------------- the run folder


def test_simulated_qpi_run_writes_history_preview_and_a_working_preset(qpi_run):
    rows = history(qpi_run)
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert {"loss", "noise_loss", "mean_loss", "seconds"} <= set(rows[0])
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    assert os.listdir(os.path.join(qpi_run, "previews")) == ["epoch_0002.png"]
    grid = keras_cvdm.io.read_image(os.path.join(qpi_run, "previews", "epoch_0002.png"))
    # 2 examples × (2 input channels, target, mean, std), 16 px panels, 2 px gaps.
    assert grid.shape == (2 * 16 + 2, 5 * 16 + 4 * 2)
    assert os.path.isfile(os.path.join(qpi_run, "checkpoint.keras"))
    with open(os.path.join(qpi_run, "backup", "training_metadata.json")) as f:
        assert json.load(f)["epoch"] == 2

    model = keras_cvdm.from_preset(os.path.join(qpi_run, "preset"))
    meta = model.metadata
    assert meta["task"] == "qpi"
    assert meta["normalization"] == QPINormalization().to_dict()
    assert meta["forward_model"]["wavelength_um"] == keras_cvdm.physics.PAPER_WAVELENGTH
    assert meta["sampling"] == {"sampler": "dpmpp2m_sde", "num_steps": 20}
    record = meta["training"]
    assert (record["epochs"], record["steps"], record["seed"]) == (2, 4, 0)
    assert record["backend"] == BACKEND
    assert record["model"]["widths"] == [8, 16]
    assert record["model"]["mean_network"]["widths"] == [8, 16]
    assert record["dataset"]["function"] == "keras_cvdm.data.qpi_dataset"
    i_minus, i_plus, _ = qpi_test_set(1, 16, noise_std=0.05)
    phase, std = keras_cvdm.qpi.reconstruct(model, i_minus[0], i_plus[0], num_samples=2,
                                            num_steps=2, seed=0)
    assert phase.shape == std.shape == (16, 16)
    assert np.all(np.isfinite(phase)) and np.all(std >= 0)
    # ... and the predict command takes the run's preset folder.
    pair = os.path.join(qpi_run, "..", "pair.npy")
    np.save(pair, np.stack([i_minus[0], i_plus[0]]))
    results = os.path.join(qpi_run, "..", "results")
    cli.main(["predict", "--preset", os.path.join(qpi_run, "preset"), "--input", pair,
              "--output", results, "--samples", "2", "--steps", "2", "--seed", "0"])
    np.testing.assert_allclose(keras_cvdm.io.read_image(os.path.join(results, "mean.tif")),
                               phase, atol=1e-5)


def test_tensorboard_writes_event_files(qpi_run, tmp_path):
    if HAS_TENSORBOARD:
        logs = os.path.join(qpi_run, "logs")
        events = [f for _, _, files in os.walk(logs) for f in files if "tfevents" in f]
        assert events
    else:  # refused before anything is written, with the fix
        out = str(tmp_path / "tb")
        with pytest.raises(ValueError, match="pip install"):
            training.train(out, tensorboard=True, **RUN)
        assert not os.path.exists(out)


def test_rerun_with_other_settings_refuses_naming_keys_and_fix(qpi_run, tmp_path):
    out = copy_run(qpi_run, tmp_path)
    with pytest.raises(ValueError, match=r"seed: 0 then, 1 now.*--output.*--overwrite"):
        training.train(out, **dict(RUN, seed=1))
    with pytest.raises(ValueError, match="learning_rate"):
        training.train(out, **dict(RUN, learning_rate=1e-4))
    with pytest.raises(ValueError, match="2 epochs done"):
        training.train(out, **dict(RUN, epochs=1))
    assert epochs_of(out) == [0, 1]


def test_finished_rerun_reports_the_preset_without_training(qpi_run, tmp_path):
    out = copy_run(qpi_run, tmp_path)
    stamp = os.path.getmtime(os.path.join(out, "checkpoint.keras"))
    with open(os.path.join(out, "history.csv")) as f:
        before = f.read()
    # Logging options may change on a rerun.
    assert training.train(out, **dict(RUN, preview_every=0)) == os.path.join(out, "preset")
    assert os.path.getmtime(os.path.join(out, "checkpoint.keras")) == stamp
    with open(os.path.join(out, "history.csv")) as f:
        assert f.read() == before


def test_folder_with_foreign_run_files_is_refused(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,loss\n0,1.0\n")
    with pytest.raises(ValueError, match="no train_config.json.*--overwrite"):
        training.train(str(tmp_path), task="qpi", **TINY)


def test_overwrite_starts_fresh_and_keeps_other_files(qpi_run, tmp_path):
    out = copy_run(qpi_run, tmp_path)
    (tmp_path / "copy" / "notes.txt").write_text("mine")
    training.train(out, overwrite=True, **dict(RUN, seed=1, epochs=1, preview_every=0))
    assert epochs_of(out) == [0]
    assert not os.path.exists(os.path.join(out, "previews"))
    assert not os.path.exists(os.path.join(out, "logs"))
    assert (tmp_path / "copy" / "notes.txt").read_text() == "mine"
    with open(os.path.join(out, "train_config.json")) as f:
        assert json.load(f)["seed"] == 1
    assert keras_cvdm.from_preset(os.path.join(out, "preset")).metadata["training"]["epochs"] == 1


# ---------------------------------------------------------------------- resuming


def test_history_is_cut_to_the_epochs_of_the_backup(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n0,1.0\n1,0.9\n2,0.8\n3,0.")  # a torn last row
    training._truncate_history(str(path), 2)
    assert path.read_text() == "epoch,loss\n0,1.0\n1,0.9\n"
    training._truncate_history(str(path), 0)
    assert not path.exists()


def test_unreadable_backup_metadata_falls_back_to_the_previous_epoch(tmp_path):
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "training_metadata.json").write_text('{"epoch": 3, "ba')  # killed mid-write
    (backup / "training_metadata.json.bkp").write_text('{"epoch": 2, "batch": 0}')
    (backup / "latest.weights.h5").write_bytes(b"new")
    (backup / "latest.weights.h5.bkp").write_bytes(b"old")
    assert training._completed_epochs(str(backup)) == 2
    assert (backup / "latest.weights.h5").read_bytes() == b"old"


def test_a_first_backup_cut_off_while_its_weights_were_written_is_dropped(tmp_path):
    # Seen in a preset run killed during its first save: the weights file was torn,
    # no metadata was written yet, and Keras's restore failed on the file.
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "latest.weights.h5").write_bytes(b"\x89HDF\r\n")  # half an HDF5 header
    assert training._completed_epochs(str(backup)) == 0
    assert not (backup / "latest.weights.h5").exists()


def test_resumed_run_sees_the_data_of_an_uninterrupted_run_and_ends_the_same(tmp_path,
                                                                             monkeypatch):
    """Batches are keyed (epoch, index) as in one uninterrupted run, also after a resume."""
    served = []
    original = QPIDataset.__getitem__

    def spy(self, index):
        batch = original(self, index)
        if self.seed == 7:  # the training data, not the preview batch
            served.append((self.epoch_key, int(index), float(np.sum(batch[0]))))
        return batch

    monkeypatch.setattr(QPIDataset, "__getitem__", spy)
    settings = dict(TINY, task="qpi", steps_per_epoch=2, seed=7)
    whole = training.train(str(tmp_path / "whole"), epochs=2, **settings)
    uninterrupted = list(served)
    out = str(tmp_path / "run")
    served.clear()
    training.train(out, epochs=1, **settings)
    first = list(served)
    served.clear()
    resumed = training.train(out, epochs=2, **settings)  # continues from the backup's epoch 1
    second = list(served)

    # In order (after the first batch that `fit` inspects before training).
    keys = [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [k[:2] for k in uninterrupted[-4:]] == keys
    assert [k[:2] for k in first[-2:]] == keys[:2]
    assert [k[:2] for k in second[-2:]] == keys[2:]
    assert {k[:2] for k in second} == set(keys[2:])  # the data's epoch key is restored
    assert first[-2:] + second[-2:] == uninterrupted[-4:]  # the very same batches
    assert epochs_of(out) == [0, 1]
    # Same data, same noise, restored optimizer: the same model as without the break.
    a = keras_cvdm.from_preset(whole).get_weights()
    b = keras_cvdm.from_preset(resumed).get_weights()
    for wa, wb in zip(a, b, strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-5)


LAUNCHER = """
import runpy, sys, time
import keras

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

    tf.config.run_functions_eagerly(True)  # as the in-process runs: no minute of tracing

write_row = keras.callbacks.CSVLogger.on_epoch_end

def slow_end_of_epoch_1(self, epoch, logs=None):
    write_row(self, epoch, logs)
    if epoch == 1:  # epoch 1's row is written, its backup is not: the test kills us here
        time.sleep(600)

keras.callbacks.CSVLogger.on_epoch_end = slow_end_of_epoch_1
sys.argv[0] = "keras-cvdm"
runpy.run_module("keras_cvdm.cli", run_name="__main__", alter_sys=True)
"""


def test_kill_9_and_rerun_resumes_with_every_epoch_once(tmp_path, capsys):
    out = str(tmp_path / "run")
    args = ["train", "--task", "qpi", "--output", out, "--epochs", "4",
            "--steps-per-epoch", "2", "--batch-size", "2", "--image-size", "16",
            "--widths", "8,16", "--seed", "0", "--preview-every", "0"]
    env = dict(os.environ, KERAS_BACKEND=BACKEND, TF_CPP_MIN_LOG_LEVEL="2")
    # The same CLI, its epoch 1 held open between its history row and its backup, the
    # worst moment for a kill (the row exists, the backup does not know the epoch).
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    history_file = os.path.join(out, "history.csv")
    kill_when(proc, lambda: os.path.exists(history_file) and len(epochs_of(out)) >= 2, 300,
              "epoch 1", poll=0.1)
    assert epochs_of(out) == [0, 1]
    with open(os.path.join(out, "backup", "training_metadata.json")) as f:
        assert json.load(f)["epoch"] == 1  # epoch 1 was lost with the kill
    assert not os.path.exists(os.path.join(out, "preset"))

    # The same command again, to completion (in this process: `python -m keras_cvdm.cli`
    # runs `main` on these arguments; a second interpreter would only add its start-up).
    cli.main(args)
    printed = capsys.readouterr().out
    assert "resuming" in printed and "1 of 4 epochs done" in printed
    assert epochs_of(out) == [0, 1, 2, 3]
    model = keras_cvdm.from_preset(os.path.join(out, "preset"))
    assert model.metadata["training"]["epochs"] == 4


# ---------------------------------------------------------------------- paired data


def write_qpi_folder(folder, sizes=((24, 24), (24, 24), (20, 28))):
    """Raw two-shot pairs as 2-channel float TIFFs (one as a 2-page stack), phase in rad."""
    for i, size in enumerate(sizes):
        i_minus, i_plus, phase = qpi_test_set(1, size, noise_std=0.02, seed=100 + i)
        x = np.stack([i_minus[0], i_plus[0]], axis=-1) * 1000.0  # any unit
        os.makedirs(folder / "x", exist_ok=True)
        os.makedirs(folder / "y", exist_ok=True)
        if i == 0:
            tifffile.imwrite(folder / "x" / f"s{i}.tif", np.moveaxis(x, -1, 0))
        else:
            keras_cvdm.io.write_image(folder / "x" / f"s{i}.tif", x)
        keras_cvdm.io.write_image(folder / "y" / f"s{i}.tif", phase[0])
    return folder


def test_paired_qpi_crops_are_normalised_as_reconstruct_does(tmp_path):
    folder = write_qpi_folder(tmp_path / "pairs")
    norm = QPINormalization()
    data = training.PairedTrainingData(str(folder), "qpi", norm, 2, 16, num_batches=3)
    assert (len(data), len(data.pairs), data.factor) == (3, 3, 1)
    x, y = data.fixed_batch(2)
    raw_x = tifffile.imread(folder / "x" / "s0.tif")  # (2, 24, 24)
    raw_y = tifffile.imread(folder / "y" / "s0.tif")
    np.testing.assert_allclose(x[0], norm.pair_to_model(raw_x[0, 4:20, 4:20],
                                                        raw_x[1, 4:20, 4:20]), atol=1e-6)
    np.testing.assert_allclose(y[0, ..., 0], norm.normalize_phase(raw_y[4:20, 4:20]),
                               atol=1e-6)
    # Each epoch visits every pair once (3 pairs, 2 per batch: cycles continue across
    # batches) and the same (seed, epoch, batch) gives the same batch.
    data.epoch = 0
    ids = [i for b in range(3) for i in data.sample_ids(b)]
    assert sorted(ids[:3]) == sorted(ids[3:6]) == [0, 1, 2]
    first = data[1]
    data.epoch = 1
    assert not np.allclose(data[1][0], first[0])
    data.epoch = 0
    np.testing.assert_array_equal(data[1][0], first[0])


def test_paired_qpi_folder_trains_and_reconstructs(tmp_path):
    folder = write_qpi_folder(tmp_path / "pairs")
    preset = training.train(str(tmp_path / "run"), task="qpi", data=str(folder), epochs=1,
                            **dict(TINY, steps_per_epoch=2, preview_every=1))
    assert os.path.isfile(tmp_path / "run" / "previews" / "epoch_0001.png")
    model = keras_cvdm.from_preset(preset)
    assert model.metadata["normalization"] == QPINormalization().to_dict()
    assert model.metadata["training"]["dataset"]["pairs"] == 3
    i_minus, i_plus, _ = qpi_test_set(1, 16, noise_std=0.02)
    phase, std = keras_cvdm.qpi.reconstruct(model, i_minus[0] * 1000, i_plus[0] * 1000,
                                            num_samples=2, num_steps=2, seed=0)
    assert phase.shape == (16, 16) and np.all(np.isfinite(phase))


def test_paired_sr_npz_records_the_factor_and_reconstructs(tmp_path):
    rng = np.random.default_rng(0)
    high = rng.random((4, 32, 32)).astype("float32") * 500
    low = high.reshape(4, 16, 2, 16, 2).mean(axis=(2, 4))
    path = tmp_path / "pairs.npz"
    np.savez(path, x=low, y=high)
    preset = training.train(str(tmp_path / "run"), task="sr", data=str(path), epochs=1, **TINY)
    model = keras_cvdm.from_preset(preset)
    assert model.metadata["forward_model"]["factor"] == 2
    assert model.metadata["normalization"] == SRNormalization().to_dict()
    image, std = keras_cvdm.sr.reconstruct(model, low[0, :8, :8], num_samples=2, num_steps=2,
                                           seed=0)
    assert image.shape == std.shape == (16, 16) and np.all(np.isfinite(image))


@pytest.mark.parametrize("case, message", [
    ("no_subfolders", "x/ and y/"),
    ("one_channel_qpi", "2 channels"),
    ("mismatched_names", "Mismatched pairs"),
    ("too_small", "lower --image-size"),
    ("missing", "does not exist"),
    ("sr_not_integer", "integer factor"),
])
def test_bad_paired_data_is_a_clear_error(tmp_path, case, message):
    folder = tmp_path / "pairs"
    task = "qpi"
    if case == "no_subfolders":
        folder.mkdir()
        keras_cvdm.io.write_image(folder / "a.tif", np.ones((16, 16), "float32"))
    elif case == "one_channel_qpi":
        for sub in ("x", "y"):
            keras_cvdm.io.write_image(folder / sub / "a.tif", np.ones((16, 16), "float32"))
    elif case == "mismatched_names":
        write_qpi_folder(folder, sizes=((16, 16),))
        os.rename(folder / "y" / "s0.tif", folder / "y" / "other.tif")
    elif case == "too_small":
        write_qpi_folder(folder, sizes=((12, 12),))
    elif case == "sr_not_integer":
        task = "sr"
        np.savez(tmp_path / "pairs.npz", x=np.ones((2, 12, 12)), y=np.ones((2, 16, 16)))
        folder = tmp_path / "pairs.npz"
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        training.train(str(out), task=task, data=str(folder), epochs=1, **TINY)
    assert not out.exists() or not (out / "train_config.json").exists()


@pytest.mark.parametrize("kwargs, message", [
    ({}, "task='qpi' or task='sr'"),
    ({"task": "qpi", "epochs": 0}, "epochs"),
    ({"task": "phase"}, "'qpi' or 'sr'"),
    ({"task": "qpi", "widths": (8, 0)}, "widths"),
    ({"task": "qpi", "image_size": 20}, "multiple of the model's down-sampling factor 8"),
    ({"task": "sr", "image_size": 17, "widths": (8,)}, "multiple of the SR factor 2"),
    ({"task": "qpi", "learning_rate": -1.0}, "learning_rate"),
    ({"from_preset": "qpi", "widths": (8, 16)}, "keeps its own"),
    ({"from_preset": "qpi", "task": "sr"}, "trained for the task 'qpi'"),
])
def test_bad_settings_are_clear_errors(tmp_path, kwargs, message):
    settings = dict(TINY, epochs=1, widths=None, image_size=16)
    settings.update(kwargs)
    with pytest.raises(ValueError, match=message):
        training.train(str(tmp_path / "run"), **settings)
    assert not (tmp_path / "run" / "train_config.json").exists()


# ---------------------------------------------------------------------- fine-tuning


def test_fine_tuning_a_preset_keeps_its_metadata(tmp_path):
    original = keras_cvdm.from_preset("sr-microscopy").metadata
    preset = training.train(str(tmp_path / "run"), from_preset="sr-microscopy", epochs=1,
                            **dict(TINY, widths=None))
    model = keras_cvdm.from_preset(preset)
    meta = model.metadata
    assert meta["task"] == "sr"
    for key in ("normalization", "forward_model", "sampling"):
        assert meta[key] == original[key]
    assert "validation" not in meta
    assert meta["training"]["fine_tuned_from"]["preset"] == "sr-microscopy"
    image, _ = keras_cvdm.sr.reconstruct(model, np.random.default_rng(0).random((8, 8)),
                                         num_samples=2, num_steps=2, seed=0)
    assert image.shape == (16, 16) and np.all(np.isfinite(image))


def test_default_architectures_are_the_presets():
    from keras_cvdm.presets import registry

    for task, name in (("qpi", "qpi"), ("sr", "sr-microscopy")):
        with open(os.path.join(registry.builtin_folder(name), "metadata.json")) as f:
            shipped = json.load(f)["training"]["model"]
        arch = training.default_architecture(task)
        for key in ("widths", "embedding_dim"):
            assert arch[key] == shipped[key]
        # The qpi preset's mean network also solves the TIE with the optics it is given as
        # a third input channel; a new run's model takes the two planes only.
        physics = shipped.get("mean_network", {}).get("type") == "tie"
        assert physics == (task == "qpi")
        assert arch["condition_channels"] + physics == shipped["condition_channels"]
        assert arch.get("mean_network", {}).get("widths") == shipped.get(
            "mean_network", {}).get("widths")
        assert arch.get("target_scale", 1.0) == shipped.get("target_scale", 1.0)
        assert arch.get("residual", False) == shipped.get("residual", False)
