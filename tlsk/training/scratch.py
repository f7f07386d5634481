"""SmallCNNClassifier: a small convnet trained from scratch, the baseline to beat."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np

from tlsk._util.keyword_only import keyword_only
from tlsk._util.sklearn_compat import Interval, StrOptions
from tlsk.networks.precision import keras_dtype
from tlsk.training.keras_classifier import (
    OPTIMIZERS,
    SCHEDULES,
    KerasImageClassifier,
    Phase,
)

__all__ = ["SmallCNNClassifier"]


class SmallCNNClassifier(KerasImageClassifier):
    """A small convolutional network trained from scratch on images.

    Three convolution blocks (3x3 convolution, ReLU, 2x2 max pooling) with
    ``filters`` channels, global average pooling, a dense layer, dropout and a
    softmax over the classes (two units for two classes). Pixels are scaled to
    [0, 1]. The baseline that transfer learning must beat.

    Parameters
    ----------
    filters : tuple of int, default=(32, 64, 128)
        Channels of each convolution block.
    dense_units : int, default=128
    dropout : float, default=0.5
    epochs : int, default=30
    learning_rate : float or "auto", default=2e-3
        Of the optimizer (twice Adam's usual 1e-3: see the Notes); ``"auto"``:
        the rate a learning-rate range test suggests
        (:func:`tlsk.training.lr_finder.lr_find`), run as training starts.
    optimizer : {"adam", "sgd", "rmsprop"}, default="adam"
    schedule : {"constant", "cosine", "one_cycle"}, default="constant"
        The learning rate over the training steps, as for
        :class:`tlsk.KerasFineTuneClassifier`.
    input_size : int, default=128
        Side of the square the images are resized to; from 32 to 2048
        (:data:`tlsk._util.limits.MAX_INPUT_SIZE`).
    interpolation : str, default="bilinear"
        Pillow resampling filter (see :func:`tlsk.images.decode.resize_image`).
    augmentation : bool or dict, default=True
        Random flips, rotations, zooms and shifts during training only; a dict
        overrides ``{"flip": "horizontal", "rotation": 0.05, "zoom": 0.1,
        "shift": 0.1}`` (a falsy value switches one off; ``flip`` is
        "horizontal", "vertical" or "horizontal_and_vertical", the others
        numbers >= 0).
    validation_fraction : float, default=0.1
        Held out (stratified) to monitor early stopping; 0 for none.
    early_stopping : bool, default=True
        Stop when the validation loss (the training loss without validation)
        has not improved for ``patience`` epochs, and restore the best weights.
    patience : int, default=5
    class_weight : dict, "balanced" or None, default=None
    batch_size : int, default=16
        Smaller than the usual 32 so that a small data set gets enough
        updates per epoch (210 images: 12 steps an epoch, not 6). At most
        4096.
    precision : {"auto", "float32", "bfloat16"}, default="auto"
        As for :class:`tlsk.KerasFineTuneClassifier`.
    tta : {None, "flip", "ten_crop"}, default=None
        Test-time augmentation: ``predict_proba`` averages the probabilities
        over the views of :mod:`tlsk.images.tta` (2 or 10 predictions per image);
        training is unchanged.
    warm_start : bool, default=False
        When fitted, ``fit`` continues training the network instead of
        building a new one (``y`` must have the same classes).
    n_jobs : int or None, default=None
        Threads decoding images ahead of the network (``min(4, CPUs)``); at
        most 1024.
    random_state : int, RandomState or None, default=None
        Seeds the weights, dropout, augmentation, shuffling and split.
    verbose : int, default=0
        1: a progress bar per epoch; 2: one line per epoch.

    Attributes
    ----------
    classes_ : ndarray
    history_ : dict
        ``{"train": {"loss": [...], "accuracy": [...], "val_loss": [...],
        "val_accuracy": [...]}}``, one value per epoch.
    model_ : keras.Model
    precision_ : str
        The precision trained in, ``"float32"`` or ``"bfloat16"``.

    Notes
    -----
    The defaults were chosen against the classic small convnet of the Keras
    tutorials (32-32-64 filters, Flatten, Dense 64, Adam 1e-3, batch 32) on
    210 real-photo crops of five classes at 64 px, 10 epochs
    (``benchmarks/suite_scratch.py``). With ``learning_rate=1e-3`` and
    ``batch_size=32`` this network was still underfitting at epoch 10
    (training accuracy 0.6-0.7) and often lumped two classes together: mean
    test accuracy 0.78 against the classic network's 0.82 over 12 seeds;
    with these defaults 0.89.

    Examples
    --------
    >>> import numpy as np
    >>> from tlsk import SmallCNNClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.integers(0, 80, (8, 32, 32, 3)),
    ...                     rng.integers(170, 256, (8, 32, 32, 3))])
    >>> y = ["dark"] * 8 + ["light"] * 8
    >>> model = SmallCNNClassifier(input_size=32, filters=(4, 8, 8), epochs=2,
    ...                            validation_fraction=0, random_state=0).fit(X, y)
    >>> model.predict_proba(X).shape
    (16, 2)
    """

    _parameter_constraints: dict = {
        **KerasImageClassifier._parameter_constraints,
        "filters": [tuple, list],
        "dense_units": [Interval(Integral, 1, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "epochs": [Interval(Integral, 0, None, closed="left")],
        "learning_rate": [
            Interval(Real, 0, None, closed="neither"),
            StrOptions({"auto"}),
        ],
        "optimizer": [StrOptions(set(OPTIMIZERS))],
        "schedule": [StrOptions(set(SCHEDULES))],
    }

    def _check_parameters(self):
        super()._check_parameters()
        if not self.filters or any(
            not isinstance(f, Integral) or f < 1 for f in self.filters
        ):
            raise ValueError(
                "filters must be a non-empty tuple of positive ints; received "
                f"{self.filters!r}"
            )

    @keyword_only
    def __init__(
        self,
        *,
        filters=(32, 64, 128),
        dense_units=128,
        dropout=0.5,
        epochs=30,
        learning_rate=2e-3,
        optimizer="adam",
        schedule="constant",
        input_size=128,
        interpolation="bilinear",
        augmentation=True,
        validation_fraction=0.1,
        early_stopping=True,
        patience=5,
        class_weight=None,
        batch_size=16,
        precision="auto",
        tta=None,
        warm_start=False,
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        self.filters = filters
        self.dense_units = dense_units
        self.dropout = dropout
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        self.schedule = schedule
        self.input_size = input_size
        self.interpolation = interpolation
        self.augmentation = augmentation
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.patience = patience
        self.class_weight = class_weight
        self.batch_size = batch_size
        self.precision = precision
        self.tta = tta
        self.warm_start = warm_start
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def _preprocess(self, batch):
        return batch * np.float32(1 / 255)

    def _build_model(self, n_classes, seed, precision):
        import keras

        # He initialisation for the ReLU layers (He et al., 2015): with
        # Glorot's, the signal halves at each ReLU and the network can sit at
        # chance for 10-20 epochs on digits before it learns, long enough for
        # early stopping to end it there. The softmax layer keeps Glorot's.
        relu_init = keras.initializers.HeUniform
        init = keras.initializers.GlorotUniform
        dtype = keras_dtype(precision)
        size = self.input_size
        x = inputs = keras.Input((size, size, 3), dtype="float32")
        for layer in self._augmentation_layers(seed):
            x = layer(x)
        for block, channels in enumerate(self.filters, start=1):
            x = keras.layers.Conv2D(
                int(channels),
                3,
                padding="same",
                activation="relu",
                kernel_initializer=relu_init(seed + 10 * block),
                name=f"conv{block}",
                dtype=dtype,
            )(x)
            x = keras.layers.MaxPooling2D(2, name=f"pool{block}", dtype=dtype)(x)
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool", dtype="float32")(x)
        x = keras.layers.Dense(
            self.dense_units,
            activation="relu",
            kernel_initializer=relu_init(seed + 100),
            name="dense",
            dtype=dtype,
        )(x)
        x = keras.layers.Dropout(self.dropout, seed=seed + 101, dtype=dtype)(x)
        outputs = keras.layers.Dense(
            n_classes,
            activation="softmax",
            kernel_initializer=init(seed + 102),
            name="predictions",
            dtype="float32",
        )(x)
        return keras.Model(inputs, outputs, name="small_cnn")

    def _phases(self, model):
        return [
            Phase(
                "train",
                self.epochs,
                self.optimizer,
                self.learning_rate,
                schedule=self.schedule,
                trains="the whole network, from scratch",
            )
        ]
