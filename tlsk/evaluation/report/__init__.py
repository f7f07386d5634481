"""Evaluation reports: a static HTML page to look at what a model gets wrong.

:func:`evaluation_report` predicts a labelled set of images with a fitted
tlsk model (or any classifier with ``predict_proba`` and ``classes_`` that
takes image paths) and writes ``OUT/index.html`` with ``OUT/thumbs/`` beside
it: accuracy and per-class scores, the confusion matrix (each count links to
its images), the most confident mistakes, the most confused pairs of
classes, a reliability diagram with the expected calibration error, a
sortable table of every image, and the model's metadata. The page needs no
server and loads nothing from elsewhere: open it from the file system.

Galleries are capped (``top_losses`` mistakes, ``per_cell`` images a cell,
least confident first, with a count of what is left out), so a test set of
10,000 images gives a page that opens quickly; thumbnails are made only for
the images shown.

:func:`check_report` writes the data report of a folder-per-class tree
before any training (``tlsk check DIR --report OUT/``): a sample of each
class, the files that cannot be decoded, the duplicates across classes and,
given :func:`tlsk.evaluation.label_errors.find_label_errors`'s result, the images whose
label is probably wrong.
"""

from __future__ import annotations

import datetime
import os

from tlsk.evaluation.report._check import check_report
from tlsk.evaluation.report._comparison import write_comparison_report
from tlsk.evaluation.report._embedding import MAP_POINTS, image_map
from tlsk.evaluation.report._evaluation import EvaluationData, evaluation_data
from tlsk.evaluation.report._explanations import explanation_thumbnails
from tlsk.evaluation.report._html import render
from tlsk.evaluation.report._map import MAP_SCRIPT
from tlsk.evaluation.report._page import check_report_folder, write_report_folder
from tlsk.evaluation.report._thumbnails import write_thumbnail

__all__ = [
    "MAP_POINTS",
    "EvaluationData",
    "check_report",
    "check_report_folder",
    "evaluation_data",
    "evaluation_report",
    "write_comparison_report",
    "write_report",
]


def evaluation_report(
    model, X, y, out, *, metadata=None, force=False, top_losses=48, per_cell=60
):
    """Predict ``X`` with ``model`` and write the evaluation report to ``out``.

    Parameters
    ----------
    model : fitted classifier
        A tlsk model or Pipeline: ``predict_proba(X)`` and ``classes_``.
    X : list of str or path-like
        The images' files (their thumbnails come from them).
    y : array-like of shape (n_images,)
        Their true labels.
    out : str or path-like
        The report's folder, created; an existing one is refused unless
        ``force``, and even then unless it is a report tlsk wrote, holding
        nothing else (it is then replaced as a whole, once the new one is
        complete). A folder that is, holds or lies inside the images' data
        is always refused.
    metadata : dict, optional
        What made the model (``tlsk train``'s JSON), shown on the page as a
        table. A Keras model's training curves (its ``history_``) are drawn.
    force : bool, default=False
    top_losses : int, default=48
        How many of the most confident mistakes to show.
    per_cell : int, default=60
        How many images to show per cell of the confusion matrix.

    Returns
    -------
    str
        The path of ``index.html``.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> from sklearn.dummy import DummyClassifier
    >>> tmp = tempfile.mkdtemp()
    >>> paths = []
    >>> for i, colour in enumerate([(200, 0, 0), (0, 200, 0), (0, 0, 200)]):
    ...     paths.append(os.path.join(tmp, f"{i}.png"))
    ...     Image.new("RGB", (40, 30), colour).save(paths[-1])
    >>> model = DummyClassifier().fit(np.zeros((3, 1)), ["a", "a", "b"])
    >>> class OnPaths:  # a stand-in for a tlsk Pipeline, which takes paths
    ...     classes_ = model.classes_
    ...     def predict_proba(self, X):
    ...         return model.predict_proba(np.zeros((len(X), 1)))
    >>> out = os.path.join(tmp, "report")
    >>> page = evaluation_report(OnPaths(), paths, ["a", "b", "b"], out)
    >>> sorted(os.listdir(os.path.join(out, "thumbs")))
    ['0.jpg', '1.jpg', '2.jpg']
    >>> with open(page, encoding="utf-8") as file:
    ...     "accuracy <b>0.333</b> on 3 images" in file.read()
    True
    """
    X = [os.fspath(x) for x in X]
    proba = model.predict_proba(X)
    return write_report(
        out,
        X,
        y,
        proba,
        model.classes_,
        metadata=metadata,
        force=force,
        top_losses=top_losses,
        per_cell=per_cell,
        model=model,
    )


