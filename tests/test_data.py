"""Data: phantoms, simulated datasets, folder/paired datasets, normalisation, tf.data."""

import json

import keras
import numpy as np
import pytest

from keras_cvdm.data import (
    PHANTOMS,
    QPINormalization,
    SRNormalization,
    from_image_folder,
    normalization_from_dict,
    normalize_mix,
    paired_dataset,
    qpi_dataset,
    qpi_test_set,
    random_phantom,
    sr_dataset,
    to_tf_dataset,
)
from keras_cvdm.io import write_image
from keras_cvdm.physics import convolve, defocus_pair, downsample, gaussian_psf, upsample

# --------------------------------------------------------------------------- phantoms


@pytest.mark.parametrize("kind", sorted(PHANTOMS))
def test_phantoms_are_seeded_and_normalised(kind):
    generator = PHANTOMS[kind]
    a = generator(48, seed=3)
    assert a.shape == (48, 48) and a.dtype == np.float32
    assert a.min() == 0.0 and a.max() == 1.0
    np.testing.assert_array_equal(a, generator(48, seed=3))
    assert not np.array_equal(a, generator(48, seed=4))
    assert generator((32, 40), seed=np.random.default_rng(0)).shape == (32, 40)


def test_phantom_mix_validation():
    assert normalize_mix({"cells": 1, "shapes": 3}, None) == {"cells": 0.25, "shapes": 0.75}
    with pytest.raises(ValueError, match="Unknown phantom kind"):
        normalize_mix(["cells", "galaxies"], None)
    kinds = {random_phantom(16, seed=s, mix=["rings", "puncta"])[1] for s in range(20)}
    assert kinds == {"rings", "puncta"}


# --------------------------------------------------------------------------- normalisation


def test_qpi_normalization_round_trips_and_serialises():
    norm = QPINormalization(intensity_scale=0.5)
    phase = np.random.default_rng(0).uniform(0, 3.5, (2, 8, 8))
    y = norm.normalize_phase(phase)
    assert y.min() >= -1 and y.max() <= 1
    np.testing.assert_allclose(norm.normalize_phase([0.0, 3.5]), [-1.0, 1.0])
    np.testing.assert_allclose(norm.denormalize_phase(y), phase, atol=1e-6)
    intensities = np.random.default_rng(1).uniform(5, 50, (2, 8, 8, 2))
    x, mean = norm.normalize_intensities(intensities, return_mean=True)
    np.testing.assert_allclose(x.mean(axis=(1, 2, 3)), 0.0, atol=1e-6)
    np.testing.assert_allclose(norm.denormalize_intensities(x, mean), intensities, rtol=1e-5)
    # Intensity units do not matter (a camera gain cancels).
    np.testing.assert_allclose(norm.normalize_intensities(7.0 * intensities), x, atol=1e-6)
    config = json.loads(json.dumps(norm.to_dict()))
    assert normalization_from_dict(config) == norm
    with pytest.raises(ValueError, match="phase_max"):
        QPINormalization(phase_max=0.0)


def test_sr_normalization_round_trips():
    norm = SRNormalization(input_percentiles=(1, 99))
    image = np.random.default_rng(2).gamma(2.0, 10.0, (32, 32))
    x, (lo, hi) = norm.normalize_input(image)
    assert abs(np.percentile(x, 1) + 1) < 1e-5 and abs(np.percentile(x, 99) - 1) < 1e-5
    np.testing.assert_allclose(norm.denormalize(x, lo, hi), image, rtol=1e-5)
    assert normalization_from_dict(json.loads(json.dumps(norm.to_dict()))) == norm


# --------------------------------------------------------------------------- QPI dataset


def test_qpi_dataset_is_determined_by_seed_and_index():
    ds = qpi_dataset(batch_size=3, image_size=32, num_batches=4, seed=5)
    x, y = ds[1]
    assert x.shape == (3, 32, 32, 2) and y.shape == (3, 32, 32, 1)
    assert x.dtype == np.float32 and y.dtype == np.float32
    again = qpi_dataset(batch_size=3, image_size=32, num_batches=4, seed=5)
    _ = again[3]  # access order does not matter
    np.testing.assert_array_equal(again[1][0], x)
    np.testing.assert_array_equal(again[1][1], y)
    assert not np.array_equal(ds[2][1], y)
    assert not np.array_equal(qpi_dataset(3, 32, 4, seed=6)[1][1], y)
    assert len(ds) == 4
    with pytest.raises(IndexError):
        ds[4]


