"""KerasFineTuneClassifier: a pretrained network with a new head, in two phases."""

from __future__ import annotations

import os
from numbers import Integral, Real

import numpy as np
from sklearn.utils.validation import check_is_fitted

from tlsk._keras_estimator import (
    OPTIMIZERS,
    SCHEDULES,
    KerasImageClassifier,
    Phase,
)
from tlsk._limits import MAX_INPUT_SIZE
from tlsk._sklearn_compat import Interval, StrOptions
from tlsk.backbone import (
    POOLINGS,
    base_network,
    pooling_layer,
    resolve_weights,
    split_head_norm,
)
from tlsk.backbones import BACKBONES, DEFAULT_BACKBONE, get_spec
from tlsk.precision import keras_dtype
from tlsk.preprocessing import preprocess

__all__ = ["KerasFineTuneClassifier", "freeze_base"]


class KerasFineTuneClassifier(KerasImageClassifier):
    """Fine-tune a pretrained network on images: the classic two-phase recipe.

    The network (``backbone``, VGG16 by default) without its top, then a new
    head: ``pooling`` of its last stage (then, for ConvNeXt's "avg" and
    "max", its head norm, which trains with the head), ``dense_units`` dense
    ReLU layers with ``dropout``, and a softmax over the classes (two units
    for two classes, so that binary and multiclass share one loss and
    ``predict_proba`` is the network's output).

    Phase 1 ("head"): the whole base is frozen; the head trains for
    ``head_epochs`` with ``head_optimizer`` at ``head_learning_rate``.
    Phase 2 ("finetune"): the last ``trainable_blocks`` stages of the base
    unfreeze (for VGG16, 1 is block5) and training goes on for
    ``finetune_epochs`` with SGD at the very low ``finetune_learning_rate``
    and ``finetune_momentum``, so that the pretrained filters adapt without
    being destroyed.

    As Keras's transfer-learning guide prescribes, the base runs in inference
    mode in both phases (``base(x, training=False)``): its
    BatchNormalization layers keep their ImageNet statistics and never
    train, so a few hundred images cannot wreck them.

    Parameters
    ----------
    weights : "imagenet", None or path, default="imagenet"
        As for :class:`tlsk.ImageFeatureExtractor`.
    input_size : int or None, default=None
        Side of the square images are resized to; None: the network's native
        size (224 for VGG16). At most 2048 (:data:`tlsk._limits.MAX_INPUT_SIZE`).
    pooling : {"avg", "max", "flatten"}, default="avg"
    dense_units : tuple of int, default=(256,)
    dropout : float, default=0.5
    head_epochs : int, default=10
    head_learning_rate : float or "auto", default=1e-3
        ``"auto"``: the rate a learning-rate range test suggests
        (:func:`tlsk.lr_finder.lr_find`, about 100 batches of training whose
        weights are then put back), run as the phase starts; found rates are
        in ``learning_rates_`` and their curves in ``lr_find_``.
    head_optimizer : {"adam", "sgd", "rmsprop"}, default="adam"
    trainable_blocks : int, default=1
        Stages of the base unfrozen in phase 2, counted from the top, from 0
        to the network's number of stages (``n_stages`` in
        :func:`tlsk.list_backbones`: 5 for VGG16, VGG19, ResNet50,
        ResNet50V2, DenseNet121, MobileNetV3Large and ConvNeXtTiny; 8 for
        EfficientNetV2-S, 9 for EfficientNetB0, 11 for InceptionV3 (its
        "mixed" blocks), 14 for Xception). Each stage ends at one of the
        registry's ``stage_ends``.
    finetune_epochs : int, default=10
    finetune_learning_rate : float or "auto", default=1e-4
        ``"auto"`` as for ``head_learning_rate``, the test run on the network
        as phase 2 starts (its head trained).
    finetune_momentum : float, default=0.9
    schedule : {"constant", "cosine", "one_cycle"}, default="constant"
        The learning rate within each phase, over its steps: constant;
        cosine decay to 0 after a linear warm-up over the first 10% of the
        steps; or Smith's one-cycle policy with fastai's defaults (up from
        rate/25 over the first 25%, cosine annealing down to rate/1e5). See
        :mod:`tlsk._optimizers`.
    block_lr_ratio : float in (0, 1], default=1.0
        Discriminative learning rates in phase 2: the earliest unfrozen stage
        trains at this fraction of ``finetune_learning_rate``, the head at the
        full rate, the stages between at geometrically spaced rates (fastai's
        ``slice(lr * ratio, lr)``); 1: one rate for every layer.
    gradual_unfreezing : bool, default=False
        Phase 2 becomes ``trainable_blocks`` phases ("finetune_1", ...),
        the k-th opening the last k stages; ``finetune_epochs`` is shared
        among them (equal shares, the remainder to the last).
    warm_start : bool, default=False
        When the model is fitted, ``fit`` continues training its network
        (scikit-learn's convention) through the same phases instead of
        building a new one; ``y`` must have the same classes, and
        ``history_`` grows by the new epochs.
    precision : {"auto", "float32", "bfloat16"}, default="auto"
        ``"bfloat16"`` trains in Keras mixed precision (bfloat16 compute,
        float32 weights and softmax); ``"auto"`` picks it where the hardware
        computes bfloat16 natively, float32 elsewhere (see
        :mod:`tlsk.precision`). Resolved at ``fit`` into ``precision_``.
    interpolation, augmentation, validation_fraction, early_stopping, patience,
    class_weight, batch_size, n_jobs, random_state, verbose
        As for :class:`tlsk.SmallCNNClassifier`; early stopping applies to each
        phase and restores that phase's best weights.
    tta : {None, "flip", "ten_crop"}, default=None
        Test-time augmentation: ``predict_proba`` averages the probabilities
        over the views of :mod:`tlsk.tta` (2 or 10 predictions per image);
        training is unchanged.
    backbone : str, default="vgg16"
        The network, a name of the registry (:func:`tlsk.list_backbones`);
        images are preprocessed as that network expects.

    Attributes
    ----------
    classes_ : ndarray
    history_ : dict
        ``{"head": {...}, "finetune": {...}}``: per epoch, ``loss``,
        ``accuracy`` and, with validation, ``val_loss`` and ``val_accuracy``.
    model_ : keras.Model
    learning_rates_ : dict
        ``{phase: rate}``: each phase's peak learning rate, found ones included.
    lr_find_ : dict
        Only with an ``"auto"`` rate: ``{phase: tlsk.lr_finder.LRFinderResult}``.
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
        "head_learning_rate": [
            Interval(Real, 0, None, closed="neither"),
            StrOptions({"auto"}),
        ],
        "head_optimizer": [StrOptions(set(OPTIMIZERS))],
        "input_size": [None, Interval(Integral, 1, MAX_INPUT_SIZE, closed="both")],
        "trainable_blocks": [Interval(Integral, 0, None, closed="left")],
        "finetune_epochs": [Interval(Integral, 0, None, closed="left")],
        "finetune_learning_rate": [
            Interval(Real, 0, None, closed="neither"),
            StrOptions({"auto"}),
        ],
        "finetune_momentum": [Interval(Real, 0, 1, closed="left")],
        "schedule": [StrOptions(set(SCHEDULES))],
        "block_lr_ratio": [Interval(Real, 0, 1, closed="right")],
        "gradual_unfreezing": ["boolean"],
        "backbone": [StrOptions(set(BACKBONES))],
    }

    def _check_parameters(self):
        super()._check_parameters()
        if any(not isinstance(u, Integral) or u < 1 for u in self.dense_units):
            raise ValueError(
                "dense_units must be a tuple of positive ints; received "
                f"{self.dense_units!r}"
            )
        spec = get_spec(self.backbone)
        if self.trainable_blocks > spec.n_stages:
            raise ValueError(
                f"The 'trainable_blocks' parameter of {type(self).__name__} must be "
                f"at most {spec.n_stages} for {spec.name}, its number of stages. "
                f"Got {self.trainable_blocks} instead."
            )

    def _local_paths(self):
        if self.weights is None or (
            isinstance(self.weights, str) and self.weights == "imagenet"
        ):
            return {}
        return {"weights": self.weights}

    def __init__(
        self,
        weights="imagenet",
        input_size=None,
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
        schedule="constant",
        block_lr_ratio=1.0,
        gradual_unfreezing=False,
        warm_start=False,
        precision="auto",
        tta=None,
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
        backbone=DEFAULT_BACKBONE,
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
        self.schedule = schedule
        self.block_lr_ratio = block_lr_ratio
        self.gradual_unfreezing = gradual_unfreezing
        self.warm_start = warm_start
        self.precision = precision
        self.tta = tta
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
        self.backbone = backbone

    def _image_size(self):
        return get_spec(self.backbone).input_size(self.input_size)

    def _preprocess(self, batch):
        return preprocess(batch, get_spec(self.backbone).preprocessing)

    def _build_model(self, n_classes, seed, precision):
        import keras

        spec = get_spec(self.backbone)
        dtype = keras_dtype(precision)
        size = self._image_size()
        base, identity = base_network(
            spec.name, resolve_weights(self.weights), size, precision
        )
        self.weights_sha256_ = identity["weights_sha256"]
        base, norm = split_head_norm(base, spec.name, self.pooling)
        x = inputs = keras.Input((size, size, 3), dtype="float32")
        for layer in self._augmentation_layers(seed):
            x = layer(x)
        # Inference mode: batch statistics of a few images never replace the
        # pretrained ones (Keras's transfer-learning guide).
        x = base(x, training=False)
        x = pooling_layer(self.pooling, name="head_pool")(x)
        if norm is not None:
            # The dense layers see the embedding the extractor gives (Keras's
            # own ConvNeXt head: pool, norm, dense); the norm, initialised
            # from the base's weights, is a layer of the head and trains with it.
            x = norm(x)
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
        return keras.Model(inputs, outputs, name=f"{spec.name}_finetune")

    def _phases(self, model):
        phases = [
            Phase(
                "head",
                self.head_epochs,
                self.head_optimizer,
                self.head_learning_rate,
                schedule=self.schedule,
                prepare=lambda m: freeze_base(m, 0, self.backbone),
            )
        ]
        if not self.trainable_blocks:
            return phases
        if self.gradual_unfreezing:
            steps = range(1, self.trainable_blocks + 1)
            epochs = _shares(self.finetune_epochs, self.trainable_blocks)
            names = [f"finetune_{blocks}" for blocks in steps]
        else:
            steps, epochs, names = (
                [self.trainable_blocks],
                [self.finetune_epochs],
                ["finetune"],
            )
        for blocks, phase_epochs, name in zip(steps, epochs, names, strict=True):
            phases.append(
                Phase(
                    name,
                    phase_epochs,
                    "sgd",
                    self.finetune_learning_rate,
                    momentum=self.finetune_momentum,
                    schedule=self.schedule,
                    prepare=lambda m, b=blocks: freeze_base(m, b, self.backbone),
                    rate_scales=(
                        None
                        if self.block_lr_ratio == 1
                        else lambda m, b=blocks: block_rate_scales(
                            m, b, self.block_lr_ratio, self.backbone
                        )
                    ),
                )
            )
        return phases

    # -- embeddings --------------------------------------------------------

    def transform(self, X):
        """The pooled features of the fine-tuned base: ``(n_images, n_features)``.

        The input of the head's dense layers: ``pooling`` of the base's last
        stage (for ConvNeXt's "avg" and "max" then its head norm, as
        :class:`tlsk.ImageFeatureExtractor` gives it), averaged over the views
        of ``tta``: embeddings of the trained network for any scikit-learn
        estimator (nearest neighbours, a calibrated classifier, ...).
        """
        import keras

        check_is_fitted(self)
        pooled = _embedding(self.model_)
        embedder = keras.Model(self.model_.inputs, pooled, name="embeddings")
        return self._mean_over_views(embedder, X, int(pooled.shape[-1]))

    def get_feature_names_out(self, input_features=None):
        """``finetune0 ... finetune{n-1}``, one name per embedding column."""
        check_is_fitted(self)
        width = int(_embedding(self.model_).shape[-1])
        return np.asarray([f"finetune{i}" for i in range(width)], dtype=object)


def _embedding(model):
    """The head's input: the pooled vector, after the head norm where there is one."""
    names = {layer.name for layer in model.layers}
    return model.get_layer("head_norm" if "head_norm" in names else "head_pool").output


