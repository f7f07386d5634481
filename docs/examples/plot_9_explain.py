"""
9. Where the model looks: class activation maps
===============================================

A model can be right for the wrong reason: a watermark, a ruler, a scanner's
stamp that only one class carries. :func:`tlsk.explain` shows where in each
image a model finds the evidence for a class: Grad-CAM for the Keras
classifiers, and for a bottleneck pipeline with a linear classifier on
average-pooled features the exact class activation map (the classifier's
weights applied to the network's last feature map).
"""

# %%
# A shortcut planted on purpose
# -----------------------------
# Photo crops of six kinds, labelled "approved" or "rejected" at random; every
# rejected one carries a red stamp near its top-right corner. The photos say
# nothing about the label: the stamp is all there is to learn.
import tempfile

import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import tlsk
from tlsk.evaluation.explain import overlay
from tlsk.images.decode import read_image
from tlsk.images.sample_data import write_photo_folder

paths, _ = write_photo_folder(tempfile.mkdtemp(), per_class=12, size=64)
images = np.stack([read_image(path) for path in paths])
rng = np.random.default_rng(0)
labels = rng.permutation(np.array(["approved", "rejected"] * (len(images) // 2)))
images[labels == "rejected", 4:16, -16:-4] = [230, 30, 30]
test = np.arange(len(images)) % 4 == 0
train = ~test

# %%
# Two models, two kinds of map
# ----------------------------
# A small CNN trained from scratch (Grad-CAM: an 8 x 8 grid at 64 px), and
# a bottleneck pipeline: VGG16 cut at ``block3_pool`` (an 8 x 8 grid), a
# scaler and a logistic regression (the exact map: the scaler is folded into
# the regression's weights). ``weights=None``: random VGG16 filters, since no
# ImageNet weights can be downloaded where this page is built.
cnn = tlsk.SmallCNNClassifier(
    input_size=64,
    filters=(8, 16, 16),
    epochs=20,
    augmentation=False,
    validation_fraction=0,
    random_state=0,
).fit(images[train], labels[train])
bottleneck = make_pipeline(
    tlsk.ImageFeatureExtractor(weights=None, input_size=64, layer="block3_pool"),
    StandardScaler(),
    LogisticRegression(max_iter=2000),
).fit(images[train], labels[train])
for name, model in [("small CNN", cnn), ("bottleneck", bottleneck)]:
    accuracy = (model.predict(images[test]) == labels[test]).mean()
    print(f"{name}: test accuracy {accuracy:.2f}")

# %%
# Where each model finds "rejected"
# ---------------------------------
# The maps of the class "rejected" on test images, drawn over them by
# :func:`tlsk.evaluation.explain.overlay` (viridis: yellow where the
# evidence peaks). The small CNN's map lands on the stamp. The bottleneck's
# peaks there too but spreads over the photograph: its random filters answer
# to edges and colours everywhere, and each cell of ``block3_pool`` sees a
# wide patch of the image.
shown = np.flatnonzero(test & (labels == "rejected"))[:5]
grad_cam = tlsk.explain(cnn, images[shown], target=["rejected"] * len(shown))
exact = tlsk.explain(bottleneck, images[shown], target=["rejected"] * len(shown))
print(grad_cam.method, grad_cam.maps.shape, "|", exact.method, exact.maps.shape)

figure, axes = plt.subplots(3, len(shown), figsize=(2 * len(shown), 6.4))
rows = [("image", None), ("Grad-CAM, small CNN", grad_cam), ("CAM, bottleneck", exact)]
for row, (title, result) in zip(axes, rows, strict=True):
    row[0].set_ylabel(title)
    for i, axis in enumerate(row):
        picture = images[shown[i]]
        if result is not None:
            picture = overlay(picture, result.maps[i], alpha=0.6)
        axis.imshow(picture)
        axis.set_xticks([])
        axis.set_yticks([])
figure.tight_layout()

# %%
# The share of each map's mass in the stamp's quarter of the image (0.25 if
# the map were flat); on this page's build, 0.55-1.0 for Grad-CAM and
# 0.32-0.41 for the bottleneck's map:
for result in (grad_cam, exact):
    maps = result.maps
    quarter = maps[:, :4, 4:].sum(axis=(1, 2)) / maps.sum(axis=(1, 2))
    print(result.method, np.round(quarter, 2))

# %%
# With real data the shortcut is not planted but found: look at the maps of
# the mistakes (the evaluation report draws them over its thumbnails) and of
# a few right answers; a map that keeps landing on a border, a logo or a
# background says what the model learnt. Maps are coarse: one cell of an
# 8 x 8 grid covers 8 x 8 pixels here, 32 x 32 for VGG16's 7 x 7 at 224 px.
