"""Zero-shot image classification from class names, with CLIP or SigLIP 2.

A language-supervised network embeds images and sentences in one space.
:class:`ZeroShotImageClassifier` writes a sentence per class from templates
(``"a photo of a {}."``), embeds it with the network's text tower, and
scores each image against each class as the network itself was trained to:
CLIP with a softmax over its scaled cosine similarities, SigLIP with a
sigmoid per class. No labelled image is needed.

The image embeddings come from :class:`tlsk.ImageFeatureExtractor`
(``pooling="embedding"``), so they are cached, computed on a Dask cluster,
averaged over test-time views and computed in bfloat16 as any other features
are. The text embeddings go into the same cache file, in namespaces of their
own (``ZeroShotImageClassifier.text_fingerprints_``).
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import reprlib
from collections import Counter
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_consistent_length
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from tlsk._util.keyword_only import keyword_only
from tlsk._util.limits import MAX_BATCH_SIZE, MAX_N_JOBS
from tlsk._util.sklearn_compat import (
    Interval,
    StrOptions,
    _fit_context,
    image_input_tags,
)
from tlsk.cache import FeatureCache
from tlsk.features.extraction import check_cache_path
from tlsk.features.extractor import ImageFeatureExtractor
from tlsk.images.tta import TTA_MODES
from tlsk.networks.backbone import resolve_backbone, resolve_weights
from tlsk.networks.hub import (
    PRESET_FOLDER,
    PRESET_WEIGHTS,
    hub_identity,
    is_preset_folder,
    read_preset,
    weights_source,
)
from tlsk.networks.precision import PRECISIONS
from tlsk.networks.registry import BACKBONES, HubSpec, is_model_file

__all__ = ["DEFAULT_TEMPLATES", "ZeroShotImageClassifier"]

DEFAULT_TEMPLATES = ("a photo of a {}.",)
DEFAULT_BACKBONE = "siglip2_base_patch16_224"
TEXT_FAMILIES = ("clip", "siglip")  # as tlsk.networks.hub_text, which imports Keras

# The text namespaces' fingerprints say what the vectors are ("embedding");
# the head's two numbers are stored as one vector under one key.
TEXT_EMBEDDING = "text"
HEAD_EMBEDDING = "logit_scale,logit_bias"
HEAD_KEY = hashlib.sha256(HEAD_EMBEDDING.encode()).digest()
# exp(logit_scale) of CLIP and SigLIP is about 100; far beyond, scores are
# not a network's.
_MAX_LOGIT_SCALE = 50.0


def zero_shot_backbones():
    """The registry's networks with a text tower, by name."""
    return [
        name
        for name, spec in BACKBONES.items()
        if isinstance(spec, HubSpec) and spec.family in TEXT_FAMILIES
    ]