def write_report(
    out,
    images,
    y,
    proba,
    classes,
    *,
    names=None,
    metadata=None,
    force=False,
    top_losses=48,
    per_cell=60,
    title=None,
    data_folder=None,
    history=None,
    model=None,
    vectors=None,
    map_points=MAP_POINTS,
):
    """Write the report of predictions already made (see :func:`evaluation_report`).

    ``images`` are the files (or arrays) the thumbnails are made from;
    ``names`` label them on the page (default: the file paths relative to
    the folder that holds them all, or ``X[i]`` for arrays). ``data_folder``,
    the folder the images come from, is protected as they are: ``out`` may
    not be it, hold it or lie inside it.
    ``history``, a Keras model's ``history_``, adds its training curves.
    ``model``, the model that made ``proba``, draws where it looked over the
    most confident mistakes (:func:`tlsk.explain`, for the models it
    supports), gives its ``history_`` when ``history`` is not given, and
    the vectors of the map of the images
    (:func:`tlsk.evaluation.embedding_map.image_vectors`: a pipeline's
    features, a network's pooled features) unless ``vectors`` (one row per
    image) are given. The map shows at most ``map_points`` images, a sample
    that keeps each class's share (0: no map).
    """
    if history is None:
        history = getattr(model, "history_", None)
    inputs = [x for x in images if isinstance(x, str | bytes | os.PathLike)]
    if data_folder is not None:
        inputs.append(data_folder)
    check_report_folder(out, force, inputs)
    if names is None:
        names = _names(images)
    data = evaluation_data(proba, classes, y, names)
    losses = data.top_losses(top_losses)
    on_map, map_vectors, kind = _map_vectors(model, images, y, vectors, map_points)
    shown = {r.index for r in losses} | set(on_map.tolist())
    for t in range(len(data.labels)):
        for p in range(len(data.labels)):
            cell = sorted(data.cell(t, p), key=lambda r: (-r.loss, r.index))
            shown.update(r.index for r in cell[:per_cell])

    def build(folder):
        thumbs = os.path.join(folder, "thumbs")
        thumbnails = {
            i: write_thumbnail(images[i], thumbs, f"{i}.jpg") for i in sorted(shown)
        }
        explained = [r.index for r in losses if thumbnails.get(r.index)]
        sections = {}
        if len(on_map):
            sections["map"] = image_map(
                map_vectors,
                on_map,
                n_images=len(images),
                kind=kind,
                names=names,
                labels=[r.true for r in data.rows],
                predicted=[r.predicted for r in data.rows],
                thumbnails=thumbnails,
                classes=data.labels,
            )
        cams, cam_note = (
            explanation_thumbnails(model, images, explained, folder)
            if model is not None
            else ({}, "")
        )
        return render(
            data,
            thumbnails,
            title=title or "Evaluation report",
            metadata=metadata,
            written=datetime.datetime.now().isoformat(timespec="seconds"),
            top_losses=losses,
            per_cell=per_cell,
            history=history,
            cams=cams,
            cam_note=cam_note,
            sections=sections,
            scripts=(MAP_SCRIPT,) if sections else (),
        )

    return write_report_folder(out, force, build, inputs=inputs)


def _names(images):
    """Each image's name: its path below the folder all the files share."""
    folders = [
        os.path.dirname(os.path.abspath(os.fsdecode(x)))
        for x in images
        if isinstance(x, str | bytes | os.PathLike)
    ]
    try:
        common = os.path.commonpath(folders)
    except ValueError:  # none, or on two drives
        common = None
    return [
        os.path.relpath(os.path.abspath(os.fsdecode(x)), common).replace(os.sep, "/")
        if common is not None and isinstance(x, str | bytes | os.PathLike)
        else x
        if isinstance(x, str)
        else f"X[{i}]"
        for i, x in enumerate(images)
    ]


def _map_vectors(model, images, y, vectors, map_points):
    """``(mapped, vectors of the mapped images, what they are)``, or no map."""
    import numpy as np

    from tlsk.evaluation.embedding_map import image_vectors, map_sample

    none = np.zeros(0, dtype=np.int64), None, ""
    if not map_points or len(images) < 2 or (vectors is None and model is None):
        return none
    mapped = map_sample(len(images), max_points=map_points, labels=np.asarray(y))
    if vectors is not None:
        vectors = np.asarray(vectors)
        if len(vectors) != len(images):
            raise ValueError(
                f"vectors must have one row per image ({len(images)}); received "
                f"{len(vectors)}"
            )
        return mapped, vectors[mapped], "the vectors given"
    found, kind = image_vectors(model, [images[i] for i in mapped])
    return mapped, found, kind
