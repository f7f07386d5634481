"""The registry's KerasHub entries: one :class:`HubSpec` per network.

Facts from elsewhere, cited:

* Classes, preset names, Kaggle handles and parameter counts: KerasHub 0.32's
  preset lists (``keras_hub/src/models/<family>/<family>_presets.py``).
* Architectures (``config``): what KerasHub's checkpoint conversion builds
  from the original checkpoints' configurations
  (``keras_hub/src/utils/transformers/convert_dinov2.py``,
  ``convert_dinov3.py``; ``tools/checkpoint_conversion/convert_clip_checkpoints.py``,
  ``convert_siglip_checkpoints.py``, ``convert_vit_checkpoints.py`` in
  keras-team/keras-hub), with the sizes of the Hugging Face configurations
  they read (``facebook/dinov2-small``, ``google/siglip2-base-patch16-224``,
  ``openai/clip-vit-base-patch16``, ``google/vit-base-patch16-224-in21k``,
  ...).
* Image converters (resize and ``x * scale + offset``): the same conversion
  scripts' ``convert_image_converter``, i.e. the preprocessing of the
  original checkpoints (ImageNet mean and std for DINO, OpenAI's CLIP mean
  and std, 0.5 and 0.5 for SigLIP and ViT).
* Linear-probe figures: DINOv2 paper, Oquab et al. 2023, arXiv 2304.07193,
  Table 8 (logistic regression on 12 transfer sets, average).
* ``gflops``: measured here with TensorFlow's profiler on the vision tower
  up to its default pooling, at its native size, batch 1, random weights
  (``python benchmarks/backbone_costs.py``). ``params``: the whole network's
  parameters as built here (``count_params``, the text tower included);
  they equal KerasHub's preset list's figures, which round DINOv3's.
"""

from __future__ import annotations

from tlsk.networks.registry._hub_spec import HubSpec, ImageConverterSpec

__all__ = ["HUB_ZOO"]

_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_HALF = (0.5, 0.5, 0.5)


def _converter(mean, std, interpolation, antialias, crop):
    """A converter that computes ``(x / 255 - mean) / std``, as KerasHub's do."""
    return ImageConverterSpec(
        interpolation=interpolation,
        antialias=antialias,
        crop_to_aspect_ratio=crop,
        scale=tuple(1.0 / 255.0 / s for s in std),
        offset=tuple(-m / s for m, s in zip(mean, std, strict=True)),
    )


def _dinov2(name, source, layers, dim, heads, registers, params, gflops, probe=""):
    return HubSpec(
        name=name,
        family="dinov2",
        hub_class="DINOV2Backbone",
        preset=name,
        kaggle_handle=f"kaggle://keras/dinov2/keras/{name}/1",
        source=source,
        config={
            "patch_size": 14,
            "num_layers": layers,
            "hidden_dim": dim,
            "num_heads": heads,
            "intermediate_dim": 4 * dim,
            "layer_scale_init_value": 1.0,
            "num_register_tokens": registers,
            "use_mask_token": True,
            "use_swiglu_ffn": False,
            "dropout_rate": 0.0,
            "drop_path_rate": 0.0,
            "image_shape": [518, 518, 3],
            "position_embedding_shape": [518, 518],
            "antialias_in_interpolation": bool(registers),
            "apply_layernorm": False,
        },
        converter=_converter(_IMAGENET_MEAN, _IMAGENET_STD, "bicubic", False, True),
        native_size=518,
        patch_size=14,
        n_blocks=layers,
        hidden_dim=dim,
        embedding_dim=None,
        prefix_tokens=1 + registers,
        resizable=True,
        gflops=gflops,
        params=params,
        linear_probe=probe,
    )


