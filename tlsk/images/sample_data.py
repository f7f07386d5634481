"""Small labelled folders of real photographs, offline: for examples and tests.

scikit-learn ships two photographs (a pagoda by a lake, a dahlia); crops cut
from six regions of them make six classes of natural images that look like
the photos people label: ``pagoda``, ``trees``, ``sky`` and ``water`` from the
first, ``petals`` and ``leaves`` from the second. Each crop is a random square
of its region (random size and place, flipped at random), resized and saved
as JPEG, so no two files are the same and sky and water are honestly hard to
tell apart.

>>> import tempfile
>>> paths, labels = write_photo_folder(tempfile.mkdtemp(), per_class=2, size=32)
>>> len(paths), sorted(set(labels.tolist()))
(12, ['leaves', 'pagoda', 'petals', 'sky', 'trees', 'water'])
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["PHOTO_CLASSES", "write_photo_folder"]

# class -> (photo index in load_sample_images(), (left, top, right, bottom))
PHOTO_CLASSES = {
    "pagoda": (0, (95, 60, 330, 330)),
    "trees": (0, (340, 280, 640, 427)),
    "sky": (0, (340, 0, 640, 180)),
    "water": (0, (350, 225, 545, 295)),
    "petals": (1, (190, 100, 430, 340)),
    "leaves": (1, (0, 0, 170, 427)),
}


def write_photo_folder(root, per_class=40, size=64, seed=0, classes=None):
    """Write ``per_class`` JPEG crops of each class to ``root/<class>/``.

    Returns ``(paths, labels)`` in class order. ``classes`` picks some of
    :data:`PHOTO_CLASSES` (default: all six). The same arguments write the
    same files.
    """
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    paths, labels = [], []
    for name in classes or PHOTO_CLASSES:
        index, (left, top, right, bottom) = PHOTO_CLASSES[name]
        folder = os.path.join(root, name)
        os.makedirs(folder, exist_ok=True)
        largest = min(right - left, bottom - top)
        for i in range(per_class):
            side = int(rng.integers(min(32, largest), largest + 1))
            x = int(rng.integers(left, right - side + 1))
            y = int(rng.integers(top, bottom - side + 1))
            crop = Image.fromarray(photos[index][y : y + side, x : x + side])
            if rng.random() < 0.5:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            path = os.path.join(folder, f"{name}-{i:04d}.jpg")
            crop.resize((size, size), Image.Resampling.BILINEAR).save(path, quality=90)
            paths.append(path)
            labels.append(name)
    return paths, np.array(labels)
