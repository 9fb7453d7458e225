"""The preset recipes (`examples/preset_training.py`) resume exactly after a `kill -9`.

Two runs of a tiny version of the SR recipe (widths (8, 16), 16×16 images, 3 chunks of 2
steps) share one subprocess (one interpreter start, one Keras import): run `a` stops in
its last chunk after one of its updates, then run `b` trains without a break and stops
in its evaluation; the process is then SIGKILLed. Run `b`'s final weights, written
before its evaluation, are those of an uninterrupted training; each run, rerun here,
must end with them in its preset and with each chunk once in `log.csv`. The evaluation
is a stand-in (the sum of the weights: no sampler to compile; the recipes' test-set
scores are the evaluation module's concern). On TensorFlow the runs are eager (tracing
costs about a minute a model), in the subprocess too.
"""

import copy
import csv
import json
import os
import shutil
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest

from tests.conftest import kill_when

BACKEND = keras.backend.backend()
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "examples")
sys.path.insert(0, EXAMPLES)

import preset_training  # noqa: E402
import train_sr_preset  # noqa: E402

EPOCHS = 3


def tiny_recipe():
    recipe = copy.deepcopy(train_sr_preset.RECIPE)
    recipe.update(name="tiny-sr", steps=2 * EPOCHS, steps_per_epoch=2, batch_size=2,
                  image_size=16)
    recipe["model"].update(widths=[8, 16], embedding_dim=8)
    # The preset holds the weights' moving average: over 6 steps, a short memory shows
    # the last steps' updates (at the recipes' 0.995 it would hold ~3% of them).
    recipe["optimizer"]["ema_momentum"] = 0.5
    return recipe


def tiny_evaluate(model, num_images):
    """A stand-in for the test-set scores: cheap, and a function of the weights."""
    return {"weights_sum": float(sum(np.sum(w, dtype="float64") for w in model.get_weights())),
            "num_images": num_images}


# Runs `a` and `b` (the folders sys.argv[2] and sys.argv[3]) in one process: `a` in a
# thread, up to the start of its last chunk's second batch, where it waits; then `b` up
# to its evaluation, where it creates the file sys.argv[1] and waits to be killed.
LAUNCHER = """
import os, sys, threading, time
import keras

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

    tf.config.run_functions_eagerly(True)
sys.path[:0] = [{tests!r}, os.path.dirname({tests!r})]
import test_recipes as t

marker, a, b = sys.argv[1:]
a_paused = threading.Event()
a_failed = []


def on_epoch_begin(self, epoch, logs=None):  # the recipe's CSVLogger tells the epoch
    self.pause_epoch = epoch


def on_train_batch_begin(self, batch, logs=None):
    if (self.filename.startswith(a) and self.pause_epoch == t.EPOCHS - 1
            and batch == 1):
        a_paused.set()
        time.sleep(3600)


def pausing_evaluate(model, num_images):
    open(marker, "w").close()
    time.sleep(3600)


def run_a():
    try:
        t.run_here(a)
    except BaseException as error:
        a_failed.append(error)
    a_paused.set()


keras.callbacks.CSVLogger.on_epoch_begin = on_epoch_begin  # no-ops in Keras's class
keras.callbacks.CSVLogger.on_train_batch_begin = on_train_batch_begin
threading.Thread(target=run_a, daemon=True).start()
a_paused.wait()
if a_failed:
    raise a_failed[0]
t.run_here(b, pausing_evaluate)
raise SystemExit("run b ended instead of waiting in its evaluation")
"""


def folders(root):
    return ["--output", os.path.join(root, "preset"), "--workdir", os.path.join(root, "work"),
            "--eval-images", "2"]


def run_here(root, evaluate=tiny_evaluate):
    """The tiny recipe in the folder `root`, to its end, in this process; its preset."""
    args = preset_training.parse_args(tiny_recipe(), "", folders(root))
    preset_training.run(tiny_recipe(), train_sr_preset.make_dataset, evaluate, args)
    return os.path.join(root, "preset")


def logged_epochs(root):
    with open(os.path.join(root, "work", "log.csv"), newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def backup_epochs(root):
    with open(os.path.join(root, "work", "backup", "training_metadata.json")) as f:
        return json.load(f)["epoch"]


def arrays(path):
    """Every array of a Keras weights file, by its path in the file."""
    found = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: found.__setitem__(name, item[()])
                     if isinstance(item, h5py.Dataset) else None)
    return found


def assert_same_weights(preset, reference):
    """The preset's weights are the model's arrays of `reference` (to 1e-6)."""
    weights = arrays(os.path.join(preset, "model.weights.h5"))
    assert weights and set(weights) <= set(reference)
    for name, value in weights.items():
        np.testing.assert_allclose(value, reference[name], rtol=0, atol=1e-6, err_msg=name)


