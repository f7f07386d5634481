"""Bad input: a clear error naming the file or parameter, or documented handling.

Never a crash halfway that loses finished work. Each row of issue 7 and the
test that proves it (``test_images``: decoding, ``test_datasets`` and
``test_cli_check_split``: folders, ``test_features``: the extractor):

- truncated JPEG; zero-byte file; text file named ``.jpg``; a directory named
  ``x.jpg``; a broken symlink:
    test_every_bad_file_is_named_and_the_others_kept (one case each)
    test_a_broken_symlink_in_a_class_is_a_bad_file
    test_images::test_truncated_file, test_zero_byte_file,
    test_text_named_jpg_is_not_an_image, test_directory
- PNG or GIF named ``.jpg``:
    test_png_or_gif_named_jpg_gives_its_features
    test_images::test_png_named_jpg_decodes
- modes L, LA, P with transparency, RGBA, CMYK, I;16, I, F, 1:
    test_every_listed_mode_gives_finite_features
    test_images::test_mode_*, test_16_bit_*, test_cmyk_*, test_float_gray_*
- EXIF orientation (same features as a pre-rotated copy):
    test_exif_rotated_file_has_the_features_of_a_rotated_copy
    test_images::test_exif_orientation_in_a_jpeg_is_applied
- animated GIF and multi-page TIFF:
    test_images::test_gif_gives_the_first_frame
    test_images::test_tiff_gives_the_first_page
- a decompression bomb, memory bounded, Pillow's global limit unchanged:
    test_a_bomb_is_refused_in_bounded_memory_and_pillow_untouched
    test_images::test_bomb_is_refused_when_pillows_limit_is_off
- file names with spaces, non-ASCII and non-UTF-8 bytes:
    test_file_names_of_any_bytes_are_transformed
    test_a_folder_with_non_utf8_names_loads_and_checks
- the same names, and control characters, in the HTML reports (``tlsk check
  --report``, ``tlsk evaluate --report``): spelled out (a byte that is not
  UTF-8 as ``\\xff``), the thumbnails written and linked (issue 26):
    test_page_text_spells_out_what_cannot_be_shown
    test_reports_show_names_that_are_not_utf8
- FIFOs, devices, sockets, files over the size bound: see test_special_files
- the same image under two classes:
    test_cli_check_split::test_check_reports_the_same_image_in_two_classes
- an empty class folder:
    test_datasets::test_check_lists_a_class_without_images_as_empty
- a single class:
    test_training_on_a_single_class_is_one_line_naming_it
- ``.DS_Store`` and hidden files:
    test_datasets::test_hidden_files_and_folders_are_ignored
- symlink loops:
    test_datasets::test_symlink_loop_does_not_trap_the_walk
- arrays of the wrong rank; NaN / inf:
    test_images::test_wrong_rank_is_refused_with_the_shape
    test_images::test_float_nan_or_inf_names_the_index
    test_properties (every shape, dtype and value range)
- float data in [0, 1] versus [0, 255] (documented, warned where ambiguous):
    test_float_images_in_0_1_warn_once_naming_the_images
    test_float_images_in_0_255_are_read_as_pixels
- 1x1 images:
    test_one_pixel_images_give_finite_features
- wrong feature width at predict:
    test_a_pipeline_given_features_of_another_width_says_so
"""

import os
import re
import resource
import warnings

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from tests._datasets import coloured_images
from tests._image_files import png_header_only, smooth_rgb, write
from tests.robustness._support import tiny
from tlsk import ImageError, check_image_folder, load_image_folder
from tlsk.cli import main
from tlsk.evaluation.report._page import e
from tlsk.images.decode import ImageRangeWarning, image_inputs
from tlsk.persistence.model_files import save_model


@pytest.fixture(scope="module")
def extractor():
    return tiny().fit()


@pytest.fixture(scope="module")
def pixels():
    return coloured_images(1, size=32)[0]  # 3 images, uint8


