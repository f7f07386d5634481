"""
2. A small CNN from scratch: the baseline to beat
=================================================

:class:`tlsk.SmallCNNClassifier` trains a few convolution blocks from
random weights, with augmentation and early stopping. No pretrained network
is involved, so this figure is the one transfer learning has to beat.
"""

# %%
import tempfile

import matplotlib.pyplot as plt
from sklearn.metrics import accuracy_score

import tlsk
from tlsk.images.sample_data import write_photo_folder

train_paths, train_labels = write_photo_folder(
    tempfile.mkdtemp(), per_class=30, seed=0
)
test_paths, test_labels = write_photo_folder(
    tempfile.mkdtemp(), per_class=15, seed=1
)

cnn = tlsk.SmallCNNClassifier(
    filters=(16, 32, 64),
    dense_units=64,
    epochs=25,
    input_size=48,
    random_state=0,
)
cnn.fit(train_paths, train_labels)
print(
    "test accuracy:", accuracy_score(test_labels, cnn.predict(test_paths))
)

# %%
# The training curves
# -------------------
# ``history_`` holds Keras's per-epoch figures of each phase (a small CNN
# has one, ``"train"``); the validation set is the ``validation_fraction``
# (10 %) of the training images that ``fit`` holds out.
curves = cnn.history_["train"]
plt.plot(curves["accuracy"], label="training")
plt.plot(curves["val_accuracy"], label="validation (10 % of train)")
plt.xlabel("epoch")
plt.ylabel("accuracy")
plt.legend()

# %%
# A small CNN needs no weights file, so this figure is the same with or
# without network access.
