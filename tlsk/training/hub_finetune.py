"""A KerasHub vision transformer fine-tuned: blocks opened or adapted (imports Keras).

Inside a model of :class:`tlsk.KerasFineTuneClassifier` the network is its
vision tower, a nested Keras model (:func:`tlsk.networks.hub.vision_model`).
:func:`tower_parts` splits it into what comes before the transformer blocks
(patch, position and class embeddings), the blocks in order, and what comes
after them (the final norm; CLIP's projection and SigLIP's attention-pooling
head when the pooling is their "embedding"). It goes by KerasHub's classes
and attributes, never by layer names (a fresh build and a preset load name
them differently), so that it finds the same parts in a network just built
and in one loaded back from ``.keras`` bytes.

:func:`freeze_tower` then opens the last blocks and what follows them, or,
with a LoRA rank, freezes every weight of the tower and puts low-rank
adapters (Keras's own ``enable_lora``) on the attention's query, key, value
and output projections and on the MLP's projections of the last blocks:
every ``Dense`` and ``EinsumDense`` of a block, which in each family is
exactly those. ``enable_lora`` freezes a kernel but not its bias; here the
bias is frozen too, so that only the adapters (and the classifier's head)
learn.

Keras saves a LoRA layer with its adapters merged into the kernel
(``kernel + A @ B * alpha / rank``), and these layers are made by their
block's constructor, not from a saved configuration: a network loaded back
computes the same outputs with no adapters left. Training it again
(``warm_start``) puts new adapters on the merged kernels, whose second
factor starts at zero, so it starts from the same outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

__all__ = [
    "BLOCK_CLASSES",
    "TowerParts",
    "block_rate_scales",
    "freeze_tower",
    "lora_layers",
    "tower_parts",
    "uncompiled",
]

# The transformer block of each family's vision tower (KerasHub 0.32).
BLOCK_CLASSES = (
    "DINOV2Layer",
    "DINOV3Layer",
    "ViTEncoderBlock",
    "CLIPEncoderLayer",
    "SigLIPEncoderLayer",
)


@dataclass
class TowerParts:
    """A fine-tuned model's vision tower and its layers, in the order they run."""

    tower: object  # the nested keras.Model
    before: list  # layers with weights before the first block
    blocks: list  # the transformer blocks, first to last
    after: list  # layers with weights after the last block


def find_tower(model):
    """The vision tower: the one Keras model nested in ``model``."""
    towers = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(towers) != 1:
        raise TypeError(
            f"a fine-tuned network holds one nested model, its vision tower; "
            f"{model.name!r} holds {len(towers)}"
        )
    return towers[0]


def tower_parts(model) -> TowerParts:
    """Before, blocks and after of the vision tower of ``model``.

    A TypeError when the tower is not laid out as tlsk knows KerasHub's
    networks (a weight in none of the parts, blocks not in one run): a
    KerasHub version that changed them must not train what it should not.
    """
    tower = find_tower(model)
    pieces = list(_pieces(tower))
    indices = [
        i for i, layer in enumerate(pieces) if type(layer).__name__ in BLOCK_CLASSES
    ]
    if not indices or indices != list(range(indices[0], indices[-1] + 1)):
        raise TypeError(
            f"the vision tower {tower.name!r} has no run of transformer blocks "
            f"({', '.join(BLOCK_CLASSES)}); its layers are "
            f"{[type(layer).__name__ for layer in pieces]}"
        )
    parts = TowerParts(
        tower,
        [layer for layer in pieces[: indices[0]] if layer.weights],
        pieces[indices[0] : indices[-1] + 1],
        [layer for layer in pieces[indices[-1] + 1 :] if layer.weights],
    )
    covered = {
        id(variable)
        for layer in (*parts.before, *parts.blocks, *parts.after)
        for variable in layer.weights
    }
    missed = [v.path for v in tower.weights if id(v) not in covered]
    if missed:
        raise TypeError(
            f"the vision tower {tower.name!r} has weights tlsk does not place "
            f"before, in or after its blocks: {missed[:5]}"
        )
    return parts


