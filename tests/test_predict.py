"""`keras-cvdm predict` and `keras-cvdm presets`: the user's files in, result files out."""

import json
import os

import numpy as np
import pytest

import keras_cvdm
from keras_cvdm import cli, io, prediction
from keras_cvdm.data import qpi_test_set

tifffile = pytest.importorskip("tifffile")

FAST = ["--samples", "2", "--steps", "2", "--seed", "3"]


def _camera_pair(folder, n=1, size=32, counts=20000):
    """A QPI test pair written as uint16 camera frames; returns paths, phase."""
    i_minus, i_plus, phase = qpi_test_set(n, size, noise_std=0.05)
    paths = []
    for name, image in (("minus.tif", i_minus), ("plus.tif", i_plus)):
        path = os.path.join(folder, name)
        frames = np.clip(image * counts, 0, 65535).astype(np.uint16)
        tifffile.imwrite(path, frames[0] if n == 1 else frames, photometric="minisblack")
        paths.append(path)
    return paths, phase


def _predict(*args):
    cli.main(["predict", *args])


def test_qpi_from_uint16_tiffs_writes_finite_maps_and_a_record(tmp_path):
    paths, _ = _camera_pair(tmp_path, size=36)
    out = tmp_path / "out"
    _predict("--preset", "qpi", "--input", *paths, "--output", str(out), *FAST)
    mean, std = io.read_image(out / "mean.tif"), io.read_image(out / "std.tif")
    assert mean.shape == std.shape == (36, 36)
    assert mean.dtype == std.dtype == np.float32
    assert np.all(np.isfinite(mean)) and np.all(std >= 0) and np.any(std > 0)
    record = json.loads((out / "prediction.json").read_text())
    model = keras_cvdm.from_preset("qpi")
    assert record["model"]["weights_sha256"] == model.metadata["weights_sha256"]
    assert record["optics"]["wavelength_um"] == model.metadata["forward_model"]["wavelength_um"]
    assert (record["samples"], record["steps"], record["seed"]) == (2, 2, 3)
    assert record["units"] == "rad" and record["versions"]["keras"]
    assert record["elapsed_seconds"] > 0
    assert record["calibration"] == model.metadata["calibration"]
    # The files hold what the library returns for the same arrays and seed; the camera's
    # unit (uint16 counts vs float) does not matter: QPI normalises by the mean intensity.
    i_minus = io.read_image(paths[0])
    i_plus = io.read_image(paths[1])
    expected, _ = keras_cvdm.qpi.reconstruct(model, i_minus, i_plus, num_samples=2,
                                             num_steps=2, seed=3)
    np.testing.assert_allclose(mean, expected, atol=1e-5)


def test_stacks_give_one_result_per_plane_and_samples_are_saved(tmp_path):
    paths, _ = _camera_pair(tmp_path, n=3, size=32)
    out = tmp_path / "out"
    _predict("--preset", "qpi", "--input", *paths, "--output", str(out), "--save-samples",
             *FAST)
    mean = io.read_planes(out / "mean.tif")
    samples = io.read_planes(out / "samples.tif")
    assert mean.shape == (3, 32, 32)
    assert samples.shape == (3 * 2, 32, 32)
    # Pages are image-major: the two samples of result n average to its mean.
    np.testing.assert_allclose(samples.reshape(3, 2, 32, 32).mean(axis=1), mean, atol=1e-5)
    # One two-plane stack (−dz, +dz) is the same measurement as two files.
    pair = np.stack([io.read_planes(paths[0])[0], io.read_planes(paths[1])[0]])
    np.save(tmp_path / "pair.npy", pair)
    _predict("--preset", "qpi", "--input", str(tmp_path / "pair.npy"),
             "--output", str(tmp_path / "one"), *FAST)
    alone, _ = keras_cvdm.qpi.reconstruct(
        keras_cvdm.from_preset("qpi"), pair[0], pair[1], num_samples=2, num_steps=2, seed=3)
    np.testing.assert_allclose(io.read_image(tmp_path / "one" / "mean.tif"), alone, atol=1e-5)


def test_sr_from_a_png(tmp_path):
    rng = np.random.default_rng(0)
    image = (1000 + 3000 * rng.random((20, 24))).astype(np.uint16)
    path = tmp_path / "widefield.png"
    io.write_image(path, image)
    out = tmp_path / "out"
    _predict("--preset", "sr-microscopy", "--input", str(path), "--output", str(out), *FAST)
    mean = io.read_image(out / "mean.tif")
    assert mean.shape == (40, 48) and np.all(np.isfinite(mean))
    # In the input's units: the file's counts, not counts / 65535.
    assert 0.5 * image.min() < np.median(mean) < 2 * image.max()
    assert json.loads((out / "prediction.json").read_text())["units"] == "the input file's units"


