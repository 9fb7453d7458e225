"""Image input/output: PNG (Pillow) and TIFF (tifffile), float data kept.

Reading (`read_image`, `read_stack`):

- Float data (TIFF float32/float64) is returned unchanged.
- Integer data is converted to float32 with a fixed scaling unless `scale=False`:
  `uint8 / 255` and `uint16 / 65535` (so both land in `[0, 1]`); other integer types
  (int16, int32, uint32) and booleans are cast to float32 without scaling.
- Arrays are `(H, W)` or channels-last `(H, W, C)`; multi-page TIFFs are stacks
  `(N, H, W[, C])`. Colour is known from the file, never guessed from the shape: a
  TIFF's samples axis (RGB, RGBA, extra samples; planar files too) comes last, a
  PNG/JPEG's RGB, RGBA or grey + alpha bands are its channels, and every other axis
  of a TIFF is a page axis.
- `as_gray=True` converts colour to luminance image by image (`to_grayscale`: RGB with
  the BT.601 weights, alpha dropped, grey + alpha keeps the grey band); grey images
  and grey multi-page stacks are already single planes and come back unchanged, so a
  stack `(N, H, W)` or `(N, H, W, 3)` gives `(N, H, W)`.

Writing (`write_image`, `write_stack`):

- TIFF keeps the array's dtype (float32 round-trips exactly).
- PNG stores integers only: uint8 and uint16 arrays are written as they are; float
  arrays must lie in `[0, 1]` and are written as `round(x · 65535)` in a 16-bit PNG
  (`dtype="uint16"`, the default) or `round(x · 255)` (`dtype="uint8"`), so reading them
  back with `scale=True` returns `x` to within half a quantisation step.
- An existing file is never replaced unless `overwrite=True`.

Pillow and tifffile are optional dependencies, imported when first needed
(`pip install keras-cvdm[io]`).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np

PNG_EXTENSIONS = (".png",)
TIFF_EXTENSIONS = (".tif", ".tiff")
PILLOW_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
IMAGE_EXTENSIONS = TIFF_EXTENSIONS + PILLOW_EXTENSIONS
"""File extensions `read_image` understands (case-insensitive)."""

_INSTALL_HINT = "Install the image IO extra: pip install keras-cvdm[io]"


def _optional_module(name: str, purpose: str):
    """Import an optional dependency, or say which extra installs it."""
    try:
        return importlib.import_module(name)
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"{purpose} needs `{name}`. {_INSTALL_HINT}") from err


def _import_tifffile():
    return _optional_module("tifffile", "Reading and writing TIFF files")


def _import_pillow():
    return _optional_module("PIL.Image", "Reading and writing PNG/JPEG files (Pillow)")


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        raise ValueError(
            f"Unsupported image file type {suffix!r} for {path}; use one of {IMAGE_EXTENSIONS}."
        )
    return suffix


def _scale(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255.0)
    if image.dtype == np.uint16:
        return image.astype(np.float32) / np.float32(65535.0)
    if np.issubdtype(image.dtype, np.floating):
        return image
    if np.issubdtype(image.dtype, np.complexfloating):
        raise ValueError(
            f"The file holds complex values ({image.dtype}); images are read as real "
            "numbers. Save the quantity you need (e.g. np.abs(field) ** 2, or .real) instead."
        )
    return image.astype(np.float32)


def to_grayscale(image: np.ndarray) -> np.ndarray:
    """Channels-last colour image → luminance (ITU-R BT.601 weights); 2-D input unchanged.

    An alpha channel (4th) is dropped; 2-channel images (gray + alpha) keep channel 0.

    Args:
        image (np.ndarray): `(H, W)` or `(H, W, C)`.

    Returns:
        np.ndarray: `(H, W)` float array (float32 for integer input).

    Examples:
        >>> import numpy as np
        >>> to_grayscale(np.ones((2, 2, 3))).shape
        (2, 2)
    """
    image = np.asarray(image)
    if image.ndim == 2:
        return image
    if image.ndim != 3:
        raise ValueError(
            f"Expected (H, W) or (H, W, C), got shape {image.shape}; for a stack of colour "
            "images, convert each: np.stack([to_grayscale(im) for im in stack])."
        )
    return _luminance(image)


def _luminance(image: np.ndarray) -> np.ndarray:
    """`to_grayscale` over the last (colour) axis of an array of any rank."""
    channels = image.shape[-1]
    if not 1 <= channels <= 4:
        raise ValueError(
            f"An image with {channels} channels (shape {image.shape}) is not grey + alpha, "
            "RGB or RGBA, so it has no luminance; if the last axis is not colour (a stack "
            "(N, H, W) has no channel axis), leave the array as it is, or pick a channel "
            "with image[..., c]."
        )
    dtype = image.dtype if np.issubdtype(image.dtype, np.floating) else np.float32
    if channels in (1, 2):
        return image[..., 0].astype(dtype)
    weights = np.array([0.299, 0.587, 0.114])
    return (image[..., :3].astype(np.float64) @ weights).astype(dtype)


def read_image(path: str | os.PathLike, *, scale: bool = True, as_gray: bool = False) -> np.ndarray:
    """Read a PNG, JPEG, BMP or TIFF image.

    Args:
        path (str | os.PathLike): image file.
        scale (bool): convert uint8/uint16 to float32 in `[0, 1]` (see the module docstring);
            `False` returns the stored integers.
        as_gray (bool): convert colour to luminance (`to_grayscale`), image by image;
            grey images and grey stacks are returned unchanged.

    Returns:
        np.ndarray: The image, `(H, W)` or `(H, W, C)`; a multi-page TIFF gives its whole
        stack `(N, H, W[, C])`. With `as_gray`, colour becomes luminance per image and
        grey data comes back unchanged (see the module docstring): `(H, W)` or `(N, H, W)`.

    Examples:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "a.tif")
        >>> _ = write_image(path, np.full((4, 4), 0.25, np.float32))
        >>> float(read_image(path)[0, 0])
        0.25
        >>> _ = write_stack(os.path.join(os.path.dirname(path), "s.tif"), np.ones((3, 4, 4)))
        >>> read_image(os.path.join(os.path.dirname(path), "s.tif"), as_gray=True).shape
        (3, 4, 4)
    """
    image, colour = _read_with_colour(path)
    if scale:
        image = _scale(image)
    if as_gray and colour:
        image = _luminance(image)
    return image


def _read_with_colour(path: str | os.PathLike) -> tuple[np.ndarray, bool]:
    """`(image, colour)`: the stored array, colour samples last, and whether it has them."""
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise FileNotFoundError(f"Image file {path} does not exist.")
    if suffix in TIFF_EXTENSIONS:
        with _import_tifffile().TiffFile(path) as tif:
            series = tif.series[0]
            image, axes = np.asarray(series.asarray()), series.axes
        colour = "S" in axes and image.ndim == len(axes)
        if colour and axes.index("S") != image.ndim - 1:  # planar: samples before Y, X
            image = np.moveaxis(image, axes.index("S"), -1)
        return image, colour
    Image = _import_pillow()
    with Image.open(path) as img:
        if img.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
            img = img.convert(
                "RGBA" if "A" in img.mode or "transparency" in img.info else "RGB"
            )
        image = np.asarray(img)
        if img.mode == "I" and image.size and image.min() >= 0 and image.max() <= 65535:
            image = image.astype(np.uint16)  # 16-bit PNGs that Pillow opened as int32
    return image, image.ndim == 3


def read_stack(path: str | os.PathLike, *, scale: bool = True) -> np.ndarray:
    """Read a multi-page TIFF (or any single image) as a stack `(N, H, W[, C])`.

    Args:
        path (str | os.PathLike): TIFF file (a single-page TIFF or a PNG gives `N = 1`).
        scale (bool): integer scaling as in `read_image`.

    Returns:
        np.ndarray: The stack; a single image (grey `(H, W)` or colour `(H, W, C)`)
        gets a leading axis of length 1.

    Examples:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "s.tif")
        >>> _ = write_stack(path, np.zeros((3, 8, 8), np.float32))
        >>> read_stack(path).shape
        (3, 8, 8)
    """
    image, colour = _read_with_colour(path)
    image = _scale(image) if scale else image
    return image[None] if image.ndim == (3 if colour else 2) else image


PLANE_EXTENSIONS = IMAGE_EXTENSIONS + (".npy",)
"""File extensions `read_planes` understands: the images plus NumPy `.npy` arrays."""


def read_planes(path: str | os.PathLike, *, scale: bool = True) -> np.ndarray:
    """Read a file of single-plane (grey) images as a stack `(N, H, W)`.

    The reader behind `keras-cvdm predict`: one plane per measured image, never colour.

    - TIFF: every page is a plane (a multi-page or z/t stack gives `N > 1`); a colour
      (RGB/RGBA samples) TIFF is refused.
    - PNG/JPEG/BMP: one plane (8- or 16-bit grey); a colour image is refused.
    - NPY: a 2-D array is one plane, a 3-D array is read as `(N, H, W)`.

    Integers are scaled as in `read_image` (uint8 / 255, uint16 / 65535).

    Args:
        path (str | os.PathLike): the file.
        scale (bool): integer scaling as in `read_image`.

    Returns:
        np.ndarray: `(N, H, W)`, float32 for integer input, float data unchanged.

    Raises:
        ValueError: a colour image, an array that is not 2-D or 3-D, a non-numeric array.

    Examples:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "pair.tif")
        >>> _ = write_stack(path, np.zeros((2, 8, 6), np.uint16))
        >>> read_planes(path).shape, read_planes(path).dtype
        ((2, 8, 6), dtype('float32'))
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        if not path.is_file():
            raise FileNotFoundError(f"Array file {path} does not exist.")
        image = np.load(path, allow_pickle=False)
        if image.ndim not in (2, 3):
            raise ValueError(
                f"{path} holds an array of shape {image.shape}; a plane file must be (H, W) "
                "or a stack (N, H, W)."
            )
        if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
            raise ValueError(f"{path} holds {image.dtype} values; real numbers are needed.")
        image = _scale(image) if scale else image
        return image[None] if image.ndim == 2 else image
    suffix = _suffix(path)
    if not path.is_file():
        raise FileNotFoundError(f"Image file {path} does not exist.")
    colour = False
    if suffix in TIFF_EXTENSIONS:
        with _import_tifffile().TiffFile(path) as tif:
            series = tif.series[0]
            colour = "S" in series.axes
            image = np.asarray(series.asarray())
            pages = sum(len(s.pages) for s in tif.series)
            if len(tif.series) > 1 and not colour:
                image = np.stack([np.asarray(s.asarray()) for s in tif.series])
                if pages != len(image):
                    raise ValueError(f"{path} holds series of different shapes; split it first.")
    else:
        image = read_image(path, scale=False)
        colour = image.ndim == 3
    if colour:
        raise ValueError(
            f"{path} is a colour image (shape {image.shape}); a measurement needs one grey "
            "plane per image. Save the camera's raw grey frames, or convert with "
            "keras_cvdm.io.to_grayscale if the colour is only a display choice."
        )
    image = image.reshape((-1,) + image.shape[-2:]) if image.ndim > 2 else image[None]
    return _scale(image) if scale else image


