"""tlsk.images.decode: inputs, decoding policy, errors, resizing, preprocessing."""

import hashlib
import os
import pickle
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from PIL import Image, ImageFile

from tests._image_files import (
    encode,
    png_header_only,
    random_rgb,
    smooth_rgb,
    write,
)
from tlsk import clear_caches
from tlsk.images import decode as images
from tlsk.images.decode import (
    ALPHA_BACKGROUND,
    DECODE_POLICY,
    DEFAULT_MAX_PIXELS,
    FORMATS,
    INTERPOLATIONS,
    ArrayInput,
    FileInput,
    ImageError,
    _pil_to_rgb,
    decode_image,
    image_inputs,
    load_batch,
    read_image,
    resize_image,
)
from tlsk.networks.preprocessing import VGG16_MEAN_BGR, preprocess_vgg16

ORIENTATION = 0x0112


def _one_pixel(path):
    return read_image(path)[0, 0].tolist()


# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------


def test_constants_match_the_documented_policy():
    assert DEFAULT_MAX_PIXELS == 89_478_485
    assert ALPHA_BACKGROUND == (255, 255, 255)
    assert INTERPOLATIONS == (
        "nearest",
        "bilinear",
        "bicubic",
        "lanczos",
        "box",
        "hamming",
    )
    assert isinstance(DECODE_POLICY, str) and DECODE_POLICY
    assert VGG16_MEAN_BGR == (103.939, 116.779, 123.68)


# --------------------------------------------------------------------------
# image_inputs: each input kind
# --------------------------------------------------------------------------


def test_paths_as_str_pathlike_and_bytes_keep_the_path_as_label(tmp_path):
    path = write(tmp_path / "a.png", random_rgb(4, 4), "PNG")
    inputs = image_inputs([str(path), path, os.fsencode(path)])
    assert all(isinstance(item, FileInput) for item in inputs)
    assert [item.label for item in inputs] == [str(path)] * 3


def test_paths_as_numpy_array_of_str(tmp_path):
    paths = [write(tmp_path / f"{i}.png", random_rgb(4, 4, i), "PNG") for i in range(3)]
    inputs = image_inputs(np.array([str(p) for p in paths]))
    assert [item.label for item in inputs] == [str(p) for p in paths]


def test_anything_numpy_can_read_works_like_a_series(tmp_path):
    # Stands in for a pandas Series (pandas is not a dependency).
    path = str(write(tmp_path / "a.png", random_rgb(4, 4), "PNG"))

    class SeriesLike:
        def __array__(self, dtype=None, copy=None):
            return np.array([path, path], dtype=object)

    assert [item.label for item in image_inputs(SeriesLike())] == [path, path]


def test_batch_array_items_are_read_only_views_of_the_callers_array():
    X = random_rgb(8, 6)[np.newaxis].repeat(2, axis=0)
    inputs = image_inputs(X)
    assert [item.label for item in inputs] == ["X[0]", "X[1]"]
    _, image = inputs[1].load()
    assert np.shares_memory(image, X)
    assert not image.flags.writeable
    assert X.flags.writeable


@pytest.mark.parametrize("shape", [(2, 5, 7), (2, 5, 7, 1)])
def test_grayscale_batch_is_replicated_to_rgb(shape):
    X = np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)
    _, image = image_inputs(X)[1].load()
    assert image.shape == (5, 7, 3)
    np.testing.assert_array_equal(image[..., 2], X[1].reshape(5, 7))
    np.testing.assert_array_equal(image[..., 0], image[..., 1])


def test_list_of_arrays_of_different_sizes_mixed_with_paths(tmp_path):
    pixels = random_rgb(3, 4)
    path = write(tmp_path / "a.png", pixels, "PNG")
    X = [np.zeros((5, 7), np.uint8), path, np.zeros((9, 4, 1)), random_rgb(2, 3)]
    inputs = image_inputs(X)
    shapes = [item.load()[1].shape for item in inputs]
    assert shapes == [(5, 7, 3), (3, 4, 3), (9, 4, 3), (2, 3, 3)]
    assert [item.label for item in inputs] == ["X[0]", str(path), "X[2]", "X[3]"]