def _pieces(layer):
    """The layers of ``layer`` down to its blocks, in the order they run."""
    kind = type(layer).__name__
    if kind in ("DINOV2Backbone", "DINOV3Backbone"):
        # One encoder layer holds the blocks (DINOv3's rotary embedding has
        # no weights; listed first, it is placed before them either way).
        yield layer.embeddings
        if hasattr(layer, "rope_embedding"):
            yield layer.rope_embedding
        yield from layer.encoder.layers
        yield layer.layernorm
    elif kind == "ViTBackbone":
        encoder = layer.get_layer("vit_encoder")
        yield layer.get_layer("vit_patching_and_embedding")
        yield from encoder.encoder_layers
        yield encoder.layer_norm
    elif isinstance(layer, keras.Model):
        # CLIP's and SigLIP's vision encoders, and the models tlsk cuts from
        # them, are functional models: their layers are in graph order.
        for inner in layer.layers:
            yield from _pieces(inner)
    else:
        yield layer


def lora_layers(block):
    """The projections of a block LoRA adapts: every Dense and EinsumDense in it.

    In each family, the attention's query, key, value and output projections
    and the MLP's two (three with a gated MLP).
    """
    # Keras has no public walk of a layer's sublayers; its own code uses this.
    found = [
        layer
        for layer in block._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.Dense | keras.layers.EinsumDense)
    ]
    if len(found) < 4:
        raise TypeError(
            f"the transformer block {block.name!r} has {len(found)} Dense or "
            "EinsumDense layers; an attention block has at least 4 (query, key, "
            "value, output)"
        )
    return found


def freeze_tower(model, open_blocks, lora_rank=None):
    """Freeze the tower of ``model`` but its last ``open_blocks`` blocks.

    Without ``lora_rank`` those blocks and every layer after them train;
    with it, nothing of the tower does but rank-``lora_rank`` adapters on
    the projections of those blocks (:func:`lora_layers`), put there now if
    they are not there yet. The head, outside the tower, always trains.
    Returns the names of the tower's layers that train.
    """
    parts = tower_parts(model)
    _set_trainable(parts.tower, False)
    if not open_blocks:
        return []
    opened = parts.blocks[len(parts.blocks) - open_blocks :]
    if lora_rank is None:
        for layer in (*opened, *parts.after):
            _set_trainable(layer, True)
        return [layer.name for layer in (*opened, *parts.after)]
    names = []
    for block in opened:
        for layer in lora_layers(block):
            _adapt(layer, lora_rank)
            names.append(f"{block.name}/{layer.name}")
    return names


def _adapt(layer, rank):
    """Only ``layer``'s LoRA adapters of ``rank`` train (added if missing)."""
    if not layer.lora_enabled:
        layer.enable_lora(rank)
    elif layer.lora_rank != rank:
        raise ValueError(
            f"warm_start continues a network whose adapters have rank "
            f"{layer.lora_rank}; received lora_rank={rank}. Pass "
            "warm_start=False to train a new model"
        )
    _set_trainable(layer, True)  # the layer's flag; each variable's is set next
    adapters = {id(layer.lora_kernel_a), id(layer.lora_kernel_b)}
    # enable_lora freezes the kernel, not the bias.
    for variable in layer.weights:
        variable.trainable = id(variable) in adapters


def _set_trainable(layer, value):
    """``layer.trainable = value``, its sublayers' and variables' flags too.

    TensorFlow's ``AutoTrackable.__setattr__`` skips an assignment of the
    value an attribute already holds: ``tower.trainable = False`` on a tower
    frozen before, whose blocks were opened since, would leave them open.
    """
    layer.trainable = not value
    layer.trainable = value


def block_rate_scales(model, open_blocks, ratio):
    """Discriminative rates: ``{variable path: factor}`` over the open blocks.

    The last block and the layers after it at ``ratio ** (1 / open_blocks)``
    of the phase's rate, the earliest open block at ``ratio``, geometrically
    spaced between (fastai's ``slice(lr * ratio, lr)``); the head at 1.
    Adapters take their block's factor.
    """
    parts = tower_parts(model)
    scales = {}
    layers = [(len(parts.blocks) - i, block) for i, block in enumerate(parts.blocks)]
    layers += [(1, layer) for layer in parts.after]
    for depth, layer in layers:
        if depth <= open_blocks:
            for variable in layer.weights:
                if variable.trainable:
                    scales[variable.path] = ratio ** (depth / open_blocks)
    return scales


def uncompiled(model):
    """``model``'s network without its optimizer: what a fitted classifier keeps.

    Keras saves an optimizer's variables with a compiled model and builds
    them anew for the loaded network's trainable weights. A transformer's
    differ once loaded (the trainable flags of its blocks' layers are not
    saved: their constructor makes them; LoRA adapters are merged), and
    Keras would refuse the saved ones. Nothing is lost: every training
    phase makes a new optimizer, and the file is smaller by its state.
    """
    return keras.Model(model.inputs, model.outputs, name=model.name)
