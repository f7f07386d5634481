"""The text side of a CLIP or SigLIP network: prompts in, text embeddings out.

What :class:`tlsk.ZeroShotImageClassifier` needs of a language-supervised
network besides its image embedding (:mod:`tlsk.networks.hub`): its tokenizer and
KerasHub's rules for packing a prompt (:func:`text_preprocessor`), its text
tower (:func:`text_embeddings`) and the two numbers of its scoring head
(:func:`head_parameters`). Everything comes from a preset folder (what
``save_to_preset`` writes, or the published preset in KerasHub's download
cache): a registry network built with random weights has no tokenizer.

KerasHub's own classes do the work, so a prompt becomes the tokens it would
become in KerasHub: ``CLIPPreprocessor`` (lower case, start and end tokens,
padded with the end token to 77) and ``SigLIPPreprocessor`` (big_vision's
canonical text: lower case, no punctuation; an end token, no start token,
padded to exactly 64, since SigLIP's text tower reads the last position).
"""

from __future__ import annotations

import json
import os

import numpy as np

from tlsk.networks.hub import hub_network, read_preset, require_keras_hub

__all__ = [
    "TEXT_FAMILIES",
    "head_parameters",
    "load_text_network",
    "text_embedding_dim",
    "text_embeddings",
    "text_preprocessor",
]

# The families with a text tower trained against their image embedding.
TEXT_FAMILIES = ("clip", "siglip")

_PREPROCESSORS = {"clip": "CLIPPreprocessor", "siglip": "SigLIPPreprocessor"}


def _check_text_family(folder, family):
    if family not in TEXT_FAMILIES:
        raise ValueError(
            f"the preset in {folder!r} is a {family} network, which has no text "
            f"tower; zero-shot classification needs one of {list(TEXT_FAMILIES)}"
        )


def text_preprocessor(folder):
    """``(preprocessor, description)``: KerasHub's text packer of the preset.

    ``preprocessor`` maps ``{"prompts": [...], "images": None}`` to token ids;
    ``description`` says what changes the tokens (class, sequence length),
    for a cache fingerprint. A ValueError names the folder when it holds no
    tokenizer.
    """
    info = read_preset(folder)
    _check_text_family(info.folder, info.family)
    if not os.path.isfile(os.path.join(info.folder, "tokenizer.json")):
        raise ValueError(
            f"preset folder {info.folder!r} has no tokenizer (tokenizer.json and "
            "assets/tokenizer/): zero-shot classification turns the class names "
            "into the network's tokens; copy the whole preset folder, its "
            "tokenizer included"
        )
    keras_hub = require_keras_hub()
    cls = getattr(keras_hub.models, _PREPROCESSORS[info.family])
    # Text only: SigLIPPreprocessor would run its image converter on None.
    preprocessor = cls.from_preset(info.folder, image_converter=None)
    description = {
        "preprocessor": type(preprocessor).__name__,
        "tokenizer": type(preprocessor.tokenizer).__name__,
        "sequence_length": int(preprocessor.sequence_length),
    }
    return preprocessor, description


def text_embedding_dim(folder) -> int:
    """The length of the preset's text embeddings, from its ``config.json``.

    CLIP's text projection (``projection_dim``), SigLIP's text head (its
    text encoder's ``projection_dim``, or ``hidden_dim`` when none).
    """
    info = read_preset(folder)  # checks the file before it is read here
    _check_text_family(info.folder, info.family)
    with open(os.path.join(info.folder, "config.json"), encoding="utf-8") as file:
        settings = json.load(file).get("config", {})
    if info.family == "siglip":
        text = settings.get("text_encoder", {}).get("config", {})
        dim = text.get("projection_dim") or text.get("hidden_dim")
    else:
        dim = settings.get("projection_dim")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(
            f"{info.folder!r}'s config.json gives its text tower no embedding "
            f"size; received {dim!r}"
        )
    return dim


def load_text_network(folder):
    """The preset's KerasHub backbone (both towers), in float32.

    Built anew at each call (the caller drops it when done): the text tower
    is needed only while class names are embedded, and a network as large as
    SigLIP 2 so400m should not stay in memory twice beside the image
    extractor's.
    """
    info = read_preset(folder)
    _check_text_family(info.folder, info.family)
    return hub_network(info.folder, None, "float32").backbone


def text_embeddings(network, preprocessor, prompts, batch_size=32):
    """The network's text embeddings of ``prompts``, float32 ``(n, dim)``.

    KerasHub's ``get_text_embeddings`` on the preprocessor's tokens: CLIP's
    projected end-of-text token, SigLIP's text head on the last position.
    Not normalised.
    """
    prompts = list(prompts)
    out = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        tokens = preprocessor({"prompts": batch, "images": None})["token_ids"]
        embedded = network.get_text_embeddings(np.asarray(tokens))
        out.append(np.asarray(embedded, dtype=np.float32))
    if not out:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(out)


def head_parameters(network) -> tuple[float, float]:
    """``(logit_scale, logit_bias)`` of the network's scoring head.

    The logits of an image and a prompt are ``exp(logit_scale) * cos +
    logit_bias``, with the cosine of their embeddings; CLIP has no bias (0).
    """
    keras_hub = require_keras_hub()
    if isinstance(network, keras_hub.models.SigLIPBackbone):
        head = network.siglip_head
        return float(np.asarray(head.logit_scale)), float(np.asarray(head.logit_bias))
    return float(np.asarray(network.clip_head.logit_scale)), 0.0
