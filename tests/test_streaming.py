"""The streaming path: files decode ahead of VGG16 in bounded memory, and give
the same features as the decoded images held in memory."""

import threading

import numpy as np
import pytest

import tlsk.images.decode
import tlsk.networks.backbone
from tests._datasets import write_image_folder
from tlsk import VGG16FeatureExtractor
from tlsk.images.decode import read_image

BATCH = 8


@pytest.fixture(scope="module")
def png_files(tmp_path_factory):
    paths, _ = write_image_folder(
        tmp_path_factory.mktemp("pngs"), 30, size=40, seed=11, formats=("png",)
    )
    return paths


def test_streamed_files_give_the_features_of_the_in_memory_images(png_files):
    in_memory = np.stack([read_image(path) for path in png_files])
    extractor = VGG16FeatureExtractor(
        weights=None, input_size=32, batch_size=BATCH, n_jobs=3
    )
    streamed = extractor.fit_transform(png_files)
    np.testing.assert_array_equal(streamed, extractor.transform(in_memory))


def test_decoding_runs_ahead_of_vgg16_by_a_bounded_number_of_images(
    png_files, monkeypatch
):
    started, ahead = [0], []
    lock = threading.Lock()
    load = tlsk.images.decode.FileInput.load

    def counting_load(self, max_pixels):
        with lock:
            started[0] += 1
        return load(self, max_pixels)

    predict = tlsk.networks.backbone.Backbone.predict
    done = [0]

    def recording_predict(self, batch):
        with lock:
            ahead.append(started[0] - done[0])
        done[0] += len(batch)
        return predict(self, batch)

    monkeypatch.setattr(tlsk.images.decode.FileInput, "load", counting_load)
    monkeypatch.setattr(tlsk.networks.backbone.Backbone, "predict", recording_predict)
    extractor = VGG16FeatureExtractor(
        weights=None, input_size=32, batch_size=BATCH, n_jobs=3
    ).fit()
    extractor.transform(png_files)
    assert done[0] == len(png_files) == started[0]
    # Decoding did run ahead (a pipeline), by no more than the look-ahead
    # window plus the batch in hand: memory does not grow with the data set.
    assert max(ahead) > BATCH
    assert max(ahead) <= 3 * BATCH
