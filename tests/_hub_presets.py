"""Tiny KerasHub networks, saved as preset folders, for offline tests.

Each family's smallest sensible architecture (two blocks, width 32, a 32 or
28 px input) with seeded random weights, written by KerasHub's own
``save_to_preset`` with its image converter and, for CLIP and SigLIP, a
tokenizer with a vocabulary of a few words: the folder a user copies from a
machine with a network, in miniature. Built once per test session.
"""

from __future__ import annotations

import io
import os

import numpy as np

FAMILIES = ("dinov2", "dinov2_registers", "dinov3", "vit", "clip", "siglip")
WORDS = ("photo", "of", "a", "cat", "dog", "bird", "red", "green", "blue")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _scale(std):
    return [1 / 255 / s for s in std]


def _offset(mean, std):
    return [-m / s for m, s in zip(mean, std, strict=True)]


def _clip_vocabulary(words):
    """A character BPE vocabulary and merges that spell each word whole.

    ``<|endoftext|>`` gets the largest id: CLIP's text tower reads the
    prompt's embedding at ``argmax(token_ids)``.
    """
    vocabulary, merges = {}, []

    def add(token):
        vocabulary.setdefault(token, len(vocabulary))

    for char in "abcdefghijklmnopqrstuvwxyz.":
        add(char)
        add(char + "</w>")
    for word in words:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        current = parts[0]
        for part in parts[1:]:
            merges.append(f"{current} {part}")
            current += part
            add(current)
    add("<|startoftext|>")
    add("<|endoftext|>")
    return vocabulary, merges


def _gemma_proto(words):
    """A SentencePiece model of whole words, as SigLIP 2's Gemma tokenizer takes."""
    import sentencepiece

    sentences = [" ".join(("a", "photo", "of", "a", word)) for word in words]
    buffer = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=buffer,
        vocab_size=len(set(words)) + 8,
        hard_vocab_limit=False,
        model_type="WORD",
        minloglevel=3,
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        pad_piece="<pad>",
        eos_piece="<eos>",
        bos_piece="<bos>",
        unk_piece="<unk>",
    )
    return buffer.getvalue()


def build(family, seed=0):
    """``(backbone, converter, tokenizer or None)`` of a tiny ``family`` network."""
    import keras
    import keras_hub

    models, layers = keras_hub.models, keras_hub.layers
    keras.utils.set_random_seed(seed)
    tokenizer = None
    if family in ("dinov2", "dinov2_registers"):
        registers = 4 if family == "dinov2_registers" else 0
        backbone = models.DINOV2Backbone(
            patch_size=14,
            num_layers=2,
            hidden_dim=32,
            num_heads=2,
            intermediate_dim=64,
            num_register_tokens=registers,
            image_shape=(28, 28, 3),
            position_embedding_shape=(42, 42),
            antialias_in_interpolation=bool(registers),
        )
        converter = layers.DINOV2ImageConverter(
            image_size=(28, 28),
            scale=_scale(IMAGENET_STD),
            offset=_offset(IMAGENET_MEAN, IMAGENET_STD),
            interpolation="bicubic",
        )
    elif family == "dinov3":
        backbone = models.DINOV3Backbone(
            patch_size=16,
            num_layers=2,
            hidden_dim=32,
            num_heads=2,
            intermediate_dim=64,
            num_register_tokens=4,
            use_key_bias=False,
            image_shape=(32, 32, 3),
        )
        converter = layers.DINOV3ImageConverter(
            image_size=(32, 32),
            scale=_scale(IMAGENET_STD),
            offset=_offset(IMAGENET_MEAN, IMAGENET_STD),
            interpolation="bilinear",
            antialias=True,
            crop_to_aspect_ratio=False,
        )
    elif family == "vit":
        backbone = models.ViTBackbone(
            image_shape=(32, 32, 3),
            patch_size=16,
            num_layers=2,
            num_heads=2,
            hidden_dim=32,
            mlp_dim=64,
        )
        converter = layers.ViTImageConverter(
            image_size=(32, 32),
            scale=[1 / 127.5] * 3,
            offset=[-1.0] * 3,
            interpolation="bilinear",
        )
    elif family == "clip":
        vocabulary, merges = _clip_vocabulary(WORDS)
        tokenizer = keras_hub.tokenizers.CLIPTokenizer(
            vocabulary=vocabulary, merges=merges, pad_with_end_token=True
        )
        vision = models.CLIPVisionEncoder(
            patch_size=16,
            hidden_dim=32,
            num_layers=2,
            num_heads=2,
            intermediate_dim=64,
            image_shape=(32, 32, 3),
        )
        text = models.CLIPTextEncoder(
            vocabulary_size=tokenizer.vocabulary_size(),
            embedding_dim=32,
            hidden_dim=32,
            num_layers=2,
            num_heads=2,
            intermediate_dim=64,
            max_sequence_length=77,
        )
        backbone = models.CLIPBackbone(vision, text, projection_dim=24)
        converter = layers.CLIPImageConverter(
            image_size=(32, 32),
            scale=_scale(CLIP_STD),
            offset=_offset(CLIP_MEAN, CLIP_STD),
            interpolation="bicubic",
        )
    elif family == "siglip":
        tokenizer = keras_hub.tokenizers.GemmaTokenizer(proto=_gemma_proto(WORDS))
        vision = models.SigLIPVisionEncoder(
            patch_size=16,
            hidden_dim=32,
            num_layers=2,
            num_heads=2,
            intermediate_dim=64,
            image_shape=(32, 32, 3),
        )
        text = models.SigLIPTextEncoder(
            vocabulary_size=tokenizer.vocabulary_size(),
            embedding_dim=32,
            hidden_dim=32,
            num_layers=2,
            num_heads=2,
            intermediate_dim=64,
            max_sequence_length=64,
            projection_dim=32,
        )
        backbone = models.SigLIPBackbone(vision, text)
        converter = layers.SigLIPImageConverter(
            image_size=(32, 32),
            scale=[1 / 127.5] * 3,
            offset=[-1.0] * 3,
            interpolation="bicubic",
            antialias=True,
            crop_to_aspect_ratio=False,
        )
    else:
        raise ValueError(f"family must be one of {FAMILIES}; received {family!r}")
    return backbone, converter, tokenizer


def write_preset(family, folder, seed=0):
    """Save a tiny ``family`` network as a preset folder; return its path."""
    backbone, converter, tokenizer = build(family, seed)
    os.makedirs(folder, exist_ok=True)
    backbone.save_to_preset(folder)
    converter.save_to_preset(folder)
    if tokenizer is not None:
        tokenizer.save_to_preset(folder)
    return str(folder)


def photos(size=32, n=4, seed=0):
    """uint8 RGB pictures of another size and aspect ratio than the networks'."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size + 8, size + 18, 3), dtype=np.uint8)
