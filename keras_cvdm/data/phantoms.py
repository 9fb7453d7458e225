"""Seeded synthetic phantoms: cells, random fields, filaments, puncta, rings, shapes, textures.

Every generator has the signature `generator(image_size, seed) -> (H, W) float32` and
returns a map min-max normalised to exactly `[0, 1]` (the reference implementation's
data convention: a phase target is this map times 3.5 rad). `seed` is an integer, a
`numpy.random.Generator` or `None` (fresh entropy); the same integer seed always gives
the same phantom. Rendering is periodic (FFT blurs wrap around the borders), consistent
with the FFT-based optics in `keras_cvdm.physics`.

Sizes are relative to the image size where the structure is image-scale (cells, shapes,
texture leaves) and in pixels where it is set by the optics (filament and punctum widths),
so the same generators serve 64×64 training crops and 512×512 test images.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from keras_cvdm import imaging
from keras_cvdm.imaging import SeedLike

ImageSize = int | tuple[int, int]


def _setup(image_size: ImageSize, seed: SeedLike) -> tuple[tuple[int, int], np.random.Generator]:
    """The `(H, W)` of a phantom (sides >= 8) and its random generator."""
    shape = imaging.image_shape(image_size)
    if min(shape) < 8:
        raise ValueError(f"`image_size` must have sides >= 8, got {image_size}.")
    return shape, imaging.rng(seed)


def _normalize01(img: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(img)), float(np.max(img))
    if hi - lo < 1e-12:
        return np.zeros(img.shape, dtype=np.float32)
    return ((img - lo) / (hi - lo)).astype(np.float32)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Periodic Gaussian blur of the last two axes (FFT), standard deviation in pixels.

    Args:
        image (np.ndarray): array `(..., H, W)`.
        sigma (float): standard deviation in pixels (0 returns the image unchanged).

    Returns:
        np.ndarray: float64 blurred array, same shape; the sum is conserved.

    Examples:
        >>> import numpy as np
        >>> img = np.zeros((16, 16)); img[0, 0] = 1.0
        >>> round(float(gaussian_blur(img, 2.0).sum()), 6)
        1.0
    """
    image = np.asarray(image, dtype=np.float64)
    if sigma <= 0:
        return image
    fy = np.fft.fftfreq(image.shape[-2])[:, None]
    fx = np.fft.rfftfreq(image.shape[-1])[None, :]
    kernel = np.exp(-2.0 * (np.pi * sigma) ** 2 * (fx**2 + fy**2))
    spectrum = np.fft.rfft2(image, axes=(-2, -1)) * kernel
    return np.fft.irfft2(spectrum, s=image.shape[-2:], axes=(-2, -1))


def _splat(shape: tuple[int, int], ys: np.ndarray, xs: np.ndarray, weights) -> np.ndarray:
    """Accumulate point masses with bilinear weights on a periodic grid."""
    h, w = shape
    img = np.zeros(shape, dtype=np.float64)
    y0, x0 = np.floor(ys), np.floor(xs)
    dy, dx = ys - y0, xs - x0
    y0, x0 = y0.astype(np.int64), x0.astype(np.int64)
    weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), ys.shape)
    for oy, wy in ((0, 1 - dy), (1, dy)):
        for ox, wx in ((0, 1 - dx), (1, dx)):
            np.add.at(img, ((y0 + oy) % h, (x0 + ox) % w), weights * wy * wx)
    return img


