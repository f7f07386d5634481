"""Generated image data sets whose classes a tiny random VGG16 can tell apart."""

import numpy as np
from PIL import Image

# Each class is a colour; noise and brightness vary per image.
CLASS_COLOURS = {
    "red": (200, 40, 40),
    "green": (40, 190, 60),
    "blue": (40, 60, 210),
}


def coloured_images(n_per_class, size=32, seed=0, classes=("red", "green", "blue")):
    """``(images uint8 (n, size, size, 3), labels)`` in class-interleaved order."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(n_per_class):
        for label in classes:
            base = np.array(CLASS_COLOURS[label], dtype=float) * rng.uniform(0.7, 1.2)
            noise = rng.normal(0, 25, (size, size, 3))
            images.append(np.clip(base + noise, 0, 255).astype(np.uint8))
            labels.append(label)
    return np.stack(images), np.array(labels)


def write_image_folder(root, n_per_class, size=32, seed=0, formats=("png", "jpeg")):
    """A folder-per-class tree of real image files; returns ``(paths, labels)``."""
    images, labels = coloured_images(n_per_class, size, seed)
    paths = []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        fmt = formats[i % len(formats)]
        path = folder / f"{label}_{i:03d}.{'jpg' if fmt == 'jpeg' else fmt}"
        Image.fromarray(image).save(path, fmt)
        paths.append(str(path))
    return paths, labels
