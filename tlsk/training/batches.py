"""Images streamed from disk to Keras in batches (imports Keras: load it late)."""

from __future__ import annotations

import math

import keras
import numpy as np

from tlsk.images.decode import load_batch

__all__ = ["ImageBatches"]


class ImageBatches(keras.utils.PyDataset):
    """Batches of decoded, resized, preprocessed images, with labels when given.

    Only one batch per worker thread is in memory at a time, so a data set
    larger than memory trains. With ``shuffle``, each epoch visits the images
    in a new order drawn from ``seed``.

    Parameters
    ----------
    inputs : list of tlsk.images.decode.ImageInput
    y : ndarray of int or None
        Class indices, one per input; None at predict time.
    batch_size, size, interpolation : as for the estimators
    preprocess : callable
        float32 RGB batch in [0, 255] -> network input (a new array).
    resize : callable, optional
        A decoded image -> float32 ``size`` x ``size`` in [0, 255], instead
        of Pillow's ``interpolation`` filter (:func:`tlsk.images.decode.load_batch`).
    shuffle : bool
    seed : int or None
    workers : int
        Threads decoding batches ahead of the network.
    """

    def __init__(
        self,
        inputs,
        y=None,
        *,
        batch_size,
        size,
        preprocess,
        interpolation="bilinear",
        resize=None,
        shuffle=False,
        seed=None,
        workers=1,
    ):
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=4)
        self.inputs = inputs
        self.y = y
        self.batch_size = batch_size
        self.size = size
        self.preprocess = preprocess
        self.interpolation = interpolation
        self.resize = resize
        self.shuffle = shuffle
        self._rng = np.random.default_rng(seed)
        self._order = np.arange(len(inputs))
        if shuffle:
            self._rng.shuffle(self._order)

    def __len__(self):
        return math.ceil(len(self.inputs) / self.batch_size)

    def __getitem__(self, index):
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        _, images = load_batch(
            [self.inputs[i] for i in rows],
            self.size,
            self.interpolation,
            resize=self.resize,
        )
        x = self.preprocess(images)
        if self.y is None:
            return (x,)
        return x, self.y[rows]

    def on_epoch_end(self):
        if self.shuffle:
            self._rng.shuffle(self._order)