class ZeroShotImageClassifier(ClassifierMixin, BaseEstimator):
    """Classify images from class names alone, with a CLIP or SigLIP 2 network.

    Each class becomes a sentence per template (``"a photo of a {}."`` gives
    ``"a photo of a cat."``), embedded by the network's text tower; several
    templates are averaged in the text embedding space, each embedding
    normalised to unit length before the mean and the mean after it, as
    CLIP's prompt ensembling does (Radford et al. 2021, arXiv 2103.00020,
    section 3.1.4; ``zeroshot_classifier`` in openai/CLIP's
    ``notebooks/Prompt_Engineering_for_ImageNet.ipynb``). An image's
    embedding is the network's own (:class:`ImageFeatureExtractor` with
    ``pooling="embedding"``) and its score for a class follows the network's
    own head: the logit ``exp(logit_scale) * cos + logit_bias`` of the
    cosine of the two embeddings (CLIP has no bias), then

    * CLIP: the softmax of the logits over the classes;
    * SigLIP: the sigmoid of each logit, a probability of its own per class
      (:meth:`decision_function`), divided by their sum to give
      :meth:`predict_proba`.

    No training image is needed: ``fit()`` with ``classes`` given only
    embeds the class names (and builds the network). ``fit(X, y)`` takes the
    class names from ``y``, e.g. the folder names of
    :func:`tlsk.load_image_folder`; ``X`` is not used.

    Parameters
    ----------
    backbone : str or path, default="siglip2_base_patch16_224"
        A CLIP or SigLIP network of the registry (``"siglip2_base_patch16_224"``,
        ``"siglip2_so400m_patch14_224"``, ``"clip_vit_base_patch16"``,
        ``"clip_vit_large_patch14"``), or the path of a KerasHub preset folder
        of a ``CLIPBackbone`` or ``SigLIPBackbone`` with its tokenizer. Other
        networks have no text tower and are refused.
    weights : "pretrained", "imagenet" or path, default="pretrained"
        ``"pretrained"`` (or ``"imagenet"``): the registry network's
        published KerasHub preset (downloaded by KerasHub when missing;
        offline, an immediate :class:`tlsk.WeightsUnavailableError`), or a
        preset folder backbone's own weights. A path: a preset folder of the
        registry network, tokenizer included. ``None`` is refused: a network
        with random weights has no tokenizer and its text means nothing.
    classes : array-like of str or None, default=None
        The class names, in the order of :meth:`predict_proba`'s columns.
        None: taken from ``y`` at ``fit``.
    templates : str or sequence of str, default=("a photo of a {}.",)
        Sentences with ``{}`` where the class name goes (each ``{}`` is
        replaced). Several are averaged (CLIP used 80 on ImageNet).
    batch_size : int, default=32
        Images (and sentences) per network call, at most 4096.
    precision : {"auto", "float32", "bfloat16"}, default="auto"
        Of the image embeddings, as for :class:`ImageFeatureExtractor`. The
        text embeddings are computed in float32, once.
    cache : str, path or None, default=None
        HDF5 feature cache file: the image embeddings are stored under the
        images' content keys (the extractor's namespace) and the text
        embeddings under the SHA-256 of each sentence, in a namespace per
        network and template (``text_fingerprints_``). A second classifier
        on the same network, classes and templates then loads no text tower.
    tta : {None, "flip", "ten_crop"}, default=None
        Test-time augmentation: the image embedding is the mean over views
        (:mod:`tlsk.images.tta`). Read at prediction: it may change after ``fit``.
    n_jobs : int or None, default=None
        Threads that decode images (as for :class:`ImageFeatureExtractor`).
    verbose : int, default=0
        ``1`` or more shows a progress bar while images are embedded.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class names, as given in ``classes`` or sorted from ``y``.
    text_embeddings_ : ndarray of shape (n_classes, n_dims), float64
        Each class's text embedding, averaged over the templates, unit length.
    logit_scale_ : float
        The network's logit scale (its logarithm, as the network stores it).
    logit_bias_ : float
        SigLIP's logit bias; 0 for CLIP.
    family_ : {"clip", "siglip"}
        How the scores are made.
    templates_ : tuple of str
    text_fingerprints_ : list of dict
        The cache namespace of each template's sentences: the network (its
        preset's SHA-256, which covers the tokenizer's files too),
        ``"embedding": "text"``, KerasHub's text packing (preprocessor,
        tokenizer, sequence length), the template and the precision. The
        keys are the SHA-256 of each sentence in UTF-8.
    extractor_ : ImageFeatureExtractor
        The fitted extractor of the image embeddings.
    cache_path_ : str or None
        The absolute path of the feature cache.

    See Also
    --------
    ImageFeatureExtractor : the image embeddings (``pooling="embedding"``),
        for a classifier trained on labelled images.
    tlsk.evaluation.report.evaluation_report : an HTML report of a classifier on
        labelled images, this one included.

    Notes
    -----
    Nothing of Keras is pickled: the network is built again (once per
    process) when images are classified, and the text embeddings are fitted
    arrays. A ``.skops`` file (:func:`tlsk.save_model`) is for sharing and
    so may name no path of this machine: a preset folder backbone, a preset
    folder as ``weights`` or a ``cache`` are refused there (save
    :meth:`with_cache_file` ``(None)``, and name the network from the
    registry with ``weights="pretrained"``).

    Examples
    --------
    With KerasHub's published SigLIP 2 (downloaded on first use):

    >>> model = ZeroShotImageClassifier(classes=["cat", "dog", "bird"])
    >>> model.fit().predict(["photos/tom.jpg"])  # doctest: +SKIP
    array(['cat'], dtype='<U4')

    Offline, with a tiny CLIP of random weights saved as a preset folder
    (only the shapes of its answers mean something):

    >>> import tempfile
    >>> import numpy as np
    >>> import keras_hub
    >>> letters = "abcdefghijklmnopqrstuvwxyz."
    >>> tokens = [*letters, *(c + "</w>" for c in letters), "of</w>"]
    >>> tokens += ["<|startoftext|>", "<|endoftext|>"]
    >>> tokenizer = keras_hub.tokenizers.CLIPTokenizer(
    ...     vocabulary={t: i for i, t in enumerate(tokens)}, merges=["o f</w>"]
    ... )
    >>> tiny = dict(hidden_dim=16, num_layers=1, num_heads=2, intermediate_dim=32)
    >>> clip = keras_hub.models.CLIPBackbone(
    ...     keras_hub.models.CLIPVisionEncoder(
    ...         patch_size=16, image_shape=(32, 32, 3), **tiny
    ...     ),
    ...     keras_hub.models.CLIPTextEncoder(
    ...         vocabulary_size=len(tokens), embedding_dim=16, **tiny
    ...     ),
    ...     projection_dim=8,
    ... )
    >>> preset = tempfile.mkdtemp()
    >>> clip.save_to_preset(preset)
    >>> tokenizer.save_to_preset(preset)
    >>> keras_hub.layers.CLIPImageConverter(
    ...     image_size=(32, 32), scale=1 / 255
    ... ).save_to_preset(preset)
    >>> model = ZeroShotImageClassifier(
    ...     backbone=preset, classes=["cat", "dog"], precision="float32"
    ... ).fit()
    >>> images = np.random.default_rng(0).integers(0, 256, (3, 40, 50, 3))
    >>> proba = model.predict_proba(images)
    >>> proba.shape, np.allclose(proba.sum(axis=1), 1)
    ((3, 2), True)
    >>> model.text_embeddings_.shape, model.family_
    ((2, 8), 'clip')
    >>> set(model.predict(images)) <= {"cat", "dog"}
    True
    """

    _parameter_constraints: dict = {
        "backbone": [str, os.PathLike],
        "weights": [StrOptions(set(PRESET_WEIGHTS)), None, str, os.PathLike],
        "classes": [None, "array-like"],
        "templates": [str, list, tuple],
        "batch_size": [Interval(Integral, 1, MAX_BATCH_SIZE, closed="both")],
        "precision": [StrOptions(set(PRECISIONS))],
        "cache": [None, str, os.PathLike],
        "tta": [None, StrOptions(set(TTA_MODES))],
        "n_jobs": [
            None,
            Interval(Integral, 1, MAX_N_JOBS, closed="both"),
            Interval(Integral, None, -1, closed="right"),
        ],
        "verbose": ["verbose"],
    }

    @keyword_only
    def __init__(
        self,
        *,
        backbone=DEFAULT_BACKBONE,
        weights="pretrained",
        classes=None,
        templates=DEFAULT_TEMPLATES,
        batch_size=32,
        precision="auto",
        cache=None,
        tta=None,
        n_jobs=None,
        verbose=0,
    ):
        self.backbone = backbone
        self.weights = weights
        self.classes = classes
        self.templates = templates
        self.batch_size = batch_size
        self.precision = precision
        self.cache = cache
        self.tta = tta
        self.n_jobs = n_jobs
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Embed the class names, and build the network for the images.

        Parameters
        ----------
        X : ignored
            Not used: a zero-shot classifier learns nothing from images. When
            given with ``y``, only its length is checked against ``y``'s.
        y : array-like of shape (n_samples,), optional
            Labels whose distinct values are the classes (sorted), when
            ``classes`` is None; with ``classes`` given, every label must be
            one of them.

        Returns
        -------
        self : ZeroShotImageClassifier
        """
        classes = self._resolved_classes(X, y)
        templates = self._resolved_templates()
        network, folder, family = self._resolved_network()
        self.cache_path_ = None if self.cache is None else check_cache_path(self.cache)
        network_fingerprint = _network_fingerprint(network, self.weights)
        per_template, head, fingerprints = self._text_side(
            folder, network_fingerprint, [str(c) for c in classes], templates
        )
        # Embedded after the text, so that the text tower is released before
        # the image tower is built: a large network is not held twice.
        extractor = ImageFeatureExtractor(
            backbone=self.backbone,
            weights=self.weights,
            pooling="embedding",
            batch_size=self.batch_size,
            precision=self.precision,
            cache=self.cache,
            n_jobs=self.n_jobs,
            verbose=self.verbose,
        ).fit()
        if extractor.n_features_out_ != per_template.shape[-1]:
            raise ValueError(
                f"backbone {self.backbone!r} gives image embeddings of "
                f"{extractor.n_features_out_} values and text embeddings of "
                f"{per_template.shape[-1]}: its towers were not trained together"
            )
        self.classes_ = classes
        self.templates_ = templates
        self.family_ = family
        self.text_embeddings_ = _prompt_ensemble(per_template)
        self.logit_scale_, self.logit_bias_ = float(head[0]), float(head[1])
        self.text_fingerprints_ = fingerprints
        self.extractor_ = extractor
        return self

    def decision_function(self, X):
        """The network's own score of each image for each class.

        CLIP: the logits ``exp(logit_scale) * cos``; SigLIP: the sigmoid of
        ``exp(logit_scale) * cos + logit_bias``, each a probability on its
        own that the class fits the image.

        Parameters
        ----------
        X : sequence of paths, array (N, H, W, 3) or (N, H, W), or list of arrays

        Returns
        -------
        scores : ndarray of shape (n_images, n_classes)
            Two columns for two classes too, as for more.
        """
        logits = self._logits(X)
        return logits if self.family_ == "clip" else _sigmoid(logits)

    def predict_proba(self, X):
        """Class probabilities: CLIP's softmax, SigLIP's sigmoids normalised.

        Parameters
        ----------
        X : sequence of paths, array (N, H, W, 3) or (N, H, W), or list of arrays

        Returns
        -------
        proba : ndarray of shape (n_images, n_classes)
            In the order of ``classes_``; each row sums to one.
        """
        logits = self._logits(X)
        if self.family_ == "clip":
            exp = np.exp(logits - logits.max(axis=1, keepdims=True))
            return exp / exp.sum(axis=1, keepdims=True)
        scores = _sigmoid(logits)
        return scores / scores.sum(axis=1, keepdims=True)

    def predict(self, X):
        """The most probable class of each image.

        Parameters
        ----------
        X : sequence of paths, array (N, H, W, 3) or (N, H, W), or list of arrays

        Returns
        -------
        labels : ndarray of shape (n_images,)
        """
        return self.classes_[np.argmax(self._logits(X), axis=1)]

    def with_cache_file(self, path):
        """A copy of this fitted classifier that reads and writes another cache.

        ``path`` None gives a copy to share (:func:`tlsk.save_model` with
        ``.skops``): its image embeddings are computed afresh.
        """
        check_is_fitted(self)
        other = copy.copy(self)
        other.cache = path
        other.cache_path_ = None if path is None else check_cache_path(path)
        other.extractor_ = self.extractor_.with_cache_file(path)
        return other

    def __sklearn_tags__(self):
        tags = image_input_tags(super().__sklearn_tags__())
        tags.non_deterministic = True  # thread scheduling in TensorFlow's kernels
        return tags

    # -- fit: parameters ------------------------------------------------------

    def _resolved_classes(self, X, y):
        if y is not None:
            y = np.asarray(y)
            check_classification_targets(y)
            if X is not None:
                check_consistent_length(X, y)
        if self.classes is None:
            if y is None:
                raise ValueError(
                    "a zero-shot classifier needs its class names: give classes= "
                    "(e.g. ['cat', 'dog']) or fit(X, y) with the labels; received "
                    "classes=None and y=None"
                )
            return np.unique(y)
        classes = np.asarray(self.classes)
        names = [str(c).strip() for c in classes.ravel()]
        if classes.ndim != 1 or not names or not all(names):
            raise ValueError(
                "classes must be a non-empty list of class names, none empty; "
                f"received {reprlib.repr(self.classes)}"
            )
        counts = Counter(map(str, classes))
        repeated = sorted(name for name, count in counts.items() if count > 1)
        if repeated:
            raise ValueError(
                f"classes must name each class once; received {repeated} twice or more"
            )
        if y is not None:
            unknown = sorted(set(map(str, np.unique(y))) - set(map(str, classes)))
            if unknown:
                raise ValueError(
                    f"y holds labels that are not among classes: {unknown[:10]}; "
                    f"the classifier can predict only {reprlib.repr(names)}"
                )
        return classes

    def _resolved_templates(self):
        templates = (
            (self.templates,) if isinstance(self.templates, str) else self.templates
        )
        templates = tuple(templates)
        bad = [t for t in templates if not isinstance(t, str) or "{}" not in t]
        if not templates or bad:
            raise ValueError(
                "templates must be sentences with '{}' where the class name goes, "
                f"e.g. 'a photo of a {{}}.'; received {reprlib.repr(self.templates)}"
            )
        return templates

    def _resolved_network(self):
        """``(network, preset folder, family)``; the errors of a wrong network.

        ``network`` as :func:`tlsk.networks.backbone.resolve_backbone` gives it.
        """
        backbone = self.backbone
        if is_preset_folder(backbone):
            network = resolve_backbone(backbone)
            family = read_preset(network).family
        else:
            spec = BACKBONES.get(backbone) if isinstance(backbone, str) else None
            family = spec.family if isinstance(spec, HubSpec) else None
            network = backbone
        if family not in TEXT_FAMILIES:
            what = (
                f"a {family} network"
                if family
                else "a '.keras' model file"
                if is_model_file(backbone)
                else "no KerasHub network"
            )
            raise ValueError(
                "backbone must be a CLIP or SigLIP network for zero-shot "
                "classification (its text tower reads the class names): one of "
                f"{zero_shot_backbones()} or a KerasHub preset folder of a "
                f"CLIPBackbone or SigLIPBackbone; received {os.fspath(backbone)!r} "
                f"({what})"
            )
        if self.weights is None:
            raise ValueError(
                f"weights=None builds {network!r} with random weights and no "
                "tokenizer, which zero-shot classification needs to read the "
                "class names: use weights='pretrained' (KerasHub's published "
                "preset) or the path of a preset folder of the network"
            )
        folder = weights_source(network, resolve_weights(self.weights))
        return network, folder, family

    # -- fit: the text side ---------------------------------------------------

    def _text_side(self, folder, network_fingerprint, names, templates):
        """``(embeddings (n_templates, n_classes, dim), head (2,), fingerprints)``.

        Through the cache, when there is one: what it holds is not computed.
        """
        from tlsk.networks.hub_text import text_embedding_dim, text_preprocessor

        preprocessor, description = text_preprocessor(folder)
        tower = _TextTower(folder, preprocessor, self.batch_size)
        cache = None if self.cache_path_ is None else FeatureCache(self.cache_path_)
        dim = text_embedding_dim(folder)
        per_template, fingerprints = [], []
        for template in templates:
            prompts = [template.replace("{}", name) for name in names]
            fingerprints.append(
                _text_fingerprint(network_fingerprint, description, template)
            )
            per_template.append(
                _through_cache(
                    cache,
                    fingerprints[-1],
                    [hashlib.sha256(p.encode("utf-8")).digest() for p in prompts],
                    dim,
                    lambda indices, prompts=prompts: tower.embed(
                        [prompts[i] for i in indices]
                    ),
                    self.batch_size,
                    tower.load,
                )
            )
        head = _through_cache(
            cache,
            {**network_fingerprint, "embedding": HEAD_EMBEDDING},
            [HEAD_KEY],
            2,
            lambda indices: np.asarray([tower.head()], np.float32),
            1,
            tower.load,
        )[0]
        return np.stack(per_template), head, fingerprints

    # -- prediction -----------------------------------------------------------

    def _logits(self, X):
        check_is_fitted(self)
        extractor = self.extractor_
        if self.tta != extractor.tta:
            extractor = extractor.with_tta(self.tta)
        images = np.asarray(extractor.transform(X), dtype=np.float64)
        images /= np.linalg.norm(images, axis=1, keepdims=True)
        scale = math.exp(self.logit_scale_)
        return scale * images @ self.text_embeddings_.T + self.logit_bias_

    # -- a fitted classifier read from a file ----------------------------------

    def _local_paths(self):
        """``{parameter: path}``: the files of this machine this classifier names.

        In its parameters and in what fit resolved from them; a shared model
        file must name none (:mod:`tlsk.persistence.model_files`). The fitted extractor
        says its own.
        """
        not_files = {"cache": (), "weights": PRESET_WEIGHTS, "backbone": BACKBONES}
        named = [
            ("cache", self.cache),
            ("cache", getattr(self, "cache_path_", None)),
            ("weights", self.weights),
            ("backbone", self.backbone),
        ]
        return {
            name: value
            for name, value in named
            if value is not None
            and not (isinstance(value, str) and value in not_files[name])
        }

    def _check_state(self):
        """Raise ValueError unless the fitted attributes are as fit leaves them.

        For a classifier read from a model file (:func:`tlsk.load_model`):
        what predict computes with must be what fit could have written.
        Reads no file; an unfitted classifier has nothing to check.
        """
        if not hasattr(self, "classes_"):
            return
        classes = self.classes_
        text = getattr(self, "text_embeddings_", None)
        extractor = getattr(self, "extractor_", None)
        n_classes = len(classes) if isinstance(classes, np.ndarray) else -1
        checks = {
            "classes_": isinstance(classes, np.ndarray)
            and classes.ndim == 1
            and classes.dtype.kind in "UOiub"
            and n_classes >= 1,
            "text_embeddings_": isinstance(text, np.ndarray)
            and text.dtype == np.float64
            and text.ndim == 2
            and text.shape[0] == n_classes
            and bool(np.isfinite(text).all()),
            "logit_scale_": _finite(getattr(self, "logit_scale_", None))
            and abs(self.logit_scale_) <= _MAX_LOGIT_SCALE,
            "logit_bias_": _finite(getattr(self, "logit_bias_", None)),
            "family_": getattr(self, "family_", None) in TEXT_FAMILIES,
            "templates_": isinstance(getattr(self, "templates_", None), tuple),
            "text_fingerprints_": isinstance(
                getattr(self, "text_fingerprints_", None), list
            )
            and all(isinstance(fp, dict) for fp in self.text_fingerprints_),
            "extractor_": isinstance(extractor, ImageFeatureExtractor)
            and getattr(extractor, "n_features_out_", None)
            == (
                text.shape[1] if isinstance(text, np.ndarray) and text.ndim == 2 else -1
            )
            and getattr(extractor, "fingerprint_", {}).get("pooling") == "embedding",
            "cache_path_": isinstance(getattr(self, "cache_path_", ""), str | None),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            value = reprlib.repr(getattr(self, bad[0], None))
            raise ValueError(f"{bad[0]} is {value}, which fit never leaves")


class _TextTower:
    """The preset's text tower, built on first need and dropped with this object."""

    def __init__(self, folder, preprocessor, batch_size):
        self.folder = folder
        self.preprocessor = preprocessor
        self.batch_size = batch_size
        self._network = None

    def load(self):
        if self._network is None:
            from tlsk.networks.hub_text import load_text_network

            self._network = load_text_network(self.folder)
        return self._network

    def embed(self, prompts):
        from tlsk.networks.hub_text import text_embeddings

        return text_embeddings(self.load(), self.preprocessor, prompts, self.batch_size)

    def head(self):
        from tlsk.networks.hub_text import head_parameters

        return head_parameters(self.load())


