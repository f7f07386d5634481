"""A map of the images by their features: the vectors a model sees, laid out in 2-D.

:func:`image_vectors` gives the vectors a fitted tlsk model computes for
images (a bottleneck Pipeline's features, a Keras network's pooled features,
a zero-shot network's image embeddings, else the predicted probabilities)
and says which they are. :func:`embedding_map` lays vectors out in two
dimensions, near neighbours near each other: t-SNE (van der Maaten and
Hinton, 2008) from scikit-learn, or UMAP (McInnes, Healy and Melville,
2018) where the ``umap-learn`` package is installed, after PCA to 50
dimensions as both papers' users usually do. More than ``max_points``
vectors are sampled first (stratified by class when labels are given): the
map's cost grows faster than its points (see ``benchmarks/README.md``).

The HTML page of a map is :func:`tlsk.evaluation.report._map.map_section`.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> vectors = np.r_[rng.normal(0, 1, (30, 64)), rng.normal(6, 1, (30, 64))]
>>> coords, mapped, how = embedding_map(vectors, method="tsne")
>>> coords.shape, float(coords.min()), float(coords.max())
((60, 2), 0.0, 1.0)
>>> apart = np.linalg.norm(coords[:30].mean(0) - coords[30:].mean(0)) > 0.3
>>> bool(apart)  # the two clusters are two groups on the map
True
>>> how
't-SNE (perplexity 19.7) of 60 vectors of 64 dimensions, after PCA to 50'
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["MAX_POINTS", "METHODS", "embedding_map", "image_vectors", "map_sample"]

METHODS = ("auto", "tsne", "umap")

# Of what is mapped: t-SNE of 10,000 vectors takes 22-24 s on two shared
# cores, more when others hold them (benchmarks/README.md); beyond it, a
# minute and more.
MAX_POINTS = 10_000

# t-SNE and UMAP are usually given at most this many dimensions: PCA first
# keeps the neighbour search cheap and its noise out of the map.
PCA_DIMENSIONS = 50

UMAP_INSTALL = 'method="umap" needs the umap-learn package: pip install umap-learn'

KIND_FEATURES = "features of {}"
KIND_POOLED = "the network's pooled features"
KIND_EMBEDDINGS = "the image embeddings of {}"
KIND_PROBABILITIES = "predicted probabilities"


# -- the vectors a model sees --------------------------------------------------


def image_vectors(model, X):
    """The vectors a fitted model computes for the images ``X``, and what they are.

    Which vectors, by the kind of model:

    - a scikit-learn Pipeline of several steps (``ImageFeatureExtractor``,
      perhaps a scaler, then a classifier): what its steps before the last
      give, ``model[:-1].transform(X)``; kind ``"features of <extractor>"``;
    - :class:`tlsk.KerasFineTuneClassifier` (a ``keras.applications``
      network or a KerasHub one) and :class:`tlsk.SmallCNNClassifier`: the
      input of the classification head, the pooled features of the trained
      network, computed in the batches (and ``tta`` views) its ``predict``
      uses; kind ``"the network's pooled features"``;
    - :class:`tlsk.ZeroShotImageClassifier`: its image embeddings (cached as
      its predictions' are), at unit length as it compares them; kind
      ``"the image embeddings of <backbone>"``;
    - any other classifier: ``predict_proba(X)``; kind
      ``"predicted probabilities"``.

    Parameters
    ----------
    model : fitted estimator
        As above; a fitted transformer without ``predict_proba`` (an
        ``ImageFeatureExtractor`` on its own) gives ``transform(X)``.
    X : sequence of paths, array (N, H, W, 3) or (N, H, W), or list of arrays
        The images, as ``model`` takes them.

    Returns
    -------
    vectors : ndarray of shape (n_images, n_dimensions), float32
    kind : str
        Which vectors these are, for a page's note.

    Raises
    ------
    TypeError
        If ``model`` has neither ``predict_proba`` nor ``transform``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.dummy import DummyClassifier
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import FunctionTransformer
    >>> flatten = FunctionTransformer(lambda X: np.asarray(X).reshape(len(X), -1))
    >>> X = np.arange(4 * 2 * 2 * 3).reshape(4, 2, 2, 3)
    >>> model = make_pipeline(flatten, DummyClassifier()).fit(X, [0, 1, 0, 1])
    >>> vectors, kind = image_vectors(model, X)
    >>> vectors.shape, kind
    ((4, 12), 'features of FunctionTransformer')
    >>> vectors, kind = image_vectors(model[-1], X)
    >>> vectors.shape, kind
    ((4, 2), 'predicted probabilities')
    """
    from sklearn.pipeline import Pipeline

    from tlsk.training.keras_classifier import KerasImageClassifier
    from tlsk.training.zero_shot import ZeroShotImageClassifier

    if isinstance(model, Pipeline):
        if len(model.steps) > 1:
            vectors = model[:-1].transform(X)
            return _as_vectors(vectors), KIND_FEATURES.format(_describe(model[:-1]))
        return image_vectors(model[-1], X)
    if isinstance(model, ZeroShotImageClassifier):
        return _zero_shot_embeddings(model, X)
    if isinstance(model, KerasImageClassifier):
        vectors = _pooled_features(model, X)
        if vectors is not None:
            return vectors, KIND_POOLED
    if hasattr(model, "predict_proba"):
        return _as_vectors(model.predict_proba(X)), KIND_PROBABILITIES
    if hasattr(model, "transform"):
        return _as_vectors(model.transform(X)), KIND_FEATURES.format(_describe(model))
    raise TypeError(
        "image_vectors needs a fitted Pipeline, a tlsk classifier, or an "
        "estimator with predict_proba or transform; received "
        f"{type(model).__name__}"
    )


def _describe(steps):
    """``ImageFeatureExtractor (vgg16), then StandardScaler``: what a Pipeline is."""
    from sklearn.pipeline import Pipeline

    parts = (
        [step for _, step in steps.steps] if isinstance(steps, Pipeline) else [steps]
    )
    names = []
    for step in parts:
        name = type(step).__name__
        backbone = getattr(step, "backbone", None)
        names.append(f"{name} ({backbone})" if isinstance(backbone, str) else name)
    return ", then ".join(names)


def _zero_shot_embeddings(model, X):
    """A zero-shot classifier's image embeddings, at unit length, as it uses them."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model)
    extractor = model.extractor_
    if model.tta != extractor.tta:
        extractor = extractor.with_tta(model.tta)
    vectors = np.asarray(extractor.transform(X), dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors /= np.where(norms > 0, norms, 1.0)
    return vectors.astype(np.float32), KIND_EMBEDDINGS.format(model.backbone)


def _pooled_features(model, X):
    """The input of a Keras classifier's head, or None if its network has none.

    A classifier with ``transform`` (the fine-tuned networks) gives its
    pooled features itself. For one without it, the output of the
    network's last global pooling layer, run by the classifier's own
    prediction path (its batches, preprocessing and ``tta`` views).
    """
    import keras
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model)
    if hasattr(model, "transform"):
        return _as_vectors(model.transform(X))
    pools = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)
    pooled = [layer for layer in model.model_.layers if isinstance(layer, pools)]
    if not pooled:
        return None
    output = pooled[-1].output
    embedder = keras.Model(model.model_.inputs, output, name="pooled_features")
    # The classifier's prediction path (batches, preprocessing, tta views),
    # run on the network cut at the head; SmallCNNClassifier has no public
    # transform that gives it.
    return _as_vectors(model.network_outputs(embedder, X))