def _bad_files(folder):
    """name -> a path that cannot be decoded, one per kind of bad file."""
    good = write(folder / "good.jpg", smooth_rgb(32, 32), "JPEG")
    data = good.read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not an image\n")
    (folder / "x.jpg").mkdir()
    (folder / "broken.jpg").symlink_to(folder / "nowhere.jpg")
    return {
        "truncated": (folder / "truncated.jpg", "truncated"),
        "zero-byte": (folder / "empty.jpg", "empty"),
        "text": (folder / "text.jpg", "not an image"),
        "directory": (folder / "x.jpg", "directory"),
        "broken symlink": (folder / "broken.jpg", "no such file"),
    }


@pytest.mark.parametrize(
    "kind", ["truncated", "zero-byte", "text", "directory", "broken symlink"]
)
def test_every_bad_file_is_named_and_the_others_kept(tmp_path, extractor, kind):
    bad, reason = _bad_files(tmp_path)[kind]
    good = [
        str(write(tmp_path / f"g{i}.png", smooth_rgb(32, 32 + i), "PNG"))
        for i in range(3)
    ]
    expected = extractor.transform(good)
    with pytest.raises(ImageError, match=f"{bad.name}.*{reason}"):
        extractor.transform([good[0], str(bad), good[1]])
    nan = extractor.set_params(on_error="nan")
    try:
        with pytest.warns(UserWarning, match=f"1 of 4 images.*{bad.name}.*{reason}"):
            out = nan.transform([good[0], str(bad), good[1], good[2]])
    finally:
        extractor.set_params(on_error="raise")
    assert np.isnan(out[1]).all()
    np.testing.assert_allclose(out[[0, 2, 3]], expected, rtol=1e-5, atol=1e-6)


def test_a_broken_symlink_in_a_class_is_a_bad_file(tmp_path):
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        write(tmp_path / label / "ok.png", smooth_rgb(8, 8 + len(label)), "PNG")
    (tmp_path / "a" / "gone.png").symlink_to(tmp_path / "missing.png")
    report = check_image_folder(tmp_path)
    assert report["bad_files"] == [
        {"path": "a/gone.png", "class": "a", "reason": "no such file; check the path"}
    ]
    with pytest.warns(UserWarning, match="gone.png"):
        paths, _ = load_image_folder(tmp_path)
    assert len(paths) == 2


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_png_or_gif_named_jpg_gives_its_features(tmp_path, extractor, fmt):
    image = np.zeros((32, 32, 3), np.uint8)
    image[:16] = 255  # two colours: the GIF palette keeps them exactly
    named = write(tmp_path / "photo.jpg", image, fmt)
    np.testing.assert_allclose(
        extractor.transform([str(named)]), extractor.transform(image[None]), atol=1e-6
    )


_MODES = {
    "1": lambda: Image.new("1", (16, 16), 1),
    "L": lambda: Image.new("L", (16, 16), 100),
    "LA": lambda: Image.new("LA", (16, 16), (100, 128)),
    "P+tRNS": lambda: _transparent_palette(),
    "RGBA": lambda: Image.new("RGBA", (16, 16), (10, 200, 30, 128)),
    "CMYK": lambda: Image.new("CMYK", (16, 16), (200, 0, 0, 0)),
    "I;16": lambda: Image.new("I;16", (16, 16), 40000),
    "I": lambda: Image.new("I", (16, 16), 70000),
    "F": lambda: Image.new("F", (16, 16), 300.5),
}