def _dinov3(name, preset, source, layers, dim, heads, params, gflops):
    return HubSpec(
        name=name,
        family="dinov3",
        hub_class="DINOV3Backbone",
        preset=preset,
        kaggle_handle=f"kaggle://keras/dinov3/keras/{preset}/1",
        source=source,
        config={
            "patch_size": 16,
            "num_layers": layers,
            "hidden_dim": dim,
            "num_heads": heads,
            "intermediate_dim": 4 * dim,
            "layer_scale_init_value": 1.0,
            "num_register_tokens": 4,
            "use_mask_token": True,
            "hidden_activation": "gelu",
            "use_gated_mlp": False,
            "use_query_bias": True,
            "use_key_bias": False,
            "use_value_bias": True,
            "use_proj_bias": True,
            "use_mlp_bias": True,
            "attention_dropout": 0.0,
            "drop_path_rate": 0.0,
            "layer_norm_eps": 1e-5,
            "image_shape": [224, 224, 3],
            "rope_theta": 100.0,
            "apply_layernorm": False,
        },
        converter=_converter(_IMAGENET_MEAN, _IMAGENET_STD, "bilinear", True, False),
        native_size=224,
        patch_size=16,
        n_blocks=layers,
        hidden_dim=dim,
        embedding_dim=None,
        prefix_tokens=5,
        resizable=True,
        gflops=gflops,
        params=params,
    )


def _clip(name, source, vision, text, projection, params, gflops):
    layers, dim, heads, intermediate, patch = vision
    text_layers, text_dim, text_heads, text_intermediate = text
    return HubSpec(
        name=name,
        family="clip",
        hub_class="CLIPBackbone",
        preset=name,
        kaggle_handle=f"kaggle://keras/clip/keras/{name}/3",
        source=source,
        config={
            "vision_encoder": {
                "class_name": "CLIPVisionEncoder",
                "patch_size": patch,
                "hidden_dim": dim,
                "num_layers": layers,
                "num_heads": heads,
                "intermediate_dim": intermediate,
                "intermediate_activation": "quick_gelu",
                "intermediate_output_index": None,
                "image_shape": [224, 224, 3],
            },
            "text_encoder": {
                "class_name": "CLIPTextEncoder",
                "vocabulary_size": 49408,
                "embedding_dim": text_dim,
                "hidden_dim": text_dim,
                "num_layers": text_layers,
                "num_heads": text_heads,
                "intermediate_dim": text_intermediate,
                "intermediate_activation": "quick_gelu",
                "intermediate_output_index": None,
                "max_sequence_length": 77,
            },
            "projection_dim": projection,
        },
        converter=_converter(_CLIP_MEAN, _CLIP_STD, "bicubic", False, True),
        native_size=224,
        patch_size=patch,
        n_blocks=layers,
        hidden_dim=dim,
        embedding_dim=projection,
        prefix_tokens=1,
        resizable=False,
        gflops=gflops,
        params=params,
    )


def _siglip2(name, source, layers, dim, heads, intermediate, patch, params, gflops):
    return HubSpec(
        name=name,
        family="siglip",
        hub_class="SigLIPBackbone",
        preset=name,
        kaggle_handle=f"kaggle://keras/siglip/keras/{name}/1",
        source=source,
        config={
            "vision_encoder": {
                "class_name": "SigLIPVisionEncoder",
                "patch_size": patch,
                "hidden_dim": dim,
                "num_layers": layers,
                "num_heads": heads,
                "intermediate_dim": intermediate,
                "intermediate_activation": "gelu_approximate",
                "layer_norm_epsilon": 1e-6,
                "image_shape": [224, 224, 3],
            },
            "text_encoder": {
                "class_name": "SigLIPTextEncoder",
                "vocabulary_size": 256000,
                "embedding_dim": dim,
                "hidden_dim": dim,
                "num_layers": layers,
                "num_heads": heads,
                "intermediate_dim": intermediate,
                "intermediate_activation": "gelu_approximate",
                "layer_norm_epsilon": 1e-6,
                "max_sequence_length": 64,
                "projection_dim": dim,
            },
        },
        converter=_converter(_HALF, _HALF, "bicubic", True, False),
        native_size=224,
        patch_size=patch,
        n_blocks=layers,
        hidden_dim=dim,
        embedding_dim=dim,
        prefix_tokens=0,
        resizable=False,
        gflops=gflops,
        params=params,
    )


_DINOV2_PROBE = "linear probe, 12 transfer sets: {} % (arXiv 2304.07193, Table 8)"

# GFLOP per image of the vision tower at its native size (see the docstring).
GFLOPS = {
    "dinov2_small": 59.912,
    "dinov2_base": 236.184,
    "dinov2_large": 835.023,
    "dinov2_with_registers_small": 60.087,
    "dinov2_with_registers_base": 236.875,
    "dinov3_small": 8.719,
    "dinov3_base": 34.509,
    "siglip2_base_patch16_224": 34.138,
    "siglip2_so400m_patch14_224": 212.81,
    "clip_vit_base_patch16": 33.8,
    "clip_vit_large_patch14": 155.924,
    "vit_base_patch16_224_in21k": 33.812,
}

