"""
1. Pre-processing: check a folder of classes, then split it
===========================================================

A data set for tlsk is a folder with one sub-folder per class. Before any
training, :func:`tlsk.check_image_folder` decodes every file and hashes it:
it finds the files that cannot be decoded and the same image filed under two
classes. :func:`tlsk.split_image_folder` then makes train / validation /
test folders, keeping identical images in one part.
"""

# %%
# A folder of real photographs
# ----------------------------
# Six classes of crops cut from the two photographs scikit-learn ships.
# We add two problems on purpose: a file that is no image, and one photo
# copied into a second class.
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
from PIL import Image

import tlsk
from tlsk.images.sample_data import write_photo_folder

root = Path(tempfile.mkdtemp()) / "photos"
paths, labels = write_photo_folder(root, per_class=20, size=64)
(root / "sky" / "notes.jpg").write_text("not an image")
shutil.copy(paths[0], root / "trees" / "copied.jpg")
print(len(paths), "images in", len(set(labels)), "classes")

fig, axes = plt.subplots(1, 6, figsize=(9, 1.8))
for ax, name in zip(axes, sorted(set(labels)), strict=True):
    ax.imshow(Image.open(next((root / name).glob("*.jpg"))))
    ax.set_title(name)
    ax.axis("off")

# %%
# What the check finds
# --------------------
report = tlsk.check_image_folder(root)
print("images per class:", report["classes"])
print(
    "undecodable:",
    [(bad["path"], bad["reason"]) for bad in report["bad_files"]],
)
print("in two classes:", [dup["paths"] for dup in report["duplicates"]])

# %%
# Fix the folder, then split it
# -----------------------------
# Remove what the check found, and split. The split is reproducible (its
# seed), stratified by class, and recorded in ``split.json``.
(root / "sky" / "notes.jpg").unlink()
(root / "trees" / "copied.jpg").unlink()
assert tlsk.check_image_folder(root)["ok"]

split = Path(tempfile.mkdtemp()) / "split"
tlsk.split_image_folder(root, split, val=0.2, test=0.2, seed=0)
for part in ("train", "val", "test"):
    part_paths, part_labels = tlsk.load_image_folder(split / part)
    print(f"{part:5s} {len(part_paths):3d} images")

# %%
# The network's input size and normalisation are not a step of their own:
# each extractor and classifier resizes and normalises images as its network
# expects (``input_size``, ``interpolation``, the network's own preprocessing),
# from files, arrays or PIL images.
