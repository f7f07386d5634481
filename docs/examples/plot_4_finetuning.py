"""
4. Fine-tuning: a new head, then the last blocks at a low rate
==============================================================

:class:`tlsk.KerasFineTuneClassifier` freezes the pretrained network, trains
a new head (phase ``head``), then opens its last ``trainable_blocks`` and
trains on with a very low learning rate (phase ``finetune``).
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

# %%
# ``weights=None``: no ImageNet weights here, so the "pretrained" network is
# random and fine-tuning has little to build on. With ImageNet weights
# (``weights="imagenet"``, the default), this is the step that usually wins.
model = tlsk.KerasFineTuneClassifier(
    backbone="vgg16",
    weights=None,
    input_size=48,
    dense_units=(64,),
    head_epochs=4,
    trainable_blocks=1,
    finetune_epochs=2,
    finetune_learning_rate=1e-4,
    random_state=0,
)
model.fit(train_paths, train_labels)
print(
    "test accuracy:", accuracy_score(test_labels, model.predict(test_paths))
)

# %%
# The two phases, one after the other (``history_`` has one entry a phase).
start = 1
for phase, curves in model.history_.items():
    epochs = range(start, start + len(curves["accuracy"]))
    plt.plot(epochs, curves["accuracy"], marker="o", label=f"phase {phase}")
    start += len(curves["accuracy"])
plt.xlabel("epoch")
plt.ylabel("training accuracy")
plt.legend()
