"""
3. Bottleneck features, a grid search, and the cache
====================================================

A pretrained network without its top (VGG16 by default) turns each image
into a vector; any scikit-learn classifier learns from the vectors.
:class:`tlsk.ImageFeatureExtractor` is a scikit-learn transformer, so it goes
into a :class:`~sklearn.pipeline.Pipeline` and a
:class:`~sklearn.model_selection.GridSearchCV`. With ``cache=``, each image's
vector is computed once and read back by every other fit.
"""

# %%
import tempfile
import time
from pathlib import Path

from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

import tlsk
from tlsk.images.sample_data import write_photo_folder

train_paths, train_labels = write_photo_folder(
    tempfile.mkdtemp(), per_class=30, seed=0
)
test_paths, test_labels = write_photo_folder(
    tempfile.mkdtemp(), per_class=15, seed=1
)
cache = Path(tempfile.mkdtemp()) / "features.h5"

# %%
# ``weights=None`` because no ImageNet weights can be downloaded where this
# page is built: VGG16 starts from tlsk's seeded random initialisation.
# With ``weights="imagenet"`` (the default) the vectors are ImageNet's and
# the accuracy below is much higher.
pipe = Pipeline(
    [
        (
            "features",
            tlsk.ImageFeatureExtractor(
                weights=None, input_size=64, cache=cache
            ),
        ),
        ("classifier", LogisticRegression(max_iter=2000)),
    ]
)
search = GridSearchCV(pipe, {"classifier__C": [0.01, 0.1, 1.0]}, cv=3)
start = time.perf_counter()
search.fit(train_paths, train_labels)
print(f"3 values x 3 folds + 1 refit: {time.perf_counter() - start:.1f} s")
print("best:", search.best_params_)
print("test accuracy:", search.score(test_paths, test_labels))

# %%
# Every vector is in the cache now: a second search computes nothing.
start = time.perf_counter()
GridSearchCV(pipe, {"classifier__C": [0.03, 0.3]}, cv=3).fit(
    train_paths, train_labels
)
print(f"second grid: {time.perf_counter() - start:.1f} s")
print(tlsk.FeatureCache(cache).info())
