"""
8. Zero-shot: classes from their names alone
============================================

:class:`tlsk.ZeroShotImageClassifier` scores images against class names
with a CLIP or SigLIP 2 network: each name becomes prompts ("a photo of a
cat."), their text embeddings are averaged, and the network's own head
scores each image against each class. No labelled image is needed; with
``y`` in ``fit`` the classes come from the labels.

With a published network (``backbone="siglip2_base_patch16_224"``, whose
weights KerasHub downloads once) this works on real photographs. No weights
can be downloaded where this page is built, so it runs on a tiny CLIP with
random weights, saved as a preset folder like the ones KerasHub keeps: the
calls are the real ones, and its probabilities mean nothing.
"""

# %%
# A tiny CLIP preset, for this page only
# --------------------------------------
# Two transformer blocks of width 32 and a vocabulary of a few words, saved
# with KerasHub's own ``save_to_preset``. Skip this part with a real network.
import tempfile

import keras
import keras_hub
import numpy as np

WORDS = ("a", "photo", "of", "the", "sky", "water", "trees")


def tiny_clip_preset(folder):
    keras.utils.set_random_seed(0)
    # A character BPE that spells each word whole; <|endoftext|> last.
    vocabulary, merges = {}, []
    for char in "abcdefghijklmnopqrstuvwxyz.":
        vocabulary.setdefault(char, len(vocabulary))
        vocabulary.setdefault(char + "</w>", len(vocabulary))
    for word in WORDS:
        parts = [*word[:-1], word[-1] + "</w>"]
        current = parts[0]
        for part in parts[1:]:
            merges.append(f"{current} {part}")
            current += part
            vocabulary.setdefault(current, len(vocabulary))
    for token in ("<|startoftext|>", "<|endoftext|>"):
        vocabulary.setdefault(token, len(vocabulary))
    tokenizer = keras_hub.tokenizers.CLIPTokenizer(
        vocabulary=vocabulary, merges=merges, pad_with_end_token=True
    )
    size = dict(
        hidden_dim=32, num_layers=2, num_heads=2, intermediate_dim=64
    )
    vision = keras_hub.models.CLIPVisionEncoder(
        patch_size=16, image_shape=(32, 32, 3), **size
    )
    text = keras_hub.models.CLIPTextEncoder(
        vocabulary_size=tokenizer.vocabulary_size(),
        embedding_dim=32,
        max_sequence_length=77,
        **size,
    )
    backbone = keras_hub.models.CLIPBackbone(
        vision, text, projection_dim=24
    )
    converter = keras_hub.layers.CLIPImageConverter(image_size=(32, 32))
    for part in (backbone, converter, tokenizer):
        part.save_to_preset(folder)
    return folder


preset = tiny_clip_preset(tempfile.mkdtemp())

# %%
# Classify photo crops from class names
# -------------------------------------
import tlsk  # noqa: E402
from tlsk.images.sample_data import write_photo_folder  # noqa: E402

paths, labels = write_photo_folder(
    tempfile.mkdtemp(),
    per_class=4,
    size=48,
    classes=("sky", "water", "trees"),
)
model = tlsk.ZeroShotImageClassifier(
    backbone=preset,
    classes=["sky", "water", "trees"],
    templates=("a photo of the {}.",),
)
model.fit()
chosen = [paths[i] for i in (0, 4, 8)]  # one of each class
probabilities = model.predict_proba(chosen)
print("classes:", model.classes_.tolist())
print(np.round(probabilities, 3))
print(
    "predicted:",
    model.predict(paths[:3]).tolist(),
    "given:",
    labels[:3].tolist(),
)

# %%
# The same from a shell, with a published network::
#
#     tlsk predict --zero-shot "sky,water,trees" photos/
#     tlsk evaluate --zero-shot --backbone siglip2_base_patch16_224 data/test
#
# ``score`` on a labelled folder says how well the class names alone
# separate your classes, before any image is labelled.