def _power_law_noise(rng: np.random.Generator, shape: tuple[int, int], exponent: float):
    """Zero-mean, unit-std noise with power spectrum ∝ 1/f^exponent."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    amplitude = f ** (-exponent / 2.0)
    amplitude[0, 0] = 0.0
    white = np.fft.rfft2(rng.standard_normal(shape))
    field = np.fft.irfft2(white * amplitude, s=shape)
    return field / (np.std(field) + 1e-12)


def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.meshgrid(
        np.arange(shape[0], dtype=np.float64), np.arange(shape[1], dtype=np.float64), indexing="ij"
    )
    return yy, xx


def cells(image_size: ImageSize = 64, seed: SeedLike = None) -> np.ndarray:
    """Adherent cells: ellipsoidal phase caps with irregular outlines, nuclei and texture.

    Each cell is the height profile `h·sqrt(1 - r²)` of an ellipsoid (optical thickness
    of a cell lying on a coverslip), with a wobbly outline (low-order angular harmonics),
    a raised nucleus (a second, smaller cap) with nucleoli, and smooth cytoplasmic texture.
    Overlapping cells take the maximum (they crowd, they do not stack).

    Args:
        image_size (int | tuple[int, int]): side length or `(H, W)`; cell sizes scale with the
            image.
        seed (int | np.random.Generator | None): integer seed, generator, or `None`.

    Returns:
        np.ndarray: float32 `(H, W)` optical-thickness map in `[0, 1]` (min 0, max 1).

    Examples:
        >>> img = cells(64, seed=0)
        >>> img.shape, float(img.min()), float(img.max())
        ((64, 64), 0.0, 1.0)
    """
    shape, rng = _setup(image_size, seed)
    size = min(shape)
    yy, xx = _grid(shape)
    img = np.zeros(shape)
    for _ in range(int(rng.integers(1, 6))):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        a = rng.uniform(0.12, 0.32) * size
        b = a * rng.uniform(0.45, 1.0)
        theta = rng.uniform(0, np.pi)
        # Distances to the centre with periodic wrap (cells may cross the border).
        dy = (yy - cy + shape[0] / 2) % shape[0] - shape[0] / 2
        dx = (xx - cx + shape[1] / 2) % shape[1] - shape[1] / 2
        u = (dx * np.cos(theta) + dy * np.sin(theta)) / a
        v = (-dx * np.sin(theta) + dy * np.cos(theta)) / b
        angle = np.arctan2(v, u)
        wobble = 1.0
        for k in range(2, 6):
            wobble = wobble + rng.normal(0, 0.06 / k * 2) * np.cos(k * angle + rng.uniform(0, 6.3))
        r2 = (u**2 + v**2) / wobble**2
        cap = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
        inside = (r2 < 1.0).astype(np.float64)
        texture = gaussian_blur(rng.standard_normal(shape), rng.uniform(1.0, 3.0))
        texture = texture / (np.std(texture) + 1e-12)
        cell = rng.uniform(0.5, 1.0) * cap * (1.0 + rng.uniform(0.0, 0.15) * texture * inside)
        # Nucleus: an off-centre smaller cap inside the cell, plus a few nucleoli.
        nu0, nv0 = rng.uniform(-0.3, 0.3, size=2)
        na, nb = rng.uniform(0.3, 0.5), rng.uniform(0.3, 0.5)
        nr2 = ((u - nu0) / na) ** 2 + ((v - nv0) / nb) ** 2
        nucleus = np.sqrt(np.clip(1.0 - nr2, 0.0, 1.0))
        cell = cell + rng.uniform(0.1, 0.4) * nucleus
        for _ in range(int(rng.integers(0, 4))):
            ou, ov = rng.uniform(-0.6, 0.6, size=2)
            blob = ((u - nu0 - ou * na) ** 2 + (v - nv0 - ov * nb) ** 2) / (0.08**2)
            cell = cell + rng.uniform(0.05, 0.2) * np.exp(-blob) * (nr2 < 1.0)
        img = np.maximum(img, cell)
    return _normalize01(gaussian_blur(img, 0.5))


def gaussian_random_field(image_size: ImageSize = 64, seed: SeedLike = None) -> np.ndarray:
    """Smooth Gaussian random field: power-law (1/f^β, β ∈ [2, 4.5]) or Gaussian-correlated.

    Args:
        image_size (int | tuple[int, int]): side length or `(H, W)`; the correlation length scales
            with the image.
        seed (int | np.random.Generator | None): integer seed, generator, or `None`.

    Returns:
        np.ndarray: float32 `(H, W)` smooth field, min-max scaled to `[0, 1]`.

    Examples:
        >>> gaussian_random_field((32, 48), seed=1).shape
        (32, 48)
    """
    shape, rng = _setup(image_size, seed)
    if rng.uniform() < 0.5:
        field = _power_law_noise(rng, shape, rng.uniform(2.0, 4.5))
    else:
        field = gaussian_blur(rng.standard_normal(shape), rng.uniform(0.03, 0.15) * min(shape))
    return _normalize01(field)


def _curve_points(rng, shape, length, persistence, start=None):
    """Points (0.5 px apart) of a worm-like chain of `length` pixels."""
    n = max(int(length / 0.5), 2)
    theta0 = rng.uniform(0, 2 * np.pi)
    turn = rng.normal(0.0, persistence, size=n)
    turn += rng.normal(0.0, persistence * 0.2)  # slight overall curvature
    theta = theta0 + np.cumsum(turn)
    if start is None:
        start = (rng.uniform(0, shape[0]), rng.uniform(0, shape[1]))
    ys = start[0] + 0.5 * np.cumsum(np.sin(theta))
    xs = start[1] + 0.5 * np.cumsum(np.cos(theta))
    return ys, xs


def filaments(image_size: ImageSize = 64, seed: SeedLike = None) -> np.ndarray:
    """Microtubule-like filaments: long worm-like chains, 1–3 px wide, on a faint haze.

    Args:
        image_size (int | tuple[int, int]): side length or `(H, W)`; widths are in pixels; the
            number of filaments grows with the area.
        seed (int | np.random.Generator | None): integer seed, generator, or `None`.

    Returns:
        np.ndarray: float32 `(H, W)` filament density in `[0, 1]`, crossings saturated.

    Examples:
        >>> float(filaments(64, seed=0).max())
        1.0
    """
    shape, rng = _setup(image_size, seed)
    size = min(shape)
    area_scale = shape[0] * shape[1] / 64.0**2
    ys_all, xs_all, w_all = [], [], []
    for _ in range(int(rng.integers(3, 12) * max(area_scale, 0.5) ** 0.5) + 1):
        ys, xs = _curve_points(rng, shape, rng.uniform(0.4, 1.5) * size, rng.uniform(0.01, 0.08))
        ys_all.append(ys)
        xs_all.append(xs)
        w_all.append(np.full(ys.shape, rng.uniform(0.4, 1.0)))
    ys, xs, w = np.concatenate(ys_all), np.concatenate(xs_all), np.concatenate(w_all)
    sigma = rng.uniform(0.6, 1.4)
    lines = gaussian_blur(_splat(shape, ys, xs, w * 0.5), sigma)
    lines = lines * np.sqrt(2 * np.pi) * sigma  # a single line of weight 1 peaks near 1
    lines = 1.0 - np.exp(-1.5 * lines)  # crossings saturate instead of doubling
    haze = gaussian_blur(rng.standard_normal(shape), 0.1 * size)
    haze = (haze - haze.min()) / (np.ptp(haze) + 1e-12)
    return _normalize01(lines + rng.uniform(0.0, 0.15) * haze)


def puncta(image_size: ImageSize = 64, seed: SeedLike = None) -> np.ndarray:
    """Diffraction-scale spots (vesicles, single molecules) of random brightness.

    Args:
        image_size (int | tuple[int, int]): side length or `(H, W)`; spot widths are in pixels; the
            number of spots grows with the area.
        seed (int | np.random.Generator | None): integer seed, generator, or `None`.

    Returns:
        np.ndarray: float32 `(H, W)` spot density in `[0, 1]`, overlaps saturated.

    Examples:
        >>> spots = puncta(64, seed=0)
        >>> spots.shape, float(spots.max())
        ((64, 64), 1.0)
    """
    shape, rng = _setup(image_size, seed)
    density = rng.uniform(0.002, 0.02)  # spots per pixel
    n = max(int(density * shape[0] * shape[1]), 3)
    ys, xs = rng.uniform(0, shape[0], n), rng.uniform(0, shape[1], n)
    sigma = rng.uniform(0.7, 2.0)
    spots = gaussian_blur(_splat(shape, ys, xs, rng.uniform(0.2, 1.0, n)), sigma)
    spots = 1.0 - np.exp(-2.0 * spots * 2 * np.pi * sigma**2)
    return _normalize01(spots)


def rings(image_size: ImageSize = 64, seed: SeedLike = None) -> np.ndarray:
    """Clathrin-coated-pit-like rings and arcs (radius 1.5–6 px) with some filled spots.

    Args:
        image_size (int | tuple[int, int]): side length or `(H, W)`; ring radii are in pixels,
            1.5–6 px.
        seed (int | np.random.Generator | None): integer seed, generator, or `None`.

    Returns:
        np.ndarray: float32 `(H, W)` density of rings and arcs in `[0, 1]`.

    Examples:
        >>> bool(rings(48, seed=2).min() == 0.0)
        True
    """
    shape, rng = _setup(image_size, seed)
    n = max(int(rng.uniform(0.001, 0.008) * shape[0] * shape[1]), 2)
    ys_all, xs_all, w_all = [], [], []
    for _ in range(n):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        radius = rng.uniform(1.5, 6.0)
        arc = rng.uniform(0.5, 1.0) * 2 * np.pi if rng.uniform() < 0.5 else 2 * np.pi
        m = max(int(arc * radius / 0.5), 4)
        phi = rng.uniform(0, 2 * np.pi) + np.linspace(0, arc, m, endpoint=False)
        ys_all.append(cy + radius * np.sin(phi))
        xs_all.append(cx + radius * np.cos(phi))
        w_all.append(np.full(m, rng.uniform(0.3, 1.0)))
    ys, xs, w = np.concatenate(ys_all), np.concatenate(xs_all), np.concatenate(w_all)
    sigma = rng.uniform(0.5, 1.0)
    img = gaussian_blur(_splat(shape, ys, xs, w * 0.5), sigma) * np.sqrt(2 * np.pi) * sigma
    return _normalize01(1.0 - np.exp(-1.5 * img))


def _polygon_mask(yy, xx, vertices_y, vertices_x):
    """Even-odd rule point-in-polygon test on the grid."""
    inside = np.zeros(yy.shape, dtype=bool)
    n = len(vertices_y)
    for i in range(n):
        y1, x1 = vertices_y[i], vertices_x[i]
        y2, x2 = vertices_y[(i + 1) % n], vertices_x[(i + 1) % n]
        crosses = (y1 > yy) != (y2 > yy)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = (x2 - x1) * (yy - y1) / (y2 - y1) + x1
        inside ^= crosses & (xx < x_cross)
    return inside


def shapes(image_size: ImageSize = 64, seed: SeedLike = None) -> np.ndarray:
    """Sharp-edged piecewise-constant scenes: discs, rotated rectangles and polygons.

    Shapes are painted back to front (later ones occlude earlier ones), each with its own
    level, then anti-aliased with a 0.5 px blur.

    Args:
        image_size (int | tuple[int, int]): side length or `(H, W)`; shape sizes are 5–30 % of the
            smaller side.
        seed (int | np.random.Generator | None): integer seed, generator, or `None`.

    Returns:
        np.ndarray: float32 `(H, W)` piecewise-constant map in `[0, 1]` with anti-aliased edges.

    Examples:
        >>> shapes(64, seed=0).shape
        (64, 64)
    """
    shape, rng = _setup(image_size, seed)
    size = min(shape)
    yy, xx = _grid(shape)
    img = np.full(shape, rng.uniform(0.0, 0.3))
    for _ in range(int(rng.integers(3, 12))):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        r = rng.uniform(0.05, 0.3) * size
        kind = rng.integers(0, 3)
        if kind == 0:
            q = rng.uniform(0.5, 1.0)
            t = rng.uniform(0, np.pi)
            u = ((xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)) / r
            v = (-(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)) / (q * r)
            mask = u**2 + v**2 < 1.0
        elif kind == 1:
            t = rng.uniform(0, np.pi)
            half_w, half_h = r, r * rng.uniform(0.2, 1.0)
            u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
            v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
            mask = (np.abs(u) < half_w) & (np.abs(v) < half_h)
        else:
            m = int(rng.integers(3, 8))
            angles = np.sort(rng.uniform(0, 2 * np.pi, m))
            radii = r * rng.uniform(0.5, 1.0, m)
            mask = _polygon_mask(yy, xx, cy + radii * np.sin(angles), cx + radii * np.cos(angles))
        img = np.where(mask, rng.uniform(0.0, 1.0), img)
    return _normalize01(gaussian_blur(img, 0.5))


def strokes(image_size: ImageSize = 64, seed: SeedLike = None) -> np.ndarray:
    """Text-like strokes: short curved pen strokes of constant width with sharp edges.

    Args:
        image_size (int | tuple[int, int]): side length or `(H, W)`; strokes are 1 px plus up to 6 %
            of the smaller side wide.
        seed (int | np.random.Generator | None): integer seed, generator, or `None`.

    Returns:
        np.ndarray: float32 `(H, W)` ink map in `[0, 1]`: a background and one stroke level.

    Examples:
        >>> ink = strokes(64, seed=0)
        >>> float(ink.min()), float(ink.max())
        (0.0, 1.0)
    """
    shape, rng = _setup(image_size, seed)
    size = min(shape)
    width = rng.uniform(1.0, 0.06 * size + 1.0)
    ys_all, xs_all = [], []
    for _ in range(int(rng.integers(3, 10))):
        start = (rng.uniform(0, shape[0]), rng.uniform(0, shape[1]))
        for _ in range(int(rng.integers(1, 4))):  # a "glyph": a few joined strokes
            ys, xs = _curve_points(
                rng, shape, rng.uniform(0.1, 0.4) * size, rng.uniform(0.0, 0.15), start=start
            )
            ys_all.append(ys)
            xs_all.append(xs)
            start = (ys[-1], xs[-1])
    ys, xs = np.concatenate(ys_all), np.concatenate(xs_all)
    ink = gaussian_blur(_splat(shape, ys, xs, 1.0), width / 2.0)
    ink = ink * np.sqrt(2 * np.pi) * (width / 2.0) * 0.5  # ≈ 1 on a stroke's axis
    mask = (ink > 0.35).astype(np.float64)
    background = rng.uniform(0.0, 0.2)
    level = rng.uniform(0.6, 1.0)
    img = background + (level - background) * mask
    return _normalize01(gaussian_blur(img, 0.5))


def textures(image_size: ImageSize = 64, seed: SeedLike = None) -> np.ndarray:
    """Natural-image-like multi-scale texture: a textured dead-leaves model plus 1/f noise.

    Discs with a power-law size distribution (radii from 1 px to a third of the image,
    density ∝ r⁻³, the scale-invariant dead-leaves model of natural images) occlude each
    other; each carries its own grey level and fine texture, and a 1/f² noise is added on
    top. Edges, flat regions and textures at all scales, like a grayscale photograph.

    Args:
        image_size (int | tuple[int, int]): side length or `(H, W)`; leaf radii span 1 px to a third
            of the smaller side.
        seed (int | np.random.Generator | None): integer seed, generator, or `None`.

    Returns:
        np.ndarray: float32 `(H, W)` grey-level map in `[0, 1]`.

    Examples:
        >>> textures((48, 64), seed=0).shape
        (48, 64)
    """
    shape, rng = _setup(image_size, seed)
    size = min(shape)
    yy, xx = _grid(shape)
    img = np.full(shape, rng.uniform())
    r_min, r_max = 1.0, size / 3.0
    n = int(rng.integers(40, 160) * shape[0] * shape[1] / 64.0**2) + 10
    # Inverse-CDF sampling of p(r) ∝ r^-3 on [r_min, r_max], biggest leaves first.
    u = rng.uniform(size=n)
    radii = (r_min**-2 - u * (r_min**-2 - r_max**-2)) ** -0.5
    radii = np.sort(radii)[::-1]
    fine = _power_law_noise(rng, shape, 2.0)
    for r in radii:
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        y0, y1 = int(max(cy - r - 1, 0)), int(min(cy + r + 2, shape[0]))
        x0, x1 = int(max(cx - r - 1, 0)), int(min(cx + r + 2, shape[1]))
        if y1 <= y0 or x1 <= x0:
            continue
        sub_y, sub_x = yy[y0:y1, x0:x1], xx[y0:y1, x0:x1]
        mask = (sub_y - cy) ** 2 + (sub_x - cx) ** 2 < r**2
        level = rng.uniform() + rng.uniform(0, 0.15) * fine[y0:y1, x0:x1]
        img[y0:y1, x0:x1] = np.where(mask, level, img[y0:y1, x0:x1])
    img = img + rng.uniform(0.0, 0.15) * _power_law_noise(rng, shape, rng.uniform(1.5, 2.5))
    return _normalize01(gaussian_blur(img, rng.uniform(0.3, 1.0)))


PHANTOMS: dict[str, Callable[[ImageSize, SeedLike], np.ndarray]] = {
    "cells": cells,
    "gaussian_random_field": gaussian_random_field,
    "filaments": filaments,
    "puncta": puncta,
    "rings": rings,
    "shapes": shapes,
    "strokes": strokes,
    "textures": textures,
}
"""Registry of phantom generators by name."""

QPI_DEFAULT_MIX: dict[str, float] = {
    "cells": 0.3,
    "gaussian_random_field": 0.15,
    "shapes": 0.15,
    "strokes": 0.1,
    "textures": 0.2,
    "filaments": 0.04,
    "puncta": 0.03,
    "rings": 0.03,
}
"""Default phantom mix for QPI: broad, so a model does not overfit one kind."""

SR_DEFAULT_MIX: dict[str, float] = {
    "filaments": 0.3,
    "puncta": 0.2,
    "rings": 0.2,
    "cells": 0.1,
    "textures": 0.1,
    "shapes": 0.1,
}
"""Default phantom mix for fluorescence super-resolution (BioSR-like structures)."""


def normalize_mix(mix: Mapping[str, float] | str | list | tuple | None, default) -> dict:
    """Validate a phantom mix and return it as `{name: probability}` summing to 1.

    Args:
        mix (Mapping[str, float] | str | list | tuple | None): a mapping name → weight, a
            single name, a list of names (equal weights), or `None` for `default`.
        default (Mapping[str, float] | None): the mix used for `None`.

    Returns:
        dict: `{name: probability}`, the probabilities summing to 1.

    Examples:
        >>> normalize_mix(["cells", "shapes"], None)
        {'cells': 0.5, 'shapes': 0.5}
    """
    if mix is None:
        mix = default
    if isinstance(mix, str):
        mix = {mix: 1.0}
    elif isinstance(mix, list | tuple):
        mix = {name: 1.0 for name in mix}
    unknown = [name for name in mix if name not in PHANTOMS]
    if unknown:
        raise ValueError(f"Unknown phantom kind(s) {unknown}; choose from {sorted(PHANTOMS)}.")
    weights = {name: float(w) for name, w in mix.items()}
    total = sum(weights.values())
    if total <= 0 or any(w < 0 for w in weights.values()):
        raise ValueError(f"Phantom mix weights must be >= 0 with a positive sum, got {mix}.")
    return {name: w / total for name, w in weights.items()}


def random_phantom(
    image_size: ImageSize = 64,
    seed: SeedLike = None,
    mix: Mapping[str, float] | str | list | None = None,
) -> tuple[np.ndarray, str]:
    """Draw a phantom kind from `mix`, then a phantom of that kind.

    Args:
        image_size (int | tuple[int, int]): side length, or `(H, W)`.
        seed (int | np.random.Generator | None): integer seed, `numpy.random.Generator`, or `None`.
        mix (Mapping[str, float] | str | list | None): phantom mix (see `normalize_mix`); default
            `QPI_DEFAULT_MIX`.

    Returns:
        tuple[np.ndarray, str]: `(phantom, kind)`: float32 `(H, W)` map in `[0, 1]` and the kind's
            name.

    Examples:
        >>> img, kind = random_phantom(32, seed=3)
        >>> img.shape, kind in PHANTOMS
        ((32, 32), True)
    """
    rng = imaging.rng(seed)
    probs = normalize_mix(mix, QPI_DEFAULT_MIX)
    names = list(probs)
    kind = names[int(rng.choice(len(names), p=[probs[n] for n in names]))]
    return PHANTOMS[kind](image_size, rng), kind
