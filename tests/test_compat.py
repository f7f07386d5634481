"""tlsk._compat: 0.1.0's module paths and names resolve, to today's objects."""

import importlib
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import tlsk
from tlsk import _compat

RELEASE_MODULES = (
    (Path(__file__).parent / "fixtures" / "release-0.1.0" / "modules.txt")
    .read_text()
    .split()
)


@pytest.mark.parametrize("old", [m for m in RELEASE_MODULES if m != "tlsk.__main__"])
def test_every_module_of_0_1_0_imports_as_its_one_home_today(old):
    module = importlib.import_module(old)
    # One copy of each module: its name is today's, and its file is that name's.
    assert module.__spec__.name == module.__name__
    assert module is sys.modules[module.__name__]
    expected = module.__name__.replace(".", os.sep)
    assert os.path.splitext(module.__file__)[0].endswith(expected) or (
        module.__file__.endswith(os.path.join(expected, "__init__.py"))
    )
    if old != module.__name__:
        assert module.__name__ == _compat.home_of(old) or old in (
            _compat.MODULES_NOW_PACKAGES
        )


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
    "name", ["sklearn.linear_model.LogisticRegression", "os.system", "tlsk.cache.X"]
)
def test_names_of_modules_that_did_not_move_are_left_as_they_are(name):
    assert _compat.current_type_name(name) == name


def test_checking_hostile_type_names_imports_no_module():
    names = [f"{old}.X" for old in _compat.OLD_MODULES] + [
        "tlsk.report._html.os",
        "tlsk.backbones._zoo.X",
        "tlsk.images.os",
        "tlsk.features.__builtins__",
    ]
    code = (
        "import sys; from tlsk.persistence.skops import is_trusted_type; "
        f"before = set(sys.modules); names = {names!r}; "
        "assert not any(map(is_trusted_type, names)); "
        "print(sorted(set(sys.modules) - before))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_an_old_type_name_that_is_no_tlsk_estimator_is_still_refused():
    from tlsk.persistence.skops import is_trusted_type

    assert is_trusted_type("tlsk.finetune.KerasFineTuneClassifier")
    assert is_trusted_type("tlsk.backbone.BackboneConfig")
    assert not is_trusted_type("tlsk.finetune.os")
    assert not is_trusted_type("tlsk._files.write_atomically")
    assert not is_trusted_type("tlsk.backbone.Backbone")


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