def _as_vectors(values):
    values = np.asarray(values)
    if values.ndim == 1:
        values = values[:, None]
    return values.reshape(len(values), -1).astype(np.float32)


# -- the map ----------------------------------------------------------------------


def embedding_map(
    vectors,
    *,
    method="auto",
    max_points=MAX_POINTS,
    labels=None,
    random_state=0,
):
    """Two coordinates in [0, 1] for each vector: near neighbours lie near.

    The vectors are reduced by PCA to 50 dimensions when they have more,
    then laid out by t-SNE (scikit-learn's Barnes-Hut ``TSNE``, PCA
    initialisation, perplexity ``min(30, (n - 1) / 3)``: t-SNE needs a
    perplexity below the number of points, and its authors' usual 30 once
    there are 91 or more) or by UMAP (``umap.UMAP``, ``n_neighbors=min(15,
    n - 1)``). Both axes are scaled by one factor, so the map keeps its
    shape: the longer side spans [0, 1], the shorter is centred in it.

    Parameters
    ----------
    vectors : array-like of shape (n_images, n_dimensions)
        Finite numbers: the features of the images (:func:`image_vectors`).
    method : {"auto", "tsne", "umap"}, default="auto"
        ``"auto"``: UMAP where ``umap-learn`` is installed, else t-SNE.
    max_points : int or None, default=10_000
        At most this many vectors are mapped, at least 2; beyond it a
        sample: stratified by ``labels`` when given (each class keeps its
        share, and at least one point while there are fewer classes than
        ``max_points``), else uniform. None maps every vector. t-SNE of
        10,000 vectors takes about 25 s on two cores, several times that
        when other work holds them (``benchmarks/README.md``).
    labels : array-like of shape (n_images,), optional
        The class of each vector, for a stratified sample.
    random_state : int or None, default=0
        Seeds the sample, PCA, t-SNE and UMAP: the same vectors give the
        same map. (UMAP with a seed runs on one thread.)

    Returns
    -------
    coords : ndarray of shape (n_mapped, 2), float64
        In [0, 1]; ``coords[k]`` is the vector ``vectors[mapped[k]]``.
    mapped : ndarray of shape (n_mapped,), int
        The indices of the mapped vectors, increasing.
    how : str
        What was done, for a page's note: ``"t-SNE (perplexity 30) of 500
        of 12,000 vectors of 512 dimensions, after PCA to 50"``.

    Raises
    ------
    ValueError
        For an unknown ``method``, a ``max_points`` below 2, fewer than 2
        vectors, ``labels`` of another length, or vectors that are not a
        2-D array of finite numbers.
    ImportError
        For ``method="umap"`` without ``umap-learn``.

    Examples
    --------
    >>> import numpy as np
    >>> vectors = np.random.default_rng(0).normal(size=(300, 8))
    >>> labels = np.repeat(["a", "b", "c"], [200, 80, 20])
    >>> coords, mapped, how = embedding_map(
    ...     vectors, method="tsne", max_points=100, labels=labels
    ... )
    >>> coords.shape, np.unique(labels[mapped], return_counts=True)[1].tolist()
    ((100, 2), [67, 27, 6])
    >>> how
    't-SNE (perplexity 30) of 100 of 300 vectors of 8 dimensions (stratified sample)'
    >>> again = embedding_map(vectors, method="tsne", max_points=100, labels=labels)
    >>> np.array_equal(coords, again[0]) and np.array_equal(mapped, again[1])
    True
    """
    method = _check_method(method)
    max_points = _check_max_points(max_points)
    vectors = _check_vectors(vectors)
    n = len(vectors)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise ValueError(
                f"labels must have one label per vector ({n}); received shape "
                f"{labels.shape}"
            )
    rng = np.random.default_rng(random_state)
    mapped = _sample(n, max_points, labels, rng)
    seed = int(rng.integers(2**31 - 1))
    points = vectors[mapped]
    if not np.ptp(points, axis=0).any():
        # One place for all: t-SNE's PCA start would divide by a zero spread.
        coords, what = np.zeros((len(points), 2)), "one point (all alike)"
        reduced, pca_note = points, ""
    else:
        reduced, pca_note = _reduce(points, seed)
        layout = _umap if method == "umap" else _tsne
        coords, what = layout(reduced, seed)
    return (
        _unit_square(coords),
        mapped,
        _how(what, len(mapped), n, vectors.shape[1], pca_note, labels is not None),
    )


