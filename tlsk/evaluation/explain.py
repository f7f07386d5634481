"""Where a model looks: class activation maps of tlsk's image classifiers.

:func:`explain` gives one map per image, on the grid of the network's last
feature map (7 x 7 for VGG16 at 224 px; 16 x 16 for the small CNN at
128 px), for the class each image is asked about:

- **Grad-CAM** (Selvaraju et al., 2017) for the Keras classifiers,
  :class:`tlsk.KerasFineTuneClassifier` on a convolutional network and
  :class:`tlsk.SmallCNNClassifier`: the gradient of the class's score (its
  logit, the softmax's input) with respect to the feature map that the head
  pools, averaged over the grid, weighs each channel of that map; the map is
  the ReLU of the weighted sum.
- **The exact class activation map** (Zhou et al., 2016) for a bottleneck
  pipeline: an :class:`tlsk.ImageFeatureExtractor` with average pooling
  (``pooling="avg"``), any number of
  :class:`~sklearn.preprocessing.StandardScaler` steps, and a linear
  classifier (``coef_``: LogisticRegression, LinearSVC, RidgeClassifier,
  SGDClassifier, ..., or tlsk's ``"linear-svm"``, a LinearSVC inside a
  ``CalibratedClassifierCV(ensemble=False)``). The map of class ``c`` is
  ``sum_k w_ck F_k(x, y)``, ``F`` the feature map the extractor averages and
  ``w`` the classifier's weights with the scalers folded into them exactly
  (``w / scale``, the intercept less ``w @ (mean / scale)``): its mean over
  the grid plus the folded intercept is the classifier's decision function.

:func:`overlay` draws a map over its image, in a perceptual colormap
(viridis), for a report's thumbnails.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real

import numpy as np
from PIL import Image
from sklearn.utils.validation import check_is_fitted, column_or_1d

from tlsk.features.extractor import ImageFeatureExtractor
from tlsk.images.decode import image_inputs, load_batch
from tlsk.networks.backbone import (
    BackboneConfig,
    feature_map_network,
    get_backbone,
    resolve_backbone,
    resolve_weights,
)
from tlsk.networks.preprocessing import HUB_PREPROCESSING, preprocess
from tlsk.training.finetune import KerasFineTuneClassifier
from tlsk.training.scratch import SmallCNNClassifier

__all__ = ["ClassActivationMaps", "explain", "overlay", "unsupported_reason"]

SUPPORTED = (
    "a fitted tlsk.KerasFineTuneClassifier on a convolutional network or "
    "tlsk.SmallCNNClassifier (Grad-CAM), or a fitted Pipeline of a "
    "tlsk.ImageFeatureExtractor with pooling='avg', optional StandardScaler "
    "steps and a linear classifier with coef_ (LogisticRegression, LinearSVC, "
    "RidgeClassifier, SGDClassifier, or a CalibratedClassifierCV(ensemble=False) "
    "of one; the exact class activation map)"
)

# matplotlib's viridis at 17 evenly spaced points (0, 1/16, ..., 1), RGB 0-255;
# linear interpolation between them stays within 1 level of the full table.
VIRIDIS = np.array(
    [
        [68, 1, 84],
        [72, 24, 106],
        [71, 45, 123],
        [66, 64, 134],
        [59, 82, 139],
        [51, 99, 141],
        [44, 114, 142],
        [38, 130, 142],
        [33, 145, 140],
        [31, 160, 136],
        [40, 174, 128],
        [63, 188, 115],
        [94, 201, 98],
        [132, 212, 75],
        [173, 220, 48],
        [216, 226, 25],
        [253, 231, 37],
    ],
    dtype=np.float32,
)


@dataclass(frozen=True)
class ClassActivationMaps:
    """What :func:`explain` returns: one map per image and the class it is for.

    Attributes
    ----------
    maps : ndarray of shape (n_images, h, w), float32
        On the grid of the network's last feature map (``h`` x ``w``, over
        the image squashed to the network's square input, as ``predict``
        sees it). Normalised (the default), each image's values in [0, 1]
        with 1 where the class's evidence peaks: for Grad-CAM the ReLU of
        the map divided by its maximum (the paper's; all 0 where nothing
        speaks for the class, as for a class recognised by what the image
        lacks), for the exact map ``(map - min) / (max - min)`` (Zhou et
        al.'s own code; a constant over the grid, such as a scaler's mean,
        changes nothing; a flat map is all 0). With ``normalize=False``:
        the weighted sum itself, signed.
    classes : ndarray of shape (n_images,)
        The class label each map is for (from the model's ``classes_``).
    predicted : ndarray of shape (n_images,)
        The model's class for each image, from the same pass (the original
        view, without test-time augmentation).
    method : {"grad-cam", "cam"}
        Grad-CAM, or the exact class activation map.
    layer : str
        The layer whose output is the feature map.
    offsets : ndarray of shape (n_images,) or None
        For the exact map: the classifier's intercept for each map's class,
        the scalers folded in, so that ``maps.mean(axis=(1, 2)) + offsets``
        (with ``normalize=False``) is its decision function for that class.
        None for Grad-CAM.
    """

    maps: np.ndarray
    classes: np.ndarray
    predicted: np.ndarray
    method: str
    layer: str
    offsets: np.ndarray | None = None

    def __len__(self):
        return len(self.maps)


def explain(model, images, *, target="predicted", y=None, normalize=True):
    """Class activation maps: where ``model`` looks in each image for a class.

    Grad-CAM for the Keras classifiers, the exact class activation map for a
    bottleneck pipeline with a linear classifier (see
    :mod:`tlsk.evaluation.explain`). Images are decoded, resized and
    preprocessed by the model's own pipeline, as ``predict`` does.

    Parameters
    ----------
    model : estimator
        A fitted :class:`tlsk.KerasFineTuneClassifier` (a keras.applications
        network, not a KerasHub transformer) or
        :class:`tlsk.SmallCNNClassifier`; or a fitted
        :class:`~sklearn.pipeline.Pipeline` of an
        :class:`tlsk.ImageFeatureExtractor` with ``pooling="avg"``, optional
        ``StandardScaler`` steps and a linear classifier with ``coef_``.
    images : sequence of paths, array (N, H, W, 3) or (N, H, W), or list
        As for ``predict``; at least one image.
    target : "predicted", "true" or sequence of labels, default="predicted"
        The class each map is for: the model's predicted class, the true
        class ``y``, or one label of ``classes_`` per image (a class named
        "true" or "predicted" is asked for as ``["true"] * n``).
    y : sequence of labels, optional
        The images' true labels, with ``target="true"`` only.
    normalize : bool, default=True
        Each map scaled to [0, 1] (see :class:`ClassActivationMaps`); False:
        the raw weighted sum.

    Returns
    -------
    ClassActivationMaps
        ``maps`` (n_images, h, w), ``classes`` (what each map is for),
        ``predicted``, ``method``, ``layer``, ``offsets``.

    Raises
    ------
    TypeError
        A model of another kind (an SVC with an RBF kernel, a random forest,
        a Keras classifier on a transformer, ...).
    ValueError
        No images; ``y`` missing or of the wrong length; a label not among
        the model's classes; an extractor that does not average-pool a
        feature map.

    Examples
    --------
    >>> import numpy as np
    >>> from tlsk import SmallCNNClassifier, explain
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 256, (4, 32, 32, 3))
    >>> model = SmallCNNClassifier(
    ...     input_size=32, filters=(4, 4), epochs=1, validation_fraction=0,
    ...     random_state=0,
    ... ).fit(X, ["a", "b"] * 2)
    >>> result = explain(model, X, target="true", y=["a", "b"] * 2)
    >>> result.maps.shape, result.classes.tolist(), result.method, result.layer
    ((4, 8, 8), ['a', 'b', 'a', 'b'], 'grad-cam', 'pool2')
    >>> bool(result.maps.min() >= 0 and result.maps.max() <= 1)
    True
    """
    inputs = image_inputs(images)
    if not inputs:
        raise ValueError("images is empty: explain needs at least one image")
    explainer = _explainer(model)
    wanted = _wanted(target, y, len(inputs), explainer.classes)
    raw, chosen, predicted, offsets = explainer.maps(inputs, wanted)
    maps = _normalized(raw, explainer.method) if normalize else raw.astype(np.float32)
    return ClassActivationMaps(
        maps=maps,
        classes=explainer.classes[chosen],
        predicted=explainer.classes[predicted],
        method=explainer.method,
        layer=explainer.layer,
        offsets=offsets,
    )


def unsupported_reason(model):
    """Why :func:`explain` cannot explain ``model``: the sentence, or None if it can.

    What ``explain`` would raise about the model itself (its kind, its
    pooling, its classifier, not fitted), without reading any image: for a
    caller that draws maps where it can and says why where it cannot.

    Examples
    --------
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from tlsk.evaluation.explain import unsupported_reason
    >>> unsupported_reason(RandomForestClassifier())[:40]
    'explain supports a fitted tlsk.KerasFine'
    """
    try:
        _explainer(model)
    except (TypeError, ValueError) as err:  # NotFittedError is a ValueError
        return str(err)
    return None


def overlay(image, cam, *, alpha=0.5, max_side=None):
    """``cam`` drawn over ``image``: a Pillow RGB image of the image's size.

    The map is upsampled bilinearly to the image (over the whole image: the
    network saw it squashed to a square, so the grid stretches back with it),
    coloured with viridis (dark blue at 0, yellow at 1) and blended in.

    Parameters
    ----------
    image : path, PIL.Image.Image or array (H, W, 3) or (H, W)
        Decoded as tlsk decodes images (EXIF orientation applied).
    cam : array of shape (h, w)
        One normalised map, values in [0, 1]: ``explain(...).maps[i]``.
    alpha : float in [0, 1], default=0.5
        The colour's weight; 0 gives the image, 1 the map alone.
    max_side : int, optional
        Shrink the image first so that its longer side is at most this.

    Returns
    -------
    PIL.Image.Image

    Examples
    --------
    >>> import numpy as np
    >>> from tlsk.evaluation.explain import overlay
    >>> cam = np.zeros((7, 7))
    >>> cam[:, :3] = 1
    >>> picture = overlay(np.full((60, 80, 3), 128, np.uint8), cam, alpha=0.5)
    >>> picture.size, picture.mode
    ((80, 60), 'RGB')
    """
    if isinstance(alpha, bool) or not isinstance(alpha, Real) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1]; received {alpha!r}")
    cam = np.asarray(cam, dtype=np.float32)
    if cam.ndim != 2 or 0 in cam.shape:
        raise ValueError(
            f"cam must be one map of shape (h, w); received shape {cam.shape}"
        )
    if not np.isfinite(cam).all():
        raise ValueError(
            "cam must hold values in [0, 1] (a normalised map: "
            "explain(...).maps[i]); received NaN or infinite values"
        )
    if cam.min() < 0 or cam.max() > 1 + 1e-6:
        raise ValueError(
            "cam must hold values in [0, 1] (a normalised map: "
            "explain(...).maps[i]); received values from "
            f"{float(cam.min()):g} to {float(cam.max()):g}"
        )
    if max_side is not None and (
        isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 1
    ):
        raise ValueError(f"max_side must be a positive int; received {max_side!r}")
    [item] = image_inputs([image])
    _, pixels = item.load()
    picture = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if max_side is not None:
        picture.thumbnail((max_side, max_side))
    width, height = picture.size
    upsampled = Image.fromarray(np.clip(cam, 0, 1)).resize(
        (width, height), Image.Resampling.BILINEAR
    )
    colour = _viridis(np.asarray(upsampled))
    base = np.asarray(picture, dtype=np.float32)
    blended = (1 - alpha) * base + alpha * colour
    return Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8))


def _viridis(values):
    """RGB float32 ``(..., 3)`` of ``values`` in [0, 1] on :data:`VIRIDIS`."""
    positions = np.linspace(0, 1, len(VIRIDIS))
    return np.stack(
        [np.interp(values, positions, VIRIDIS[:, c]) for c in range(3)], axis=-1
    ).astype(np.float32)


def _normalized(raw, method):
    """Each map in [0, 1]: Grad-CAM's ReLU over its maximum, a CAM's min-max.

    The exact map's level is arbitrary (the classifier's intercept and a
    scaler's mean are constants over the grid, and could go into it or
    not), so only its shape is drawn, as Zhou et al.'s code does; Grad-CAM's
    zero is meaningful (no evidence for the class), as its paper's ReLU says.
    """
    maps = raw.astype(np.float32)
    if method == "cam":
        maps = maps - maps.min(axis=(1, 2), keepdims=True)
    maps = np.maximum(maps, 0)
    peaks = maps.max(axis=(1, 2), keepdims=True)
    return np.divide(maps, peaks, out=np.zeros_like(maps), where=peaks > 0)


def _wanted(target, y, n_images, classes):
    """The class index each map is for; None: each image's predicted class."""
    if isinstance(target, str) and target == "predicted":
        if y is not None:
            raise ValueError(
                "y is used with target='true' only; received y with target='predicted'"
            )
        return None
    if isinstance(target, str) and target == "true":
        if y is None:
            raise ValueError("target='true' needs the true labels: pass y=")
        return _indices(column_or_1d(np.asarray(y)), n_images, classes, "y")
    if isinstance(target, str) or np.ndim(target) != 1:
        raise ValueError(
            "target must be 'predicted', 'true' (with y=) or a sequence of one "
            f"class label per image; received {target!r}. For one class for "
            "every image, pass [label] * n_images"
        )
    if y is not None:
        raise ValueError(
            "y is used with target='true' only; received y with a sequence of "
            "labels as target"
        )
    return _indices(np.asarray(target), n_images, classes, "target")


