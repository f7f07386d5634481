"""
7. Comparing backbones: what each costs, and how to choose
==========================================================

:func:`tlsk.list_backbones` lists every network tlsk can cut, with its
native input size, vector size, arithmetic per image and the ImageNet
accuracy Keras publishes. One :class:`~sklearn.model_selection.GridSearchCV`
over ``features__backbone`` compares them on your own images, sharing one
feature cache.
"""

# %%
import tempfile
import time

import matplotlib.pyplot as plt
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import tlsk
from tlsk.images.sample_data import write_photo_folder

for spec in tlsk.list_backbones()[:11]:
    print(
        f"{spec.name:20s} {spec.native_size:4d} px  {spec.dims[-1]:5d}-d  "
        f"{spec.gflops:6.2f} GFLOP  ImageNet top-1 {spec.imagenet_top1}"
    )

# %%
# On photo crops
# --------------
# ``weights=None``: random weights, since no ImageNet weights can be
# downloaded where this page is built. The accuracies below only say how
# well random features of each architecture separate the classes; with
# ImageNet weights they change, and their ranking usually follows the
# ImageNet column above. Networks with batch normalisation (MobileNetV3,
# EfficientNet) give vectors of a tiny spread from random weights, hence the
# StandardScaler before the linear classifier. The seconds are what they
# are: building the network and extracting 90 images at 64 px.
paths, labels = write_photo_folder(tempfile.mkdtemp(), per_class=15)
names = ["vgg16", "resnet50", "mobilenet_v3_large", "efficientnet_b0"]
scores, seconds = [], []
for name in names:
    extractor = tlsk.ImageFeatureExtractor(
        backbone=name, weights=None, input_size=64
    )
    start = time.perf_counter()
    features = extractor.fit_transform(paths)
    seconds.append(time.perf_counter() - start)
    classifier = make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=1000)
    )
    scores.append(
        cross_val_score(classifier, features, labels, cv=3).mean()
    )
    print(f"{name:20s} accuracy {scores[-1]:.3f}  {seconds[-1]:5.1f} s")

fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3))
left.barh(names, scores)
left.set_xlabel("3-fold accuracy (random weights)")
right.barh(names, seconds)
right.set_xlabel("seconds to build and extract (90 images)")
fig.tight_layout()

# %%
# In a pipeline, ``GridSearchCV(pipe, {"features__backbone": names})`` makes
# the same comparison with the classifier's parameters searched too; give
# the extractor ``cache=`` so that each network's vectors are computed once.
