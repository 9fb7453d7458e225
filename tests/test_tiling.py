"""Tiled inference: grid, blending window, agreement with whole-image sampling, offsets."""

import numpy as np
import pytest

from keras_cvdm.metrics import mean_and_std
from keras_cvdm.tiling import blend_window, predict_tiled, tile_grid

K = 3


def local_fn(batch, seed):
    """Pointwise samples: each pixel's K samples depend only on that pixel's condition."""
    x0, x1 = batch[..., 0][:, None], batch[..., 1][:, None]
    k = np.arange(K)[None, :, None, None]
    s = np.tanh(x0) + 0.3 * np.sin((k + 1) * 3.0 * x1 + k)
    return np.stack([s, 2.0 * s - x0], axis=-1).astype("float32")


def offset_fn(batch, seed):
    """`local_fn` plus an arbitrary constant per tile and channel (the phase ambiguity)."""
    const = np.random.default_rng(seed).uniform(-3.0, 3.0, size=(len(batch), 1, 1, 1, 2))
    return (local_fn(batch, seed) + const).astype("float32")


def condition(n, height, width, seed=0):
    return np.random.default_rng(seed).normal(size=(n, height, width, 2)).astype("float32")


# ---------------------------------------------------------------------------- tile_grid


@pytest.mark.parametrize("height,width,tile,overlap", [
    (10, 7, 4, 1), (23, 31, 8, 3), (64, 64, 16, 4), (17, 40, 16, 5), (9, 30, 10, 2),
    (30, 9, 10, 0), (5, 5, 3, 2), (100, 3, 7, 6),
])
def test_tile_grid_covers_image_within_bounds(height, width, tile, overlap):
    grid = tile_grid(height, width, tile, overlap)
    count = np.zeros((height, width), int)
    for top, left, th, tw in grid:
        assert (th, tw) == (min(tile, height), min(tile, width))
        assert top >= 0 and left >= 0 and top + th <= height and left + tw <= width
        count[top:top + th, left:left + tw] += 1
    assert count.min() >= 1
    tops = sorted({t[0] for t in grid})
    lefts = sorted({t[1] for t in grid})
    assert len(grid) == len(tops) * len(lefts)
    assert grid == sorted(grid)  # row-major
    assert tops[-1] + grid[0][2] == height and lefts[-1] + grid[0][3] == width  # flush
    for starts, side in ((tops, grid[0][2]), (lefts, grid[0][3])):
        steps = np.diff(starts)
        assert np.all(steps >= 1) and np.all(steps <= tile - overlap)
        assert np.all(steps[:-1] == tile - overlap)  # regular stride except the flush tile
        assert np.all(side - steps >= overlap)  # neighbours overlap by at least `overlap`


def test_tile_grid_small_image_and_flush_last():
    assert tile_grid(5, 3, tile=8, overlap=2) == [(0, 0, 5, 3)]
    assert tile_grid(8, 8, tile=8, overlap=2) == [(0, 0, 8, 8)]
    assert [t[1] for t in tile_grid(4, 11, tile=4, overlap=1)] == [0, 3, 6, 7]
    assert [t[0] for t in tile_grid(10, 3, tile=4, overlap=1)] == [0, 3, 6]


@pytest.mark.parametrize("tile,overlap", [(0, 0), (4, 4), (4, 5), (4, -1), (2.5, 0), (True, 0)])
def test_tile_grid_rejects_bad_arguments(tile, overlap):
    with pytest.raises(ValueError, match="tile|overlap"):
        tile_grid(10, 10, tile, overlap)


# ---------------------------------------------------------------------------- blend_window


@pytest.mark.parametrize("edges", [(True,) * 4, (False,) * 4, (True, False, False, True),
                                   (False, True, True, False)])