HUB_ZOO = (
    _dinov2(
        "dinov2_small",
        "facebook/dinov2-small",
        12,
        384,
        6,
        0,
        22_582_656,
        GFLOPS["dinov2_small"],
        _DINOV2_PROBE.format(87.7),
    ),
    _dinov2(
        "dinov2_base",
        "facebook/dinov2-base",
        12,
        768,
        12,
        0,
        87_632_640,
        GFLOPS["dinov2_base"],
        _DINOV2_PROBE.format(90.1)
        + "; Cars 88.2, Aircraft 79.4, DTD 83.3, Flowers 99.6",
    ),
    _dinov2(
        "dinov2_large",
        "facebook/dinov2-large",
        24,
        1024,
        16,
        0,
        305_771_520,
        GFLOPS["dinov2_large"],
    ),
    _dinov2(
        "dinov2_with_registers_small",
        "facebook/dinov2-with-registers-small",
        12,
        384,
        6,
        4,
        22_584_192,
        GFLOPS["dinov2_with_registers_small"],
    ),
    _dinov2(
        "dinov2_with_registers_base",
        "facebook/dinov2-with-registers-base",
        12,
        768,
        12,
        4,
        87_635_712,
        GFLOPS["dinov2_with_registers_base"],
    ),
    _dinov3(
        "dinov3_small",
        "dinov3_vit_small_lvd1689m",
        "facebook/dinov3-vits16-pretrain-lvd1689m",
        12,
        384,
        6,
        21_596_544,
        GFLOPS["dinov3_small"],
    ),
    _dinov3(
        "dinov3_base",
        "dinov3_vit_base_lvd1689m",
        "facebook/dinov3-vitb16-pretrain-lvd1689m",
        12,
        768,
        12,
        85_660_416,
        GFLOPS["dinov3_base"],
    ),
    _siglip2(
        "siglip2_base_patch16_224",
        "google/siglip2-base-patch16-224",
        12,
        768,
        12,
        3072,
        16,
        375_188_230,
        GFLOPS["siglip2_base_patch16_224"],
    ),
    _siglip2(
        "siglip2_so400m_patch14_224",
        "google/siglip2-so400m-patch14-224",
        27,
        1152,
        16,
        4304,
        14,
        1_135_463_922,
        GFLOPS["siglip2_so400m_patch14_224"],
    ),
    _clip(
        "clip_vit_base_patch16",
        "openai/clip-vit-base-patch16",
        vision=(12, 768, 12, 3072, 16),
        text=(12, 512, 8, 2048),
        projection=512,
        params=149_620_934,
        gflops=GFLOPS["clip_vit_base_patch16"],
    ),
    _clip(
        "clip_vit_large_patch14",
        "openai/clip-vit-large-patch14",
        vision=(24, 1024, 16, 4096, 14),
        text=(12, 768, 12, 3072),
        projection=768,
        params=427_616_770,
        gflops=GFLOPS["clip_vit_large_patch14"],
    ),
    HubSpec(
        name="vit_base_patch16_224_in21k",
        family="vit",
        hub_class="ViTBackbone",
        preset="vit_base_patch16_224_imagenet21k",
        kaggle_handle="kaggle://keras/vit/keras/vit_base_patch16_224_imagenet21k/3",
        source="google/vit-base-patch16-224-in21k",
        config={
            "image_shape": [224, 224, 3],
            "patch_size": [16, 16],
            "num_layers": 12,
            "num_heads": 12,
            "hidden_dim": 768,
            "mlp_dim": 3072,
            "dropout_rate": 0.0,
            "attention_dropout": 0.0,
            "layer_norm_epsilon": 1e-6,
            "use_mha_bias": True,
            "use_mlp_bias": True,
            "use_class_token": True,
            "use_patch_bias": True,
        },
        converter=_converter(_HALF, _HALF, "bilinear", False, True),
        native_size=224,
        patch_size=16,
        n_blocks=12,
        hidden_dim=768,
        embedding_dim=None,
        prefix_tokens=1,
        resizable=True,
        gflops=GFLOPS["vit_base_patch16_224_in21k"],
        params=85_798_656,
    ),
)
