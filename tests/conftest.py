"""Shared fixtures: quiet TensorFlow, seeded generators, own caches, --runslow."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Never the network: weights are fetched only by tests that serve them from
# file:// or refused loopback URLs (they lift this), and subprocesses inherit it.
os.environ["TLSK_NO_DOWNLOAD"] = "1"
# Never the user's shared feature cache: the commands' default cache is a
# folder of this process (module fixtures), and of each test (below).
os.environ["TLSK_CACHE"] = tempfile.mkdtemp(prefix="tlsk-test-cache-")

import random

import numpy as np
import pytest

atexit.register(shutil.rmtree, os.environ["TLSK_CACHE"], ignore_errors=True)


def pytest_addoption(parser):
    parser.addoption(
        "--runslow", action="store_true", default=False, help="run tests marked slow"
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(autouse=True)
def _own_shared_cache(tmp_path_factory, monkeypatch):
    """Each test its own default feature cache: no vector leaks between tests."""
    folder = tmp_path_factory.mktemp("tlsk-cache")
    monkeypatch.setenv("TLSK_CACHE", str(folder))


@pytest.fixture(autouse=True)
def _seed_random_generators():
    random.seed(0)
    np.random.seed(0)
    yield


@pytest.fixture(autouse=True)
def _restore_keras_global_state():
    """A test that changes Keras's global dtype settings cannot leak them."""
    import keras

    policy, floatx = keras.config.dtype_policy(), keras.config.floatx()
    yield
    keras.config.set_dtype_policy(policy)
    keras.config.set_floatx(floatx)


@pytest.fixture
def count_predictions(monkeypatch):
    """Count the images that go through a network in this process."""
    from tlsk.networks.backbone import Backbone

    calls = {"images": 0}
    original = Backbone.predict

    def counting(self, batch):
        calls["images"] += len(batch)
        return original(self, batch)

    monkeypatch.setattr(Backbone, "predict", counting)
    return calls


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for a module's browser tests (tests/_browser.py)."""
    from tests._browser import driver_or_skip

    driver = driver_or_skip()
    yield driver
    driver.quit()