def _prepare_path(path: str | os.PathLike, overwrite: bool) -> Path:
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _to_png_dtype(image: np.ndarray, dtype: str | None) -> np.ndarray:
    if image.dtype in (np.uint8, np.uint16) and dtype in (None, image.dtype.name):
        return image
    if image.dtype == np.bool_:
        image = image.astype(np.float32)
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(
            f"PNG stores uint8 or uint16; got {image.dtype} with dtype={dtype!r}. Convert the "
            "array yourself or write a TIFF, which keeps any dtype."
        )
    target = np.dtype(dtype or "uint16")
    if target not in (np.uint8, np.uint16):
        raise ValueError(f"PNG `dtype` must be 'uint8' or 'uint16', got {dtype!r}.")
    if image.size and (np.nanmin(image) < 0 or np.nanmax(image) > 1 or np.isnan(image).any()):
        raise ValueError(
            "Float images written to PNG must lie in [0, 1] (they are scaled to the integer "
            "range); rescale them first or write a TIFF, which keeps float values."
        )
    top = np.iinfo(target).max
    return np.round(image.astype(np.float64) * top).astype(target)


def write_image(
    path: str | os.PathLike,
    image: np.ndarray,
    *,
    overwrite: bool = False,
    dtype: str | None = None,
) -> Path:
    """Write one image `(H, W)` or channels-last `(H, W, C)` as PNG or TIFF.

    Args:
        path (str | os.PathLike): destination; the extension picks the format (`.png`, `.tif`,
            `.tiff`).
            Parent folders are created.
        image (np.ndarray): the image. TIFF keeps its dtype; for PNG see the module docstring.
        overwrite (bool): replace an existing file (otherwise `FileExistsError`).
        dtype (str | None): PNG only: `"uint8"` or `"uint16"` (default) for float input.

    Returns:
        Path: The path written.

    Examples:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "a.png")
        >>> _ = write_image(path, np.array([[0, 65535]], np.uint16))
        >>> read_image(path, scale=False).tolist()
        [[0, 65535]]
    """
    image = _checked_for_writing(image, "write_image")
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3):
        raise ValueError(
            f"`write_image` takes (H, W) or (H, W, C), got shape {image.shape}; use "
            "`write_stack` for a stack of images."
        )
    path = Path(path)
    suffix = _suffix(path)
    if suffix in TIFF_EXTENSIONS:
        path = _prepare_path(path, overwrite)
        _write_tiff(path, image, stack=False)
        return path
    if suffix not in PNG_EXTENSIONS:
        raise ValueError(f"Writing {suffix} is not supported; write PNG or TIFF.")
    data = _to_png_dtype(image, dtype)
    if data.ndim == 3 and (data.shape[-1] not in (3, 4) or data.dtype != np.uint8):
        raise ValueError(
            f"PNG (via Pillow) stores gray images or 8-bit RGB/RGBA; got shape {data.shape} "
            f"{data.dtype}. Write a TIFF instead."
        )
    Image = _import_pillow()
    path = _prepare_path(path, overwrite)
    Image.fromarray(data).save(path)
    return path