def _shares(total, parts):
    """``total`` epochs in ``parts`` phases: equal shares, the rest to the last."""
    share = total // parts
    return [share] * (parts - 1) + [total - share * (parts - 1)]


def block_rate_scales(model, open_blocks, ratio, backbone=DEFAULT_BACKBONE):
    """Discriminative rates: ``{variable path: factor}`` for the open stages.

    The head trains at the phase's rate (factor 1), the earliest of the
    ``open_blocks`` open stages at ``ratio`` times it, the stages between at
    geometrically spaced factors (fastai's ``slice(lr * ratio, lr)``).
    """
    import keras

    spec = get_spec(backbone)
    base = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    names = [layer.name for layer in base.layers]
    ends = [names.index(end) for end in spec.stage_ends]
    scales = {}
    for index, layer in enumerate(base.layers):
        # 1 for the last stage (after the last of the stage ends), n_stages
        # for the first.
        depth = 1 + sum(end >= index for end in ends)
        if depth <= open_blocks:
            factor = ratio ** (depth / open_blocks)
            for variable in layer.trainable_weights:
                scales[variable.path] = factor
    return scales


def freeze_base(model, trainable_blocks, backbone=DEFAULT_BACKBONE):
    """Freeze the base of ``model`` but its last ``trainable_blocks`` stages.

    The base is the network inside ``model`` (the only nested Keras model);
    its stages end at the registry's ``stage_ends`` of ``backbone``. The head
    always trains; BatchNormalization layers never do. Returns the names of
    the base's trainable layers that have weights.
    """
    import keras

    spec = get_spec(backbone)
    base = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    names = [layer.name for layer in base.layers]
    if trainable_blocks >= spec.n_stages:
        first_open = 0
    elif trainable_blocks == 0:
        first_open = len(names)
    else:
        first_open = names.index(spec.stage_ends[-trainable_blocks]) + 1
    base.trainable = True
    for index, layer in enumerate(base.layers):
        layer.trainable = index >= first_open
    for layer in _batch_normalizations(base):
        layer.trainable = False
    return [layer.name for layer in base.layers[first_open:] if layer.trainable_weights]


def _batch_normalizations(model):
    """Every BatchNormalization layer of ``model``, nested models included."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            yield layer
        elif isinstance(layer, keras.Model):
            yield from _batch_normalizations(layer)
