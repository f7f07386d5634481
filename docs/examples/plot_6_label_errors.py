"""
6. Finding labels that are probably wrong
=========================================

A few mislabelled images in a folder of classes cost accuracy and, worse,
make every test figure lie. :func:`tlsk.evaluation.label_errors.find_label_errors`
predicts each image out of fold from its bottleneck features and asks
cleanlab's confident learning which given labels disagree with what the
other images say (``tlsk check DATA --label-errors`` on the command line).
"""

# %%
# Plant six mislabels
# -------------------
# Photo crops in six classes; six "water" crops are filed as "sky" and the
# other way round, as a hurried annotator would.
import tempfile

import numpy as np

import tlsk
from tlsk.evaluation.label_errors import find_label_errors
from tlsk.images.sample_data import write_photo_folder

paths, labels = write_photo_folder(tempfile.mkdtemp(), per_class=30)
given = labels.copy()
rng = np.random.default_rng(0)
planted = np.concatenate(
    [
        rng.choice(np.flatnonzero(labels == "water"), 3, replace=False),
        rng.choice(np.flatnonzero(labels == "trees"), 3, replace=False),
    ]
)
given[planted] = np.where(labels[planted] == "water", "sky", "petals")

# %%
# Rank the suspects
# -----------------
# ``weights=None``: random VGG16 features, since no ImageNet weights can be
# downloaded where this page is built. With ImageNet weights, features
# separate the classes far better and the suspects are found more surely.
extractor = tlsk.ImageFeatureExtractor(weights=None, input_size=64)
found = find_label_errors(paths, given, extractor=extractor, cv=5)
suspects = found.indices
hits = np.intersect1d(suspects, planted)
print(
    f"{len(suspects)} suspects; {len(hits)} of the {len(planted)} planted"
)
for index in suspects[:8]:
    mark = "planted" if index in planted else ""
    print(
        f"{index:4d}  given {given[index]:7s} true {labels[index]:7s} {mark}"
    )
