"""Tiled inference: posterior mean and std of images too large to sample in one piece.

A large condition image is cut into overlapping tiles (`tile_grid`), each tile is sampled
by a model-agnostic callable, and the per-tile results are blended back (`predict_tiled`).

- Grid: tiles of side `tile` advance by `tile - overlap`; the last row and column are
  placed flush with the image border, so every tile lies inside the image (no padding)
  and any image size works. A side shorter than `tile` gets one tile of that length.
- Window (`blend_window`): a separable weight, 1 inside, falling as a sin² ramp over the
  `overlap` pixels of each side that has a neighbouring tile, and exactly 1 on sides that
  are the image border. The ramp is sampled at pixel centres, so every weight is strictly
  positive; where two neighbours overlap by exactly `overlap` pixels, their ramps sum to
  1 (sin² + cos² = 1). Outputs are normalised by the summed weights, so the larger overlap
  of a flush last tile is still an exact weighted average.
- Blending: with tile mean μ_i, tile std σ_i (ddof=1) and window w_i,
  mean = Σ w_i (μ_i + c_i) / Σ w_i and std = sqrt(Σ w_i σ_i² / Σ w_i).
- Offset alignment (`align_offsets=True`, for quantitative phase, which is known only up
  to a constant per tile): for each pair of horizontal or vertical neighbours (a, b),
  d_ab is the mean of μ_a − μ_b over their overlap; the constants c_i solve
  c_a − c_b ≈ −d_ab in least squares (each equation weighted by the square root of its
  overlap pixel count) with the gauge Σ c_i = 0. The same c_i is added to every sample
  of tile i, so the std is unchanged.
- Memory: each image is processed in one streaming pass with accumulators of the output
  size only (Σ w μ, Σ w σ², Σ w, plus K sample planes with `keep_samples`), and the edge
  strips of μ that later neighbours need, dropped once used. Blending is linear, so the
  offsets are added afterwards in a cheap loop over tile positions (no model calls).
"""

import keras
import numpy as np

from keras_cvdm import validation
from keras_cvdm.metrics import mean_and_std


def _starts(length: int, tile: int, stride: int) -> list[int]:
    """Tile starts along one axis: stride `stride`, the last one flush with the border."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def tile_grid(height: int, width: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Overlapping tiles that cover an image, row-major.

    Args:
        height (int): image height in pixels.
        width (int): image width in pixels.
        tile (int): tile side in pixels (at least 1).
        overlap (int): overlap of neighbouring tiles in pixels, `0 <= overlap < tile`.
            The last row / column is flush with the image border and may overlap its
            neighbour by more.

    Returns:
        list[tuple[int, int, int, int]]: `(top, left, tile_h, tile_w)` of each tile, with
        `tile_h = min(tile, height)` and `tile_w = min(tile, width)`.

    Examples:
        >>> tile_grid(10, 7, tile=4, overlap=1)
        [(0, 0, 4, 4), (0, 3, 4, 4), (3, 0, 4, 4), (3, 3, 4, 4), (6, 0, 4, 4), (6, 3, 4, 4)]
        >>> tile_grid(3, 5, tile=8, overlap=2)
        [(0, 0, 3, 5)]
    """
    height = validation.check_int(height, "height", minimum=1)
    width = validation.check_int(width, "width", minimum=1)
    tile = validation.check_int(tile, "tile", minimum=1)
    overlap = validation.check_int(overlap, "overlap", minimum=0)
    if overlap >= tile:
        raise ValueError(
            f"overlap must be smaller than tile; got overlap={overlap}, tile={tile}. "
            f"Use a smaller overlap (e.g. {tile // 4}) or a larger tile."
        )
    tile_h, tile_w = min(tile, height), min(tile, width)
    return [
        (top, left, tile_h, tile_w)
        for top in _starts(height, tile, tile - overlap)
        for left in _starts(width, tile, tile - overlap)
    ]


def _ramp(length: int, overlap: int, start: bool, end: bool) -> np.ndarray:
    """1-D window: sin² ramps over `overlap` pixels at the start and/or end, 1 elsewhere."""
    weights = np.ones(length)
    n = min(overlap, length)
    rise = np.sin(0.5 * np.pi * (np.arange(n) + 0.5) / max(overlap, 1)) ** 2
    if start:
        weights[:n] *= rise
    if end:
        weights[length - n:] *= rise[::-1]
    return weights