@pytest.mark.parametrize(
    "X", [np.zeros((0, 8, 8, 3), np.uint8), np.zeros((0, 8, 8)), [], ()]
)
def test_empty_input_gives_no_images(X):
    assert image_inputs(X) == []


# --------------------------------------------------------------------------
# image_inputs: shape and type errors
# --------------------------------------------------------------------------


def test_wrong_rank_is_refused_with_the_shape():
    with pytest.raises(
        ValueError,
        match=re.escape(
            "expected images as (N, H, W, 3) or (N, H, W); "
            "received an array of shape (10, 5)"
        ),
    ):
        image_inputs(np.zeros((10, 5)))


def test_wrong_channel_count_is_refused():
    with pytest.raises(ValueError, match=r"3 channels .* shape \(2, 8, 8, 4\)"):
        image_inputs(np.zeros((2, 8, 8, 4), np.uint8))


def test_one_color_image_is_not_read_as_a_gray_batch():
    with pytest.raises(ValueError, match=r"looks like one color image.*np.newaxis"):
        image_inputs(random_rgb(32, 32))


def test_wrong_item_shape_in_a_list_names_the_index():
    with pytest.raises(ValueError, match=r"X\[1\].*shape \(4, 4, 2\)"):
        image_inputs([random_rgb(4, 4), np.zeros((4, 4, 2), np.uint8)])


def test_item_neither_path_nor_array_names_index_and_type():
    with pytest.raises(TypeError, match=r"X\[1\] to be a file path .* received int"):
        image_inputs(["a.png", 3])


def test_single_path_must_be_wrapped_in_a_list():
    with pytest.raises(TypeError, match=r"single path 'a.png'.*\[path\]"):
        image_inputs("a.png")


@pytest.mark.parametrize("X", [np.zeros((2, 4, 5), bool), [np.zeros((4, 4), bool)]])
def test_bool_arrays_are_refused(X):
    with pytest.raises(TypeError, match="dtype bool"):
        image_inputs(X)


# --------------------------------------------------------------------------
# Array values, checked at load time
# --------------------------------------------------------------------------


def test_integer_arrays_in_range_become_uint8():
    X = np.array([[[0, 255]]], dtype=np.int64)
    _, image = image_inputs(X)[0].load()
    assert image.dtype == np.uint8
    assert image[0, 1].tolist() == [255, 255, 255]


def test_integer_values_out_of_range_name_index_and_range():
    X = [np.zeros((2, 2), np.uint8), np.array([[-5, 300]], dtype=np.int16)]
    inputs = image_inputs(X)
    with pytest.raises(ValueError, match=r"X\[1\] has integer values in \[-5, 300\]"):
        inputs[1].load()


def test_float_arrays_in_range_become_float32_without_rounding():
    X = np.full((1, 2, 2, 3), 100.25, dtype=np.float64)
    _, image = image_inputs(X)[0].load()
    assert image.dtype == np.float32
    assert float(image[0, 0, 0]) == 100.25


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_float_nan_or_inf_names_the_index(bad):
    X = np.zeros((3, 2, 2, 3), np.float32)
    X[2, 0, 0, 0] = bad
    with pytest.raises(ValueError, match=r"X\[2\] contains NaN or infinity"):
        image_inputs(X)[2].load()


def test_float_out_of_range_names_index_range_and_the_fix():
    X = np.linspace(-1, 1, 12, dtype=np.float32).reshape(1, 2, 2, 3)
    with pytest.raises(
        ValueError, match=r"X\[0\] has float values in \[-1, 1\].*scale"
    ):
        image_inputs(X)[0].load()


def test_loading_and_resizing_never_modify_the_callers_arrays():
    X = np.full((2, 6, 6, 3), 7.5, dtype=np.float32)
    before = X.copy()
    _, batch = load_batch(image_inputs(X), 4)
    preprocess_vgg16(batch)
    np.testing.assert_array_equal(X, before)


