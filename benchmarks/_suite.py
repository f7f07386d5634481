"""What the benchmark sections share: results, timing, test data, the machine.

Each section is a function ``run(settings, workdir) -> Section``; ``run.py``
calls them in turn and writes their tables to Markdown and JSON.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image


@dataclass
class Section:
    """One table of the report, plus the targets it checks."""

    title: str
    columns: tuple
    rows: list = field(default_factory=list)
    targets: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def add(self, *row):
        self.rows.append(tuple(row))

    def target(self, name, value, op, limit, why_not_applicable=None):
        """Record ``value op limit`` (op ">=" or "<="), e.g. a ratio and its target.

        ``why_not_applicable``: the target means nothing on this machine (met
        is then None, and the reason is shown).
        """
        value = float(f"{value:.6g}")
        met = value >= limit if op == ">=" else value <= limit
        self.targets.append(
            {
                "target": name,
                "value": value,
                "op": op,
                "limit": limit,
                "met": None if why_not_applicable else met,
                "why_not_applicable": why_not_applicable,
            }
        )

    def as_dict(self):
        return {
            "title": self.title,
            "columns": list(self.columns),
            "rows": [dict(zip(self.columns, row, strict=True)) for row in self.rows],
            "targets": self.targets,
            "notes": self.notes,
        }


def cosine(a, b):
    """Row-wise cosine similarity of two feature matrices."""
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / norms


@contextlib.contextmanager
def keras_policy(name):
    """Keras's global dtype policy set the way its users do, then put back."""
    import keras

    users_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(users_policy)


def seconds(function, *args, **kwargs):
    """``(elapsed seconds, result)`` of one call."""
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def best_seconds(function, repeat):
    """The fastest of ``repeat`` calls: a short run is at the mercy of one hiccup."""
    return min(seconds(function)[0] for _ in range(repeat))


def write_photos(folder, count, seed=0, width=(320, 480), height=(240, 360)):
    """JPEG files of photo-like content (smooth waves plus noise), varied sizes."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        w, h = rng.integers(*width), rng.integers(*height)
        y, x = np.mgrid[0:h, 0:w] / max(w, h)
        phase = rng.uniform(0, 6, 3)
        waves = [x * 9 + phase[0], y * 7 + phase[1], (x + y) * 5 + phase[2]]
        rgb = 127 + 100 * np.sin(np.stack(waves, axis=-1))
        noise = rng.normal(0, 12, rgb.shape)
        path = os.path.join(folder, f"img_{i:05d}.jpg")
        Image.fromarray(np.clip(rgb + noise, 0, 255).astype(np.uint8)).save(
            path, quality=90
        )
        paths.append(path)
    return paths


def digits(n_train, n_test, seed=0):
    """scikit-learn's digits as grey uint8 images, split train/test, stratified."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = np.round(data.images * (255 / 16)).astype(np.uint8)
    return train_test_split(
        images,
        data.target,
        train_size=n_train,
        test_size=n_test,
        stratify=data.target,
        random_state=seed,
    )


def write_digit_files(folder, images, size):
    """Each digit as a ``size`` px PNG file (real files for the file-based runs)."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = os.path.join(folder, f"digit_{i:05d}.png")
        Image.fromarray(image).resize((size, size), Image.BILINEAR).save(path)
        paths.append(path)
    return paths


def weights_available():
    """``"imagenet"`` when Keras's cache has the verified weights, else None."""
    from tlsk import WeightsMismatchError, WeightsUnavailableError
    from tlsk.networks.backbone import imagenet_weights_path

    try:
        imagenet_weights_path(download=False)
    except (WeightsUnavailableError, WeightsMismatchError):
        return None
    return "imagenet"


def machine():
    """What the figures depend on: CPU, cores, bfloat16 support, versions."""
    import keras
    import sklearn
    import tensorflow as tf

    from tlsk.networks.precision import (
        NATIVE_BFLOAT16_CPU_FLAGS,
        cpu_flags,
        resolve_precision,
    )

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    flags = cpu_flags()
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "bfloat16_cpu_flags": sorted(flags & NATIVE_BFLOAT16_CPU_FLAGS),
        "avx512f": "avx512f" in flags,
        "auto_precision": resolve_precision("auto"),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "scikit-learn": sklearn.__version__,
    }
