"""The map of the images on a report: which images, their layout, the section."""

from __future__ import annotations

from tlsk.evaluation.report._map import DEFAULT_NOTE, map_section

# Images on a report's map by default: t-SNE of 2,000 vectors and their
# thumbnails take seconds; 10,000 take about a minute more (benchmarks/README.md).
MAP_POINTS = 2_000


def image_map(
    vectors,
    mapped,
    *,
    n_images,
    kind,
    names,
    labels,
    predicted=None,
    marks=None,
    thumbnails=None,
    classes=None,
) -> str:
    """The map section of ``vectors``, the vectors of the images ``mapped``.

    ``mapped`` are image indices (:func:`tlsk.evaluation.embedding_map.map_sample`
    of ``n_images``); ``names``, ``labels`` and ``predicted`` are by image
    index; ``kind`` says what the vectors are, for the note.
    """
    from tlsk.evaluation.embedding_map import embedding_map

    coords, _, how = embedding_map(vectors, max_points=None)
    note = f"{DEFAULT_NOTE} Laid out by {how}; the vectors are {kind}."
    if len(mapped) < n_images:
        note += (
            f" {len(mapped):,} of the {n_images:,} images are shown, a sample "
            "that keeps each class's share."
        )
    return map_section(
        coords,
        names=names,
        labels=labels,
        predicted=predicted,
        indices=mapped,
        marks=marks,
        thumbnails=thumbnails,
        classes=classes,
        note=note,
    )