def _checked_for_writing(data, writer: str) -> np.ndarray:
    """The array to write, refused when it is empty or of a kind files here cannot hold."""
    data = np.asarray(data)
    if data.size == 0:
        raise ValueError(
            f"`{writer}` got an empty array of shape {data.shape}; nothing to write."
        )
    if data.dtype == bool and data.ndim > 2:
        raise ValueError(
            f"`{writer}` writes boolean images as single planes only; got shape {data.shape}. "
            "Convert a mask stack to integers first (e.g. mask.astype(np.uint8))."
        )
    return data


def _write_tiff(path: Path, data: np.ndarray, stack: bool) -> None:
    tifffile = _import_tifffile()
    channels_last = data.ndim == (4 if stack else 3)
    if channels_last and data.shape[-1] == 3 and data.dtype in (np.uint8, np.uint16):
        tifffile.imwrite(path, data, photometric="rgb")
    elif channels_last:
        tifffile.imwrite(path, data, photometric="minisblack", planarconfig="contig")
    else:
        tifffile.imwrite(path, data, photometric="minisblack")


def write_stack(
    path: str | os.PathLike,
    images: np.ndarray,
    *,
    overwrite: bool = False,
) -> Path:
    """Write a stack `(N, H, W)` or `(N, H, W, C)` as a multi-page TIFF (one page per image).

    Args:
        path (str | os.PathLike): destination `.tif`/`.tiff` file; parent folders are created.
        images (np.ndarray): the stack (any dtype; float32 round-trips exactly).
        overwrite (bool): replace an existing file (otherwise `FileExistsError`).

    Returns:
        Path: The path written.

    Examples:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "s.tiff")
        >>> _ = write_stack(path, np.ones((2, 4, 4, 2), np.float32))
        >>> read_stack(path).shape
        (2, 4, 4, 2)
    """
    images = _checked_for_writing(images, "write_stack")
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    path = Path(path)
    if _suffix(path) not in TIFF_EXTENSIONS:
        raise ValueError(f"Stacks are written as multi-page TIFF; use a .tif path, not {path}.")
    if images.ndim not in (3, 4):
        raise ValueError(f"`write_stack` takes (N, H, W) or (N, H, W, C), got {images.shape}.")
    path = _prepare_path(path, overwrite)
    _write_tiff(path, images, stack=True)
    return path


def list_images(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Sorted image files (`IMAGE_EXTENSIONS`) under `folder`.

    Args:
        folder (str | os.PathLike): directory to search.
        recursive (bool): include sub-folders.

    Returns:
        list[Path]: Sorted list of paths (hidden files skipped).

    Examples:
        >>> import tempfile
        >>> list_images(tempfile.mkdtemp())
        []
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"Folder {folder} does not exist; check the path.")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file; pass the folder that contains the images.")
    pattern = "**/*" if recursive else "*"
    return sorted(
        p
        for p in folder.glob(pattern)
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )
