"""The rough edges a new user meets in the first hour with the ``tlsk`` command."""

import os
import re
import subprocess
import sys

import pytest

from tests._datasets import write_image_folder

# TensorFlow's own lines: its C++ log format and its start-up notes.
TENSORFLOW_LINES = re.compile(
    r"absl::InitializeLog|oneDNN custom operations|cuInit|cpu_feature_guard"
    r"|Could not find cuda drivers|^[IWEF]\d{4} \d\d:\d\d:",
    re.MULTILINE,
)


def run_tlsk(*args, cwd=None, env=None):
    """``python -m tlsk ARGS`` in a fresh interpreter, as a new user runs it.

    The test run's own TF_CPP_MIN_LOG_LEVEL is not passed on: a user has none.
    """
    environment = {**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})}
    if not env or "TF_CPP_MIN_LOG_LEVEL" not in env:
        environment.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return subprocess.run(
        [sys.executable, "-m", "tlsk", *map(str, args)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=cwd,
        env=environment,
        timeout=300,
    )


@pytest.fixture
def data(tmp_path):
    write_image_folder(tmp_path / "data", 4)
    return tmp_path / "data"


def test_stderr_carries_only_tlsk_lines_unless_debug(data, tmp_path):
    extract = ["extract", "-q", data, "--weights", "none", "--input-size", "32"]
    debug = run_tlsk(*extract, "--cache", tmp_path / "a.h5", "--debug")
    assert debug.returncode == 0, debug.stderr
    if not TENSORFLOW_LINES.search(debug.stderr):
        pytest.skip("this TensorFlow prints nothing at start-up")

    plain = run_tlsk(*extract, "--cache", tmp_path / "b.h5")
    assert plain.returncode == 0, plain.stderr
    assert not TENSORFLOW_LINES.search(plain.stderr), plain.stderr
    # --debug before the command is the same flag.
    before = run_tlsk("--debug", *extract, "--cache", tmp_path / "c.h5")
    assert TENSORFLOW_LINES.search(before.stderr)
