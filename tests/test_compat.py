"""tlsk._compat: 0.1.0's module paths and names resolve, to today's objects."""

import importlib
import pickle
import sys

import pytest

import tlsk
from tlsk import _compat


@pytest.mark.parametrize("old, home", sorted(_compat.OLD_MODULES.items()))
def test_every_old_module_path_imports_as_its_home(old, home):
    module = importlib.import_module(old)
    assert module is importlib.import_module(home)
    assert module.__name__ == home and module.__spec__.name == home


def test_an_old_path_in_a_pickle_builds_todays_class():
    # What 0.1.0 wrote for a SmallCNNClassifier: its class by the old path.
    data = pickle.dumps(tlsk.SmallCNNClassifier(epochs=2), protocol=0).replace(
        b"tlsk.training.scratch", b"tlsk.scratch"
    )
    assert b"tlsk.scratch" in data
    model = pickle.loads(data)
    assert type(model) is tlsk.SmallCNNClassifier and model.epochs == 2


@pytest.mark.parametrize(
    "old, today",
    [
        ("tlsk.finetune.KerasFineTuneClassifier", "tlsk.training.finetune."),
        ("tlsk.features.VGG16FeatureExtractor", "tlsk.features.extractor."),
        ("tlsk.backbone.BackboneConfig", "tlsk.networks.backbone."),
        ("tlsk.zero_shot.ZeroShotImageClassifier", "tlsk.training.zero_shot."),
    ],
)
def test_old_type_names_map_to_todays(old, today):
    assert _compat.current_type_name(old) == today + old.rpartition(".")[2]


@pytest.mark.parametrize(
    "name",
    [
        "sklearn.linear_model.LogisticRegression",
        "tlsk.finetune.os",  # a module attribute that is no class
        "tlsk.finetune.NoSuchClass",
        "os.system",
    ],
)
def test_other_names_are_left_as_they_are(name):
    assert _compat.current_type_name(name) == name


def test_an_old_type_name_that_is_no_tlsk_estimator_is_still_refused():
    from tlsk.persistence.skops import is_trusted_type

    assert is_trusted_type("tlsk.finetune.KerasFineTuneClassifier")
    assert is_trusted_type("tlsk.backbone.BackboneConfig")
    assert not is_trusted_type("tlsk.finetune.os")
    assert not is_trusted_type("tlsk._files.atomic_write")


def test_the_names_a_package_had_as_a_module_are_found_in_their_homes():
    import tlsk.features
    import tlsk.images
    from tlsk.images.decode import load_batch
    from tlsk.networks.preprocessing import preprocess_vgg16

    assert tlsk.images.load_batch is load_batch
    assert tlsk.images.preprocess_vgg16 is preprocess_vgg16
    assert tlsk.features.MIN_CALIBRATION_IMAGES == 32
    with pytest.raises(AttributeError, match="'tlsk.images' has no attribute 'nope'"):
        tlsk.images.nope  # noqa: B018


def test_the_importer_is_installed_once():
    _compat.install()
    _compat.install()
    finders = [f for f in sys.meta_path if type(f).__name__ == "_OldModulePaths"]
    assert len(finders) == 1
