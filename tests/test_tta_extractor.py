"""The extractor's ``tta``: vectors averaged over the views of tlsk.images.tta, each
view cached in a namespace of its own (the image as it is: the plain one).

The views themselves and the Keras classifiers' ``tta`` are tested in
tests/test_tta.py; ``--tta`` on the command line in tests/test_cli_tta.py.
"""

import pickle

import joblib
import numpy as np
import pytest
from sklearn.base import clone

from tests._datasets import coloured_images
from tlsk import ImageFeatureExtractor, VGG16FeatureExtractor
from tlsk.cache import FeatureCache, namespace_id
from tlsk.images.tta import apply_view, tta_views

# float32: bfloat16 would round the two paths (arrays mirrored before the
# network, views mirrored inside it) differently.
TINY = {"weights": None, "input_size": 32, "precision": "float32", "batch_size": 4}


@pytest.fixture(scope="module")
def images():
    """Six 32 px images (no resizing: a mirrored array is exactly a view)."""
    return coloured_images(2, 32, seed=3)[0]


@pytest.fixture(scope="module")
def plain(images):
    return VGG16FeatureExtractor(**TINY).fit_transform(images)


def test_without_tta_vectors_and_fingerprint_are_unchanged(images, plain):
    extractor = VGG16FeatureExtractor(**TINY, tta=None).fit()
    default = VGG16FeatureExtractor(**TINY).fit()
    assert "tta" not in extractor.fingerprint_
    assert extractor.fingerprint_ == default.fingerprint_
    assert extractor.view_fingerprints() == {"original": default.fingerprint_}
    np.testing.assert_array_equal(extractor.transform(images), plain)


def test_flip_is_the_mean_of_the_image_and_its_mirror(images, plain):
    flipped = VGG16FeatureExtractor(**TINY, tta="flip").fit_transform(images)
    mirrored = VGG16FeatureExtractor(**TINY).fit_transform(images[:, :, ::-1])
    assert flipped.shape == plain.shape and flipped.dtype == np.float32
    np.testing.assert_allclose(flipped, (plain + mirrored) / 2, rtol=1e-5, atol=1e-6)
    assert not np.allclose(flipped, plain)


def test_ten_crop_is_the_mean_of_ten_views(images, plain):
    extractor = ImageFeatureExtractor(**TINY, tta="ten_crop").fit()
    reference = VGG16FeatureExtractor(**TINY).fit()
    batch = images.astype(np.float32)
    views = [apply_view(batch, view) for view in tta_views("ten_crop")]
    expected = np.mean([reference.transform(view) for view in views], axis=0)
    np.testing.assert_allclose(
        extractor.transform(images), expected, rtol=1e-5, atol=1e-6
    )


def test_each_view_has_its_own_namespace_the_original_the_plain_one():
    extractor = VGG16FeatureExtractor(**TINY, tta="ten_crop").fit()
    plain = VGG16FeatureExtractor(**TINY).fit().fingerprint_
    views = extractor.view_fingerprints()
    assert list(views) == list(tta_views("ten_crop"))
    assert views["original"] == plain
    assert len({namespace_id(fp) for fp in views.values()}) == 10
    # The output says its mode: averaged vectors are never taken for plain ones.
    assert extractor.fingerprint_ == {**plain, "tta": "ten_crop"}
    assert namespace_id(extractor.fingerprint_) not in {
        namespace_id(fp) for fp in views.values()
    }


def test_a_second_tta_transform_computes_nothing(tmp_path, images, count_predictions):
    cache = tmp_path / "features.h5"
    first = VGG16FeatureExtractor(**TINY, tta="flip", cache=cache).fit()
    cold = first.transform(images)
    assert count_predictions["images"] == 2 * len(images)
    info = FeatureCache(cache).info()
    assert sorted(ns.entries for ns in info.namespaces) == [6, 6]
    again = clone(first).fit().transform(images)
    assert count_predictions["images"] == 2 * len(images), "all from the cache"
    np.testing.assert_array_equal(again, cold)


def test_a_tta_transform_reuses_plain_cached_vectors(
    tmp_path, images, plain, count_predictions
):
    cache = tmp_path / "features.h5"
    stored = VGG16FeatureExtractor(**TINY, cache=cache).fit().transform(images)
    np.testing.assert_array_equal(stored, plain)
    computed = count_predictions["images"]
    flip = VGG16FeatureExtractor(**TINY, tta="flip", cache=cache).fit()
    cached = flip.transform(images)
    assert count_predictions["images"] - computed == len(images), "mirrors only"
    uncached = VGG16FeatureExtractor(**TINY, tta="flip").fit().transform(images)
    np.testing.assert_allclose(cached, uncached, rtol=1e-6, atol=1e-7)