def _indices(labels, n_images, classes, name):
    """Indices in ``classes`` of ``labels``, one per image; errors name ``name``."""
    if len(labels) != n_images:
        raise ValueError(
            f"{name} must hold one label per image: received {len(labels)} labels "
            f"for {n_images} images"
        )
    position = {label: i for i, label in enumerate(classes.tolist())}
    unknown = [label for label in labels.tolist() if label not in position]
    if unknown:
        raise ValueError(
            f"{name} names labels that are not among the model's classes "
            f"{classes.tolist()!r}: {sorted(set(map(repr, unknown)))[:5]}"
        )
    return np.array([position[label] for label in labels.tolist()], dtype=np.int64)


def _explainer(model):
    from sklearn.pipeline import Pipeline

    if isinstance(model, KerasFineTuneClassifier | SmallCNNClassifier):
        return _GradCam(model)
    if isinstance(model, Pipeline):
        return _ExactCam(model)
    raise TypeError(f"explain supports {SUPPORTED}; received a {type(model).__name__}")


class _GradCam:
    """Grad-CAM on a fitted Keras classifier of tlsk."""

    method = "grad-cam"

    def __init__(self, estimator):
        import keras

        check_is_fitted(estimator)
        self.estimator = estimator
        self.classes = np.asarray(estimator.classes_)
        network = estimator.model_
        pool = _head_pooling(network)
        if pool is None:
            raise TypeError(
                f"Grad-CAM needs a convolutional network whose head pools a "
                f"feature map (n, h, w, c); the network of this "
                f"{type(estimator).__name__} ({network.name}) pools none (a "
                f"KerasHub transformer's tokens are not supported). explain "
                f"supports {SUPPORTED}"
            )
        self.layer = _producer(pool.input, pool.name)
        last = network.layers[-1]
        # The class's score is its logit, the input of the softmax: the
        # softmax's own gradient mixes in every other class (Grad-CAM's rule).
        self.softmax = (
            isinstance(last, keras.layers.Dense)
            and last.activation is keras.activations.softmax
        )
        head = last.input if self.softmax else network.outputs[0]
        self.output_layer = last
        self.model = keras.Model(network.inputs, [pool.input, head])

    def _logits(self, head):
        import keras

        if not self.softmax:
            return keras.ops.cast(head, "float32")
        layer = self.output_layer
        logits = keras.ops.matmul(keras.ops.cast(head, "float32"), layer.kernel)
        return logits + layer.bias if layer.use_bias else logits

    def maps(self, inputs, wanted):
        import tensorflow as tf

        step = tf.function(self._step, reduce_retracing=True)
        # The estimator's own input pipeline: images seen exactly as predict
        # sees them (decode, resize, preprocessing).
        batches = self.estimator.image_batches(inputs)
        raws, chosen, predicted, start = [], [], [], 0
        for index in range(len(batches)):
            (x,) = batches[index]
            rows = -np.ones(len(x), np.int64)
            if wanted is not None:
                rows = wanted[start : start + len(x)]
            raw, rows, best = step(tf.constant(x, tf.float32), tf.constant(rows))
            raws.append(raw.numpy())
            chosen.append(rows.numpy())
            predicted.append(best.numpy())
            start += len(x)
        return (
            np.concatenate(raws),
            np.concatenate(chosen),
            np.concatenate(predicted),
            None,
        )

    def _step(self, x, rows):
        """Grad-CAM of one batch: ``(raw maps, classes, predicted classes)``.

        ``rows`` holds each image's class index, or -1 for its predicted one.
        """
        import tensorflow as tf

        with tf.GradientTape() as tape:
            features, head = self.model(x, training=False)
            logits = self._logits(head)
            best = tf.argmax(logits, axis=1)
            rows = tf.where(rows < 0, best, rows)
            score = tf.reduce_sum(tf.gather(logits, rows, axis=1, batch_dims=1))
        gradients = tf.cast(tape.gradient(score, features), tf.float32)
        weights = tf.reduce_mean(gradients, axis=(1, 2))
        raw = tf.einsum("nhwc,nc->nhw", tf.cast(features, tf.float32), weights)
        return raw, rows, best


