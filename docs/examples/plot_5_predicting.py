"""
5. Predicting labels for new images with a saved model
======================================================

A fitted model is saved with its metadata (:func:`tlsk.save_model`), loaded
again (:func:`tlsk.load_model`), and predicts labels for new files. A
``.skops`` file is the one to share: loading it builds only the types tlsk
trusts, where a joblib file is a pickle that runs code when loaded.
"""

# %%
import tempfile
from pathlib import Path

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

import tlsk
from tlsk.images.sample_data import write_photo_folder

train_paths, train_labels = write_photo_folder(
    tempfile.mkdtemp(), per_class=30, seed=0
)
new_paths, _ = write_photo_folder(tempfile.mkdtemp(), per_class=1, seed=2)

# ``weights=None``: no ImageNet weights here (see example 3).
pipe = Pipeline(
    [
        (
            "features",
            tlsk.ImageFeatureExtractor(weights=None, input_size=64),
        ),
        ("classifier", LogisticRegression(max_iter=2000)),
    ]
).fit(train_paths, train_labels)

folder = Path(tempfile.mkdtemp())
tlsk.save_model(pipe, folder / "model.skops", {"note": "gallery example 5"})
print(sorted(path.name for path in folder.iterdir()))

# %%
# In another session, or on another machine:
model = tlsk.load_model(folder / "model.skops")
print(tlsk.load_metadata(folder / "model.skops")["note"])
for path, label, probabilities in zip(
    new_paths,
    model.predict(new_paths),
    model.predict_proba(new_paths),
    strict=True,
):
    print(f"{Path(path).name:24s} {label:8s} {probabilities.max():.2f}")
