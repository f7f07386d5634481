"""KerasFineTuneClassifier: a pretrained network with a new head, in two phases."""

from __future__ import annotations

import dataclasses
import functools
import os
from numbers import Integral, Real

import numpy as np
from sklearn.utils.validation import check_is_fitted

from tlsk._util.keyword_only import keyword_only
from tlsk._util.limits import MAX_INPUT_SIZE
from tlsk._util.sklearn_compat import Interval, StrOptions
from tlsk.images.decode import INTERPOLATIONS
from tlsk.networks.backbone import (
    POOLINGS,
    base_network,
    pooling_layer,
    resolve_weights,
    split_head_norm,
)
from tlsk.networks.hub import (
    PRESET_WEIGHTS,
    check_pooling,
    is_preset_folder,
    network_label,
    read_preset,
)
from tlsk.networks.precision import keras_dtype
from tlsk.networks.preprocessing import preprocess
from tlsk.networks.registry import (
    BACKBONES,
    DEFAULT_BACKBONE,
    HUB_POOLINGS,
    HubSpec,
    ImageConverterSpec,
    get_spec,
)
from tlsk.training.keras_classifier import (
    OPTIMIZERS,
    SCHEDULES,
    KerasImageClassifier,
    Phase,
)

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

    A KerasHub vision transformer (DINOv2, DINOv3, SigLIP 2, CLIP, ViT: a
    registry name or a KerasHub preset folder, with ``pip install
    'tlsk[hub]'``) fine-tunes the same way, block by block: its vision
    tower, ``pooling`` of its tokens (its class token for DINO and ViT, the
    image embedding for CLIP and SigLIP), the head. Phase 2 unfreezes its
    last ``trainable_blocks`` transformer blocks and every layer after them
    (the final norm; CLIP's projection and SigLIP's attention-pooling head
    for their "embedding"). With ``lora_rank``, phase 2 instead trains
    low-rank adapters (LoRA, Keras's ``enable_lora``) on the attention's
    query, key, value and output projections and the MLP's projections of
    those blocks, every other weight of the network frozen (kernels,
    biases, norms, embeddings): at rank 8, 94 thousand parameters in each
    of DINOv2-S's blocks of 1.9 million, the way vision transformers are
    fine-tuned on a few hundred images on a CPU. Images are resized and
    scaled as the network's preset image converter does.

    As Keras's transfer-learning guide prescribes, the base runs in inference
    mode in both phases (``base(x, training=False)``): its
    BatchNormalization layers keep their ImageNet statistics and never
    train, so a few hundred images cannot wreck them.

    Parameters
    ----------
    backbone : str or path, default="vgg16"
        The network, a name of the registry (:func:`tlsk.list_backbones`) or
        a KerasHub preset folder (what ``save_to_preset`` writes) of a
        network tlsk supports; images are preprocessed as that network
        expects.
    weights : "imagenet", "pretrained", None or path, default="imagenet"
        As for :class:`tlsk.ImageFeatureExtractor`: for a KerasHub network,
        "pretrained" (or "imagenet") is its published preset, None random
        weights of its architecture, a path a preset folder of that
        network; a preset folder given as ``backbone`` holds its own.
    input_size : int or None, default=None
        Side of the square images are resized to; None: the network's native
        size (224 for VGG16, the preset's for a KerasHub network, whose
        input size must be a multiple of its patch size). At most 2048
        (:data:`tlsk._util.limits.MAX_INPUT_SIZE`).
    pooling : {"avg", "max", "flatten", "cls", "mean", "cls+mean", \
"embedding"} or None, default=None
        None: the network's own, "avg" for a keras.applications network,
        "cls" for DINO and ViT, "embedding" for CLIP and SigLIP. "avg",
        "max" and "flatten" are for keras.applications networks; a KerasHub
        network offers those :func:`tlsk.list_backbones` lists for it
        ("mean": of the patch tokens, "cls+mean": both concatenated).
    dense_units : tuple of int, default=(256,)
    dropout : float, default=0.5
    head_epochs : int, default=10
    head_learning_rate : float or "auto", default=1e-3
        ``"auto"``: the rate a learning-rate range test suggests
        (:func:`tlsk.training.lr_finder.lr_find`, about 100 batches of training whose
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
        registry's ``stage_ends``. For a KerasHub network: its transformer
        blocks (12 for DINOv2-S and ViT-B, 24 for DINOv2-L; a preset's
        ``num_layers``), the last ones unfrozen with every layer after them,
        or adapted with ``lora_rank``.
    lora_rank : int or None, default=None
        For a KerasHub network: phase 2 trains rank-``r`` adapters
        (``W + A @ B``, ``A`` of ``r`` columns, ``B`` of ``r`` rows, ``B``
        starting at zero) on the projections of the last ``trainable_blocks``
        blocks instead of unfreezing them; the head trains as always. A
        network saved with them (pickle, ``.keras``, :func:`tlsk.save_model`)
        holds them merged into its kernels: the same outputs, no adapters
        left. None: unfreeze the blocks. A keras.applications network takes
        None only.
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
        :mod:`tlsk.training.optimizers`.
    block_lr_ratio : float in (0, 1], default=1.0
        Discriminative learning rates in phase 2: the earliest unfrozen stage
        trains at this fraction of ``finetune_learning_rate``, the head at the
        full rate, the stages between at geometrically spaced rates (fastai's
        ``slice(lr * ratio, lr)``); 1: one rate for every layer. For a
        KerasHub network, per transformer block (the layers after the last
        block at its rate), adapters at their block's.
    gradual_unfreezing : bool, default=False
        Phase 2 becomes ``trainable_blocks`` phases ("finetune_1", ...),
        the k-th opening (or adapting) the last k stages or transformer
        blocks; ``finetune_epochs`` is shared among them (equal shares, the
        remainder to the last).
    warm_start : bool, default=False
        When the model is fitted, ``fit`` continues training its network
        (scikit-learn's convention) through the same phases instead of
        building a new one; ``y`` must have the same classes, and
        ``history_`` grows by the new epochs. A LoRA network loaded from a
        file holds its adapters merged into its kernels (Keras saves it so):
        training it again puts new adapters on them, starting from the same
        outputs.
    precision : {"auto", "float32", "bfloat16"}, default="auto"
        ``"bfloat16"`` trains in Keras mixed precision (bfloat16 compute,
        float32 weights and softmax); ``"auto"`` picks it where the hardware
        computes bfloat16 natively, float32 elsewhere (see
        :mod:`tlsk.networks.precision`). Resolved at ``fit`` into ``precision_``.
    tta : {None, "flip", "ten_crop"}, default=None
        Test-time augmentation: ``predict_proba`` averages the probabilities
        over the views of :mod:`tlsk.images.tta` (2 or 10 predictions per image);
        training is unchanged.
    interpolation : str or None, default=None
        The Pillow filter that resizes images for a keras.applications
        network (see :func:`tlsk.images.decode.resize_image`); None: "bilinear". A
        KerasHub network's images are resized by its preset's image
        converter: None only.
    augmentation, validation_fraction, early_stopping, patience,
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
    learning_rates_ : dict
        ``{phase: rate}``: each phase's peak learning rate, found ones included.
    lr_find_ : dict
        Only with an ``"auto"`` rate:
        ``{phase: tlsk.training.lr_range_test.LRFinderResult}``.
    weights_sha256_ : str
        The SHA-256 of the weights file the base started from.
    precision_ : str
        The precision trained in, ``"float32"`` or ``"bfloat16"``.
    input_size_ : int
        The side images are resized to.
    image_converter_ : dict or None
        A KerasHub network's image converter (resize, then ``x * scale +
        offset``), as :class:`tlsk.networks.registry.ImageConverterSpec` fields;
        None for a keras.applications network.

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

    DINOv2-S, KerasHub's published weights, rank-8 adapters on its last 4
    blocks:

    >>> dino = KerasFineTuneClassifier(
    ...     backbone="dinov2_small", weights="pretrained", input_size=224,
    ...     trainable_blocks=4, lora_rank=8,
    ... ).fit(paths, labels)  # doctest: +SKIP

    Offline, a tiny DINOv2 of random weights saved as a preset folder:

    >>> import tempfile
    >>> import keras_hub
    >>> preset = tempfile.mkdtemp()
    >>> keras_hub.models.DINOV2Backbone(
    ...     patch_size=14, num_layers=2, hidden_dim=32, num_heads=2,
    ...     intermediate_dim=64, image_shape=(28, 28, 3),
    ...     position_embedding_shape=(28, 28),
    ... ).save_to_preset(preset)
    >>> keras_hub.layers.DINOV2ImageConverter(
    ...     image_size=(28, 28), scale=1 / 255
    ... ).save_to_preset(preset)
    >>> lora = KerasFineTuneClassifier(
    ...     backbone=preset, trainable_blocks=1, lora_rank=2, dense_units=(8,),
    ...     head_epochs=1, finetune_epochs=1, validation_fraction=0,
    ...     random_state=0,
    ... ).fit(X, ["a", "b", "c"] * 2)
    >>> lora.predict_proba(X).shape, lora.transform(X).shape, lora.input_size_
    ((6, 3), (6, 32), 28)
    """

    _parameter_constraints: dict = {
        **KerasImageClassifier._parameter_constraints,
        "weights": [StrOptions(set(PRESET_WEIGHTS)), None, str, os.PathLike],
        "pooling": [None, StrOptions({*POOLINGS, *HUB_POOLINGS})],
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
        "interpolation": [None, StrOptions(set(INTERPOLATIONS))],
        "backbone": [str, os.PathLike],
        "lora_rank": [None, Interval(Integral, 1, None, closed="left")],
    }

    def _check_parameters(self):
        super()._check_parameters()
        if any(not isinstance(u, Integral) or u < 1 for u in self.dense_units):
            raise ValueError(
                "dense_units must be a tuple of positive ints; received "
                f"{self.dense_units!r}"
            )
        if self.__sklearn_is_fitted__() and self.backbone not in BACKBONES:
            # A fitted network from a preset folder holds what it needs, and
            # was checked against the folder at fit; the folder may be gone.
            return
        transformer = self._transformer()
        if transformer is None:
            spec = self._spec()
            label, n_blocks, what = spec.name, spec.n_stages, "stages"
            if self.pooling not in (None, *POOLINGS):
                raise ValueError(
                    f"The 'pooling' parameter of {type(self).__name__} must be one "
                    f"of {list(POOLINGS)} or None for {spec.name}. Got "
                    f"{self.pooling!r} instead."
                )
            if self.lora_rank is not None:
                raise ValueError(
                    f"lora_rank={self.lora_rank} trains low-rank adapters of a "
                    "KerasHub transformer's attention and MLP (DINOv2, DINOv3, "
                    f"SigLIP 2, CLIP, ViT); {spec.name} is a keras.applications "
                    "network: use lora_rank=None (trainable_blocks unfreezes its "
                    "last stages)"
                )
        else:
            label, n_blocks = transformer.label, transformer.n_blocks
            what = "transformer blocks"
            check_pooling(self.pooling, transformer.family, label)
            if self.interpolation is not None:
                raise ValueError(
                    "a KerasHub network's images are resized as its preset's image "
                    f"converter does: interpolation must be None for {label}; "
                    f"received {self.interpolation!r}"
                )
        if self.lora_rank is not None and self.trainable_blocks == 0:
            raise ValueError(
                f"lora_rank={self.lora_rank} adapts the last trainable_blocks "
                f"blocks of {label}, and trainable_blocks=0 names none: give "
                "trainable_blocks=1 or more, or lora_rank=None"
            )
        if self.trainable_blocks > n_blocks:
            raise ValueError(
                f"The 'trainable_blocks' parameter of {type(self).__name__} must be "
                f"at most {n_blocks} for {label}, its number of {what}. "
                f"Got {self.trainable_blocks} instead."
            )

    def _local_paths(self):
        named = {}
        if self.weights is not None and not (
            isinstance(self.weights, str) and self.weights in PRESET_WEIGHTS
        ):
            named["weights"] = self.weights
        if not (isinstance(self.backbone, str) and self.backbone in BACKBONES):
            named["backbone"] = self.backbone  # a KerasHub preset folder
        return named

    def _check_state(self):
        super()._check_state()
        converter = self.__dict__.get("image_converter_")
        if self.__sklearn_is_fitted__() and converter is not None:
            fields = {field.name for field in dataclasses.fields(ImageConverterSpec)}
            if not isinstance(converter, dict) or set(converter) != fields:
                raise ValueError(
                    "image_converter_ must be a dict of the image converter's "
                    f"fields {sorted(fields)}; received {type(converter).__name__}"
                )
            ImageConverterSpec.from_config(converter)  # its values, checked

    # -- the network -----------------------------------------------------------

    def _spec(self):
        """The registry entry of ``backbone``; a ValueError naming the parameter."""
        spec = BACKBONES.get(self.backbone) if isinstance(self.backbone, str) else None
        if spec is None:
            raise ValueError(
                f"The 'backbone' parameter of {type(self).__name__} must be a name "
                f"of tlsk.list_backbones() ({', '.join(BACKBONES)}) or a KerasHub "
                f"preset folder. Got {self.backbone!r} instead."
            )
        return spec

    def _transformer(self):
        """What fitting needs of a KerasHub ``backbone`` before building it.

        None for a keras.applications network. Reads a preset folder's
        configuration (not its weights).
        """
        if is_preset_folder(self.backbone):
            info = read_preset(self.backbone)
            return _Transformer(
                network_label(self.backbone),
                info.family,
                info.n_blocks,
                info.converter,
                self.input_size or info.image_size,
            )
        spec = self._spec()
        if not isinstance(spec, HubSpec):
            return None
        return _Transformer(
            spec.name,
            spec.family,
            spec.n_blocks,
            spec.converter,
            spec.input_size(self.input_size),
        )

    def _converter(self):
        """The KerasHub network's image converter; None for a keras.applications one."""
        if "image_converter_" in self.__dict__:
            fitted = self.image_converter_
            return None if fitted is None else ImageConverterSpec.from_config(fitted)
        transformer = self._transformer()
        return None if transformer is None else transformer.converter

    @keyword_only
    def __init__(
        self,
        *,
        backbone=DEFAULT_BACKBONE,
        weights="imagenet",
        input_size=None,
        pooling=None,
        dense_units=(256,),
        dropout=0.5,
        head_epochs=10,
        head_learning_rate=1e-3,
        head_optimizer="adam",
        trainable_blocks=1,
        lora_rank=None,
        finetune_epochs=10,
        finetune_learning_rate=1e-4,
        finetune_momentum=0.9,
        schedule="constant",
        block_lr_ratio=1.0,
        gradual_unfreezing=False,
        warm_start=False,
        precision="auto",
        tta=None,
        interpolation=None,
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
        self.backbone = backbone
        self.weights = weights
        self.input_size = input_size
        self.pooling = pooling
        self.dense_units = dense_units
        self.dropout = dropout
        self.head_epochs = head_epochs
        self.head_learning_rate = head_learning_rate
        self.head_optimizer = head_optimizer
        self.trainable_blocks = trainable_blocks
        self.lora_rank = lora_rank
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

    def _image_size(self):
        # Fitted: the network's (a preset folder is not read again).
        if "input_size_" in self.__dict__:
            return self.input_size_
        transformer = self._transformer()
        if transformer is not None and transformer.size is not None:
            return transformer.size
        return self._spec().input_size(self.input_size)

    def _interpolation(self):
        return self.interpolation or "bilinear"

    def _resizer(self):
        converter = self._converter()
        if converter is None:
            return None
        return functools.partial(converter.resize, size=self._image_size())

    def _preprocess(self, batch):
        converter = self._converter()
        if converter is not None:
            return converter.apply(batch)
        return preprocess(batch, self._spec().preprocessing)

    def _build_model(self, n_classes, seed, precision):
        import keras

        dtype = keras_dtype(precision)
        if self._transformer() is None:
            base, pool, name = self._convolutional_base(precision)
        else:
            base, pool, name = self._transformer_base(precision)
        size = self.input_size_
        x = inputs = keras.Input((size, size, 3), dtype="float32")
        for layer in self._augmentation_layers(seed):
            x = layer(x)
        # Inference mode: batch statistics of a few images never replace the
        # pretrained ones (Keras's transfer-learning guide), and a
        # transformer's dropout stays off.
        x = pool(base(x, training=False))
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
        return keras.Model(inputs, outputs, name=f"{name}_finetune")

    def _convolutional_base(self, precision):
        """``(base, pool, name)`` of a keras.applications network; sets the
        fitted facts of the network."""
        spec = self._spec()
        size = spec.input_size(self.input_size)
        pooling = self.pooling or "avg"
        base, identity = base_network(
            spec.name, resolve_weights(self.weights), size, precision
        )
        base, norm = split_head_norm(base, spec.name, pooling)

        def pool(features):
            x = pooling_layer(pooling, name="head_pool")(features)
            # The dense layers see the embedding the extractor gives (Keras's
            # own ConvNeXt head: pool, norm, dense); the norm, initialised
            # from the base's weights, is a layer of the head and trains with it.
            return x if norm is None else norm(x)

        self.weights_sha256_ = identity["weights_sha256"]
        self.input_size_, self.image_converter_ = size, None
        return base, pool, spec.name

    def _transformer_base(self, precision):
        """``(tower, pool, name)`` of a KerasHub network; sets the fitted facts."""
        from tlsk.networks.backbone import resolve_backbone
        from tlsk.networks.hub import hub_base, pooled, vision_model

        transformer = self._transformer()
        pooling = check_pooling(self.pooling, transformer.family, transformer.label)
        network, identity = hub_base(
            resolve_backbone(self.backbone),
            resolve_weights(self.weights),
            self.input_size,
            precision,
        )
        tower = vision_model(network, embedding=pooling == "embedding")

        def pool(outputs):
            return pooled(outputs, pooling, network.prefix_tokens, name="head_pool")

        self.weights_sha256_ = identity["weights_sha256"]
        self.input_size_ = network.input_size
        self.image_converter_ = dataclasses.asdict(network.converter)
        name = transformer.label if self.backbone in BACKBONES else network.family
        return tower, pool, name

    def _phases(self, model):
        phases = [
            Phase(
                "head",
                self.head_epochs,
                self.head_optimizer,
                self.head_learning_rate,
                schedule=self.schedule,
                prepare=lambda m: self._freeze(m, 0),
                trains="the new head; the network frozen",
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
                    prepare=lambda m, b=blocks: self._freeze(m, b),
                    trains=self._phase_trains(blocks),
                    rate_scales=(
                        None
                        if self.block_lr_ratio == 1
                        else lambda m, b=blocks: self._rate_scales(m, b)
                    ),
                )
            )
        return phases

    def _trained_model(self, model):
        if self._converter() is None:
            return model
        from tlsk.training.hub_finetune import uncompiled

        return uncompiled(model)

    def _phase_trains(self, open_blocks):
        """What learns in a phase that opens ``open_blocks``, for the log."""
        blocks = f"{open_blocks} block{'s' if open_blocks != 1 else ''}"
        if self._converter() is not None and self.lora_rank:
            rank = self.lora_rank
            return f"the head and LoRA adapters (rank {rank}) on the last {blocks}"
        return f"the head and the network's last {blocks}"

    def _freeze(self, model, open_blocks):
        """Open the last ``open_blocks`` stages or blocks of ``model``'s base."""
        if self._converter() is None:
            return freeze_base(model, open_blocks, self.backbone)
        from tlsk.training.hub_finetune import freeze_tower

        return freeze_tower(model, open_blocks, self.lora_rank)

    def _rate_scales(self, model, open_blocks):
        if self._converter() is None:
            return block_rate_scales(
                model, open_blocks, self.block_lr_ratio, self.backbone
            )
        from tlsk.training.hub_finetune import block_rate_scales as transformer_scales

        return transformer_scales(model, open_blocks, self.block_lr_ratio)

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


@dataclasses.dataclass(frozen=True)
class _Transformer:
    """What fitting needs of a KerasHub network before it is built."""

    label: str  # how messages name it
    family: str
    n_blocks: int
    converter: ImageConverterSpec | None
    size: int | None  # the side of its images; None: the preset's network's


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
    its stages end at the registry's ``stage_ends`` of ``backbone``, a
    keras.applications network (a KerasHub transformer's blocks:
    :func:`tlsk.training.hub_finetune.freeze_tower`). The head always trains;
    BatchNormalization layers never do. Returns the names of the base's
    trainable layers that have weights.
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
