"""Code that Dask worker processes import while tests/test_distributed.py runs.

Workers unpickle functions and classes by module name, so what they run for
the tests lives here rather than inside a test module.
"""

import os

from tlsk import VGG16FeatureExtractor


def import_tensorflow():
    """Import TensorFlow without running an op (thread pools stay unset)."""
    import tensorflow  # noqa: F401

    return os.getpid()


def tensorflow_threads():
    """``(intra_op, inter_op)`` thread counts of this process's TensorFlow."""
    import tensorflow as tf

    return (
        tf.config.threading.get_intra_op_parallelism_threads(),
        tf.config.threading.get_inter_op_parallelism_threads(),
    )


class KillOnceExtractor(VGG16FeatureExtractor):
    """An extractor that kills its worker process in the middle of a shard, once.

    Set ``kill_flag_`` to the path of an existing file after ``fit``. The first
    ``transform`` that deletes that file (deleting is atomic: one process
    wins) computes half its images, writes its pid to ``kill_flag_ +
    ".killed"`` and ends the process at once, as ``kill -9`` would.
    """

    def transform(self, X):
        flag = getattr(self, "kill_flag_", None)
        if flag is not None and _claim(flag):
            super().transform(X[: len(X) // 2])
            with open(flag + ".killed", "w") as file:
                file.write(str(os.getpid()))
            os._exit(1)
        return super().transform(X)


def _claim(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