def _transparent_palette():
    image = Image.new("P", (16, 16), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.info["transparency"] = 1
    return image


@pytest.mark.parametrize("mode", list(_MODES))
def test_every_listed_mode_gives_finite_features(tmp_path, extractor, mode):
    image = _MODES[mode]()
    fmt = "TIFF" if mode in ("CMYK", "I", "F") else "PNG"
    path = tmp_path / f"{mode.replace(';', '_')}.{fmt.lower()}"
    kwargs = {"transparency": 1} if mode == "P+tRNS" else {}
    image.save(path, fmt, **kwargs)
    out = extractor.transform([str(path)])
    assert out.shape == (1, extractor.n_features_out_) and np.isfinite(out).all()


def test_exif_rotated_file_has_the_features_of_a_rotated_copy(tmp_path, extractor):
    image = smooth_rgb(32, 48)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    tagged = write(tmp_path / "tagged.png", image, "PNG", exif=exif.tobytes())
    rotated = write(
        tmp_path / "rotated.png",
        Image.fromarray(image).transpose(Image.Transpose.ROTATE_270),
        "PNG",
    )
    np.testing.assert_array_equal(
        extractor.transform([str(tagged)]), extractor.transform([str(rotated)])
    )


def test_a_bomb_is_refused_in_bounded_memory_and_pillow_untouched(tmp_path, extractor):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(20_000, 20_000))  # 400 Mpixels, 1.2 GB as RGB
    limit = Image.MAX_IMAGE_PIXELS
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ImageError, match="bomb.png.*too many pixels"):
        extractor.transform([str(bomb)])
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 100, f"peak memory grew by {grown_mb:.0f} MB"
    assert Image.MAX_IMAGE_PIXELS == limit


_NAMES = [b"with spaces.png", "caf\u00e9 \u732b.png".encode(), b"latin1 \xe9\xff.png"]


@pytest.mark.parametrize("name", _NAMES, ids=["spaces", "non-ascii", "non-utf8"])
def test_file_names_of_any_bytes_are_transformed(tmp_path, extractor, pixels, name):
    path = os.path.join(os.fsencode(tmp_path), name)
    with open(path, "wb") as file:
        Image.fromarray(pixels[0]).save(file, "PNG")
    expected = extractor.transform(pixels[:1])
    for given in (path, os.fsdecode(path)):
        (item,) = image_inputs([given])
        assert item.label == os.fsdecode(path)
        np.testing.assert_allclose(extractor.transform([given]), expected, atol=1e-6)