def test_existing_results_are_not_overwritten(tmp_path):
    paths, _ = _camera_pair(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mean.tif").write_bytes(b"earlier result")
    with pytest.raises(SystemExit) as exit_info:
        _predict("--preset", "qpi", "--input", *paths, "--output", str(out), *FAST)
    assert exit_info.value.code != 0 and "--overwrite" in str(exit_info.value.code)
    assert (out / "mean.tif").read_bytes() == b"earlier result"
    assert sorted(os.listdir(out)) == ["mean.tif"]
    _predict("--preset", "qpi", "--input", *paths, "--output", str(out), "--overwrite", *FAST)
    assert io.read_image(out / "mean.tif").shape == (32, 32)


def test_a_saved_keras_model_file_is_accepted(tmp_path):
    model = keras_cvdm.from_preset("sr-microscopy")
    model.save(tmp_path / "mine.keras")
    np.save(tmp_path / "w.npy", np.random.default_rng(1).random((16, 16)).astype("float32"))
    record = prediction.predict_files(
        [tmp_path / "w.npy"], tmp_path / "out", model_file=tmp_path / "mine.keras",
        num_samples=2, num_steps=2, seed=0)
    assert record["model"]["sha256"] == keras_cvdm.presets.sha256_of(tmp_path / "mine.keras")
    assert io.read_image(tmp_path / "out" / "std.tif").shape == (32, 32)


@pytest.mark.parametrize("case, message", [
    ("three_files", "two input files"),
    ("three_planes", "holds 3 plane"),
    ("shapes", "differ in shape"),
    ("rgb", "colour image"),
    ("optics", "outside the optics"),
])
def test_bad_input_is_refused_before_anything_is_written(tmp_path, case, message):
    paths, _ = _camera_pair(tmp_path)
    extra = []
    if case == "three_files":
        paths = paths + paths[:1]
    elif case == "three_planes":
        np.save(tmp_path / "s.npy", np.ones((3, 16, 16)))
        paths = [str(tmp_path / "s.npy")]
    elif case == "shapes":
        np.save(tmp_path / "small.npy", np.ones((16, 16)))
        paths = [paths[0], str(tmp_path / "small.npy")]
    elif case == "rgb":
        tifffile.imwrite(tmp_path / "rgb.tif", np.ones((16, 16, 3), np.uint8), photometric="rgb")
        paths = [str(tmp_path / "rgb.tif"), paths[1]]
    elif case == "optics":
        extra = ["--wavelength", "0.9"]
    with pytest.raises(SystemExit) as exit_info:
        _predict("--preset", "qpi", "--input", *paths, "--output", str(tmp_path / "out"),
                 *extra, *FAST)
    assert message in str(exit_info.value.code)
    assert not (tmp_path / "out").exists()


def test_optics_within_the_models_range_are_accepted_and_recorded():
    model = keras_cvdm.from_preset("qpi")
    i_minus, i_plus, _ = qpi_test_set(1, 16, noise_std=0.05)
    optics = model.metadata["forward_model"]
    phase, _ = keras_cvdm.qpi.reconstruct(
        model, i_minus[0], i_plus[0], num_samples=2, num_steps=2, seed=0,
        wavelength=optics["wavelength_um"], defocus=optics["defocus_um"])
    assert phase.shape == (16, 16)
    model.metadata = {**model.metadata, "forward_model": {
        **optics, "optics_range": {"wavelength_um": [0.45, 0.65]}}}
    assert keras_cvdm.tasks.check_optics(model, wavelength=0.6)["wavelength_um"] == 0.6
    with pytest.raises(ValueError, match="0.45–0.65"):
        keras_cvdm.tasks.check_optics(model, wavelength=0.7)


def test_presets_command_lists_task_size_and_scores(capsys):
    cli.main(["presets"])
    text = capsys.readouterr().out
    for name in keras_cvdm.list_presets():
        row = keras_cvdm.presets.describe_preset(name)
        assert f"{name}  (task {row['task']}, weights {row['weights_mb']} MB" in text
    metadata = keras_cvdm.from_preset("qpi").metadata
    stored = metadata["validation"]["qpi_test_set"]["0.05"]["cvdm_mae_aligned"]
    assert f"qpi_test_set/0.05/cvdm_mae_aligned: {stored:.3f}" in text


def _bump_with_cells(num_images=2, size=96):
    """Phase objects larger than a tile: a 2.5 rad bump crossing every tile border, plus cells."""
    yy, xx = np.mgrid[:size, :size]
    bump = 2.5 * np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * (size / 4.4) ** 2))
    phase = np.stack([bump + 0.6 * keras_cvdm.data.phantoms.cells(size, seed)
                      for seed in range(num_images)]).astype(np.float32)
    i_minus, i_plus = keras_cvdm.physics.defocus_pair(phase)
    noise = np.random.default_rng(0).standard_normal((2,) + phase.shape)
    return i_minus * (1 + 0.05 * noise[0]), i_plus * (1 + 0.05 * noise[1]), phase


