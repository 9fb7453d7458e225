"""The one data augmentation of the package: a random flip and quarter-turn rotation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def augment(
    image: np.ndarray | Sequence[np.ndarray],
    rng: np.random.Generator,
    axes: tuple[int, int] = (-2, -1),
) -> np.ndarray | tuple[np.ndarray, ...]:
    """Random dihedral transform of two axes: a rotation by k·90° and an optional flip.

    Non-square images only get 0° or 180° rotations, so their shape is kept. Exactly two
    integers are drawn from `rng` whatever the input, so the random stream does not
    depend on the image. Pass several arrays (a tuple or list) to give them all the same
    transform, e.g. an input and its target.

    Args:
        image (np.ndarray | Sequence[np.ndarray]): an array, or a sequence of arrays whose
            `axes` have the same sizes.
        rng (np.random.Generator): the random generator.
        axes (tuple[int, int]): the `(row, column)` axes to transform: `(-2, -1)` for
            `(..., H, W)` arrays, `(0, 1)` for channels-last `(H, W, C)` images.

    Returns:
        np.ndarray | tuple[np.ndarray, ...]: the transformed array (a contiguous copy), or
        a tuple of them for a sequence input.

    Examples:
        >>> import numpy as np
        >>> augment(np.zeros((8, 8)), np.random.default_rng(0)).shape
        (8, 8)
        >>> x = np.arange(12.0).reshape(3, 4, 1)
        >>> a, b = augment((x, 2 * x), np.random.default_rng(1), axes=(0, 1))
        >>> a.shape, bool(np.array_equal(b, 2 * a))
        ((3, 4, 1), True)
    """
    images = [image] if isinstance(image, np.ndarray) else [np.asarray(a) for a in image]
    k, flip = int(rng.integers(4)), int(rng.integers(2))
    rows, cols = (images[0].shape[axis] for axis in axes)
    if rows != cols:
        k = 2 * (k % 2)
    out = []
    for a in images:
        a = np.rot90(a, k, axes=axes)
        if flip:
            a = np.flip(a, axis=axes[1])
        out.append(np.ascontiguousarray(a))
    return out[0] if isinstance(image, np.ndarray) else tuple(out)