# On TensorFlow these tests run functions eagerly (tracing a model costs ~70 s, more than
# the few steps it would save).
pytestmark = pytest.mark.usefixtures("tensorflow_eagerly")


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """The folders of runs `a` and `b` (see the module's docstring) after the SIGKILL."""
    root = str(tmp_path_factory.mktemp("killed"))
    a, b, marker = (os.path.join(root, name) for name in ("a", "b", "paused"))
    code = LAUNCHER.format(tests=os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, KERAS_BACKEND=BACKEND, TF_CPP_MIN_LOG_LEVEL="2",
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    proc = subprocess.Popen([sys.executable, "-c", code, marker, a, b], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kill_when(proc, lambda: os.path.exists(marker), 600, "their stops")
    return a, b


@pytest.fixture(scope="module")
def reference(killed):
    """The final weights of an uninterrupted training: run `b`'s, before its evaluation."""
    return arrays(os.path.join(killed[1], "work", "final.weights.h5"))


def test_kill_in_the_last_chunk_resumes_it_with_the_same_data_and_noise(
        killed, reference, capsys):
    a = killed[0]
    assert backup_epochs(a) == EPOCHS - 1  # the last chunk was lost with the kill
    assert logged_epochs(a) == list(range(EPOCHS - 1))
    assert not os.path.exists(os.path.join(a, "work", "final.weights.h5"))

    preset = run_here(a)
    assert f"{EPOCHS - 1} of {EPOCHS} chunks done" in capsys.readouterr().out
    assert logged_epochs(a) == list(range(EPOCHS))
    assert_same_weights(preset, reference)


def test_kill_in_the_evaluation_resumes_without_training_again(killed, reference, tmp_path,
                                                               capsys):
    b = killed[1]
    final = os.path.join(b, "work", "final.weights.h5")
    written = os.stat(final).st_mtime_ns
    assert logged_epochs(b) == list(range(EPOCHS))
    assert not os.path.exists(os.path.join(b, "preset"))
    # The same moment, but as if the kill had come before the final weights were written
    # (every chunk in the backup): they are made from the backup, as `fit` makes them.
    early = str(tmp_path / "early")
    shutil.copytree(os.path.join(b, "work"), os.path.join(early, "work"))
    for name in ("final.weights.h5", "trained.json"):
        if os.path.exists(os.path.join(early, "work", name)):
            os.remove(os.path.join(early, "work", name))

    preset = run_here(b)
    assert "training was done earlier" in capsys.readouterr().out
    assert os.stat(final).st_mtime_ns == written
    assert logged_epochs(b) == list(range(EPOCHS))
    assert_same_weights(preset, reference)

    preset = run_here(early)
    assert logged_epochs(early) == list(range(EPOCHS))
    assert_same_weights(preset, reference)


def test_a_rerun_with_another_recipe_is_refused(tmp_path):
    work = str(tmp_path)
    recipe = tiny_recipe()
    preset_training._check_workdir(work, recipe)
    preset_training._check_workdir(work, recipe)  # the same recipe: resumes
    with pytest.raises(SystemExit, match=r"differs in: steps\b.*another --workdir"):
        preset_training._check_workdir(work, dict(recipe, steps=8))
    # What acts only once training is over may change: the run is evaluated again with it.
    preset_training._check_workdir(work, dict(recipe, eval_images=3, calibration={"seed": 1}))


def test_scores_are_reused_only_for_the_same_weights_images_and_calibration(tmp_path):
    work = str(tmp_path)
    weights = os.path.join(work, preset_training.FINAL_WEIGHTS)
    with open(weights, "wb") as f:
        f.write(b"first weights")
    calls = []

    def evaluate(model, num_images):
        calls.append(num_images)
        return {"call": len(calls)}

    assert preset_training._evaluate(None, evaluate, 4, work, {"seed": 1}) == {"call": 1}
    assert preset_training._evaluate(None, evaluate, 4, work, {"seed": 1}) == {"call": 1}
    assert preset_training._evaluate(None, evaluate, 4, work, {"seed": 2}) == {"call": 2}
    assert preset_training._evaluate(None, evaluate, 5, work, {"seed": 2}) == {"call": 3}
    with open(weights, "wb") as f:
        f.write(b"other weights")
    assert preset_training._evaluate(None, evaluate, 5, work, {"seed": 2}) == {"call": 4}


def refined_recipe():
    """The tiny recipe with a two-chunk `refine` stage (no moving average, fresh data)."""
    return dict(tiny_recipe(), refine={"steps": 4, "data_seed": 7, "learning_rate": 1e-3,
                                       "final_lr_fraction": 0.5, "global_clipnorm": 1.0})


def run_recipe(root, recipe, *extra):
    args = preset_training.parse_args(recipe, "", folders(root) + list(extra))
    preset_training.run(recipe, train_sr_preset.make_dataset, tiny_evaluate, args)
    return os.path.join(root, "preset")


def test_refine_trains_on_from_a_first_stage_finished_earlier(tmp_path, capsys):
    root = str(tmp_path)
    work, stage_dir = os.path.join(root, "work"), os.path.join(root, "work", "refine")
    run_recipe(root, tiny_recipe())  # a run of the recipe without the stage
    first = os.path.join(work, "final.weights.h5")
    first_weights, first_written = arrays(first), os.stat(first).st_mtime_ns
    capsys.readouterr()

    preset = run_recipe(root, refined_recipe(), "--overwrite")
    assert "training was done earlier" in capsys.readouterr().out  # stage 1 reused as is
    assert os.stat(first).st_mtime_ns == first_written
    with open(os.path.join(stage_dir, "recipe.json")) as f:
        stage = json.load(f)
    from keras_cvdm.presets.loader import sha256_of

    assert stage["starts_from"] == sha256_of(first)
    assert stage["seed"] == 7 and stage["steps"] == 4 and "ema_momentum" not in stage["optimizer"]
    with open(os.path.join(work, "recipe.json")) as f:
        assert "refine" not in json.load(f)
    with open(os.path.join(stage_dir, "log.csv"), newline="") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1]
    refined = arrays(os.path.join(stage_dir, "final.weights.h5"))
    assert_same_weights(preset, refined)
    # The model's arrays (the files also hold each stage's own optimizer state).
    model_arrays = [n for n in refined if not n.startswith("optimizer/")]
    assert model_arrays and set(model_arrays) <= set(first_weights)
    moved = [n for n in model_arrays
             if not np.allclose(refined[n], first_weights[n], rtol=0, atol=1e-7)]
    assert moved, "the refine stage left every weight where the first stage put it"
    with open(os.path.join(preset, "metadata.json")) as f:
        training = json.load(f)["training"]
    assert training["refine"] == refined_recipe()["refine"]

    # A crash after the stage's last chunk but before its final weights: made from its
    # backup, without training either stage again; --eval-only reads the same weights.
    for name in ("final.weights.h5", "trained.json"):
        os.remove(os.path.join(stage_dir, name))
    preset = run_recipe(root, refined_recipe(), "--overwrite")
    assert_same_weights(preset, refined)
    with open(os.path.join(stage_dir, "log.csv"), newline="") as f:
        assert len(list(csv.DictReader(f))) == 2
    preset = run_recipe(root, refined_recipe(), "--overwrite", "--eval-only")
    assert_same_weights(preset, refined)
    assert os.path.exists(os.path.join(stage_dir, "metrics.json"))

    # The stage starts from the first stage's weights: at learning rate 0 it ends on them.
    still = str(tmp_path / "still")
    shutil.copytree(work, os.path.join(still, "work"), ignore=shutil.ignore_patterns("refine"))
    frozen = refined_recipe()
    frozen["refine"]["learning_rate"] = 0.0
    preset = run_recipe(still, frozen)
    assert_same_weights(preset, first_weights)
    # Another stage recipe in the same folder, or first-stage weights changed under it,
    # is refused rather than mixed.
    still_stage = os.path.join(still, "work", "refine")
    with pytest.raises(SystemExit, match="another recipe"):
        preset_training._check_workdir(still_stage, preset_training._stage_recipe(
            tiny_recipe(), refined_recipe()["refine"], work))
    with pytest.raises(SystemExit, match="other first-stage weights.*Delete that folder"):
        preset_training._check_workdir(still_stage, preset_training._stage_recipe(
            tiny_recipe(), frozen["refine"], stage_dir))  # the stage's weights as the first's
    with pytest.raises(SystemExit, match="seed of its own"):
        preset_training._stage_recipe(
            tiny_recipe(), dict(frozen["refine"], data_seed=tiny_recipe()["seed"]), work)


def test_the_refine_stage_compiles_without_a_moving_average():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    opt = tiny_recipe()["optimizer"]
    preset_training._compile(model, opt, 10)
    assert model.optimizer.use_ema and model.optimizer.ema_momentum == opt["ema_momentum"]
    preset_training._compile(model, refined_recipe()["refine"], 10)
    assert not model.optimizer.use_ema
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)
