"""Image IO: exact round trips, documented integer scaling, stacks, overwrite protection."""

import numpy as np
import pytest

from keras_cvdm.io import (
    list_images,
    read_image,
    read_stack,
    to_grayscale,
    write_image,
    write_stack,
)

tifffile = pytest.importorskip("tifffile")
pytest.importorskip("PIL")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_tiff_round_trips_exactly(tmp_path, dtype):
    image = np.random.default_rng(0).normal(size=(17, 23)).astype(dtype) * 1e3
    write_image(tmp_path / "a.tif", image)
    back = read_image(tmp_path / "a.tif")
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, image)
    channels = np.random.default_rng(1).normal(size=(9, 11, 2)).astype(np.float32)
    write_image(tmp_path / "c.tiff", channels)
    np.testing.assert_array_equal(read_image(tmp_path / "c.tiff"), channels)


def test_uint16_tiff_is_exact_and_scaled_by_65535(tmp_path):
    image = np.random.default_rng(2).integers(0, 65536, size=(12, 10)).astype(np.uint16)
    image[0, 0], image[0, 1] = 0, 65535
    write_image(tmp_path / "a.tif", image)
    raw = read_image(tmp_path / "a.tif", scale=False)
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal(raw, image)
    scaled = read_image(tmp_path / "a.tif")
    assert scaled.dtype == np.float32 and scaled[0, 0] == 0.0 and scaled[0, 1] == 1.0
    np.testing.assert_allclose(scaled, image / 65535.0, rtol=1e-6)


def test_16bit_png_round_trips_exactly(tmp_path):
    image = np.random.default_rng(3).integers(0, 65536, size=(20, 30)).astype(np.uint16)
    write_image(tmp_path / "a.png", image)
    raw = read_image(tmp_path / "a.png", scale=False)
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal(raw, image)
    # Float data in [0, 1] is stored as a 16-bit PNG and comes back within half a step.
    values = np.random.default_rng(4).uniform(size=(20, 30))
    write_image(tmp_path / "f.png", values)
    assert read_image(tmp_path / "f.png", scale=False).dtype == np.uint16
    np.testing.assert_allclose(read_image(tmp_path / "f.png"), values, atol=0.5 / 65535 + 1e-7)
    write_image(tmp_path / "f8.png", values, dtype="uint8")
    np.testing.assert_allclose(read_image(tmp_path / "f8.png"), values, atol=0.5 / 255 + 1e-7)


def test_uint8_png_gray_and_rgb(tmp_path):
    rng = np.random.default_rng(5)
    gray = rng.integers(0, 256, size=(8, 9)).astype(np.uint8)
    rgb = rng.integers(0, 256, size=(8, 9, 3)).astype(np.uint8)
    write_image(tmp_path / "g.png", gray)
    write_image(tmp_path / "rgb.png", rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "g.png", scale=False), gray)
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png", scale=False), rgb)
    np.testing.assert_allclose(read_image(tmp_path / "g.png"), gray / 255.0, rtol=1e-6)
    luminance = read_image(tmp_path / "rgb.png", as_gray=True)
    expected = (rgb / 255.0) @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(luminance, expected, rtol=1e-5)
    np.testing.assert_allclose(to_grayscale(np.ones((2, 2, 4))), 1.0)


def test_multipage_tiff_stacks(tmp_path):
    stack = np.random.default_rng(6).normal(size=(5, 16, 12)).astype(np.float32)
    write_stack(tmp_path / "s.tif", stack)
    with tifffile.TiffFile(tmp_path / "s.tif") as tif:
        assert len(tif.pages) == 5
    np.testing.assert_array_equal(read_stack(tmp_path / "s.tif"), stack)
    multi = np.random.default_rng(7).integers(0, 65536, size=(3, 8, 8, 2)).astype(np.uint16)
    write_stack(tmp_path / "m.tif", multi)
    np.testing.assert_array_equal(read_stack(tmp_path / "m.tif", scale=False), multi)
    write_image(tmp_path / "one.tif", stack[0])
    assert read_stack(tmp_path / "one.tif").shape == (1, 16, 12)
    with pytest.raises(ValueError, match="multi-page TIFF"):
        write_stack(tmp_path / "s.png", stack)


