"""What the robustness tests share: the tiny extractor and real subprocesses."""

import os
import subprocess
import sys
from pathlib import Path

from tlsk import VGG16FeatureExtractor

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}


def tiny(**params):
    """The extractor on a random 32 px VGG16: fast and the same in every process."""
    return VGG16FeatureExtractor(
        **{"weights": None, "input_size": 32, "batch_size": 4, **params}
    )


def python(code, *args, **popen):
    """Start ``python -c code args`` with this checkout importable."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        env=ENV,
        text=True,
        **popen,
    )


def leftovers(folder):
    """Temporary files (``.tmp-*``) anywhere under ``folder``."""
    return sorted(
        str(p.relative_to(folder))
        for p in Path(folder).rglob("*")
        if p.name.startswith(".tmp-")
    )