def blend_window(tile_h: int, tile_w: int, overlap: int, top_edge: bool, bottom_edge: bool,
                 left_edge: bool, right_edge: bool) -> np.ndarray:
    """Blending weights of one tile.

    Each `*_edge` flag says whether that side of the tile lies on the image border
    (True: no ramp, weight 1 up to that side) or has a neighbouring tile (False: a sin²
    ramp over `overlap` pixels, sampled at pixel centres). The window is the outer
    product of a vertical and a horizontal ramp.

    Args:
        tile_h (int): tile height.
        tile_w (int): tile width.
        overlap (int): ramp length in pixels (0: all ones).
        top_edge, bottom_edge, left_edge, right_edge (bool): whether each side is the
            image border.

    Returns:
        np.ndarray: float64 `(tile_h, tile_w)`, in `(0, 1]`.

    Examples:
        >>> blend_window(1, 6, 2, True, True, True, False).round(3).tolist()
        [[1.0, 1.0, 1.0, 1.0, 0.854, 0.146]]
    """
    tile_h = validation.check_int(tile_h, "tile_h", minimum=1)
    tile_w = validation.check_int(tile_w, "tile_w", minimum=1)
    overlap = validation.check_int(overlap, "overlap", minimum=0)
    rows = _ramp(tile_h, overlap, not top_edge, not bottom_edge)
    cols = _ramp(tile_w, overlap, not left_edge, not right_edge)
    return np.outer(rows, cols)


def _call_seed(seed: int, image: int, call: int) -> int:
    """A 31-bit seed for one model call, derived from (seed, image index, call index)."""
    state = np.random.SeedSequence(seed, spawn_key=(image, call)).generate_state(1)[0]
    return int(state & 0x7FFFFFFF)


def _checked_samples(samples, batch_shape, num_samples: int) -> np.ndarray:
    samples = validation.to_numpy(samples)
    b, h, w = batch_shape[:3]
    if samples.ndim != 5 or samples.shape[:4] != (b, num_samples, h, w):
        raise ValueError(
            f"sample_fn must return samples (B, num_samples, h, w, Cy) = ({b}, {num_samples}, "
            f"{h}, {w}, Cy) for a batch of shape {tuple(batch_shape)}; got shape "
            f"{samples.shape}. Pass num_samples={num_samples} to the model inside sample_fn."
        )
    return samples


def _solve_offsets(equations, num_tiles: int, channels: int) -> np.ndarray:
    """Least-squares tile constants `(num_tiles, channels)` from `(a, b, d_ab, pixels)`."""
    design = np.zeros((len(equations) + 1, num_tiles))
    rhs = np.zeros((len(equations) + 1, channels))
    for row, (a, b, d, pixels) in enumerate(equations):
        weight = np.sqrt(pixels)
        design[row, a], design[row, b] = weight, -weight
        rhs[row] = -weight * d
    design[-1] = 1.0  # gauge: Σ c_i = 0
    return np.linalg.lstsq(design, rhs, rcond=None)[0]


