"""VGG16FeatureExtractor: inputs, scikit-learn behaviour, caching, persistence."""

import hashlib
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import joblib
import numpy as np
import pytest
from PIL import Image
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVC

from tests._cache_files import run_files
from tests._datasets import coloured_images, write_image_folder
from tlsk import FeatureCache, ImageError, VGG16FeatureExtractor

REPO = Path(__file__).resolve().parents[1]


def tiny(**params):
    """The extractor on a random 32 px VGG16: fast and the same everywhere."""
    return VGG16FeatureExtractor(
        **{"weights": None, "input_size": 32, "batch_size": 8, **params}
    )


@pytest.fixture(scope="module")
def images():
    return coloured_images(4, size=32)[0]


# -- input kinds ------------------------------------------------------------


def test_array_batch_gives_float32_rows_in_input_order(images):
    extractor = tiny().fit()
    features = extractor.transform(images)
    assert features.shape == (len(images), 512) and features.dtype == np.float32
    np.testing.assert_allclose(
        extractor.transform(images[::-1]), features[::-1], rtol=1e-5, atol=1e-6
    )


def test_paths_str_and_pathlib_equal_the_decoded_arrays(tmp_path, images):
    paths = []
    for i, image in enumerate(images[:4]):
        path = tmp_path / f"img {i}.png"  # lossless, and a space in the name
        Image.fromarray(image).save(path)
        paths.append(path if i % 2 else str(path))
    extractor = tiny().fit()
    np.testing.assert_allclose(
        extractor.transform(paths), extractor.transform(images[:4]), rtol=1e-5
    )


def test_grayscale_batch_equals_the_same_gray_in_rgb():
    gray = coloured_images(1)[0][..., 0]
    extractor = tiny().fit()
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    np.testing.assert_allclose(
        extractor.transform(gray), extractor.transform(rgb), rtol=1e-5
    )


def test_list_of_arrays_of_different_sizes_is_resized(images):
    mixed = [np.asarray(Image.fromarray(images[0]).resize((50, 40))), images[1]]
    features = tiny().fit().transform(mixed)
    assert features.shape == (2, 512) and np.isfinite(features).all()


def test_callers_float_array_is_not_modified(images):
    floats = images.astype(np.float32)
    before = floats.copy()
    tiny().fit().transform(floats)
    np.testing.assert_array_equal(floats, before)


def test_bad_input_kind_is_named():
    with pytest.raises(ValueError, match=r"\(10, 5\)"):
        tiny().fit().transform(np.zeros((10, 5)))


# -- scikit-learn behaviour --------------------------------------------------


def test_transform_before_fit_raises_not_fitted(images):
    with pytest.raises(NotFittedError):
        tiny().transform(images)


def test_fit_learns_fingerprint_and_width():
    extractor = tiny(pooling="max").fit()
    assert extractor.n_features_out_ == 512
    assert extractor.fingerprint_["pooling"] == "max"
    assert extractor.fingerprint_["input_size"] == 32
    assert extractor.fingerprint_["weights_sha256"].startswith("random")


def test_feature_names_out():
    names = tiny(layer="block4_pool", pooling="avg").fit().get_feature_names_out()
    assert len(names) == 512
    assert names[0] == "vgg16_block4_pool_avg0" and names[-1].endswith("avg511")


def test_clone_of_a_fitted_extractor_is_unfitted_with_the_same_params(images):
    extractor = tiny(pooling="max", cache="x.h5").fit()
    copy = clone(extractor)
    assert copy.get_params() == extractor.get_params()
    with pytest.raises(NotFittedError):
        copy.transform(images)


def test_set_params_after_fit_cannot_mix_configurations(tmp_path, images):
    cache = str(tmp_path / "f.h5")
    extractor = tiny(cache=cache).fit()
    expected = extractor.transform(images)
    # Until the next fit, the output keeps the fitted configuration.
    extractor.set_params(interpolation="nearest", input_size=64)
    np.testing.assert_array_equal(extractor.transform(images[::-1]), expected[::-1])
    (namespace,) = FeatureCache(cache).info().namespaces
    assert namespace.fingerprint["interpolation"] == "bilinear"