def test_qpi_dataset_values_are_physical():
    norm = QPINormalization()
    ds = qpi_dataset(batch_size=4, image_size=32, num_batches=1, seed=7, noise_std=0.0)
    x, y = ds[0]
    # Targets: min-max phantoms ⇒ phase spans exactly [0, 3.5] rad ⇒ y spans [-1, 1].
    np.testing.assert_allclose(y.min(axis=(1, 2, 3)), -1.0, atol=1e-6)
    np.testing.assert_allclose(y.max(axis=(1, 2, 3)), 1.0, atol=1e-6)
    # Inputs: intensities are >= 0 ⇒ x >= -1; mean-normalised ⇒ zero mean.
    assert x.min() >= -1.0 - 1e-6
    np.testing.assert_allclose(x.mean(axis=(1, 2, 3)), 0.0, atol=1e-5)
    assert np.median(np.abs(x)) < 0.5
    # x is exactly the defocus pair of y's phase (the pure phase object has mean 1).
    phase = norm.denormalize_phase(y[..., 0])
    i_minus, i_plus = defocus_pair(phase)
    np.testing.assert_allclose(norm.denormalize_intensities(x)[..., 0], i_minus, atol=1e-4)
    np.testing.assert_allclose(norm.denormalize_intensities(x)[..., 1], i_plus, atol=1e-4)


def test_qpi_dataset_noise_level_is_drawn_per_sample():
    norm = QPINormalization()

    def residual_std(noise_std):
        x, y = qpi_dataset(8, 32, 1, seed=8, noise_std=noise_std)[0]
        clean = np.stack(defocus_pair(norm.denormalize_phase(y[..., 0])), axis=-1)
        return np.std(norm.denormalize_intensities(x) - clean, axis=(1, 2, 3))

    np.testing.assert_allclose(residual_std(0.1), 0.1, rtol=0.1)
    drawn = residual_std((0.0, 0.2))
    assert drawn.max() < 0.2 * 1.1 and drawn.std() > 0.02  # varies between samples


def test_resample_each_epoch_changes_data_only_when_asked():
    fixed = qpi_dataset(2, 16, 2, seed=9, mix="gaussian_random_field")
    fresh = qpi_dataset(2, 16, 2, seed=9, mix="gaussian_random_field", resample_each_epoch=True)
    first = fresh[0][1]
    np.testing.assert_array_equal(first, fixed[0][1])
    fixed.on_epoch_end()
    fresh.on_epoch_end()
    np.testing.assert_array_equal(fixed[0][1], first)
    assert not np.array_equal(fresh[0][1], first)


def _collect_inputs(ds):
    """x of every batch, through Keras's own PyDataset machinery (workers, queues)."""
    model = keras.Sequential([keras.Input(ds[0][0].shape[1:]), keras.layers.Identity()])
    return np.asarray(keras.ops.convert_to_numpy(model.predict(ds, verbose=0)))


# Keras forks worker processes; JAX warns that fork and its threads may deadlock. The
# workers only run numpy code, so the warning does not apply here.
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
@pytest.mark.parametrize("use_multiprocessing", [False, True])
def test_workers_give_the_same_data(use_multiprocessing):
    kwargs = dict(batch_size=2, image_size=16, num_batches=4, seed=10)
    direct = np.concatenate([qpi_dataset(**kwargs)[i][0] for i in range(4)])
    parallel = qpi_dataset(**kwargs, workers=2, use_multiprocessing=use_multiprocessing)
    np.testing.assert_allclose(_collect_inputs(parallel), direct, atol=1e-6)