def predict_tiled(sample_fn, x, tile, overlap, num_samples, seed, *, align_offsets=False,
                  keep_samples=False, tiles_per_call=1, verbose=0) -> dict:
    """Posterior mean and std of large images from overlapping, blended tiles.

    When one tile covers the image (`tile >= H` and `tile >= W`), `sample_fn(x, seed)`
    is called once on the whole batch (all N images; `tiles_per_call` does not apply) and
    the result is exactly the untiled one.
    Otherwise images are processed one at a time, `tiles_per_call` tiles per call, each
    call with its own seed derived from `(seed, image index, call index)`.

    Args:
        sample_fn (callable): `sample_fn(batch, seed)` returns numpy samples
            `(B, num_samples, h, w, Cy)` for conditions `(B, h, w, C)` and an int seed,
            e.g. `lambda b, s: model.predict_samples(b, num_samples=K, seed=s, verbose=0)`.
        x (np.ndarray): conditions `(N, H, W, C)`, float32, already normalised.
        tile (int): tile side in pixels.
        overlap (int): overlap of neighbouring tiles, `0 <= overlap < tile`.
        num_samples (int): the samples `sample_fn` draws per tile (at least 2).
        seed (int): non-negative base seed.
        align_offsets (bool): remove an unknown constant per tile by least squares over
            the overlaps (quantitative phase); needs `overlap > 0` with several tiles.
        keep_samples (bool): also return the blended samples.
        tiles_per_call (int): tiles passed to `sample_fn` at once (at least 1).
        verbose (int): 0 silent, otherwise a progress bar over calls.

    Returns:
        dict: float32 `"mean"` and `"std"` `(N, H, W, Cy)`, and `"samples"`
        `(N, num_samples, H, W, Cy)` with `keep_samples`, else None.

    Examples:
        >>> fn = lambda b, s: np.stack([b[..., :1], b[..., :1] + 2.0], axis=1)
        >>> x = np.ones((1, 10, 7, 2), "float32")
        >>> out = predict_tiled(fn, x, tile=4, overlap=1, num_samples=2, seed=0)
        >>> out["mean"].shape, float(out["mean"].min()), float(out["std"].max())
        ((1, 10, 7, 1), 2.0, 1.4142135...)
    """
    x = np.asarray(x, dtype="float32")
    validation.check_condition_shape(x.shape)
    tile = validation.check_int(tile, "tile", minimum=1)
    overlap = validation.check_int(overlap, "overlap", minimum=0)
    num_samples = validation.check_int(num_samples, "num_samples", minimum=2)
    seed = validation.check_int(seed, "seed", minimum=0)
    tiles_per_call = validation.check_int(tiles_per_call, "tiles_per_call", minimum=1)
    n_images, height, width = x.shape[:3]
    grid = tile_grid(height, width, tile, overlap)

    if len(grid) == 1:
        samples = _checked_samples(sample_fn(x, seed), x.shape, num_samples)
        mean, std = mean_and_std(samples, axis=1)
        return {
            "mean": mean.astype("float32", copy=False),
            "std": std.astype("float32", copy=False),
            "samples": samples.astype("float32", copy=False) if keep_samples else None,
        }
    if align_offsets and overlap == 0:
        raise ValueError(
            "align_offsets needs overlapping tiles to compare; got overlap=0 with "
            f"{len(grid)} tiles. Pass overlap > 0 (e.g. {max(1, tile // 8)})."
        )

    tops = sorted({t[0] for t in grid})
    lefts = sorted({t[1] for t in grid})
    n_cols = len(lefts)
    tile_h, tile_w = grid[0][2:]
    windows = {}  # the window for each combination of border sides (at most 9)

    def window(index):
        r, c = divmod(index, n_cols)
        key = (r == 0, r == len(tops) - 1, c == 0, c == n_cols - 1)
        if key not in windows:
            windows[key] = blend_window(tile_h, tile_w, overlap, *key)
        return windows[key]

    calls = range(0, len(grid), tiles_per_call)
    bar = keras.utils.Progbar(n_images * len(calls), verbose=0 if verbose == 0 else 1)
    results = {"mean": [], "std": [], "samples": [] if keep_samples else None}
    for n in range(n_images):
        sum_w = np.zeros((height, width, 1))
        sum_wm = sum_wv = sum_ws = None
        strips = {}  # (kind, tile index) -> edge strip of μ of the tile before/above it
        equations = []  # (a, b, d_ab, overlap pixels)
        for call, first in enumerate(calls):
            group = list(range(first, min(first + tiles_per_call, len(grid))))
            batch = np.stack([
                x[n, top:top + tile_h, left:left + tile_w] for top, left, _, _ in
                (grid[i] for i in group)
            ])
            samples = _checked_samples(
                sample_fn(batch, _call_seed(seed, n, call)), batch.shape, num_samples
            ).astype("float64")
            means, stds = mean_and_std(samples, axis=1)
            if sum_wm is None:
                channels = samples.shape[-1]
                sum_wm = np.zeros((height, width, channels))
                sum_wv = np.zeros((height, width, channels))
                if keep_samples:
                    sum_ws = np.zeros((num_samples, height, width, channels))
            for j, i in enumerate(group):
                top, left = grid[i][:2]
                rows, cols = slice(top, top + tile_h), slice(left, left + tile_w)
                w = window(i)[..., None]
                sum_w[rows, cols] += w
                sum_wm[rows, cols] += w * means[j]
                sum_wv[rows, cols] += w * stds[j] ** 2
                if keep_samples:
                    sum_ws[:, rows, cols] += w * samples[j]
                if align_offsets:
                    _compare_neighbours(i, means[j], grid, n_cols, strips, equations)
            bar.update(n * len(calls) + call + 1)
        if align_offsets:
            offsets = _solve_offsets(equations, len(grid), sum_wm.shape[-1])
            for i, (top, left, _, _) in enumerate(grid):
                rows, cols = slice(top, top + tile_h), slice(left, left + tile_w)
                shift = window(i)[..., None] * offsets[i]
                sum_wm[rows, cols] += shift
                if keep_samples:
                    sum_ws[:, rows, cols] += shift
        results["mean"].append(sum_wm / sum_w)
        results["std"].append(np.sqrt(sum_wv / sum_w))
        if keep_samples:
            results["samples"].append(sum_ws / sum_w)
    return {
        key: None if value is None else np.stack(value).astype("float32")
        for key, value in results.items()
    }


def _compare_neighbours(index, mean, grid, n_cols, strips, equations):
    """Record d_ab with the tiles left of and above `index`; keep strips for later ones."""
    top, left, tile_h, tile_w = grid[index]
    r, c = divmod(index, n_cols)
    for kind, other in (("left", index - 1 if c > 0 else None),
                        ("above", index - n_cols if r > 0 else None)):
        if other is None:
            continue
        strip = strips.pop((kind, index))
        mine = mean[:, :strip.shape[1]] if kind == "left" else mean[:strip.shape[0]]
        pixels = strip.shape[0] * strip.shape[1]
        equations.append((other, index, np.mean(strip - mine, axis=(0, 1)), pixels))
    if c < n_cols - 1:  # right neighbour: the columns it shares with this tile
        strips[("left", index + 1)] = mean[:, grid[index + 1][1] - left:]
    if index + n_cols < len(grid):  # neighbour below: the rows it shares
        strips[("above", index + n_cols)] = mean[grid[index + n_cols][0] - top:]