def test_another_interpolation_gets_its_own_cache_namespace(tmp_path):
    odd_sized = [
        np.asarray(Image.fromarray(img).resize((45, 37)))
        for img in coloured_images(2)[0]
    ]
    cache = str(tmp_path / "f.h5")
    tiny(cache=cache).fit().transform(odd_sized)
    nearest = tiny(cache=cache, interpolation="nearest").fit().transform(odd_sized)
    np.testing.assert_allclose(
        nearest, tiny(interpolation="nearest").fit().transform(odd_sized), rtol=1e-5
    )
    assert len(FeatureCache(cache).info().namespaces) == 2


def test_n_jobs_minus_one_means_all_cpus(images):
    np.testing.assert_allclose(
        tiny(n_jobs=-1).fit().transform(images),
        tiny().fit().transform(images),
        rtol=1e-5,
    )


@pytest.mark.parametrize(
    "param, value, match",
    [
        ("pooling", "mean", r"pooling must be one of .'avg', 'max', 'flatten'."),
        ("layer", "block2_pool", r"'layer'.*Got 'block2_pool'"),
        ("input_size", 16, r"'input_size'.*\[32, 2048\].*Got 16"),
        ("batch_size", 0, r"'batch_size'.*Got 0"),
        ("on_error", "skip", r"'on_error'.*Got 'skip'"),
        ("interpolation", "cubic", r"'interpolation'.*Got 'cubic'"),
        ("cache", 3, r"'cache'.*Got 3"),
        ("n_jobs", 0, r"'n_jobs'.*Got 0"),
        ("max_image_pixels", 0, r"'max_image_pixels'.*Got 0"),
        ("verbose", "loud", r"'verbose'.*Got 'loud'"),
        ("layer", "fc1", r"'layer'.*'block5_pool'.*Got 'fc1'"),
        ("weights", "imagenett", r"weights must be 'imagenet'.*'imagenett'"),
    ],
)
def test_bad_parameter_values_are_named_at_fit(param, value, match):
    """Each names the parameter, what is allowed and what was received."""
    extractor = tiny(**{param: value})  # __init__ accepts anything
    with pytest.raises(ValueError, match=match):
        extractor.fit()


@pytest.mark.parametrize("where", ["folder", "missing_parent"])
def test_unusable_cache_path_is_named_at_fit(tmp_path, where):
    cache = tmp_path if where == "folder" else tmp_path / "nowhere" / "f.h5"
    with pytest.raises(ValueError, match=r"cache must be the path of an HDF5 file"):
        tiny(cache=cache).fit()


def test_pipeline_with_logistic_regression_and_svc_learns_colours():
    X, y = coloured_images(12)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.5, stratify=y, random_state=0
    )
    for classifier in (LogisticRegression(max_iter=2000), SVC()):
        model = make_pipeline(tiny(), classifier).fit(X_train, y_train)
        assert model.score(X_test, y_test) >= 0.8, classifier


def test_grid_search_over_extractor_parameters(tmp_path):
    X, y = coloured_images(6)
    search = GridSearchCV(
        make_pipeline(tiny(cache=str(tmp_path / "f.h5")), LogisticRegression()),
        {"vgg16featureextractor__pooling": ["avg", "max"]},
        cv=2,
    ).fit(X, y)
    assert len(search.cv_results_["params"]) == 2
    fingerprints = FeatureCache(tmp_path / "f.h5").info().namespaces
    assert sorted(ns.fingerprint["pooling"] for ns in fingerprints) == ["avg", "max"]


def test_grid_search_n_jobs_2_computes_each_image_once(tmp_path):
    paths, labels = write_image_folder(tmp_path / "images", 8)
    cache = tmp_path / "features.h5"
    search = GridSearchCV(
        make_pipeline(tiny(cache=str(cache)), LogisticRegression(max_iter=2000)),
        {"logisticregression__C": [0.1, 1.0, 10.0]},
        cv=3,
        n_jobs=2,
    ).fit(paths, labels)
    assert search.best_score_ > 0.5
    (namespace,) = FeatureCache(cache).info().namespaces
    assert namespace.entries == len(paths)
    # Nine fits on two worker processes, yet each image went through VGG16 once.
    assert namespace.rows_written == len(paths)