@pytest.mark.parametrize("shape,overlap", [((12, 9), 3), ((6, 6), 4), ((5, 16), 1)])
def test_blend_window_positive_one_at_border_and_smooth(edges, shape, overlap):
    w = blend_window(*shape, overlap, *edges)
    assert w.shape == shape
    assert np.all(w > 0) and np.all(w <= 1)
    top, bottom, left, right = edges
    sides = ((top, w[0], w.max(axis=0)), (bottom, w[-1], w.max(axis=0)),
             (left, w[:, 0], w.max(axis=1)), (right, w[:, -1], w.max(axis=1)))
    for is_border, line, inner in sides:
        if is_border:  # the factor across that side is exactly 1 at the border
            np.testing.assert_array_equal(line, inner)
        else:
            assert np.all(line < inner)
    if all(edges):
        assert np.array_equal(w, np.ones(shape))
    bound = np.pi / (2 * overlap) + 1e-12
    assert np.abs(np.diff(w, axis=0)).max(initial=0) <= bound
    assert np.abs(np.diff(w, axis=1)).max(initial=0) <= bound


def test_blend_window_border_side_is_exactly_one():
    w = blend_window(10, 10, 3, top_edge=True, bottom_edge=False, left_edge=True,
                     right_edge=False)
    np.testing.assert_array_equal(w[:7, :7], 1.0)
    assert w[0, -1] < 1 and w[-1, 0] < 1


def test_blend_window_neighbour_ramps_sum_to_one():
    overlap = 5
    a = blend_window(4, 12, overlap, True, True, True, False)
    b = blend_window(4, 12, overlap, True, True, False, True)
    np.testing.assert_allclose(a[:, -overlap:] + b[:, :overlap], 1.0, atol=1e-12)


def test_windows_form_partition_of_unity_on_regular_grid():
    tile, overlap = 8, 3
    height, width = tile + 2 * (tile - overlap), tile + (tile - overlap)
    grid = tile_grid(height, width, tile, overlap)
    tops, lefts = sorted({t[0] for t in grid}), sorted({t[1] for t in grid})
    total = np.zeros((height, width))
    for top, left, th, tw in grid:
        edges = (top == tops[0], top == tops[-1], left == lefts[0], left == lefts[-1])
        total[top:top + th, left:left + tw] += blend_window(th, tw, overlap, *edges)
    np.testing.assert_allclose(total, 1.0, atol=1e-12)


# ---------------------------------------------------------------------------- predict_tiled


@pytest.mark.parametrize("height,width,tile,overlap,per_call", [
    (23, 31, 8, 3, 1), (17, 40, 16, 5, 4), (9, 30, 10, 2, 2), (20, 20, 8, 5, 7),
    (33, 12, 12, 1, 3),
])
def test_tiled_equals_whole_for_local_sampler(height, width, tile, overlap, per_call):
    x = condition(2, height, width)
    out = predict_tiled(local_fn, x, tile, overlap, K, seed=1, tiles_per_call=per_call)
    mean, std = mean_and_std(local_fn(x, 0), axis=1)
    assert out["mean"].dtype == np.float32 and out["samples"] is None
    np.testing.assert_allclose(out["mean"], mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["std"], std, rtol=1e-5, atol=1e-5)
    assert np.abs(std).max() > 0.1  # the comparison is not trivial


@pytest.mark.parametrize("height,width,tile,overlap,per_call", [
    (23, 31, 8, 3, 1), (40, 37, 16, 4, 3), (12, 50, 12, 2, 1),
])
def test_align_offsets_removes_seams(height, width, tile, overlap, per_call):
    x = condition(1, height, width, seed=3)
    whole_mean, whole_std = mean_and_std(offset_fn(x, 0), axis=1)
    kwargs = dict(tile=tile, overlap=overlap, num_samples=K, seed=2, tiles_per_call=per_call)
    aligned = predict_tiled(offset_fn, x, align_offsets=True, **kwargs)
    raw = predict_tiled(offset_fn, x, align_offsets=False, **kwargs)

    def deviation(result):  # after removing one global constant per channel
        d = result - whole_mean
        return np.abs(d - d.mean(axis=(1, 2), keepdims=True)).max()

    assert deviation(aligned["mean"]) < 1e-5
    assert deviation(raw["mean"]) > 0.1  # per-tile constants leave steps
    np.testing.assert_allclose(aligned["std"], whole_std, atol=1e-5)
    np.testing.assert_array_equal(aligned["std"], raw["std"])


