"""KerasFineTuneClassifier: VGG16 with a new head, trained in two phases."""

from __future__ import annotations

import os
from numbers import Integral, Real

from sklearn.utils._param_validation import Interval, StrOptions

from tlsk._keras_estimator import (
    OPTIMIZERS,
    KerasImageClassifier,
    Phase,
    make_optimizer,
)
from tlsk.backbone import POOLINGS, pooling_layer, resolve_weights, vgg16_base
from tlsk.images import preprocess_vgg16
from tlsk.precision import keras_dtype

__all__ = ["KerasFineTuneClassifier"]

_BLOCKS = 5


class KerasFineTuneClassifier(KerasImageClassifier):
    """Fine-tune VGG16 on images: the classic two-phase recipe.

    VGG16 without its top, then a new head: ``pooling`` of the last
    convolution block, ``dense_units`` dense ReLU layers with ``dropout``, and
    a softmax over the classes (two units for two classes, so that binary and
    multiclass share one loss and ``predict_proba`` is the network's output).

    Phase 1 ("head"): the whole VGG16 base is frozen; the head trains for
    ``head_epochs`` with ``head_optimizer`` at ``head_learning_rate``.
    Phase 2 ("finetune"): the last ``trainable_blocks`` convolution blocks
    unfreeze (1: block5) and training goes on for ``finetune_epochs`` with SGD
    at the very low ``finetune_learning_rate`` and ``finetune_momentum``, so
    that the pretrained filters adapt without being destroyed.

    Parameters
    ----------
    weights : "imagenet", None or path, default="imagenet"
        As for :class:`tlsk.VGG16FeatureExtractor`.
    input_size : int, default=224
    pooling : {"avg", "max", "flatten"}, default="avg"
    dense_units : tuple of int, default=(256,)
    dropout : float, default=0.5
    head_epochs : int, default=10
    head_learning_rate : float, default=1e-3
    head_optimizer : {"adam", "sgd", "rmsprop"}, default="adam"
    trainable_blocks : int, default=1
        Convolution blocks unfrozen in phase 2, counted from the top (0-5).
    finetune_epochs : int, default=10
    finetune_learning_rate : float, default=1e-4
    finetune_momentum : float, default=0.9
    precision : {"auto", "float32", "bfloat16"}, default="auto"
        ``"bfloat16"`` trains in Keras mixed precision (bfloat16 compute,
        float32 weights and softmax); ``"auto"`` picks it where the hardware
        computes bfloat16 natively, float32 elsewhere (see
        :mod:`tlsk.precision`). Resolved at ``fit`` into ``precision_``.
    interpolation, augmentation, validation_fraction, early_stopping, patience,
    class_weight, batch_size, n_jobs, random_state, verbose
        As for :class:`tlsk.SmallCNNClassifier`; early stopping applies to each
        phase and restores that phase's best weights.

    Attributes
    ----------
    classes_ : ndarray
    history_ : dict
        ``{"head": {...}, "finetune": {...}}``: per epoch, ``loss``,
        ``accuracy`` and, with validation, ``val_loss`` and ``val_accuracy``.
    model_ : keras.Model
    weights_sha256_ : str
        The SHA-256 of the weights file the base started from.
    precision_ : str
        The precision trained in, ``"float32"`` or ``"bfloat16"``.

    Examples
    --------
    >>> import numpy as np
    >>> from tlsk import KerasFineTuneClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 256, (6, 32, 32, 3))
    >>> model = KerasFineTuneClassifier(
    ...     weights=None, input_size=32, dense_units=(8,), head_epochs=1,
    ...     finetune_epochs=1, validation_fraction=0, random_state=0,
    ... ).fit(X, ["a", "b", "c"] * 2)
    >>> model.predict_proba(X).shape
    (6, 3)
    """

    _parameter_constraints: dict = {
        **KerasImageClassifier._parameter_constraints,
        "weights": [StrOptions({"imagenet"}), None, str, os.PathLike],
        "pooling": [StrOptions(set(POOLINGS))],
        "dense_units": [tuple, list],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "head_epochs": [Interval(Integral, 0, None, closed="left")],
        "head_learning_rate": [Interval(Real, 0, None, closed="neither")],
        "head_optimizer": [StrOptions(set(OPTIMIZERS))],
        "trainable_blocks": [Interval(Integral, 0, _BLOCKS, closed="both")],
        "finetune_epochs": [Interval(Integral, 0, None, closed="left")],
        "finetune_learning_rate": [Interval(Real, 0, None, closed="neither")],
        "finetune_momentum": [Interval(Real, 0, 1, closed="left")],
    }

    def __init__(
        self,
        weights="imagenet",
        input_size=224,
        pooling="avg",
        dense_units=(256,),
        dropout=0.5,
        head_epochs=10,
        head_learning_rate=1e-3,
        head_optimizer="adam",
        trainable_blocks=1,
        finetune_epochs=10,
        finetune_learning_rate=1e-4,
        finetune_momentum=0.9,
        precision="auto",
        interpolation="bilinear",
        augmentation=True,
        validation_fraction=0.1,
        early_stopping=True,
        patience=3,
        class_weight=None,
        batch_size=32,
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        self.weights = weights
        self.input_size = input_size
        self.pooling = pooling
        self.dense_units = dense_units
        self.dropout = dropout
        self.head_epochs = head_epochs
        self.head_learning_rate = head_learning_rate
        self.head_optimizer = head_optimizer
        self.trainable_blocks = trainable_blocks
        self.finetune_epochs = finetune_epochs
        self.finetune_learning_rate = finetune_learning_rate
        self.finetune_momentum = finetune_momentum
        self.precision = precision
        self.interpolation = interpolation
        self.augmentation = augmentation
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.patience = patience
        self.class_weight = class_weight
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def _preprocess(self, batch):
        return preprocess_vgg16(batch)

    def _build_model(self, n_classes, seed, precision):
        import keras

        if any(not isinstance(u, Integral) or u < 1 for u in self.dense_units):
            raise ValueError(
                "dense_units must be a tuple of positive ints; received "
                f"{self.dense_units!r}"
            )
        dtype = keras_dtype(precision)
        base, self.weights_sha256_ = vgg16_base(
            resolve_weights(self.weights), self.input_size, precision
        )
        size = self.input_size
        x = inputs = keras.Input((size, size, 3), dtype="float32")
        for layer in self._augmentation_layers(seed):
            x = layer(x)
        x = base(x)
        x = pooling_layer(self.pooling, name="head_pool")(x)
        init = keras.initializers.GlorotUniform
        for i, units in enumerate(self.dense_units, start=1):
            x = keras.layers.Dense(
                int(units),
                activation="relu",
                kernel_initializer=init(seed + i),
                name=f"head_dense{i}",
                dtype=dtype,
            )(x)
            x = keras.layers.Dropout(self.dropout, seed=seed + 50 + i, dtype=dtype)(x)
        # The softmax in float32, as Keras's mixed-precision guide advises.
        outputs = keras.layers.Dense(
            n_classes,
            activation="softmax",
            kernel_initializer=init(seed + 100),
            name="predictions",
            dtype="float32",
        )(x)
        return keras.Model(inputs, outputs, name="vgg16_finetune")

    def _phases(self, model):
        return [
            Phase(
                "head",
                self.head_epochs,
                make_optimizer(self.head_optimizer, self.head_learning_rate),
                prepare=lambda m: freeze_base(m, trainable_blocks=0),
            ),
            Phase(
                "finetune",
                self.finetune_epochs if self.trainable_blocks else 0,
                make_optimizer(
                    "sgd", self.finetune_learning_rate, self.finetune_momentum
                ),
                prepare=lambda m: freeze_base(m, self.trainable_blocks),
            ),
        ]


def freeze_base(model, trainable_blocks):
    """Freeze the VGG16 base of ``model`` but its last ``trainable_blocks`` blocks.

    The head always trains. Returns the names of the base's trainable layers.
    """
    base = model.get_layer("vgg16")
    open_blocks = {f"block{b}_" for b in range(_BLOCKS - trainable_blocks + 1, 6)}
    base.trainable = True
    for layer in base.layers:
        layer.trainable = any(layer.name.startswith(b) for b in open_blocks)
    return [layer.name for layer in base.layers if layer.trainable and layer.weights]
