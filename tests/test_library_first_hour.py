"""The library's first hour: what a new user writes first works as written."""

import numpy as np
from sklearn.dummy import DummyClassifier

import tlsk
from tlsk import load_metadata, load_model, save_model
from tlsk.persistence.model_files import load_model_with_metadata


def test_load_model_returns_the_model_and_load_metadata_its_metadata(tmp_path):
    path = tmp_path / "m.joblib"
    save_model(DummyClassifier().fit([[0], [1]], ["a", "b"]), path, {"note": "x"})
    assert load_model(path).predict([[0]]).shape == (1,)
    metadata = load_metadata(path)
    assert metadata["note"] == "x" and len(metadata["model_sha256"]) == 64
    model, paired = load_model_with_metadata(path)
    assert isinstance(model, DummyClassifier) and paired == metadata
    assert "load_metadata" in tlsk.__all__


def test_load_metadata_reads_no_model(tmp_path, monkeypatch):
    import joblib

    path = tmp_path / "m.joblib"
    save_model(DummyClassifier().fit([[0], [1]], [0, 1]), path)

    def refuse(*args, **kwargs):
        raise AssertionError("load_metadata unpickled the model")

    monkeypatch.setattr(joblib, "load", refuse)
    assert load_metadata(path)["serialization"] == "joblib"
    assert np.array_equal(load_model.__kwdefaults__["trusted"], ())


def _extractor(**params):
    return tlsk.ImageFeatureExtractor(weights=None, input_size=32, **params)


def test_a_list_of_pil_images_gives_the_vectors_of_its_files(tmp_path):
    from PIL import Image

    from tests._datasets import write_image_folder

    paths, _ = write_image_folder(tmp_path / "data", 2, formats=("png",))
    opened = [Image.open(path) for path in paths]
    extractor = _extractor().fit()
    from_pil = extractor.transform(opened)
    np.testing.assert_allclose(from_pil, extractor.transform(paths), rtol=1e-5)
    # Any mode becomes RGB, as from a file: gray replicated.
    gray = Image.fromarray(np.full((8, 8), 90, np.uint8))
    np.testing.assert_allclose(
        extractor.transform([gray]),
        extractor.transform(np.full((1, 8, 8, 3), 90, np.uint8)),
        rtol=1e-5,
    )


def test_a_pil_image_has_its_exif_orientation_applied_and_is_not_modified():
    from PIL import Image

    from tlsk.images.decode import image_inputs

    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    image = Image.fromarray(pixels)
    image.getexif()[0x0112] = 6  # rotate 90 clockwise to display
    image.info["exif"] = image.getexif().tobytes()
    (item,) = image_inputs([image])
    _, rgb = item.load()
    assert rgb.shape == (3, 2, 3)
    np.testing.assert_array_equal(rgb, np.rot90(pixels, k=-1))
    assert image.size == (3, 2) and image.getexif()[0x0112] == 6


def test_a_single_pil_image_asks_for_a_list():
    import pytest
    from PIL import Image

    with pytest.raises(TypeError, match=r"single PIL image .*\[image\]"):
        _extractor().fit().transform(Image.new("RGB", (8, 8)))


def test_column_transformer_passes_a_single_column_of_paths(tmp_path):
    pd = __import__("pytest").importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from tests._datasets import write_image_folder

    paths, labels = write_image_folder(tmp_path / "data", 3)
    frame = pd.DataFrame({"path": paths, "other": range(len(paths))})
    model = make_pipeline(
        ColumnTransformer([("img", _extractor(), ["path"])]),
        LogisticRegression(max_iter=200),
    ).fit(frame, labels)
    assert model.predict(frame).shape == (len(paths),)
    extractor = _extractor().fit()
    np.testing.assert_allclose(
        model[0].transform(frame), extractor.transform(paths), rtol=1e-5
    )
    column = np.array(paths, dtype=object)[:, np.newaxis]
    assert extractor.transform(column).shape == (len(paths), 512)


def test_a_two_column_array_of_paths_is_refused():
    import pytest

    two = np.array([["a.jpg", "b.jpg"]], dtype=object)
    with pytest.raises(ValueError, match=r"single column \(N, 1\).*shape \(1, 2\)"):
        _extractor().fit().transform(two)


def test_save_model_writes_a_cached_pipeline_as_skops_without_its_cache(tmp_path):
    import pytest
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from tests._datasets import coloured_images

    pytest.importorskip("skops")
    images, labels = coloured_images(2)
    cache = tmp_path / "features.h5"
    pipe = make_pipeline(_extractor(cache=cache), LogisticRegression()).fit(
        images, labels
    )
    path = tmp_path / "m.skops"
    with pytest.warns(UserWarning, match=r"without its feature cache .*steps\[0\]"):
        save_model(pipe, path)
    assert pipe[0].cache == cache and pipe[0].cache_path_ == str(cache)
    loaded = load_model(path)
    assert loaded[0].cache is None and loaded[0].cache_path_ is None
    np.testing.assert_array_equal(loaded.predict(images), pipe.predict(images))
    assert load_metadata(path)["written_without_cache"] == ["model.steps[0][1]"]
    assert str(tmp_path) not in path.read_bytes().decode("latin-1")


def test_save_model_still_refuses_a_skops_model_naming_a_weights_file(tmp_path):
    import pytest

    from tlsk import ModelFileError

    weights = tmp_path / "mine.weights.h5"
    weights.write_bytes(b"")
    extractor = _extractor(cache=tmp_path / "f.h5").set_params(weights=str(weights))
    with pytest.raises(ModelFileError, match="must name no weights file"):
        save_model(extractor, tmp_path / "m.skops")
    assert not (tmp_path / "m.skops").exists()


def test_fine_tuning_names_each_phase_and_its_validation_set(capfd):
    from tests._datasets import coloured_images
    from tests._training import PLAIN

    images, labels = coloured_images(4)
    tlsk.KerasFineTuneClassifier(
        **{**PLAIN, "verbose": 2, "validation_fraction": 0.25},
        weights=None,
        dense_units=(8,),
        head_epochs=2,
        finetune_epochs=1,
        trainable_blocks=1,
    ).fit(images, labels)
    out = capfd.readouterr().out
    head = out.index("phase head (the new head; the network frozen): 2 epochs")
    finetune = out.index(
        "phase finetune (the head and the network's last 1 block): 1 epoch,"
    )
    assert head < out.index("Epoch 1/2") < finetune < out.rindex("val_accuracy: ")
    assert out.count("val_loss and val_accuracy on the 3 validation images held ") == 2
    assert "of the 12 given (validation_fraction=0.25, stratified)" in out


def test_a_fit_without_validation_says_so(capfd):
    from tests._datasets import coloured_images
    from tests._training import PLAIN

    images, labels = coloured_images(2)
    tlsk.SmallCNNClassifier(
        **{**PLAIN, "verbose": 2}, epochs=1, filters=(4, 4, 4), dense_units=8
    ).fit(images, labels)
    out = capfd.readouterr().out
    assert "phase train (the whole network, from scratch): 1 epoch" in out
    assert "no validation images (validation_fraction=0)" in out
    assert "on the 6 training images" in out