# --------------------------------------------------------------------------
# Content keys
# --------------------------------------------------------------------------


def test_file_key_is_sha256_of_the_file_bytes(tmp_path):
    path = write(tmp_path / "a.jpg", random_rgb(8, 8), "JPEG")
    expected = hashlib.sha256(path.read_bytes()).digest()
    item = image_inputs([path])[0]
    assert item.content_key() == expected
    assert item.load()[0] == expected


def test_array_keys_differ_by_dtype_and_by_shape():
    a = np.zeros((4, 6), dtype=np.uint8)
    keys = {
        ArrayInput(a, "a").content_key(),
        ArrayInput(a.view(np.int8), "a").content_key(),
        ArrayInput(a.reshape(6, 4), "a").content_key(),
    }
    assert len(keys) == 3
    assert all(len(key) == 32 for key in keys)


def test_array_key_depends_on_content_not_memory_layout():
    X = random_rgb(6, 8)
    view = X[:, ::2]
    assert not view.flags.c_contiguous
    key, _ = ArrayInput(view, "v").load()
    assert key == ArrayInput(view.copy(), "c").content_key()
    assert key != ArrayInput(X[:, 1::2].copy(), "c").content_key()


# --------------------------------------------------------------------------
# Formats, decoded by content
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF"])
def test_lossless_formats_decode_exactly(tmp_path, fmt):
    pixels = random_rgb(5, 7)
    path = write(tmp_path / f"a.{fmt.lower()}", pixels, fmt)
    np.testing.assert_array_equal(read_image(path), pixels)


def test_jpeg_decodes_close_to_the_original(tmp_path):
    pixels = smooth_rgb(16, 24)
    path = write(tmp_path / "a.jpg", pixels, "JPEG", quality=95, subsampling=0)
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (16, 24, 3)
    assert np.abs(image.astype(int) - pixels).max() <= 8


@pytest.mark.skipif("WEBP" not in FORMATS, reason="this Pillow has no WebP")
def test_webp_lossless_decodes_exactly(tmp_path):
    pixels = random_rgb(5, 7)
    path = write(tmp_path / "a.webp", pixels, "WEBP", lossless=True)
    np.testing.assert_array_equal(read_image(path), pixels)


def test_gif_gives_the_first_frame(tmp_path):
    first = Image.new("RGB", (3, 3), (255, 0, 0))
    second = Image.new("RGB", (3, 3), (0, 0, 255))
    path = write(
        tmp_path / "a.gif", first, "GIF", save_all=True, append_images=[second]
    )
    assert _one_pixel(path) == [255, 0, 0]


def test_tiff_gives_the_first_page(tmp_path):
    first = Image.new("RGB", (3, 3), (10, 20, 30))
    second = Image.new("RGB", (3, 3), (200, 0, 0))
    path = write(
        tmp_path / "a.tif", first, "TIFF", save_all=True, append_images=[second]
    )
    assert _one_pixel(path) == [10, 20, 30]


def test_png_named_jpg_decodes(tmp_path):
    pixels = random_rgb(4, 4)
    path = write(tmp_path / "really_a_png.jpg", pixels, "PNG")
    np.testing.assert_array_equal(read_image(path), pixels)


def test_decode_image_reads_bytes():
    pixels = random_rgb(4, 5)
    np.testing.assert_array_equal(decode_image(encode(pixels, "PNG")), pixels)


# --------------------------------------------------------------------------
# Modes -> RGB, through real files where Pillow can write the mode
# --------------------------------------------------------------------------


def test_mode_1_gives_black_and_white(tmp_path):
    im = Image.new("1", (2, 1), 0)
    im.putpixel((1, 0), 1)
    path = write(tmp_path / "a.png", im, "PNG")
    assert read_image(path)[0].tolist() == [[0, 0, 0], [255, 255, 255]]


def test_mode_l_replicates_gray(tmp_path):
    path = write(tmp_path / "a.png", Image.new("L", (1, 1), 77), "PNG")
    assert _one_pixel(path) == [77, 77, 77]