def _producer(tensor, default):
    """The name of the layer that outputs ``tensor`` in its model; else ``default``.

    A nested model (a fine-tuned network's base) has outputs of its own
    inside it; the tensor of its call in the outer model knows its layer
    through Keras's history.
    """
    history = getattr(tensor, "_keras_history", None)
    operation = getattr(history, "operation", None)
    return getattr(operation, "name", default)


def _head_pooling(network):
    """The last layer of ``network`` that pools a feature map (n, h, w, c)."""
    import keras

    pools = (
        keras.layers.GlobalAveragePooling2D,
        keras.layers.GlobalMaxPooling2D,
        keras.layers.Flatten,
    )
    for layer in reversed(network.layers):
        if isinstance(layer, pools) and len(layer.input.shape) == 4:
            return layer
    return None


class _ExactCam:
    """The exact class activation map of a bottleneck pipeline."""

    method = "cam"

    def __init__(self, pipeline):
        from sklearn.preprocessing import StandardScaler

        steps = [
            (name, step)
            for name, step in pipeline.steps
            if step is not None
            and not (isinstance(step, str) and step == "passthrough")
        ]
        if len(steps) < 2 or not isinstance(steps[0][1], ImageFeatureExtractor):
            raise TypeError(
                "the exact class activation map needs a Pipeline whose first step "
                "is a tlsk.ImageFeatureExtractor and whose last is a classifier; "
                f"received the steps {[name for name, _ in pipeline.steps]!r}. "
                f"explain supports {SUPPORTED}"
            )
        self.extractor = extractor = steps[0][1]
        check_is_fitted(extractor)
        check_is_fitted(pipeline)
        self.scalers = [step for _, step in steps[1:-1]]
        for name, step in steps[1:-1]:
            if not isinstance(step, StandardScaler):
                raise TypeError(
                    "between the extractor and the classifier, the exact class "
                    "activation map folds StandardScaler steps only; step "
                    f"{name!r} is a {type(step).__name__}"
                )
        self.classifier = steps[-1][1]
        self.classes = np.asarray(self.classifier.classes_)
        self.linear = _linear_part(self.classifier, steps[-1][0])
        self.weights, self.intercepts = self._folded_weights()
        self.config = self._backbone_config()
        self.network = feature_map_network(self.config)
        self.layer = extractor.layer_

    def _backbone_config(self):
        """The extractor's network, from its fitted attributes, checked against them."""
        extractor = self.extractor
        fingerprint = extractor.fingerprint_
        if extractor.preprocessing_ == HUB_PREPROCESSING:
            raise ValueError(
                "the exact class activation map needs a convolutional network's "
                f"feature map; this extractor's network ({extractor.network_}) is "
                "a KerasHub transformer, whose tokens it pools"
            )
        if fingerprint.get("pooling") != "avg":
            raise ValueError(
                "the exact class activation map needs features averaged over the "
                "feature map (ImageFeatureExtractor(pooling='avg')); this "
                f"extractor pools with {fingerprint.get('pooling')!r}"
            )
        if "embedding" in fingerprint:
            raise ValueError(
                f"{extractor.network_}'s pooled vector passes Keras's head norm (a "
                "LayerNormalization) before the classifier: the classifier is not "
                "linear in the feature map, and the exact class activation map "
                "does not apply"
            )
        openvino = extractor.engine_ == "openvino"
        config = BackboneConfig(
            weights=resolve_weights(extractor.weights),
            layer=extractor.layer_,
            pooling="avg",
            input_size=extractor.input_size_,
            # The OpenVINO engine runs (or quantizes) this float32 network.
            precision="float32" if openvino else extractor.precision_,
            backbone=resolve_backbone(extractor.backbone),
        )
        built = get_backbone(config).fingerprint
        changed = [
            key
            for key, value in built.items()
            if fingerprint.get(key) != value and not (openvino and key == "precision")
        ]
        if changed:
            raise ValueError(
                f"the network of this pipeline's extractor is no longer the one it "
                f"was fitted with ({', '.join(changed)} differ: a changed weights "
                "or model file, or parameters set since); fit again"
            )
        return config

    def _folded_weights(self):
        """Per class: weights on the pooled vector and intercepts, scalers folded in.

        ``(n_classes, d)`` and ``(n_classes,)``: a binary classifier's one row
        ``w`` is ``+w`` for ``classes_[1]`` and ``-w`` for ``classes_[0]``.
        """
        coef = self.linear.coef_
        coef = np.asarray(coef.toarray() if hasattr(coef, "toarray") else coef)
        coef = np.atleast_2d(coef).astype(np.float64)
        intercept = np.broadcast_to(
            np.asarray(self.linear.intercept_, dtype=np.float64), (len(coef),)
        )
        n_classes = len(self.classes)
        if coef.shape[0] == 1 and n_classes == 2:
            coef, intercept = np.r_[-coef, coef], np.r_[-intercept, intercept]
        elif coef.shape[0] != n_classes:
            raise TypeError(
                f"the classifier's coef_ has {coef.shape[0]} rows for "
                f"{n_classes} classes; the exact class activation map needs one "
                "row per class (or one for two classes)"
            )
        for scaler in reversed(self.scalers):
            # z = (x - mean) / scale, so w z + b = (w / scale) x + b - (w / scale) mean
            if scaler.with_std:
                coef = coef / scaler.scale_
            if scaler.with_mean:
                intercept = intercept - coef @ scaler.mean_
        width = self.extractor.n_features_out_
        if coef.shape[1] != width:
            raise ValueError(
                f"the classifier takes {coef.shape[1]} features; the extractor "
                f"gives {width}"
            )
        return coef, np.asarray(intercept, dtype=np.float64)

    def maps(self, inputs, wanted):
        extractor = self.extractor
        fingerprint = extractor.fingerprint_
        size, interpolation = fingerprint["input_size"], fingerprint["interpolation"]
        position = {label: i for i, label in enumerate(self.classes.tolist())}
        raws, chosen, predicted = [], [], []
        for start in range(0, len(inputs), extractor.batch_size):
            batch = inputs[start : start + extractor.batch_size]
            _, pixels = load_batch(
                batch, size, interpolation, max_pixels=extractor.max_image_pixels
            )
            # Called, not predict_on_batch: a new model each call of explain
            # would have Keras trace a new predict function each time.
            features = np.asarray(
                self.network(preprocess(pixels, extractor.preprocessing_)),
                dtype=np.float64,
            )
            pooled = features.mean(axis=(1, 2))
            scaled = pooled.astype(np.float32)
            for scaler in self.scalers:
                scaled = scaler.transform(scaled)
            self._check_linear(scaled, pooled)
            labels = self.classifier.predict(scaled)
            best = np.array([position[label] for label in labels.tolist()])
            rows = best if wanted is None else wanted[start : start + len(batch)]
            raws.append(np.einsum("nhwd,nd->nhw", features, self.weights[rows]))
            chosen.append(rows)
            predicted.append(best)
        chosen = np.concatenate(chosen)
        return (
            np.concatenate(raws),
            chosen,
            np.concatenate(predicted),
            self.intercepts[chosen].astype(np.float32),
        )

    def _check_linear(self, scaled, pooled):
        """Raise TypeError unless the decision function is the folded weights'."""
        decision = np.asarray(self.linear.decision_function(scaled), dtype=np.float64)
        folded = pooled @ self.weights.T + self.intercepts
        if decision.ndim == 1:
            folded = folded[:, 1]
        tolerance = 1e-3 * (1 + np.abs(folded).max())
        if decision.shape != folded.shape or not np.allclose(
            decision, folded, rtol=1e-3, atol=tolerance
        ):
            raise TypeError(
                f"the decision function of {type(self.linear).__name__} is not "
                "coef_ @ x + intercept_ (one score per class): the exact class "
                f"activation map does not apply. explain supports {SUPPORTED}"
            )


def _linear_part(classifier, name):
    """The linear model that decides ``classifier``'s scores; TypeError if none."""
    from sklearn.calibration import CalibratedClassifierCV

    if hasattr(classifier, "coef_") and hasattr(classifier, "intercept_"):
        return classifier
    if isinstance(classifier, CalibratedClassifierCV):
        calibrated = getattr(classifier, "calibrated_classifiers_", [])
        inner = calibrated[0].estimator if len(calibrated) == 1 else None
        if hasattr(inner, "coef_") and hasattr(inner, "intercept_"):
            # ensemble=False: one model fitted on every image, each class's
            # probability a monotone function of its decision function.
            if np.array_equal(np.asarray(inner.classes_), classifier.classes_):
                return inner
    raise TypeError(
        f"the exact class activation map needs a linear classifier (coef_); step "
        f"{name!r} is a {_describe(classifier)}. explain supports {SUPPORTED}"
    )


def _describe(classifier):
    estimator = getattr(classifier, "estimator", None)
    if estimator is None:
        return type(classifier).__name__
    kernel = getattr(estimator, "kernel", None)
    inner = type(estimator).__name__ + (f"(kernel={kernel!r})" if kernel else "")
    return f"{type(classifier).__name__} of {inner}"