def test_qpi_test_set_is_fixed_and_shares_phantoms_across_noise_levels():
    i_m, i_p, phase, kinds = qpi_test_set(8, 32, 0.0, mix=["cells", "shapes"], return_kinds=True)
    assert i_m.shape == i_p.shape == phase.shape == (8, 32, 32)
    assert sorted(kinds) == ["cells"] * 4 + ["shapes"] * 4
    assert phase.min() == 0.0 and np.allclose(phase.max(axis=(1, 2)), 3.5)
    n_m, n_p, n_phase = qpi_test_set(8, 32, 0.1, mix=["cells", "shapes"])
    np.testing.assert_array_equal(n_phase, phase)
    residual = np.concatenate([n_m - i_m, n_p - i_p], axis=0)
    assert abs(residual.std() - 0.1) < 0.01 and abs(residual.mean()) < 0.01
    np.testing.assert_array_equal(qpi_test_set(8, 32, 0.1, mix=["cells", "shapes"])[0], n_m)
    assert not np.array_equal(qpi_test_set(8, 32, 0.0, seed=1, mix=["cells", "shapes"])[2], phase)


# --------------------------------------------------------------------------- SR dataset


def test_sr_dataset_shapes_ranges_and_determinism():
    ds = sr_dataset(batch_size=2, image_size=32, num_batches=2, seed=11)
    x, y = ds[0]
    assert x.shape == y.shape == (2, 32, 32, 1)
    np.testing.assert_allclose(y.min(axis=(1, 2, 3)), -1.0, atol=1e-6)
    np.testing.assert_allclose(y.max(axis=(1, 2, 3)), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.percentile(x, 0.1, axis=(1, 2, 3)), -1.0, atol=1e-4)
    np.testing.assert_allclose(np.percentile(x, 99.9, axis=(1, 2, 3)), 1.0, atol=1e-4)
    assert np.abs(x).max() < 3.0  # a few outliers beyond the percentiles, not a blow-up
    np.testing.assert_array_equal(sr_dataset(2, 32, 2, seed=11)[0][0], x)
    with pytest.raises(ValueError, match="divisible"):
        sr_dataset(image_size=30, factor=4)


def test_sr_input_is_the_blurred_binned_target_on_the_same_grid():
    psf = gaussian_psf(1.5)
    ds = sr_dataset(
        2, 32, 1, seed=12, factor=2, psf=psf, photons=1e9, read_noise_std=0.0,
        background=0.0, target_resolution_gain=None, augment=False, mix="cells",
    )  # fmt: skip
    x, y = ds[0]
    norm = SRNormalization()
    for xi, yi in zip(x[..., 0], y[..., 0], strict=True):
        density = (yi + 1.0) / 2.0  # the target is the min-max phantom
        expected = upsample(downsample(convolve(density, psf), 2), 2, "cubic")
        np.testing.assert_allclose(xi, norm.normalize_input(expected)[0], atol=2e-3)


# --------------------------------------------------------------------------- folders


@pytest.fixture()
def image_folder(tmp_path):
    rng = np.random.default_rng(13)
    folder = tmp_path / "images"
    write_image(folder / "a.png", rng.uniform(size=(40, 50)))  # 16-bit gray
    write_image(
        folder / "b.png", (rng.uniform(size=(20, 24, 3)) * 255).astype(np.uint8)
    )  # RGB, small
    write_image(folder / "sub" / "c.tif", rng.uniform(size=(64, 64)).astype(np.float32))
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_image_folder_becomes_a_qpi_dataset(image_folder):
    ds = from_image_folder(image_folder, batch_size=2, image_size=32, seed=1, noise_std=0.0)
    assert len(ds) == 2  # 3 images, batch 2
    x, y = ds[0]
    assert x.shape == (2, 32, 32, 2) and y.shape == (2, 32, 32, 1)
    np.testing.assert_allclose(y.min(axis=(1, 2, 3)), -1.0, atol=1e-6)
    np.testing.assert_allclose(y.max(axis=(1, 2, 3)), 1.0, atol=1e-6)
    again = from_image_folder(image_folder, batch_size=2, image_size=32, seed=1, noise_std=0.0)
    np.testing.assert_array_equal(again[1][1], ds[1][1])
    sr = from_image_folder(image_folder, task="sr", batch_size=3, image_size=32, psf="gaussian")
    assert [a.shape for a in sr[0]] == [(3, 32, 32, 1), (3, 32, 32, 1)]