def _palette_image():
    im = Image.new("P", (2, 1), 0)
    im.putpalette([255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    im.putpixel((1, 0), 1)
    return im


def test_mode_p_goes_through_the_palette(tmp_path):
    path = write(tmp_path / "a.png", _palette_image(), "PNG")
    assert read_image(path)[0].tolist() == [[255, 0, 0], [0, 255, 0]]


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_mode_p_transparent_index_becomes_white(tmp_path, fmt):
    path = write(tmp_path / "a.img", _palette_image(), fmt, transparency=1)
    assert read_image(path)[0].tolist() == [[255, 0, 0], [255, 255, 255]]


def test_png_rgb_with_transparent_color_becomes_white(tmp_path):
    im = Image.new("RGB", (2, 1), (5, 6, 7))
    im.putpixel((1, 0), (9, 9, 9))
    path = write(tmp_path / "a.png", im, "PNG", transparency=(5, 6, 7))
    assert read_image(path)[0].tolist() == [[255, 255, 255], [9, 9, 9]]


@pytest.mark.parametrize(
    ("mode", "value", "fmt"),
    [
        ("LA", (0, 128), "PNG"),
        ("RGBA", (0, 0, 0, 128), "PNG"),
        ("PA", (0, 128), "TIFF"),  # only TIFF stores PA
    ],
)
def test_half_transparent_black_over_white_is_mid_gray(tmp_path, mode, value, fmt):
    im = Image.new(mode, (1, 1), value)
    if mode == "PA":
        im.putpalette([0, 0, 0] * 256)
    path = write(tmp_path / "a.img", im, fmt)
    assert _one_pixel(path) == [127, 127, 127]


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        # (c * 128 + 255 * 127) / 255: 100 -> 177, 0 -> 127, 200 -> 227
        ("LA", (100, 128), [177, 177, 177]),
        ("RGBA", (100, 0, 200, 128), [177, 127, 227]),
    ],
)
def test_alpha_weights_the_color_too(tmp_path, mode, value, expected):
    path = write(tmp_path / "a.png", Image.new(mode, (1, 1), value), "PNG")
    assert _one_pixel(path) == expected


def test_fully_transparent_color_is_the_background_not_the_color(tmp_path):
    path = write(tmp_path / "a.png", Image.new("RGBA", (1, 1), (255, 0, 0, 0)), "PNG")
    assert _one_pixel(path) == list(ALPHA_BACKGROUND)


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_cyan_becomes_rgb_cyan(tmp_path, fmt):
    path = write(tmp_path / "a.img", Image.new("CMYK", (8, 8), (255, 0, 0, 0)), fmt)
    red, green, blue = _one_pixel(path)
    assert red <= 3 and green >= 252 and blue >= 252


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("YCbCr", (128, 128, 128), [128, 128, 128]),
        ("LAB", (255, 128, 128), [254, 255, 254]),  # L=100, a=b=0 is white
    ],
)
def test_tiff_color_spaces_are_converted_by_pillow(tmp_path, mode, value, expected):
    path = write(tmp_path / "a.tif", Image.new(mode, (1, 1), value), "TIFF")
    assert _one_pixel(path) == expected


@pytest.mark.parametrize(("mode", "fmt"), [("I;16", "PNG"), ("I;16B", "TIFF")])
def test_16_bit_gray_is_scaled_not_clipped(tmp_path, mode, fmt):
    values = np.array([[0, 32896, 65535, 1000]], dtype=np.uint16)
    im = Image.fromarray(values.astype(">u2") if mode == "I;16B" else values)
    assert im.mode == mode
    path = write(tmp_path / "a.img", im, fmt)
    assert read_image(path)[0, :, 0].tolist() == [0, 128, 255, 4]