def test_a_folder_with_non_utf8_names_loads_and_checks(tmp_path, capsys):
    root = os.fsencode(tmp_path)
    for label in (b"caf\xe9", b"plain"):
        os.mkdir(os.path.join(root, label))
        for i in range(2):
            name = os.path.join(root, label, b"img \xff%d.png" % i)
            with open(name, "wb") as file:
                Image.fromarray(smooth_rgb(8, 8 + i + 3 * len(label))).save(file, "PNG")
    for given in (root, tmp_path):
        paths, labels = load_image_folder(given)
        assert sorted(set(labels.tolist())) == [os.fsdecode(b"caf\xe9"), "plain"]
        assert all(os.path.isfile(p) for p in paths) and len(paths) == 4
        assert check_image_folder(given)["n_images"] == 4
    assert main(["check", "--strict", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # Shown escaped as the pages show it (the byte), never a UnicodeEncodeError.
    assert "'caf\\xe9'" in out
    assert main(["check", "--json", str(tmp_path)]) == 0


def test_page_text_spells_out_what_cannot_be_shown():
    name = os.fsdecode(b"caf\xe9 \xff<b>.png")
    assert e(name) == "caf\\xe9 \\xff&lt;b&gt;.png"
    assert e("new\nline \x1b[2J caf\u00e9 \ud800") == (
        "new\\nline \\x1b[2J caf\u00e9 \\ud800"
    )
    assert e("plain caf\u00e9 \u732b") == "plain caf\u00e9 \u732b"


def _non_utf8_folder(root):
    """Class folders caf<0xE9> and plain, three PNGs each named img <0xFF>N.png."""
    root = os.fsencode(root)
    for label in (b"caf\xe9", b"plain"):
        os.makedirs(os.path.join(root, label))
        for i in range(3):
            name = os.path.join(root, label, b"img \xff%d.png" % i)
            with open(name, "wb") as file:
                Image.fromarray(smooth_rgb(8, 8 + i + 3 * len(label))).save(file, "PNG")
    return os.fsdecode(root)


def _shown_with_thumbnails(page, folder, n_images):
    """The names show spelled out, and each image has its thumbnail, linked."""
    text = page.read_text(encoding="utf-8")
    assert "caf\\xe9" in text and "img \\xff0.png" in text
    linked = set(re.findall(r'<img src="thumbs/([^"]+)" alt="[^"]*img \\xff', text))
    assert len(linked) == n_images
    assert linked <= set(os.listdir(folder / "thumbs"))


def test_reports_show_names_that_are_not_utf8(tmp_path):
    data = _non_utf8_folder(tmp_path / "data")
    assert main(["check", data, "--report", str(tmp_path / "check"), "-q"]) == 0
    _shown_with_thumbnails(tmp_path / "check" / "index.html", tmp_path / "check", 6)
    paths, labels = load_image_folder(data)
    model = make_pipeline(tiny(), LogisticRegression()).fit(paths, labels)
    save_model(model, str(tmp_path / "m.joblib"), {"method": "bottleneck"})
    argv = ["evaluate", str(tmp_path / "m.joblib"), data, "-q"]
    assert main([*argv, "--report", str(tmp_path / "evaluation")]) == 0
    page = tmp_path / "evaluation" / "index.html"
    _shown_with_thumbnails(page, tmp_path / "evaluation", 6)


def test_training_on_a_single_class_is_one_line_naming_it(tmp_path, capsys):
    (tmp_path / "data" / "only").mkdir(parents=True)
    for i in range(4):
        write(tmp_path / "data" / "only" / f"{i}.png", smooth_rgb(8, 8 + i), "PNG")
    argv = [
        "train",
        str(tmp_path / "data"),
        "--weights",
        "none",
        "--out",
        str(tmp_path / "m.joblib"),
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "at least 2 classes" in err and "'only'" in err and "Traceback" not in err
    assert not (tmp_path / "m.joblib").exists()


def test_float_images_in_0_1_warn_once_naming_the_images(extractor, pixels):
    scaled = pixels.astype(np.float64) / 255
    with pytest.warns(ImageRangeWarning) as record:
        out = extractor.transform(scaled)
    assert len(record) == 1
    message = str(record[0].message)
    assert message.startswith("3 of 3 float images have values in [0, 1] (X[0], ")
    assert "0-255 scale" in message and "multiply them by 255" in message
    many = np.concatenate([scaled] * 3)
    with pytest.warns(ImageRangeWarning, match=r"9 of 9 .*X\[4\] and 4 more"):
        extractor.transform(many)
    with pytest.warns(ImageRangeWarning) as record:
        tiny().fit_transform(scaled)
    assert len(record) == 1  # fit only checks the kind of X
    # Read as 0-255 all the same, as documented: nearly black images.
    np.testing.assert_allclose(out, extractor.transform(scaled * 0), atol=0.05)


def test_float_images_in_0_255_are_read_as_pixels(extractor, pixels):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ImageRangeWarning, nor any other
        out = extractor.transform(pixels.astype(np.float32))
        black = extractor.transform(np.zeros((1, 8, 8, 3), np.float32))
    np.testing.assert_allclose(out, extractor.transform(pixels), atol=1e-5)
    assert np.isfinite(black).all()


def test_one_pixel_images_give_finite_features(tmp_path, extractor):
    dot = np.array([[[200, 10, 30]]], np.uint8)
    path = write(tmp_path / "dot.png", dot, "PNG")
    out = extractor.transform([dot, dot[..., 0], str(path)])
    assert out.shape == (3, extractor.n_features_out_) and np.isfinite(out).all()
    np.testing.assert_allclose(out[0], out[2], atol=1e-6)


def test_a_pipeline_given_features_of_another_width_says_so(pixels):
    y = ["a", "b", "c"]
    pipeline = make_pipeline(tiny(layer="block5_pool"), LogisticRegression()).fit(
        pixels, y
    )
    pipeline.steps[0] = ("vgg16", tiny(layer="block3_pool").fit())  # 256 values
    with pytest.raises(ValueError, match="256 features.*expecting 512 features"):
        pipeline.predict(pixels)