# -- the feature cache -------------------------------------------------------


def test_warm_cache_returns_the_stored_vectors_without_vgg16(
    tmp_path, images, count_predictions
):
    extractor = tiny(cache=str(tmp_path / "f.h5")).fit()
    cold = extractor.transform(images)
    assert count_predictions["images"] == len(images)
    warm = extractor.transform(images)
    assert count_predictions["images"] == len(images)
    np.testing.assert_array_equal(warm, cold)


def test_cache_computes_only_the_misses(tmp_path, images, count_predictions):
    extractor = tiny(cache=str(tmp_path / "f.h5")).fit()
    extractor.transform(images[:5])
    extractor.transform(images)
    assert count_predictions["images"] == len(images)


def test_duplicate_images_are_computed_once(tmp_path, images, count_predictions):
    doubled = np.concatenate([images[:3], images[:3]])
    features = tiny(cache=str(tmp_path / "f.h5")).fit().transform(doubled)
    assert count_predictions["images"] == 3
    np.testing.assert_array_equal(features[:3], features[3:])


def test_cached_vectors_are_never_served_to_another_configuration(tmp_path, images):
    cache = str(tmp_path / "f.h5")
    block5 = tiny(cache=cache).fit().transform(images)
    block4 = tiny(cache=cache, layer="block4_pool").fit().transform(images)
    fresh_block4 = tiny(layer="block4_pool").fit().transform(images)
    np.testing.assert_allclose(block4, fresh_block4, rtol=1e-5)
    assert not np.allclose(block5, block4, rtol=0.01)


def test_cache_hits_equal_uncached_features(tmp_path, images):
    cached = tiny(cache=str(tmp_path / "f.h5")).fit()
    cached.transform(images)
    np.testing.assert_allclose(
        cached.transform(images), tiny().fit().transform(images), rtol=1e-5
    )


# -- bad files ---------------------------------------------------------------


def _folder_with_bad_file(tmp_path, images):
    paths = []
    for i, image in enumerate(images[:6]):
        path = tmp_path / f"ok_{i}.png"
        Image.fromarray(image).save(path)
        paths.append(str(path))
    bad = tmp_path / "broken.jpg"
    bad.write_text("not an image")
    paths.insert(4, str(bad))
    return paths, str(bad)


def test_bad_file_raises_naming_it_and_keeps_finished_batches(tmp_path, images):
    paths, bad = _folder_with_bad_file(tmp_path, images)
    cache = tmp_path / "f.h5"
    with pytest.raises(ImageError, match="broken.jpg"):
        tiny(cache=str(cache), batch_size=2).fit().transform(paths)
    (namespace,) = FeatureCache(cache).info().namespaces
    assert namespace.entries >= 4  # the two batches before the bad file


def test_on_error_nan_gives_a_nan_row_and_a_warning_naming_the_file(tmp_path, images):
    paths, bad = _folder_with_bad_file(tmp_path, images)
    with pytest.warns(UserWarning, match="broken.jpg"):
        features = tiny(on_error="nan").fit().transform(paths)
    assert np.isnan(features[4]).all()
    assert np.isfinite(np.delete(features, 4, axis=0)).all()


def test_on_error_nan_with_a_cache_and_a_missing_file(tmp_path, images):
    paths, _ = _folder_with_bad_file(tmp_path, images)
    paths[1] = str(tmp_path / "gone.png")
    with pytest.warns(UserWarning, match=r"2 of 7 .*gone\.png.*broken\.jpg"):
        features = (
            tiny(on_error="nan", cache=str(tmp_path / "f.h5")).fit().transform(paths)
        )
    assert np.isnan(features[[1, 4]]).all()
    assert np.isfinite(np.delete(features, [1, 4], axis=0)).all()


def test_missing_file_with_a_cache_raises_naming_it(tmp_path, images):
    paths, _ = _folder_with_bad_file(tmp_path, images)
    paths[1] = str(tmp_path / "gone.png")
    with pytest.raises(ImageError, match="gone.png"):
        tiny(cache=str(tmp_path / "f.h5")).fit().transform(paths)


