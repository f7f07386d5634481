"""Files written by tlsk 0.1.0 load today and give the outputs they gave then.

``tests/fixtures/release-0.1.0`` was written by
``tests/fixtures/write_release_models.py`` with release 0.1.0, before the
package was laid out by stage: its pickles and ``.skops`` files name the old
module paths (``tlsk.finetune.KerasFineTuneClassifier``, ...), which
``tlsk._compat`` keeps resolvable. Every output is float32 on seeded random
weights; the tolerance covers only the rounding of another CPU's kernels.
"""

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlsk import ImageFeatureExtractor
from tlsk.persistence.model_files import load_model_with_metadata

RELEASE = Path(__file__).parent / "fixtures" / "release-0.1.0"
MODELS = ("bottleneck", "tta-vgg16", "finetune", "scratch")
CLOSE = {"rtol": 1e-4, "atol": 1e-5}


@pytest.fixture(scope="module")
def release():
    record = json.loads((RELEASE / "release.json").read_text())
    paths = [RELEASE / "images" / name for name in record["images"]]
    images = np.stack([np.asarray(Image.open(path)) for path in paths])
    return record, paths, images, np.load(RELEASE / "expected.npz")


@pytest.mark.parametrize("suffix", ["joblib", "skops"])
@pytest.mark.parametrize("name", MODELS)
def test_a_saved_model_gives_the_release_outputs(release, tmp_path, name, suffix):
    _, _, images, expected = release
    # load_model checks the metadata beside the model: copy the pair, so
    # that nothing (a lock file) is ever written into the committed folder.
    for file in (f"{name}.{suffix}", f"{name}.json"):
        shutil.copy(RELEASE / suffix / file, tmp_path / file)
    model, metadata = load_model_with_metadata(tmp_path / f"{name}.{suffix}")
    assert metadata["tlsk_version"] == "0.1.0"
    np.testing.assert_allclose(
        model.predict_proba(images), expected[f"{name}.predict_proba"], **CLOSE
    )
    np.testing.assert_array_equal(model.predict(images), expected[f"{name}.predict"])


def test_a_pickled_extractor_gives_the_release_vectors_and_fingerprint(release):
    record, _, images, expected = release
    extractor = pickle.loads((RELEASE / "extractor.pkl").read_bytes())
    assert type(extractor) is ImageFeatureExtractor
    np.testing.assert_allclose(
        extractor.transform(images), expected["extractor.transform"], **CLOSE
    )
    assert extractor.fingerprint_ == record["extractor_fingerprint"]


def test_a_release_cache_answers_every_image_without_computing(
    release, tmp_path, count_predictions
):
    record, paths, _, expected = release
    shutil.copytree(RELEASE / "features.h5.runs", tmp_path / "features.h5.runs")
    shutil.copy(RELEASE / "features.h5", tmp_path / "features.h5")
    copies = [shutil.copy(path, tmp_path / path.name) for path in paths]
    extractor = ImageFeatureExtractor(
        weights=None, input_size=32, precision="float32", cache=tmp_path / "features.h5"
    ).fit()
    assert extractor.fingerprint_ == record["cache_fingerprint"]
    vectors = extractor.transform([str(path) for path in copies])
    assert count_predictions["images"] == 0
    # Read back from the file, so equal to the bit.
    np.testing.assert_array_equal(vectors, expected["cache.transform"])