def test_32_bit_int_gray_is_clipped_to_16_bits_then_scaled(tmp_path):
    im = Image.fromarray(np.array([[-3, 32896, 70000]], dtype=np.int32))
    path = write(tmp_path / "a.tif", im, "TIFF")
    with Image.open(path) as opened:
        assert opened.mode == "I"
    assert read_image(path)[0, :, 0].tolist() == [0, 128, 255]


def test_float_gray_is_0_255_rounded_nan_zero_clipped(tmp_path):
    values = np.array([[np.nan, 300.0, 127.6, -2.0]], dtype=np.float32)
    path = write(tmp_path / "a.tif", Image.fromarray(values), "TIFF")
    with Image.open(path) as opened:
        assert opened.mode == "F"
    assert read_image(path)[0, :, 1].tolist() == [0, 255, 128, 0]


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        # No Pillow saver writes these modes; convert in-memory images instead.
        ("La", (0, 128), [127, 127, 127]),
        ("RGBa", (0, 0, 0, 128), [127, 127, 127]),
        ("RGBa", (100, 0, 0, 255), [100, 0, 0]),
        ("HSV", (0, 255, 255), [255, 0, 0]),
        ("RGBX", (1, 2, 3, 4), [1, 2, 3]),
        ("I;16L", 32896, [128, 128, 128]),
        ("I;16N", 65535, [255, 255, 255]),
    ],
)
def test_modes_without_a_file_format(mode, value, expected):
    image = _pil_to_rgb(Image.new(mode, (1, 1), value))
    assert image.dtype == np.uint8
    assert image[0, 0].tolist() == expected


# --------------------------------------------------------------------------
# EXIF orientation
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orientation", "transpose"),
    [(6, Image.Transpose.ROTATE_270), (8, Image.Transpose.ROTATE_90)],
)
def test_exif_orientation_in_a_jpeg_is_applied(tmp_path, orientation, transpose):
    pixels = smooth_rgb(16, 32)
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    tagged = write(tmp_path / "tagged.jpg", pixels, "JPEG", quality=95, exif=exif)
    rotated = Image.fromarray(pixels).transpose(transpose)
    upright = write(tmp_path / "upright.jpg", rotated, "JPEG", quality=95)
    image = read_image(tagged)
    assert image.shape == (32, 16, 3)
    assert np.abs(image.astype(int) - read_image(upright)).max() <= 12


def test_exif_orientation_in_a_png_is_applied_exactly(tmp_path):
    pixels = random_rgb(4, 6)
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    path = write(tmp_path / "a.png", pixels, "PNG", exif=exif)
    np.testing.assert_array_equal(read_image(path), np.rot90(pixels, k=-1))


# --------------------------------------------------------------------------
# Files that cannot be decoded
# --------------------------------------------------------------------------


def test_image_error_message_attributes_and_pickling():
    err = ImageError("data/cats/cat.12.jpg", "image file is truncated")
    assert isinstance(err, ValueError)
    assert str(err) == "cannot decode 'data/cats/cat.12.jpg': image file is truncated"
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.path, copy.reason, str(copy)) == (err.path, err.reason, str(err))


def _decode_error(path, **kwargs):
    with pytest.raises(ImageError) as info:
        image_inputs([path])[0].load(**kwargs)
    assert info.value.path == str(path)
    assert str(info.value).startswith(f"cannot decode {str(path)!r}: ")
    return info.value