def _how(what, mapped, n, width, pca_note, stratified):
    """``t-SNE (perplexity 30) of 500 of 9,000 vectors of 512 dimensions, ...``."""
    of = f"{_count(mapped)} of {_count(n)}" if mapped < n else _count(n)
    how = f"{what} of {of} vectors of {_count(width)} dimension"
    how += ("s" if width != 1 else "") + pca_note
    if mapped < n:
        how += " (stratified sample)" if stratified else " (random sample)"
    return how


def _check_method(method):
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; received {method!r}")
    if method == "tsne":
        return method
    try:
        import umap  # noqa: F401
    except ImportError as error:
        if method == "umap":
            raise ImportError(UMAP_INSTALL) from error
        return "tsne"
    return "umap"


def _check_max_points(max_points):
    if max_points is None:
        return None
    if (
        isinstance(max_points, bool)
        or not isinstance(max_points, numbers.Integral)
        or max_points < 2
    ):
        raise ValueError(
            f"max_points must be an integer of at least 2, or None; received "
            f"{max_points!r}"
        )
    return int(max_points)


def _check_vectors(vectors):
    try:
        vectors = np.asarray(vectors, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"vectors must be numbers; {error}") from error
    if vectors.ndim != 2:
        raise ValueError(
            "vectors must be a 2-D array (n_images, n_dimensions); received shape "
            f"{vectors.shape}"
        )
    if len(vectors) < 2:
        raise ValueError(f"a map needs at least 2 vectors; received {len(vectors)}")
    if vectors.shape[1] == 0:
        raise ValueError("vectors must have at least 1 dimension; received 0")
    if not np.isfinite(vectors).all():
        rows = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
        raise ValueError(
            f"vectors must be finite; {len(rows)} hold NaN or infinity (the "
            f"first at index {rows[0]})"
        )
    return vectors