def _through_cache(cache, fingerprint, keys, dim, compute, batch_size, prepare):
    """The vectors of ``keys``: what ``cache`` holds, the rest computed and stored.

    ``compute(indices)`` gives the vectors of ``keys[indices]``; ``prepare()``
    is called once before any, outside the cache's lock (it may take long).
    Each batch is computed under the lock, as the image extractor does, so
    that processes sharing the cache compute each key once.
    """
    if cache is None:
        prepare()
        return np.asarray(compute(np.arange(len(keys))), np.float32)
    found, vectors = cache.lookup(fingerprint, keys, dim)
    if found.all():
        return vectors
    prepare()
    todo = np.flatnonzero(~found)
    with cache.writer(fingerprint, dim) as writer:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            with writer.claim():
                hit, stored = writer.lookup([keys[i] for i in batch])
                vectors[batch[hit]] = stored[hit]
                missing = batch[~hit]
                if missing.size:
                    computed = np.asarray(compute(missing), np.float32)
                    vectors[missing] = computed
                    writer.append([keys[i] for i in missing], computed)
    return vectors


def _network_fingerprint(network, weights):
    """What names the network's parameters in a cache fingerprint.

    As the image extractor's fingerprint names them: the registry name, or a
    preset folder's SHA-256, and the weights' SHA-256 (the preset's).
    """
    identity = hub_identity(network, resolve_weights(weights))
    if "preset_sha256" in identity:
        named = {"model": PRESET_FOLDER, "preset_sha256": identity["preset_sha256"]}
    else:
        named = {"model": network}
    return {**named, "weights_sha256": identity["weights_sha256"]}


def _text_fingerprint(network_fingerprint, description, template):
    return {
        **network_fingerprint,
        "embedding": TEXT_EMBEDDING,
        **description,
        "template": template,
        "precision": "float32",
    }


def _prompt_ensemble(per_template):
    """One unit vector per class from ``(n_templates, n_classes, dim)`` embeddings.

    CLIP's prompt ensembling: each embedding normalised, the mean over the
    templates, normalised again.
    """
    embeddings = np.asarray(per_template, dtype=np.float64)
    embeddings /= np.linalg.norm(embeddings, axis=2, keepdims=True)
    mean = embeddings.mean(axis=0)
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)


def _sigmoid(x):
    from scipy.special import expit

    return expit(x)


def _finite(value):
    return (
        isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    )