def test_single_tile_is_identical_to_untiled():
    def random_fn(batch, seed):
        rng = np.random.default_rng(seed)
        noise = rng.normal(size=(len(batch), 4) + batch.shape[1:3] + (1,))
        return (batch[:, None, ..., :1] + noise).astype("float32")

    x = condition(3, 12, 10)
    samples = random_fn(x, 7)
    mean, std = mean_and_std(samples, axis=1)
    for align in (False, True):
        out = predict_tiled(random_fn, x, tile=12, overlap=4, num_samples=4, seed=7,
                            align_offsets=align, keep_samples=True)
        np.testing.assert_array_equal(out["mean"], mean)
        np.testing.assert_array_equal(out["std"], std)
        np.testing.assert_array_equal(out["samples"], samples)


def test_keep_samples_average_to_mean():
    x = condition(2, 21, 18)
    out = predict_tiled(offset_fn, x, tile=8, overlap=3, num_samples=K, seed=0,
                        align_offsets=True, keep_samples=True, tiles_per_call=2)
    assert out["samples"].shape == (2, K, 21, 18, 2)
    assert out["samples"].dtype == np.float32
    np.testing.assert_allclose(out["samples"].mean(axis=1), out["mean"], atol=1e-5)


def test_model_calls_respect_tile_size_and_tiles_per_call():
    calls = []

    def recording_fn(batch, seed):
        calls.append((batch.shape, seed))
        return local_fn(batch, seed)

    x = condition(2, 30, 23)
    tile, per_call = 8, 3
    num_tiles = len(tile_grid(30, 23, tile, 2))
    first = predict_tiled(recording_fn, x, tile, 2, K, seed=5, tiles_per_call=per_call)
    shapes = [shape for shape, _ in calls]
    assert max(s[0] for s in shapes) <= per_call
    assert all(s[1] <= tile and s[2] <= tile and s[3] == 2 for s in shapes)
    assert sum(s[0] for s in shapes) == 2 * num_tiles
    assert len(calls) == 2 * -(-num_tiles // per_call)
    seeds = [seed for _, seed in calls]
    assert len(set(seeds)) == len(seeds) and all(0 <= s < 2**31 for s in seeds)
    calls.clear()
    second = predict_tiled(recording_fn, x, tile, 2, K, seed=5, tiles_per_call=per_call)
    assert [seed for _, seed in calls] == seeds  # deterministic
    np.testing.assert_array_equal(first["mean"], second["mean"])


def test_predict_tiled_rejects_bad_input():
    x = condition(1, 20, 20)
    good = dict(tile=8, overlap=2, num_samples=K, seed=0)
    bad = [
        (dict(x=x[0]), "rank 3"),
        (dict(num_samples=1), "num_samples"),
        (dict(tiles_per_call=0), "tiles_per_call"),
        (dict(tile=8.5), "tile"),
        (dict(overlap=8), "overlap"),
        (dict(seed=-1), "seed"),
        (dict(overlap=0, align_offsets=True), "overlap > 0"),
    ]
    for change, message in bad:
        kwargs = {"x": x, **good, **change}
        with pytest.raises(ValueError, match=message):
            predict_tiled(local_fn, **kwargs)
    with pytest.raises(ValueError, match="num_samples=4"):
        predict_tiled(local_fn, x, tile=8, overlap=2, num_samples=4, seed=0)


def test_predict_tiled_progress_bar(capsys):
    predict_tiled(local_fn, condition(1, 12, 12), 8, 2, K, seed=0, verbose=1)
    assert "4/4" in capsys.readouterr().out


def test_real_model_tiled():
    from tests.conftest import tiny_model

    model = tiny_model()
    model.build((None, 16, 16, 2))

    def sample_fn(batch, seed):
        return model.predict_samples(batch, num_samples=2, num_steps=2, batch_size=6, seed=seed,
                                     verbose=0)

    x = condition(1, 40, 37)
    out = predict_tiled(sample_fn, x, tile=16, overlap=4, num_samples=2, seed=0,
                        align_offsets=True, tiles_per_call=3)
    assert out["mean"].shape == out["std"].shape == (1, 40, 37, 1)
    assert np.all(np.isfinite(out["mean"])) and np.all(np.isfinite(out["std"]))
    assert np.all(out["std"] >= 0)