def test_tiled_qpi_equals_whole_when_one_tile_covers_the_image():
    model = keras_cvdm.from_preset("qpi")
    i_minus, i_plus, _ = qpi_test_set(2, 40, noise_std=0.05)
    settings = dict(num_samples=2, num_steps=2, seed=5)
    whole = keras_cvdm.qpi.reconstruct(model, i_minus, i_plus, **settings)
    tiled = keras_cvdm.qpi.reconstruct(model, i_minus, i_plus, tile=48, overlap=8, **settings)
    for a, b in zip(whole, tiled):
        np.testing.assert_array_equal(a, b)


def _seam(estimate, phase):
    """The largest row- or column-averaged jump of the error map, over the whole image.

    A constant mismatch between two tiles, blended over their overlap, shows as a band of
    columns (or rows) where the error changes faster than elsewhere.
    """
    error = estimate - phase
    across_columns = np.abs(np.diff(error, axis=2)).mean(axis=(0, 1))
    across_rows = np.abs(np.diff(error, axis=1)).mean(axis=(0, 2))
    inner = slice(4, -4)  # the image's own border is steep in every reconstruction
    return max(across_columns[inner].max(), across_rows[inner].max())


def test_tiled_qpi_shows_no_seam_on_an_object_that_crosses_tile_borders():
    # Each 48² tile fixes its own phase constant (the training convention puts the
    # background at 0, and tiles inside the bump see no background). Blended as they are,
    # the constants leave a band of steep error along the overlaps; aligned by least squares
    # over the overlaps, the steepest band is no steeper than the unaligned one's, within
    # 1.75× of the untiled reconstruction's, and the result sits closer to the untiled one.
    # Measured with the shipped preset (seam tiled / untiled, unaligned / untiled):
    # TensorFlow 1.34 / 1.66, JAX 1.20 / 1.39, PyTorch 1.59 / 1.59 (there the steepest band
    # is the tiles' own periodic-TIE error, which alignment cannot change, not a constant).
    model = keras_cvdm.from_preset("qpi")
    i_minus, i_plus, phase = _bump_with_cells()
    settings = dict(num_samples=2, num_steps=10, seed=0)
    whole, _ = keras_cvdm.qpi.reconstruct(model, i_minus, i_plus, **settings)
    tiled, std = keras_cvdm.qpi.reconstruct(model, i_minus, i_plus, tile=48, overlap=16,
                                            **settings)
    norm = keras_cvdm.tasks.normalization(model, "qpi")
    raw, _, _ = keras_cvdm.tasks.posterior(
        model, keras_cvdm.qpi.condition(model, i_minus, i_plus), 2, tile=48, overlap=16,
        align_offsets=False, **{k: settings[k] for k in ("num_steps", "seed")})
    raw = norm.denormalize_phase(raw[..., 0])
    assert tiled.shape == std.shape == phase.shape and np.all(np.isfinite(tiled))
    assert _seam(tiled, phase) < 1.75 * _seam(whole, phase)
    assert _seam(tiled, phase) <= _seam(raw, phase) * (1 + 1e-5)  # equal up to rounding
    mae = keras_cvdm.metrics.phase_mae
    assert np.mean(mae(tiled, whole)) < np.mean(mae(raw, whole))


def test_predict_command_tiles_an_image_of_any_size(tmp_path):
    paths, _ = _camera_pair(tmp_path, size=44)
    out = tmp_path / "out"
    _predict("--preset", "qpi", "--input", *paths, "--output", str(out), "--tile", "32",
             "--overlap", "8", "--batch-size", "4", *FAST)
    mean = io.read_image(out / "mean.tif")
    assert mean.shape == (44, 44) and np.all(np.isfinite(mean))
    record = json.loads((out / "prediction.json").read_text())
    assert (record["tile"], record["overlap"]) == (32, 8)