def test_text_named_jpg_is_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("not an image at all\n")
    assert _decode_error(path).reason.startswith("not an image file")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert _decode_error(path).reason == "file is empty (0 bytes)"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file(tmp_path, fmt):
    data = encode(random_rgb(32, 32), fmt)
    path = tmp_path / "cut.img"
    path.write_bytes(data[: len(data) // 2])
    assert _decode_error(path).reason == "image file is truncated"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_directory(tmp_path):
    assert "is a directory" in _decode_error(tmp_path).reason


def test_missing_file(tmp_path):
    err = _decode_error(tmp_path / "nope.png")
    assert err.reason.startswith("no such file")


def test_missing_file_fails_content_key_too(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        FileInput(tmp_path / "nope.png").content_key()


def test_unsupported_format_is_not_decoded(tmp_path):
    # PPM is a real image format, but not one of FORMATS.
    path = write(tmp_path / "a.ppm", random_rgb(2, 2), "PPM")
    assert "supported format" in _decode_error(path).reason


# --------------------------------------------------------------------------
# Decompression bombs
# --------------------------------------------------------------------------


def test_bomb_is_refused_by_pillows_own_limit(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(20000, 20000))
    assert "too many pixels" in _decode_error(path).reason
    assert PIL.Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_PIXELS


def test_bomb_is_refused_when_pillows_limit_is_off(tmp_path, monkeypatch):
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", None)
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(20000, 20000))
    assert _decode_error(path).reason.startswith(
        "image has 20000x20000 = 400000000 pixels, more than max_pixels=89478485; "
    )
    assert PIL.Image.MAX_IMAGE_PIXELS is None


def test_max_pixels_guards_a_normal_file(tmp_path):
    path = write(tmp_path / "a.png", random_rgb(10, 20), "PNG")
    assert "200 pixels, more than max_pixels=199" in (
        _decode_error(path, max_pixels=199).reason
    )
    assert read_image(path, max_pixels=200).shape == (10, 20, 3)
    assert PIL.Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_PIXELS


def test_pillows_bomb_warning_as_error_becomes_image_error(tmp_path, monkeypatch):
    # Above MAX_IMAGE_PIXELS (but below twice it) Pillow warns; pytest makes
    # warnings errors, as a careful user might.
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 100)
    path = write(tmp_path / "a.png", random_rgb(10, 15), "PNG")
    assert "too many pixels" in _decode_error(path).reason


# --------------------------------------------------------------------------
# Threads
# --------------------------------------------------------------------------


def test_loading_in_threads_gives_the_sequential_result(tmp_path):
    paths = [
        write(tmp_path / f"{i}.png", random_rgb(16, 16, i), "PNG") for i in range(8)
    ]
    inputs = image_inputs(paths)
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda item: item.load(), inputs))
    for item, (key, image) in zip(inputs, threaded, strict=True):
        expected_key, expected = item.load()
        assert key == expected_key
        np.testing.assert_array_equal(image, expected)


# --------------------------------------------------------------------------
# Resizing
# --------------------------------------------------------------------------