def test_existing_files_are_never_overwritten_silently(tmp_path):
    path = tmp_path / "a.tif"
    write_image(path, np.zeros((4, 4), np.float32))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_image(path, np.ones((4, 4), np.float32))
    np.testing.assert_array_equal(read_image(path), 0.0)  # untouched
    write_image(path, np.ones((4, 4), np.float32), overwrite=True)
    np.testing.assert_array_equal(read_image(path), 1.0)
    write_image(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_image(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    write_stack(tmp_path / "s.tif", np.zeros((2, 4, 4)))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_stack(tmp_path / "s.tif", np.zeros((2, 4, 4)))


def test_io_errors_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match=r"\[0, 1\].*TIFF"):
        write_image(tmp_path / "a.png", np.full((4, 4), 2.0))
    with pytest.raises(ValueError, match="Unsupported image file type"):
        write_image(tmp_path / "a.jp2", np.zeros((4, 4)))
    with pytest.raises(ValueError, match="write_stack"):
        write_image(tmp_path / "a.tif", np.zeros((2, 4, 4, 2)))
    with pytest.raises(ValueError, match="TIFF"):
        write_image(tmp_path / "b.png", np.zeros((4, 4, 2), np.uint16))
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "missing.png")


def test_list_images_filters_and_sorts(tmp_path):
    write_image(tmp_path / "b.png", np.zeros((4, 4), np.uint8))
    write_image(tmp_path / "sub" / "a.TIF", np.zeros((4, 4), np.float32))
    (tmp_path / "readme.md").write_text("x")
    assert [p.name for p in list_images(tmp_path)] == ["b.png", "a.TIF"]
    assert [p.name for p in list_images(tmp_path, recursive=False)] == ["b.png"]
    with pytest.raises(FileNotFoundError):
        list_images(tmp_path / "nope")


def test_as_gray_converts_colour_per_page_and_leaves_grey_stacks_alone(tmp_path):
    """A grey multi-page stack is already single planes; a colour stack loses its samples."""
    rng = np.random.default_rng(8)
    grey = rng.random((3, 32, 32)).astype(np.float32)
    write_stack(tmp_path / "grey.tif", grey)
    np.testing.assert_array_equal(read_image(tmp_path / "grey.tif", as_gray=True), grey)
    colour = rng.integers(0, 256, size=(2, 8, 9, 3)).astype(np.uint8)
    write_stack(tmp_path / "colour.tif", colour)
    luminance = read_image(tmp_path / "colour.tif", as_gray=True)
    weights = np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(luminance, (colour / 255.0) @ weights, rtol=1e-5)
    assert luminance.shape == (2, 8, 9)


def test_colour_is_read_channels_last_from_what_the_file_says(tmp_path):
    rng = np.random.default_rng(9)
    rgb = rng.integers(0, 256, size=(3, 8, 9)).astype(np.uint8)  # planar: samples first
    tifffile.imwrite(tmp_path / "planar.tif", rgb, photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_image(tmp_path / "planar.tif", scale=False),
                                  np.moveaxis(rgb, 0, -1))
    # A single colour image is one image of a stack, not a stack of 8 rows.
    write_image(tmp_path / "rgb.png", np.moveaxis(rgb, 0, -1))
    assert read_stack(tmp_path / "rgb.png").shape == (1, 8, 9, 3)
    assert read_stack(tmp_path / "planar.tif").shape == (1, 8, 9, 3)
    # RGBA: the alpha band is dropped, not weighted into the luminance.
    rgba = rng.integers(0, 256, size=(8, 9, 4)).astype(np.uint8)
    write_image(tmp_path / "rgba.png", rgba)
    assert read_image(tmp_path / "rgba.png").shape == (8, 9, 4)
    np.testing.assert_allclose(read_image(tmp_path / "rgba.png", as_gray=True),
                               (rgba[..., :3] / 255.0) @ np.array([0.299, 0.587, 0.114]),
                               rtol=1e-5)
    with pytest.raises(ValueError, match="5 channels.*no luminance"):
        to_grayscale(np.ones((4, 4, 5)))