def map_sample(n, *, max_points=MAX_POINTS, labels=None, random_state=0):
    """The indices of the images a map of ``n`` shows: all, or a sample.

    The sample :func:`embedding_map` draws, for a caller that computes the
    vectors of the mapped images only (a network's features cost a pass).

    Examples
    --------
    >>> idx = map_sample(10, max_points=4, labels=list("aaaaaaaabb"))
    >>> len(idx), sorted(set("aaaaaaaabb"[i] for i in idx))
    (4, ['a', 'b'])
    """
    max_points = _check_max_points(max_points)
    if labels is not None:
        labels = np.asarray(labels)
    return _sample(int(n), max_points, labels, np.random.default_rng(random_state))


def _sample(n, max_points, labels, rng):
    """Increasing indices of at most ``max_points`` of ``n``; all when they fit."""
    if max_points is None or n <= max_points:
        return np.arange(n)
    if labels is None:
        return np.sort(rng.choice(n, size=max_points, replace=False))
    classes, encoded, counts = np.unique(
        labels, return_inverse=True, return_counts=True
    )
    quotas = _quotas(counts, max_points)
    chosen = [
        rng.choice(np.flatnonzero(encoded == k), size=quota, replace=False)
        for k, quota in enumerate(quotas)
        if quota
    ]
    return np.sort(np.concatenate(chosen))


def _quotas(counts, total):
    """How many of each class a sample of ``total`` takes.

    Each class its share of ``total`` (largest remainders), and at least one
    while the classes are fewer than ``total``, so that a rare class still
    shows; the quotas add up to ``total``.
    """
    counts = np.asarray(counts, dtype=np.int64)
    share = counts * total / counts.sum()
    quotas = np.floor(share).astype(np.int64)
    if len(counts) <= total:
        quotas = np.maximum(quotas, 1)
    for _ in range(quotas.sum() - total):  # the ones added: from the most over
        over = np.where(quotas > 1, quotas - share, -np.inf)
        quotas[np.argmax(over)] -= 1
    order = np.argsort(-(share - quotas), kind="stable")
    quotas[order[: total - quotas.sum()]] += 1
    return quotas


def _reduce(points, seed):
    """``points`` by PCA to ``PCA_DIMENSIONS`` when wider; and a note saying so."""
    from sklearn.decomposition import PCA

    dimensions = min(PCA_DIMENSIONS, len(points))
    if points.shape[1] <= dimensions:
        return points, ""
    reduced = PCA(n_components=dimensions, random_state=seed).fit_transform(points)
    return reduced, f", after PCA to {dimensions}"


def _tsne(points, seed):
    from sklearn.manifold import TSNE

    perplexity = min(30.0, (len(points) - 1) / 3)
    coords = TSNE(
        n_components=2,
        perplexity=perplexity,
        # The PCA start needs two dimensions; one-dimensional vectors start
        # at random (seeded).
        init="pca" if min(points.shape) >= 2 else "random",
        learning_rate="auto",
        random_state=seed,
    ).fit_transform(points)
    return coords, f"t-SNE (perplexity {perplexity:.3g})"


def _umap(points, seed):
    import umap

    neighbours = min(15, len(points) - 1)
    coords = umap.UMAP(
        n_components=2, n_neighbors=neighbours, random_state=seed
    ).fit_transform(points)
    return coords, f"UMAP ({neighbours} neighbours)"


def _unit_square(coords):
    """``coords`` scaled by one factor into [0, 1], the shorter side centred."""
    coords = np.asarray(coords, dtype=np.float64)
    low, high = coords.min(axis=0), coords.max(axis=0)
    span = float((high - low).max())
    if span == 0:
        return np.full_like(coords, 0.5)
    scaled = (coords - low) / span + (1 - (high - low) / span) / 2
    return np.clip(scaled, 0.0, 1.0)


def _count(n):
    return f"{n:,}"