def test_verbose_shows_a_progress_bar_on_stderr(images, capsys):
    tiny(verbose=1).fit().transform(images)
    assert "VGG16 features" in capsys.readouterr().err


def test_silent_by_default(images, capsys):
    tiny().fit().transform(images)
    assert capsys.readouterr().err == ""


# -- persistence and processes -----------------------------------------------


def _run_python(code, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


def test_joblib_round_trip_in_a_fresh_process(tmp_path):
    paths, labels = write_image_folder(tmp_path / "images", 5)
    model = make_pipeline(tiny(), LogisticRegression(max_iter=2000)).fit(paths, labels)
    joblib.dump(model, tmp_path / "model.joblib")
    assert len(pickle.dumps(model)) < 100_000, "no Keras model in the pickle"
    result = _run_python(
        f"""
        import joblib, numpy as np
        model = joblib.load({str(tmp_path / "model.joblib")!r})
        paths = {paths!r}
        np.save({str(tmp_path / "features.npy")!r}, model[0].transform(paths))
        np.save({str(tmp_path / "proba.npy")!r}, model.predict_proba(paths))
        """
    )
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(
        np.load(tmp_path / "features.npy"), model[0].transform(paths)
    )
    np.testing.assert_array_equal(
        np.load(tmp_path / "proba.npy"), model.predict_proba(paths)
    )


_EXTRACT_SCRIPT = """
import sys
from tlsk import VGG16FeatureExtractor
extractor = VGG16FeatureExtractor(
    weights=None, input_size=32, batch_size=2, cache=sys.argv[1]
).fit()
print("ready", flush=True)
sys.stdin.readline()  # the start signal: both processes begin together
extractor.transform(sys.argv[2:])
print("done", flush=True)
"""


def _extract_in_subprocess(cache, paths):
    """A process that extracts ``paths`` into ``cache`` once told to start."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    child = subprocess.Popen(
        [sys.executable, "-c", _EXTRACT_SCRIPT, str(cache), *paths],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "ready", child.stderr.read()
    return child


def _start(*children):
    for child in children:
        child.stdin.write("go\n")
        child.stdin.flush()


def test_sigkill_during_extraction_keeps_finished_batches(tmp_path):
    paths, _ = write_image_folder(tmp_path / "images", 20)
    cache = tmp_path / "f.h5"
    child = _extract_in_subprocess(cache, paths)
    _start(child)
    runs = Path(str(cache) + ".runs")
    deadline = time.monotonic() + 120
    while not (cache.exists() and FeatureCache(cache).info().namespaces):
        assert child.poll() is None, child.stderr.read()
        assert time.monotonic() < deadline, "no batch was stored in time"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.communicate()  # reaps it and closes its pipes
    assert FeatureCache(cache).verify() == []
    expected = tiny().fit().transform(paths)
    found, vectors = FeatureCache(cache).lookup(
        tiny().fit().fingerprint_,
        [hashlib.sha256(Path(p).read_bytes()).digest() for p in paths],
        512,
    )
    assert found.sum() >= 2
    np.testing.assert_allclose(vectors[found], expected[found], rtol=1e-5, atol=1e-6)
    rerun = tiny(cache=str(cache)).fit().transform(paths)
    np.testing.assert_allclose(rerun, expected, rtol=1e-5, atol=1e-6)
    # Whatever the kill left half-written (a temp, an unpublished run) is gone.
    assert sorted(runs.iterdir()) == sorted(map(Path, run_files(cache)))


def test_two_processes_sharing_one_cache_compute_each_image_once(tmp_path):
    paths, _ = write_image_folder(tmp_path / "images", 10)
    cache = tmp_path / "f.h5"
    first = _extract_in_subprocess(cache, paths[:20])
    second = _extract_in_subprocess(cache, paths[10:])
    _start(first, second)
    for child in (first, second):
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0 and "done" in out, err
    (namespace,) = FeatureCache(cache).info().namespaces
    assert namespace.entries == len(paths)
    assert namespace.rows_written == len(paths)
    np.testing.assert_allclose(
        tiny(cache=str(cache)).fit().transform(paths),
        tiny().fit().transform(paths),
        rtol=1e-5,
        atol=1e-6,
    )
