"""What the Keras image classifiers share; the network itself is the subclass's.

:class:`KerasImageClassifier` does label encoding, the stratified validation
split, class weights, the training phases with early stopping, ``history_``,
prediction, and persistence: the trained model travels in a pickle as
``.keras`` bytes and is loaded back with ``safe_mode=True`` (from a shared
file, checked first by :mod:`tlsk.persistence.shared_networks`). Subclasses say which
network to build (:meth:`_build_model`) and how it trains (:meth:`_phases`).
"""

from __future__ import annotations

import inspect
import io
import os
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
from sklearn import get_config
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from tlsk._util.limits import MAX_BATCH_SIZE, MAX_INPUT_SIZE, MAX_N_JOBS
from tlsk._util.sklearn_compat import (
    Interval,
    StrOptions,
    _fit_context,
    image_input_tags,
    validate_params,
)
from tlsk.images.decode import (
    INTERPOLATIONS,
    ImageInput,
    decode_threads,
    image_inputs,
)
from tlsk.images.tta import TTA_MODES, apply_view, tta_views
from tlsk.networks.precision import COMPUTE_PRECISIONS, PRECISIONS, resolve_precision
from tlsk.training.lr_range_test import range_test
from tlsk.training.optimizers import OPTIMIZERS, SCHEDULES, make_optimizer

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "KerasImageClassifier",
    "Phase",
    "PreparedFit",
    "TrainingBatches",
    "make_optimizer",
]

AUGMENTATION_DEFAULTS = {
    "flip": "horizontal",
    "rotation": 0.05,
    "zoom": 0.1,
    "shift": 0.1,
}


@dataclass
class Phase:
    """One stage of training: which layers learn, with what, for how long.

    ``optimizer`` is a name of ``OPTIMIZERS`` (made when the phase starts,
    with ``learning_rate`` shaped by ``schedule`` over the phase's steps and
    ``rate_scales(model)`` for per-layer rates) or a ready Keras optimizer.
    ``learning_rate="auto"`` takes the rate of a range test
    (:mod:`tlsk.training.lr_range_test`) run on the model as the phase starts.
    """

    name: str
    epochs: int
    optimizer: object
    learning_rate: object = None  # float or "auto"; with an optimizer name
    momentum: float = 0.0
    schedule: str = "constant"
    prepare: object = None  # callable(model) that sets layer.trainable
    rate_scales: object = None  # callable(model) -> {variable path: factor}
    trains: str = ""  # what learns, for the log: "the head; the network frozen"

    def make_optimizer(self, model, learning_rate, steps):
        """The phase's optimizer at ``learning_rate`` over ``steps`` batches."""
        if not isinstance(self.optimizer, str):
            return self.optimizer
        return make_optimizer(
            self.optimizer,
            learning_rate,
            self.momentum,
            schedule=self.schedule,
            steps=steps,
            rate_scales=self.rate_scales(model) if self.rate_scales else None,
        )


@dataclass
class TrainingBatches:
    """What every phase trains on: batches and class weights of one split."""

    train: object  # ImageBatches with labels, shuffled each epoch
    valid: object  # ImageBatches with labels, or None
    class_weight: dict | None
    n_train: int = 0  # images in train
    n_valid: int = 0  # images in valid


@dataclass(eq=False)
class PreparedFit:
    """Everything a fit needs before training, as ``_prepare_fit`` makes it.

    When it exists, the estimator's parameters have passed their checks,
    its ``classes_`` is set and, for a new network, ``precision_``,
    ``history_`` and ``learning_rates_`` start afresh. ``fit`` trains
    ``model`` through ``phases`` (:meth:`train_phase`) and keeps it;
    :func:`tlsk.training.lr_finder.lr_find` runs its range test on it.
    """

    estimator: KerasImageClassifier = field(repr=False)  # the one being fitted
    seed: int  # from random_state: of the split, the shuffling, the layers
    precision: str  # that the network computes in: "float32" or "bfloat16"
    inputs: list = field(repr=False)  # the images, as image_inputs gives them
    encoded: np.ndarray = field(repr=False)  # the labels as indices of classes
    classes: np.ndarray
    train: np.ndarray = field(repr=False)  # indices of the training images
    valid: np.ndarray = field(repr=False)  # of the validation images; may be empty
    model: object = field(repr=False)  # new, or with warm_start the fitted one
    batches: TrainingBatches = field(repr=False)
    phases: list  # every Phase, in training order, some maybe of 0 epochs

    def train_phase(self, phase):
        """Train ``model`` through ``phase`` as ``fit`` does (``history_``)."""
        self.estimator._train_phase(self.model, phase, self.batches)


