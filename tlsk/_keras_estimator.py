"""What the Keras image classifiers share; the network itself is the subclass's.

:class:`KerasImageClassifier` does label encoding, the stratified validation
split, class weights, the training phases with early stopping, ``history_``,
prediction, and persistence: the trained model travels in a pickle as
``.keras`` bytes and is loaded back with ``safe_mode=True``. Subclasses say
which network to build (:meth:`_build_model`) and how it trains
(:meth:`_phases`).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from tlsk._sklearn_compat import Interval, StrOptions, _fit_context
from tlsk.images import INTERPOLATIONS, decode_threads, image_inputs
from tlsk.precision import PRECISIONS, resolve_precision
from tlsk.tta import TTA_MODES, apply_view, tta_views

__all__ = ["OPTIMIZERS", "KerasImageClassifier", "Phase", "make_optimizer"]

AUGMENTATION_DEFAULTS = {
    "flip": "horizontal",
    "rotation": 0.05,
    "zoom": 0.1,
    "shift": 0.1,
}


@dataclass
class Phase:
    """One stage of training: which layers learn, with what, for how long."""

    name: str
    epochs: int
    optimizer: object  # a keras optimizer instance
    prepare: object = None  # callable(model) that sets layer.trainable


class KerasImageClassifier(ClassifierMixin, BaseEstimator):
    """Base of the Keras classifiers on images; not for direct use.

    Subclasses define ``__init__`` (storing these shared parameters and their
    own), ``_build_model(n_classes, seed, precision)``, ``_phases(model)``
    and ``_preprocess(batch)``. ``_build_model`` gives every layer the dtype
    policy of the resolved ``precision`` (:func:`tlsk.precision.keras_dtype`),
    and the output layer float32.
    """

    _parameter_constraints: dict = {
        "input_size": [Interval(Integral, 32, None, closed="left")],
        "interpolation": [StrOptions(set(INTERPOLATIONS))],
        "augmentation": ["boolean", dict],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "early_stopping": ["boolean"],
        "patience": [Interval(Integral, 0, None, closed="left")],
        "class_weight": [None, dict, StrOptions({"balanced"})],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "precision": [StrOptions(set(PRECISIONS))],
        "tta": [None, StrOptions(set(TTA_MODES))],
        "n_jobs": [None, Interval(Integral, 1, None, closed="left")],
        "random_state": [None, "random_state"],
        "verbose": ["verbose"],
    }

    def _check_parameters(self):
        """The rules ``_parameter_constraints`` cannot say; run before any work.

        Subclasses extend it (calling ``super()``) with their own rules, so
        that a bad value fails at the start of ``fit``, not in the middle.
        """
        augmentation_settings(self.augmentation)

    # -- scikit-learn API --------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Train on images ``X`` (paths or arrays) with labels ``y`` of any type.

        The steps, each a method a subclass may extend: check the parameters
        (:meth:`_check_parameters`), the images and labels
        (:meth:`_check_training_data`), split off the validation images
        (:meth:`_split`), build the network (:meth:`_initialize_model`) and
        train it phase by phase (:meth:`_fit_loop`).

        Returns
        -------
        self
        """
        self.__dict__.pop("model_", None)  # release the previous fit's network
        self._check_parameters()
        inputs, encoded = self._check_training_data(X, y)
        seed = _seed(self.random_state)
        train, valid = self._split(encoded, seed)
        self.precision_ = resolve_precision(self.precision)
        model = self._initialize_model(seed)
        self.history_ = {}
        self._fit_loop(model, inputs, encoded, train, valid, seed)
        self.model_ = model
        return self

    def _check_training_data(self, X, y):
        """Image inputs and labels encoded as ``0..n_classes-1``; sets ``classes_``."""
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
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                "needs images of at least 2 classes; received only the class "
                f"{self.classes_.tolist()[0]!r}"
            )
        return inputs, encoded

    def _initialize_model(self, seed):
        """A new, untrained network for ``classes_`` in ``precision_``."""
        return self._build_model(len(self.classes_), seed, self.precision_)

    def _fit_loop(self, model, inputs, encoded, train, valid, seed):
        """Train ``model`` through :meth:`_phases`; record each in ``history_``."""
        import keras

        class_weight = self._class_weights(encoded[train])
        train_batches = self._batches(
            [inputs[i] for i in train], encoded[train], shuffle=True, seed=seed
        )
        valid_batches = (
            self._batches([inputs[i] for i in valid], encoded[valid])
            if len(valid)
            else None
        )
        for phase in self._phases(model):
            if phase.epochs == 0:
                continue
            if phase.prepare is not None:
                phase.prepare(model)
            model.compile(
                optimizer=phase.optimizer,
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
            )
            history = model.fit(
                train_batches,
                validation_data=valid_batches,
                epochs=phase.epochs,
                # The data set shuffles itself from the seed; Keras's own
                # shuffle of batch order draws from the global `random`.
                shuffle=False,
                class_weight=class_weight,
                callbacks=self._callbacks(valid_batches is not None, keras),
                verbose=_keras_verbosity(self.verbose),
            )
            self.history_[phase.name] = {
                name: [float(v) for v in values]
                for name, values in history.history.items()
            }

    def predict_proba(self, X):
        """Class probabilities ``(n_images, n_classes)``, columns as ``classes_``.

        With ``tta``, the mean of the probabilities over the views of
        :mod:`tlsk.tta`; ``tta`` may change after ``fit`` (``set_params``).
        """
        check_is_fitted(self)
        views = tta_views(self.tta)
        inputs = image_inputs(X)
        if not inputs:
            return np.empty((0, len(self.classes_)), dtype=np.float32)
        proba = np.zeros((len(inputs), len(self.classes_)), dtype=np.float64)
        for view in views:
            batches = self._batches(inputs, view=view)
            proba += self.model_.predict(batches, verbose=0)
        return (proba / len(views)).astype(np.float32)

    def predict(self, X):
        """The most probable class of each image."""
        proba = self.predict_proba(X)  # first: it raises NotFittedError
        return self.classes_[np.argmax(proba, axis=1)]

    def __sklearn_is_fitted__(self):
        # Only a finished fit leaves a model; a fit that failed half-way may
        # have set classes_ (and an earlier fit history_) without one.
        return "model_" in self.__dict__

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.input_tags.string = True
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
        super().__setstate__(state)

    # -- shared machinery ----------------------------------------------------

    def _batches(self, inputs, y=None, shuffle=False, seed=None, view="original"):
        from tlsk._image_batches import ImageBatches

        preprocess = self._preprocess
        if view != "original":

            def preprocess(batch):
                return self._preprocess(apply_view(batch, view))

        return ImageBatches(
            inputs,
            y,
            batch_size=self.batch_size,
            size=self._image_size(),
            interpolation=self.interpolation,
            preprocess=preprocess,
            shuffle=shuffle,
            seed=seed,
            workers=decode_threads(self.n_jobs),
        )

    def _image_size(self):
        """The side images are resized to (a subclass may resolve a default)."""
        return self.input_size

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


OPTIMIZERS = ("adam", "sgd", "rmsprop")


def make_optimizer(name, learning_rate, momentum=0.0):
    """A fresh Keras optimizer by name (one of ``OPTIMIZERS``)."""
    import keras

    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate, momentum=momentum)
    return keras.optimizers.SGD(learning_rate, momentum=momentum)


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

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        with open(path, "wb") as file:
            file.write(data)
        return keras.saving.load_model(path, safe_mode=True)