def test_twins_and_undecodable_files_with_tta(tmp_path, images):
    from PIL import Image

    paths = []
    for i, image in enumerate(images[:2]):
        paths.append(tmp_path / f"image{i}.png")
        Image.fromarray(image).save(paths[-1])
    (tmp_path / "broken.png").write_text("not an image")
    files = [paths[0], paths[1], paths[0], tmp_path / "broken.png"]
    extractor = VGG16FeatureExtractor(
        **TINY, tta="flip", on_error="nan", cache=tmp_path / "features.h5"
    ).fit()
    with pytest.warns(UserWarning, match="broken.png"):
        features = extractor.transform(files)
    np.testing.assert_array_equal(features[2], features[0])
    assert np.isnan(features[3]).all() and np.isfinite(features[:3]).all()


def test_with_tta_gives_a_fitted_copy_with_another_mode(images, plain):
    extractor = VGG16FeatureExtractor(**TINY).fit()
    flip = extractor.with_tta("flip")
    assert flip.tta == "flip" and extractor.tta is None
    assert flip.fingerprint_["tta"] == "flip" and "tta" not in extractor.fingerprint_
    expected = VGG16FeatureExtractor(**TINY, tta="flip").fit_transform(images)
    np.testing.assert_allclose(flip.transform(images), expected, rtol=1e-6)
    back = flip.with_tta(None)
    assert back.fingerprint_ == extractor.fingerprint_
    np.testing.assert_array_equal(back.transform(images), plain)


def test_tta_set_after_fit_is_refused_not_ignored(images):
    extractor = VGG16FeatureExtractor(**TINY).fit().set_params(tta="flip")
    with pytest.raises(ValueError, match=r"tta was set to 'flip' after .*with_tta"):
        extractor.transform(images)


@pytest.mark.parametrize("dump", ["pickle", "joblib"])
def test_a_round_trip_keeps_tta(tmp_path, images, dump):
    extractor = VGG16FeatureExtractor(**TINY, tta="flip").fit()
    if dump == "pickle":
        loaded = pickle.loads(pickle.dumps(extractor))
    else:
        joblib.dump(extractor, tmp_path / "extractor.joblib")
        loaded = joblib.load(tmp_path / "extractor.joblib")
    assert loaded.tta == "flip" and loaded.fingerprint_ == extractor.fingerprint_
    np.testing.assert_array_equal(loaded.transform(images), extractor.transform(images))


def test_an_extractor_pickled_before_tta_existed_loads_without_it(images, plain):
    extractor = VGG16FeatureExtractor(**TINY).fit()
    state = extractor.__getstate__()
    del state["tta"]
    old = VGG16FeatureExtractor.__new__(VGG16FeatureExtractor)
    old.__setstate__(state)
    assert old.get_params()["tta"] is None
    np.testing.assert_array_equal(old.transform(images), plain)


@pytest.mark.parametrize("bad", ["five_crop", "Flip"])
def test_a_bad_mode_is_named(bad):
    with pytest.raises(ValueError, match=r"'tta' parameter .*'flip'"):
        VGG16FeatureExtractor(**TINY, tta=bad).fit()
    with pytest.raises(ValueError, match=rf"tta must be None or one of .*'{bad}'"):
        VGG16FeatureExtractor(**TINY).fit().with_tta(bad)


def test_featurize_on_dask_gives_the_tta_transform(tmp_path, images):
    pytest.importorskip("distributed")
    from distributed import Client

    from tlsk.features.distributed import featurize, local_cluster

    extractor = VGG16FeatureExtractor(
        **TINY, tta="flip", cache=tmp_path / "features.h5"
    ).fit()
    with local_cluster(1, processes=False) as cluster, Client(cluster) as client:
        features = featurize(images, extractor, client, shard_size=4)
    expected = VGG16FeatureExtractor(**TINY, tta="flip").fit_transform(images)
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)
    info = FeatureCache(extractor.cache_path_).info().namespaces
    assert {ns.id for ns in info} == {
        namespace_id(fp) for fp in extractor.view_fingerprints().values()
    }
    np.testing.assert_array_equal(extractor.transform(images), features)