def test_image_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        from_image_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No images found"):
        from_image_folder(tmp_path / "empty")
    with pytest.raises(ValueError, match="task"):
        from_image_folder(tmp_path / "empty", task="denoise")


def test_npz_becomes_a_paired_dataset(tmp_path):
    rng = np.random.default_rng(14)
    x = rng.uniform(size=(5, 16, 16, 2)).astype(np.float32)
    y = rng.uniform(size=(5, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "pairs.npz", x=x, y=y)
    ordered = paired_dataset(tmp_path / "pairs.npz", batch_size=2, shuffle=False)
    assert len(ordered) == 3
    got_x = np.concatenate([ordered[i][0] for i in range(3)])
    got_y = np.concatenate([ordered[i][1] for i in range(3)])
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, y[..., None])
    shuffled = paired_dataset(tmp_path / "pairs.npz", batch_size=2, seed=3)
    seen = np.concatenate([shuffled[i][1] for i in range(3)])
    order = [int(np.argmin(np.abs(y - s[..., 0]).sum(axis=(1, 2)))) for s in seen]
    assert sorted(order) == list(range(5)) and order != list(range(5))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    from_files = paired_dataset(tmp_path / "x.npy", tmp_path / "y.npy", shuffle=False)
    np.testing.assert_array_equal(from_files[0][0], x)
    np.testing.assert_array_equal(paired_dataset(tmp_path, shuffle=False)[0][1], y[..., None])
    np.savez(tmp_path / "bad.npz", inputs=x, targets=y)
    with pytest.raises(ValueError, match="'inputs', 'targets'"):
        paired_dataset(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="5 samples but y has 4"):
        paired_dataset(x, y[:4])


def test_paired_augmentation_transforms_x_and_y_alike():
    x = np.random.default_rng(15).uniform(size=(6, 12, 12)).astype(np.float32)
    ds = paired_dataset(x, x.copy(), batch_size=3, augment=True, seed=1)
    bx, by = ds[0]
    np.testing.assert_array_equal(bx, by)
    assert not all(any(np.array_equal(b, xi) for xi in x) for b in bx[..., 0])  # some moved


def test_folder_pairs_match_by_name_and_upsample_low_res_inputs(tmp_path):
    rng = np.random.default_rng(16)
    low = rng.uniform(size=(3, 8, 8)).astype(np.float32)
    high = np.round(rng.uniform(size=(3, 16, 16)) * 65535) / 65535
    for i, name in enumerate(("cell1", "cell2", "cell3")):
        write_image(tmp_path / "data" / "x" / f"{name}.tif", low[i])
        write_image(tmp_path / "data" / "y" / f"{name}.png", high[i])
    ds = paired_dataset(tmp_path / "data", batch_size=3, shuffle=False, upsample="nearest")
    x, y = ds[0]
    assert x.shape == y.shape == (3, 16, 16, 1)
    np.testing.assert_allclose(downsample(x[..., 0], 2), low, rtol=1e-6)  # nearest, aligned
    np.testing.assert_allclose(y[..., 0], high, atol=1e-6)  # 16-bit PNG, scaled to [0, 1]
    write_image(tmp_path / "data" / "x" / "cell4.tif", np.zeros((8, 8), np.float32))
    write_image(tmp_path / "data" / "y" / "cell5.png", np.zeros((16, 16)))
    with pytest.raises(ValueError, match=r"Mismatched pairs.*cell4.*cell5"):
        paired_dataset(tmp_path / "data")
    with pytest.raises(ValueError, match="x/ and y/"):
        paired_dataset(tmp_path)


# --------------------------------------------------------------------------- tf.data


def test_to_tf_dataset_yields_the_same_batches():
    pytest.importorskip("tensorflow")
    ds = qpi_dataset(batch_size=2, image_size=16, num_batches=3, seed=17)
    batches = list(to_tf_dataset(ds).as_numpy_iterator())
    assert len(batches) == 3
    for i, (x, y) in enumerate(batches):
        np.testing.assert_array_equal(x, ds[i][0])
        np.testing.assert_array_equal(y, ds[i][1])