class KerasImageClassifier(ClassifierMixin, BaseEstimator):
    """Base of the Keras classifiers on images; not for direct use.

    Subclasses define ``__init__`` (storing these shared parameters and their
    own), ``_build_model(n_classes, seed, precision)``, ``_phases(model)``
    and ``_preprocess(batch)``. ``_build_model`` gives every layer the dtype
    policy of the resolved ``precision`` (:func:`tlsk.networks.precision.keras_dtype`),
    and the output layer float32.
    """

    _parameter_constraints: dict = {
        "input_size": [Interval(Integral, 32, MAX_INPUT_SIZE, closed="both")],
        "interpolation": [StrOptions(set(INTERPOLATIONS))],
        "augmentation": ["boolean", dict],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "early_stopping": ["boolean"],
        "patience": [Interval(Integral, 0, None, closed="left")],
        "class_weight": [None, dict, StrOptions({"balanced"})],
        "batch_size": [Interval(Integral, 1, MAX_BATCH_SIZE, closed="both")],
        "precision": [StrOptions(set(PRECISIONS))],
        "tta": [None, StrOptions(set(TTA_MODES))],
        "warm_start": ["boolean"],
        "n_jobs": [None, Interval(Integral, 1, MAX_N_JOBS, closed="both")],
        "random_state": [None, "random_state"],
        "verbose": ["verbose"],
    }

    def _check_parameters(self):
        """The rules ``_parameter_constraints`` cannot say; run before any work.

        Subclasses extend it (calling ``super()``) with their own rules, so
        that a bad value fails at the start of ``fit``, not in the middle.
        """
        augmentation_settings(self.augmentation)

    def _local_paths(self):
        """``{parameter: path}``: the files of this machine this classifier names.

        None here; a subclass with a path parameter says it. A shared model
        file must name none (:mod:`tlsk.persistence.model_files`).
        """
        return {}

    def _check_state(self):
        """Raise ValueError unless this classifier is as ``fit`` leaves one.

        For a model read from a file (:func:`tlsk.load_model`), after its
        parameters are checked against ``_parameter_constraints``: the rules
        of :meth:`_check_parameters`, and, when fitted, classes, precision
        and a network that takes the images ``predict`` gives it and outputs
        one probability per class. Reads no file.
        """
        self._check_parameters()
        if not self.__sklearn_is_fitted__():
            return
        classes = getattr(self, "classes_", None)
        if not isinstance(classes, np.ndarray) or classes.ndim != 1 or len(classes) < 2:
            raise ValueError(
                "classes_ must be a 1-D array of at least 2 classes; received a "
                f"{type(classes).__name__} of shape {getattr(classes, 'shape', ())}"
            )
        if self._network_precision() not in COMPUTE_PRECISIONS:
            raise ValueError(
                f"precision_ must be one of {COMPUTE_PRECISIONS}; received "
                f"{self.precision_!r}"
            )
        size = self._image_size()
        inputs = [tuple(tensor.shape) for tensor in self.model_.inputs]
        outputs = [tuple(tensor.shape) for tensor in self.model_.outputs]
        if inputs != [(None, size, size, 3)] or outputs != [(None, len(classes))]:
            raise ValueError(
                f"its network takes {inputs} and gives {outputs}; expected images "
                f"of {size} x {size} (input_size) and {len(classes)} probabilities "
                "(classes_)"
            )

    # -- scikit-learn API --------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Train on images ``X`` (paths or arrays) with labels ``y`` of any type.

        The steps, each a method a subclass may extend: prepare the fit
        (:meth:`_prepare_fit`: parameters, data, split, network, batches,
        phases), train the network phase by phase (:meth:`_fit_loop`) and
        keep it (:meth:`_trained_model`). With ``warm_start`` and a fitted
        model, training continues from its weights.

        Returns
        -------
        self
        """
        prepared = self._prepare_fit(X, y)
        self._fit_loop(prepared)
        self.model_ = self._trained_model(prepared.model)
        return self

    def _prepare_fit(self, X, y):
        """Everything ``fit`` does before training, as a :class:`PreparedFit`.

        The steps, each a method a subclass may extend: check the parameters
        (``_parameter_constraints``, then :meth:`_check_parameters`), the
        images and labels (:meth:`_check_training_data`), split off the
        validation images (:meth:`_split`), take the network
        (:meth:`_starting_model`), make the batches
        (:meth:`_training_batches`) and the phases (:meth:`_phases`).
        """
        # Inside fit, scikit-learn skips this: its _fit_context has checked.
        if not get_config()["skip_parameter_validation"]:
            validate_params(self)
        previous = self._warm_start_model()
        self._check_parameters()
        inputs, encoded = self._check_training_data(X, y, previous)
        seed = _seed(self.random_state)
        train, valid = self._split(encoded, seed)
        model = self._starting_model(previous, seed)
        return PreparedFit(
            estimator=self,
            seed=seed,
            precision=self._network_precision(),
            inputs=inputs,
            encoded=encoded,
            classes=self.classes_,
            train=train,
            valid=valid,
            model=model,
            batches=self._training_batches(inputs, encoded, train, valid, seed),
            phases=self._phases(model),
        )

    def _starting_model(self, previous, seed):
        """The network training starts from: ``previous`` (``warm_start``) or new.

        A new network starts new records: ``precision_`` resolved,
        ``history_`` and ``learning_rates_`` empty. ``previous`` keeps its
        precision and records, and training adds to them.
        """
        if previous is not None:
            self.__dict__.setdefault("learning_rates_", {})
            return previous
        self.precision_ = resolve_precision(self.precision)
        self.history_ = {}
        self.learning_rates_ = {}
        return self._initialize_model(seed)

    def _network_precision(self):
        """The precision the network computes in, once resolved (``precision_``).

        A model saved before ``precision_`` existed computed in float32.
        """
        return getattr(self, "precision_", "float32")

    def _trained_model(self, model):
        """The network ``fit`` keeps once training ends: ``model`` itself here."""
        return model

    def _warm_start_model(self):
        """The fitted network to continue with ``warm_start``, else None.

        Without it the previous fit's network is released first, so that a
        failed fit leaves no stale model behind.
        """
        if getattr(self, "warm_start", False) and self.__sklearn_is_fitted__():
            return self.model_
        self.__dict__.pop("model_", None)
        return None

    def _check_training_data(self, X, y, previous=None):
        """Image inputs and labels encoded as ``0..n_classes-1``; sets ``classes_``.

        With a ``previous`` network (``warm_start``), ``y`` must have exactly
        its classes.
        """
        inputs = image_inputs(X)
        y = column_or_1d(np.asarray(y), warn=True)
        if len(inputs) != len(y):
            raise ValueError(
                "X and y must have the same length; received "
                f"{len(inputs)} images and {len(y)} labels"
            )
        if len(inputs) == 0:
            raise ValueError("cannot fit on 0 images; received an empty X")
        check_classification_targets(y)
        classes, encoded = np.unique(y, return_inverse=True)
        if previous is not None and not np.array_equal(classes, self.classes_):
            raise ValueError(
                "warm_start=True continues a model of the classes "
                f"{self.classes_.tolist()!r}; y has the classes {classes.tolist()!r}. "
                "Pass warm_start=False to train a new model"
            )
        if len(classes) < 2:
            raise ValueError(
                "needs images of at least 2 classes; received only the class "
                f"{classes.tolist()[0]!r}"
            )
        self.classes_ = classes
        return inputs, encoded

    def _initialize_model(self, seed):
        """A new, untrained network for ``classes_`` in ``precision_``."""
        return self._build_model(len(self.classes_), seed, self.precision_)

    def _training_batches(self, inputs, encoded, train, valid, seed):
        """The batches of the split and its class weights."""
        return TrainingBatches(
            train=self._batches(
                [inputs[i] for i in train], encoded[train], shuffle=True, seed=seed
            ),
            valid=(
                self._batches([inputs[i] for i in valid], encoded[valid])
                if len(valid)
                else None
            ),
            class_weight=self._class_weights(encoded[train]),
            n_train=len(train),
            n_valid=len(valid),
        )

    def _fit_loop(self, prepared):
        """Train ``prepared.model`` phase by phase; each recorded in ``history_``."""
        for phase in prepared.phases:
            prepared.train_phase(phase)

    def _train_phase(self, model, phase, data):
        """One phase: open its layers, find its rate if "auto", compile, fit."""
        import keras

        if phase.epochs == 0:
            return
        if phase.prepare is not None:
            phase.prepare(model)
        rate = phase.learning_rate
        if isinstance(rate, str) and rate == "auto":
            rate = self._find_learning_rate(model, phase, data)
        if rate is not None:
            self.learning_rates_[phase.name] = float(rate)
        if self.verbose:
            # Keras's "Epoch 1/n" lines restart at 1 in each phase: each is
            # named first, on the stream Keras writes them to.
            print(self._phase_header(phase, rate, data), file=sys.stdout, flush=True)
        model.compile(
            optimizer=phase.make_optimizer(model, rate, len(data.train) * phase.epochs),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        history = model.fit(
            data.train,
            validation_data=data.valid,
            epochs=phase.epochs,
            # The data set shuffles itself from the seed; Keras's own
            # shuffle of batch order draws from the global `random`.
            shuffle=False,
            class_weight=data.class_weight,
            callbacks=self._callbacks(data.valid is not None, keras),
            verbose=_keras_verbosity(self.verbose),
        )
        curves = self.history_.setdefault(phase.name, {})
        for name, values in history.history.items():
            curves.setdefault(name, []).extend(float(v) for v in values)

    def _phase_header(self, phase, rate, data):
        """The line that names ``phase`` before its epochs, when ``verbose``.

        What trains, for how many epochs, at what rate, and which images the
        ``val_`` figures Keras prints are computed on.
        """
        epochs = f"{phase.epochs} epoch{'s' if phase.epochs != 1 else ''}"
        what = f" ({phase.trains})" if phase.trains else ""
        rate = "" if rate is None else f", learning rate {float(rate):g}"
        if data.n_valid:
            total = data.n_train + data.n_valid
            checked = (
                f"val_loss and val_accuracy on the {data.n_valid} validation "
                f"images held out of the {total} given "
                f"(validation_fraction={self.validation_fraction:g}, stratified); "
                f"loss and accuracy on the {data.n_train} training images"
            )
        else:
            checked = (
                f"no validation images (validation_fraction=0): loss and "
                f"accuracy on the {data.n_train} training images"
            )
        return f"phase {phase.name}{what}: {epochs}{rate}; {checked}"

    def _find_learning_rate(self, model, phase, data):
        """The suggested rate of a range test on ``model`` as it is now.

        The test trains, then puts every weight back; its curve is kept in
        ``lr_find_[phase.name]``.
        """
        result = range_test(model, phase, data.train, class_weight=data.class_weight)
        if not hasattr(self, "lr_find_"):
            self.lr_find_ = {}
        self.lr_find_[phase.name] = result
        return result.suggestion

    def predict_proba(self, X):
        """Class probabilities ``(n_images, n_classes)``, columns as ``classes_``.

        With ``tta``, the mean of the probabilities over the views of
        :mod:`tlsk.images.tta`; ``tta`` may change after ``fit`` (``set_params``).
        """
        check_is_fitted(self)
        return self._mean_over_views(self.model_, X, len(self.classes_))

    def image_batches(self, X):
        """The batches ``predict`` gives its network: ``X`` decoded, resized and
        preprocessed as this classifier does (the original view), one tuple
        ``(images,)`` a batch. For a caller that runs the network itself
        (:func:`tlsk.explain`'s gradients). ``X`` as ``predict`` takes it, or
        the list :func:`tlsk.images.decode.image_inputs` made of it."""
        if isinstance(X, list) and all(isinstance(x, ImageInput) for x in X):
            return self._batches(X)
        return self._batches(image_inputs(X))

    def network_outputs(self, network, X):
        """``network``'s outputs on ``X``, computed as ``predict_proba`` computes
        its own: this classifier's batches, averaged over the views of ``tta``.

        ``network`` is a Keras model on the same input as ``model_``, such as
        ``model_`` cut before its head (the map of a report lays images out by
        it).
        """
        check_is_fitted(self)
        return self._mean_over_views(network, X, int(network.output.shape[-1]))

    def _mean_over_views(self, network, X, width):
        """``network``'s outputs on ``X``, averaged over the views of ``tta``."""
        views = tta_views(self.tta)
        inputs = image_inputs(X)
        total = np.zeros((len(inputs), width), dtype=np.float64)
        if not inputs:
            return total.astype(np.float32)
        for view in views:
            total += network.predict(self._batches(inputs, view=view), verbose=0)
        return (total / len(views)).astype(np.float32)

    def predict(self, X):
        """The most probable class of each image."""
        proba = self.predict_proba(X)  # first: it raises NotFittedError
        return self.classes_[np.argmax(proba, axis=1)]

    def __sklearn_is_fitted__(self):
        # Only a finished fit leaves a model; a fit that failed half-way may
        # have set classes_ (and an earlier fit history_) without one.
        return "model_" in self.__dict__

    def __sklearn_tags__(self):
        tags = image_input_tags(super().__sklearn_tags__())
        tags.non_deterministic = True  # thread scheduling in TensorFlow's kernels
        return tags

    # -- persistence -------------------------------------------------------

    def __getstate__(self):
        state = super().__getstate__()
        if "model_" in state:
            state = dict(state, model_=_model_to_bytes(state["model_"]))
        return state

    def __setstate__(self, state):
        if isinstance(state.get("model_"), bytes):
            state = dict(state, model_=_model_from_bytes(state["model_"]))
        # A parameter missing from a saved model takes its default: every
        # parameter's default is the behaviour of a model that lacks it, so a
        # file saved by an earlier release passes the checks of a loaded model.
        defaults = {
            name: parameter.default
            for name, parameter in inspect.signature(type(self)).parameters.items()
            if parameter.default is not inspect.Parameter.empty
        }
        super().__setstate__({**defaults, **state})

    # -- shared machinery ----------------------------------------------------

    def _batches(self, inputs, y=None, shuffle=False, seed=None, view="original"):
        from tlsk.training.batches import ImageBatches

        preprocess = self._preprocess
        if view != "original":

            def preprocess(batch):
                return self._preprocess(apply_view(batch, view))

        return ImageBatches(
            inputs,
            y,
            batch_size=self.batch_size,
            size=self._image_size(),
            interpolation=self._interpolation(),
            resize=self._resizer(),
            preprocess=preprocess,
            shuffle=shuffle,
            seed=seed,
            workers=decode_threads(self.n_jobs),
        )

    def _image_size(self):
        """The side images are resized to (a subclass may resolve a default)."""
        return self.input_size

    def _interpolation(self):
        """Pillow's filter that resizes the images (a subclass may resolve one)."""
        return self.interpolation

    def _resizer(self):
        """``resize(image)`` for a network that resizes its own way; None: Pillow's.

        A subclass gives one (a KerasHub preset's image converter); the
        images are then resized by it, not by :meth:`_interpolation`'s filter.
        """
        return None

    def _split(self, encoded, seed):
        """Stratified train / validation indices."""
        everything = np.arange(len(encoded))
        if self.validation_fraction == 0:
            return everything, everything[:0]
        n_valid = int(np.ceil(self.validation_fraction * len(encoded)))
        if n_valid < len(self.classes_) or len(encoded) - n_valid < len(self.classes_):
            raise ValueError(
                f"validation_fraction={self.validation_fraction} leaves too few "
                f"images for a stratified split of {len(encoded)} images in "
                f"{len(self.classes_)} classes; use more images or "
                "validation_fraction=0"
            )
        return train_test_split(
            everything, test_size=n_valid, stratify=encoded, random_state=seed
        )

    def _class_weights(self, encoded):
        if self.class_weight is None:
            return None
        if self.class_weight == "balanced":
            present = np.unique(encoded)
            weights = compute_class_weight("balanced", classes=present, y=encoded)
            return {int(c): float(w) for c, w in zip(present, weights, strict=True)}
        unknown = set(self.class_weight) - set(self.classes_.tolist())
        if unknown:
            raise ValueError(
                f"class_weight names classes not in y: {sorted(unknown)!r}; "
                f"the classes are {self.classes_.tolist()!r}"
            )
        return {
            i: float(self.class_weight.get(label, 1.0))
            for i, label in enumerate(self.classes_.tolist())
        }

    def _callbacks(self, has_validation, keras):
        if not self.early_stopping:
            return []
        return [
            keras.callbacks.EarlyStopping(
                monitor="val_loss" if has_validation else "loss",
                patience=self.patience,
                restore_best_weights=True,
            )
        ]

    def _augmentation_layers(self, seed):
        """Keras preprocessing layers: active in training only, never at predict.

        Always float32: they are cheap, and they interpolate pixel values.
        """
        import keras

        settings = augmentation_settings(self.augmentation)
        if settings is None:
            return []
        layers = []
        if settings["flip"]:
            layers.append(
                keras.layers.RandomFlip(settings["flip"], seed=seed, dtype="float32")
            )
        if settings["rotation"]:
            layers.append(
                keras.layers.RandomRotation(
                    settings["rotation"], seed=seed + 1, dtype="float32"
                )
            )
        if settings["zoom"]:
            layers.append(
                keras.layers.RandomZoom(
                    settings["zoom"], seed=seed + 2, dtype="float32"
                )
            )
        if settings["shift"]:
            layers.append(
                keras.layers.RandomTranslation(
                    settings["shift"], settings["shift"], seed=seed + 3, dtype="float32"
                )
            )
        return layers


FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")


def augmentation_settings(augmentation):
    """The augmentation of ``augmentation`` (a parameter value); None when off.

    Raises ``ValueError`` naming the key for an unknown key or a bad value:
    Keras's RandomFlip silently does nothing for a mode it does not know
    (``flip=True``), so the values are checked here.
    """
    if augmentation is False:
        return None
    settings = dict(AUGMENTATION_DEFAULTS)
    if isinstance(augmentation, dict):
        unknown = set(augmentation) - set(settings)
        if unknown:
            raise ValueError(
                f"augmentation keys must be among {sorted(settings)}; "
                f"received {sorted(unknown)}"
            )
        settings.update(augmentation)
    flip = settings["flip"]
    if flip and flip not in FLIP_MODES:
        raise ValueError(
            f"augmentation['flip'] must be one of {FLIP_MODES} or False; "
            f"received {flip!r}"
        )
    for key in ("rotation", "zoom", "shift"):
        value = settings[key]
        if value is None or value is False:
            continue
        if isinstance(value, bool) or not isinstance(value, Real) or value < 0:
            raise ValueError(
                f"augmentation[{key!r}] must be a number >= 0 (0 or False: off); "
                f"received {value!r}"
            )
    return settings


def _seed(random_state):
    """An int seed for Keras layers and NumPy from a scikit-learn random_state."""
    if random_state is None:
        return int(np.random.default_rng().integers(2**31 - 5))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**31 - 5))
    return int(random_state) % (2**31 - 5)


def _keras_verbosity(verbose):
    return 0 if not verbose else (1 if verbose == 1 else 2)


def _model_to_bytes(model):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        model.save(path)
        with open(path, "rb") as file:
            return file.read()


def _model_from_bytes(data):
    import keras

    import tlsk.networks.hub_layers  # noqa: F401 - registers TokenPooling
    import tlsk.training.scaled_optimizers  # noqa: F401 - registers the optimizers
    from tlsk.persistence.shared_networks import check_network, checking_shared_file

    if checking_shared_file():
        check_network(data)
    if _names_keras_hub(data):
        from tlsk.networks.hub import require_keras_hub

        # Keras imports KerasHub's modules itself; without KerasHub, say
        # which extra to install rather than which module is missing.
        require_keras_hub()

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        with open(path, "wb") as file:
            file.write(data)
        return keras.saving.load_model(path, safe_mode=True)


def _names_keras_hub(data):
    """Whether the ``.keras`` bytes ``data`` name a KerasHub class."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return b'"keras_hub.' in archive.read("config.json")
    except (zipfile.BadZipFile, KeyError):
        return False  # Keras says what is wrong with it
