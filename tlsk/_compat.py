"""Module paths of tlsk 0.1.0, kept resolvable: files saved then still load.

A pickle (a joblib model file, a pickled extractor) and a ``.skops`` file
name each class by its module, and tlsk 0.1.0 kept every module at the top
of the package (``tlsk.finetune.KerasFineTuneClassifier``,
``tlsk.backbone.BackboneConfig``). Those paths now live in the stage packages.
:data:`OLD_MODULES` maps each old path to its home, and :func:`install` adds
an importer that answers an old path with the module object of its home (the
same classes, not copies), only when something imports the old path.

``tlsk.features`` and ``tlsk.images`` (:data:`MODULES_NOW_PACKAGES`) are
packages now and re-export the public names their modules had, so they need
no alias. The ``.skops`` trust rule
reads :func:`current_type_name` to accept the old names of tlsk's own types.

This is the one home of compatibility with earlier releases: a shim of any
other kind belongs here too.
"""

import importlib
import importlib.abc
import importlib.util
import sys

OLD_MODULES = {
    "tlsk._extraction": "tlsk.features.extraction",
    "tlsk._files": "tlsk._util.files",
    "tlsk._hub": "tlsk.networks.hub",
    "tlsk._hub_finetune": "tlsk.training.hub_finetune",
    "tlsk._hub_layers": "tlsk.networks.hub_layers",
    "tlsk._hub_text": "tlsk.networks.hub_text",
    "tlsk._image_batches": "tlsk.training.batches",
    "tlsk._keras_estimator": "tlsk.training.keras_classifier",
    "tlsk._limits": "tlsk._util.limits",
    "tlsk._openvino": "tlsk.networks.openvino",
    "tlsk._optimizers": "tlsk.training.optimizers",
    "tlsk._output_folders": "tlsk._util.output_folders",
    "tlsk._scaled_optimizers": "tlsk.training.scaled_optimizers",
    "tlsk._shared_networks": "tlsk.persistence.shared_networks",
    "tlsk._sklearn_compat": "tlsk._util.sklearn_compat",
    "tlsk._skops": "tlsk.persistence.skops",
    "tlsk.backbone": "tlsk.networks.backbone",
    "tlsk.backbones": "tlsk.networks.registry",
    "tlsk.cache._legacy": "tlsk.cache._migrate",
    "tlsk.classifiers": "tlsk.evaluation.classifiers",
    "tlsk.datasets": "tlsk.images.folders",
    "tlsk.distributed": "tlsk.features.distributed",
    "tlsk.finetune": "tlsk.training.finetune",
    "tlsk.imagenet": "tlsk.networks.imagenet",
    "tlsk.label_errors": "tlsk.evaluation.label_errors",
    "tlsk.lr_finder": "tlsk.training.lr_finder",
    "tlsk.model_files": "tlsk.persistence.model_files",
    "tlsk.plots": "tlsk.evaluation.plots",
    "tlsk.precision": "tlsk.networks.precision",
    "tlsk.preprocessing": "tlsk.networks.preprocessing",
    "tlsk.report": "tlsk.evaluation.report",
    "tlsk.sample_data": "tlsk.images.sample_data",
    "tlsk.scratch": "tlsk.training.scratch",
    "tlsk.tta": "tlsk.images.tta",
    "tlsk.weights": "tlsk.networks.weights",
    "tlsk.zero_shot": "tlsk.training.zero_shot",
}

# Packages that moved whole: each submodule's home is the same name below the
# package's new home (tlsk.report._evaluation -> tlsk.evaluation.report._evaluation).
OLD_PACKAGES = {
    "tlsk.backbones": "tlsk.networks.registry",
    "tlsk.report": "tlsk.evaluation.report",
}

MODULES_NOW_PACKAGES = ("tlsk.features", "tlsk.images")


def home_of(module):
    """The module that is ``module``'s home today, by name, or None (not moved)."""
    if module in OLD_MODULES:
        return OLD_MODULES[module]
    package, _, submodule = module.rpartition(".")
    if package in OLD_PACKAGES:
        return f"{OLD_PACKAGES[package]}.{submodule}"
    return None


# Where the names of a 0.1.0 module that is a package now live, in the order
# searched: ``tlsk.images.load_batch`` still finds the function.
MOVED_NAMES = {
    "tlsk.features": ("tlsk.features.extractor",),
    "tlsk.images": (
        "tlsk.images.decode",
        "tlsk.images.files",
        "tlsk.images.keys",
        "tlsk.networks.preprocessing",
    ),
}


def moved_name(module, name):
    """A name that ``module`` had in 0.1.0, from its home (else AttributeError)."""
    if not name.startswith("__"):
        for home in MOVED_NAMES.get(module, ()):
            found = getattr(importlib.import_module(home), name, None)
            if found is not None:
                return found
    raise AttributeError(f"module {module!r} has no attribute {name!r}")


class _OldModulePaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import an old module path as the module that is its home today."""

    def find_spec(self, fullname, path=None, target=None):
        if home_of(fullname) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def __init__(self):
        self._own_specs = {}

    def create_module(self, spec):
        module = importlib.import_module(home_of(spec.name))
        self._own_specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module):
        # The import system wrote the old name's spec onto the module; the
        # module keeps its own, so that it still knows its real name.
        module.__spec__ = self._own_specs.pop(module.__name__)


def install():
    """Make the old module paths importable (once per process)."""
    # First: below an aliased package, Python's own finder would otherwise
    # load a second copy of a submodule (tlsk.backbones._spec) from its folder.
    if not any(isinstance(finder, _OldModulePaths) for finder in sys.meta_path):
        sys.meta_path.insert(0, _OldModulePaths())


def current_type_name(name):
    """``"tlsk.finetune.KerasFineTuneClassifier"`` -> its name today; others as is.

    By name alone: nothing is imported, so checking the types a file names
    (the ``.skops`` trust rule) loads no module whatever the file says.
    """
    module, _, attribute = name.rpartition(".")
    home = home_of(module)
    if home is None and module == "tlsk.features":
        home = "tlsk.features.extractor"
    return name if home is None else f"{home}.{attribute}"
