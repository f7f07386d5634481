"""Preloaded by the Dask workers that ``tlsk extract --workers N`` starts.

Their stderr is the command's terminal, so TensorFlow's start-up lines are
hidden there by the same rule as in the command's own process.
"""

from tlsk.cli import hide_tensorflow_start_up


def dask_setup(worker):
    hide_tensorflow_start_up()