def test_resize_output_shape_dtype_and_range():
    out = resize_image(random_rgb(30, 50), 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 255


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_each_interpolation_uses_pillows_filter_of_that_name(interpolation):
    pixels = random_rgb(20, 30)
    resample = getattr(Image.Resampling, interpolation.upper())
    expected = np.asarray(Image.fromarray(pixels).resize((12, 12), resample))
    out = resize_image(pixels, 12, interpolation)
    np.testing.assert_array_equal(out, expected.astype(np.float32))


def test_unknown_interpolation_names_the_argument_and_the_choices():
    with pytest.raises(ValueError, match=r"interpolation must be one of 'nearest'.*"):
        resize_image(random_rgb(4, 4), 2, interpolation="area")


def test_resize_float_keeps_fractions_and_clips_overshoot():
    image = np.zeros((20, 20, 3), np.float32)
    image[:, 10:] = 255.0
    image[..., 1] = 100.25
    out = resize_image(image, 7, "lanczos")
    assert out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 255.0
    np.testing.assert_allclose(out[..., 1], 100.25, atol=1e-3)
    assert out[0, 3, 0] % 1 != 0  # not quantised to integers


def test_resize_same_size_is_a_float32_copy():
    image = random_rgb(8, 8)
    out = resize_image(image, 8)
    np.testing.assert_array_equal(out, image)
    assert out.dtype == np.float32
    out[0, 0, 0] = -1
    assert image[0, 0, 0] != -1


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_resize_never_modifies_its_input(dtype):
    image = random_rgb(9, 13).astype(dtype)
    before = image.copy()
    resize_image(image, 5, "bicubic")
    np.testing.assert_array_equal(image, before)


def test_resize_matches_keras_load_img_geometry(tmp_path):
    keras = pytest.importorskip("keras")
    path = write(tmp_path / "a.png", random_rgb(30, 50), "PNG")
    expected = keras.utils.img_to_array(
        keras.utils.load_img(path, target_size=(16, 16), interpolation="bilinear")
    )
    np.testing.assert_array_equal(resize_image(read_image(path), 16), expected)


# --------------------------------------------------------------------------
# load_batch and VGG16 preprocessing
# --------------------------------------------------------------------------


def test_load_batch_keeps_input_order(tmp_path):
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    paths = [
        write(tmp_path / f"{i}.png", Image.new("RGB", (5, 3), color), "PNG")
        for i, color in enumerate(colors)
    ]
    X = [paths[2], np.full((4, 4, 3), 9, np.uint8), paths[0], paths[1]]
    keys, batch = load_batch(image_inputs(X), 2)
    assert batch.shape == (4, 2, 2, 3) and batch.dtype == np.float32
    assert batch[:, 0, 0].tolist() == [[0, 0, 255], [9, 9, 9], [255, 0, 0], [0, 255, 0]]
    assert keys[0] == hashlib.sha256(Path(paths[2]).read_bytes()).digest()
    assert keys == [item.content_key() for item in image_inputs(X)]


def test_load_batch_checks_interpolation_before_reading(tmp_path):
    with pytest.raises(ValueError, match="interpolation must be one of"):
        load_batch(image_inputs([tmp_path / "nope.png"]), 4, "cubic")


def test_preprocess_vgg16_matches_keras_and_leaves_input_alone():
    keras = pytest.importorskip("keras")
    batch = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype(np.float32)
    before = batch.copy()
    out = preprocess_vgg16(batch)
    expected = keras.applications.vgg16.preprocess_input(batch.copy())
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(batch, before)
    assert out.dtype == np.float32 and not np.shares_memory(out, batch)


def test_preprocess_vgg16_is_bgr_minus_mean():
    out = preprocess_vgg16(np.array([[[10.0, 20.0, 30.0]]]))
    np.testing.assert_allclose(
        out[0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-6
    )


# -- content keys of files, remembered while the file is unchanged -----------


@pytest.fixture
def counted_reads(monkeypatch):
    reads = []
    opener = images.open_regular_file

    def counting(path, label=None):
        reads.append(path)
        return opener(path, label)

    # Files are opened to hash them (keys) and to decode them (decode).
    monkeypatch.setattr("tlsk.images.keys.open_regular_file", counting)
    monkeypatch.setattr(images, "open_regular_file", counting)
    clear_caches()
    return reads


def test_a_settled_file_is_hashed_once(tmp_path, counted_reads, monkeypatch):
    monkeypatch.setattr("tlsk._util.memo.SETTLED_NS", -1)
    path = tmp_path / "a.png"
    Image.new("RGB", (4, 4), (1, 2, 3)).save(path)
    first = FileInput(path).content_key()
    assert FileInput(str(path)).content_key() == first
    assert first == hashlib.sha256(path.read_bytes()).digest()
    assert len(counted_reads) == 1


def test_a_rewritten_file_of_the_same_size_gets_its_new_key(
    tmp_path, counted_reads, monkeypatch
):
    monkeypatch.setattr("tlsk._util.memo.SETTLED_NS", -1)
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 64)
    before = FileInput(path).content_key()
    time.sleep(0.05)  # past the file system's timestamp resolution
    stat = os.stat(path)
    path.write_bytes(b"y" * 64)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # mtime put back
    after = FileInput(path).content_key()
    assert after == hashlib.sha256(b"y" * 64).digest() != before


def test_a_file_written_just_now_is_not_remembered(tmp_path, counted_reads):
    # Within SETTLED_NS of its last change, a file could change again without
    # its timestamps moving, so its key is computed each time.
    path = tmp_path / "fresh.bin"
    path.write_bytes(b"z" * 16)
    FileInput(path).content_key()
    FileInput(path).content_key()
    assert len(counted_reads) == 2
