"""The registry's entries: one :class:`BackboneSpec` per network.

Facts from elsewhere, cited:

* Builders, weights file names, URLs and pinned digests: ``keras.applications``
  (Keras 3.15, ``keras/src/applications/*.py``); the digests are the ones Keras
  checks when it downloads the same files. VGG16's no-top file, the default
  network's, is pinned by SHA-256 and size as well: a stronger check than MD5.
* ``imagenet_top1``: Keras's own figures, from the "Available models" table of
  https://keras.io/api/applications/ (MobileNetV3Large is not in that table:
  its figure is the one in the ``keras.applications.MobileNetV3Large``
  docstring, for ``mobilenet_v3_large_1.0_224``).
* ``gflops``: measured here with TensorFlow's profiler on the network without
  its top at its native size, batch 1 (``python benchmarks/backbone_costs.py``
  measures them again and says whether they still agree).

Layer names (``cut_points``, ``stage_ends``) are the ones Keras gives. Where
the output layer of a network has no stable name (Keras numbers unnamed
layers in the order they are built in a process), the last cut point is an
alias of the network's output.
"""

from __future__ import annotations

import numpy as np

from tlsk.networks.registry._spec import BackboneSpec, WeightsFile

__all__ = ["ZOO"]

_KA = "https://storage.googleapis.com/tensorflow/keras-applications/"


def _files(base, notop, notop_digest, top, top_digest, algorithm="md5"):
    """``imagenet=`` and ``imagenet_top=`` for two files under one URL folder."""
    return {
        "imagenet": WeightsFile(notop, base + notop, notop_digest, algorithm),
        "imagenet_top": WeightsFile(top, base + top, top_digest, algorithm),
    }


def _tf_kernels(folder, stem, notop_digest, top_digest):
    """Keras's older files, ``<stem>_weights_tf_dim_ordering_tf_kernels[_notop].h5``."""
    name = f"{stem}_weights_tf_dim_ordering_tf_kernels"
    return _files(
        _KA + folder, f"{name}_notop.h5", notop_digest, f"{name}.h5", top_digest
    )


def _vgg_cut_points(convs_per_block):
    """Every conv and pooling layer of blocks 3 to 5 (earlier ones give edges)."""
    return tuple(
        f"block{block}_{kind}"
        for block in (3, 4, 5)
        for kind in [f"conv{i}" for i in range(1, convs_per_block + 1)] + ["pool"]
    )


def _efficientnet_imagenet_fixup(model):
    """Make a network built for other weights the one Keras builds for ImageNet.

    For ``weights="imagenet"`` Keras's EfficientNet builder puts a
    ``Rescaling(1 / sqrt(std))`` per channel after its Normalization layer
    (the original network divides by the variance; see
    https://github.com/tensorflow/tensorflow/issues/49930). tlsk builds with
    ``weights=None`` and loads the verified file itself, so it folds that
    factor into the Normalization layer's variance instead:
    ``((x - m) / sqrt(v)) / sqrt(std)`` is ``(x - m) / sqrt(v * std)``.
    """
    import keras

    from tlsk.networks.preprocessing import IMAGENET_STD_RGB

    normalization = next(
        layer for layer in model.layers if isinstance(layer, keras.layers.Normalization)
    )
    mean, variance, count = normalization.get_weights()
    std = np.asarray(IMAGENET_STD_RGB, dtype=variance.dtype)
    normalization.set_weights([mean, variance * std, count])
    normalization.finalize_state()  # the layer computes from a copy of them


ZOO = (
    BackboneSpec(
        name="vgg16",
        builder="VGG16",
        keras_module="vgg16",
        preprocessing="caffe",
        native_size=224,
        min_size=32,
        cut_points=_vgg_cut_points(3),
        dims=(256,) * 4 + (512,) * 8,
        stage_ends=("block1_pool", "block2_pool", "block3_pool", "block4_pool"),
        gflops=30.71,
        imagenet=WeightsFile(
            "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            _KA + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            # Keras pins the MD5 6d6bbae143d832006294945121d1f1fc of this
            # file; tlsk its SHA-256, as published for the same 58,889,256 bytes.
            "bfe5187d0a272bed55ba430631598124cff8e880b98d38c9e56c8d66032abdc1",
            "sha256",
            58_889_256,
        ),
        imagenet_top=WeightsFile(
            "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
            _KA + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5",
            "64373286793e3c8b2b4e3219cbf3544b",
            "md5",
            553_467_096,
        ),
        imagenet_top1=71.3,
    ),
    BackboneSpec(
        name="vgg19",
        builder="VGG19",
        keras_module="vgg19",
        preprocessing="caffe",
        native_size=224,
        min_size=32,
        cut_points=_vgg_cut_points(4),
        dims=(256,) * 5 + (512,) * 10,
        stage_ends=("block1_pool", "block2_pool", "block3_pool", "block4_pool"),
        gflops=39.04,
        **_tf_kernels(
            "vgg19/",
            "vgg19",
            "253f8cb515780f3b799900260a226db6",
            "cbe5617147190e668d6c5d5026f83318",
        ),
        imagenet_top1=71.3,
    ),
    BackboneSpec(
        name="resnet50",
        builder="ResNet50",
        keras_module="resnet50",
        preprocessing="caffe",
        native_size=224,
        min_size=32,
        cut_points=(
            "conv2_block3_out",
            "conv3_block4_out",
            "conv4_block6_out",
            "conv5_block3_out",
        ),
        dims=(256, 512, 1024, 2048),
        stage_ends=(
            "pool1_pool",
            "conv2_block3_out",
            "conv3_block4_out",
            "conv4_block6_out",
        ),
        gflops=7.75,
        **_tf_kernels(
            "resnet/",
            "resnet50",
            "4d473c1dd8becc155b73f8504c6f6626",
            "2cb95161c43110f7111970584f804107",
        ),
        imagenet_top1=74.9,
    ),
    BackboneSpec(
        name="resnet50v2",
        builder="ResNet50V2",
        keras_module="resnet_v2",
        preprocessing="tf",
        native_size=224,
        min_size=32,
        cut_points=(
            "conv2_block3_out",
            "conv3_block4_out",
            "conv4_block6_out",
            "post_relu",
        ),
        dims=(256, 512, 1024, 2048),
        stage_ends=(
            "pool1_pool",
            "conv2_block3_out",
            "conv3_block4_out",
            "conv4_block6_out",
        ),
        gflops=6.99,
        **_tf_kernels(
            "resnet/",
            "resnet50v2",
            "fac2f116257151a9d068a22e544a4917",
            "3ef43a0b657b3be2300d5770ece849e0",
        ),
        imagenet_top1=76.0,
    ),
    BackboneSpec(
        name="inception_v3",
        builder="InceptionV3",
        keras_module="inception_v3",
        preprocessing="tf",
        native_size=299,
        min_size=75,
        cut_points=tuple(f"mixed{i}" for i in range(11)),
        dims=(256, 288, 288) + (768,) * 5 + (1280, 2048, 2048),
        stage_ends=tuple(f"mixed{i}" for i in range(10)),
        gflops=11.47,
        **_tf_kernels(
            "inception_v3/",
            "inception_v3",
            "bcbd6486424b2319ff4ef7d526e38f63",
            "9a0d58056eeedaa3f26cb7ebd46da564",
        ),
        imagenet_top1=77.9,
    ),
    BackboneSpec(
        name="xception",
        builder="Xception",
        keras_module="xception",
        preprocessing="tf",
        native_size=299,
        min_size=71,
        # Each "_sepconv1_act" is the ReLU of the previous block's output (the
        # residual sums themselves have no stable names).
        cut_points=(
            "block3_sepconv1_act",
            "block4_sepconv1_act",
            "block5_sepconv1_act",
            "block13_sepconv1_act",
            "block14_sepconv2_act",
        ),
        dims=(128, 256, 728, 728, 2048),
        # A residual sum after a stage's end falls in the next stage: it has no
        # weights, and its shortcut's batch normalization never trains.
        stage_ends=(
            "block1_conv2_act",
            "block2_pool",
            "block3_pool",
            "block4_pool",
            *(f"block{b}_sepconv3_bn" for b in range(5, 13)),
            "block13_pool",
        ),
        gflops=16.77,
        **_tf_kernels(
            "xception/",
            "xception",
            "b0042744bf5b25fce3cb969f33bebb97",
            "0a58e3b7378bc2990ea3b43d5981f1f6",
        ),
        imagenet_top1=79.0,
    ),
    BackboneSpec(
        name="densenet121",
        builder="DenseNet121",
        keras_module="densenet",
        preprocessing="torch",
        native_size=224,
        min_size=32,
        cut_points=("pool2_pool", "pool3_pool", "pool4_pool", "relu"),
        dims=(128, 256, 512, 1024),
        stage_ends=("pool1", "pool2_pool", "pool3_pool", "pool4_pool"),
        gflops=5.70,
        **_tf_kernels(
            "densenet/",
            "densenet121",
            "30ee3e1110167f948a6b9946edeeb738",
            "9d60b8095a5708f2dcce2bca79d332c7",
        ),
        imagenet_top1=75.0,
    ),
    BackboneSpec(
        name="mobilenet_v3_large",
        builder="MobileNetV3Large",
        keras_module="mobilenet_v3",
        preprocessing="none",  # its first layer scales [0, 255] to [-1, 1]
        native_size=224,
        min_size=32,
        cut_points=(
            "expanded_conv_2_add",
            "expanded_conv_5_add",
            "expanded_conv_11_add",
            "expanded_conv_14_add",
            "conv_1_activation",  # alias: the hard-swish after conv_1_bn
        ),
        dims=(24, 40, 112, 160, 960),
        stage_ends=(
            "expanded_conv_add",
            "expanded_conv_2_add",
            "expanded_conv_5_add",
            "expanded_conv_11_add",
        ),
        gflops=0.443,
        **_files(
            _KA + "mobilenet_v3/",
            "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
            "07fb09a5933dd0c8eaafa16978110389",
            "weights_mobilenet_v3_large_224_1.0_float.h5",
            "59e551e166be033d707958cf9e29a6a7",
        ),
        imagenet_top1=75.6,
    ),
    BackboneSpec(
        name="efficientnet_b0",
        builder="EfficientNetB0",
        keras_module="efficientnet",
        preprocessing="none",  # its Rescaling and Normalization layers do it
        native_size=224,
        min_size=32,
        cut_points=(
            "block2b_add",
            "block3b_add",
            "block4c_add",
            "block5c_add",
            "block6d_add",
            "block7a_project_bn",
            "top_activation",
        ),
        dims=(24, 40, 80, 112, 192, 320, 1280),
        stage_ends=(
            "stem_activation",
            "block1a_project_bn",
            "block2b_add",
            "block3b_add",
            "block4c_add",
            "block5c_add",
            "block6d_add",
            "block7a_project_bn",
        ),
        gflops=0.800,
        **_files(
            "https://storage.googleapis.com/keras-applications/",
            "efficientnetb0_notop.h5",
            "50bc09e76180e00e4465e1a485ddc09d",
            "efficientnetb0.h5",
            "902e53a9f72be733fc0bcb005b3ebbac",
        ),
        imagenet_top1=77.1,
        imagenet_fixup=_efficientnet_imagenet_fixup,
    ),
    BackboneSpec(
        name="efficientnet_v2_s",
        builder="EfficientNetV2S",
        keras_module="efficientnet_v2",
        preprocessing="none",  # its Rescaling layer does it
        native_size=384,
        min_size=32,
        cut_points=(
            "block2d_add",
            "block3d_add",
            "block4f_add",
            "block5i_add",
            "block6o_add",
            "top_activation",
        ),
        dims=(48, 64, 128, 160, 256, 1280),
        stage_ends=(
            "stem_activation",
            "block1b_add",
            "block2d_add",
            "block3d_add",
            "block4f_add",
            "block5i_add",
            "block6o_add",
        ),
        gflops=16.89,
        **_files(
            _KA + "efficientnet_v2/",
            "efficientnetv2-s_notop.h5",
            "af0682fb74e8c54910f2d4393339c070",
            "efficientnetv2-s.h5",
            "e1d88a8495beba45748fedd0cecbe016",
        ),
        imagenet_top1=83.9,
    ),
    BackboneSpec(
        name="convnext_tiny",
        builder="ConvNeXtTiny",
        keras_module="convnext",
        preprocessing="none",  # its Normalization layer does it
        native_size=224,
        min_size=32,
        cut_points=(
            "convnext_tiny_stage_0_block_2_identity",
            "convnext_tiny_stage_1_block_2_identity",
            "convnext_tiny_stage_2_block_8_identity",
            "convnext_tiny_stage_3_block_2_identity",
            # Alias: the head layer normalization after stage 3, applied after
            # the pooling for "avg" and "max" (head_norm below).
            "output_layernorm",
        ),
        dims=(96, 192, 384, 768, 768),
        stage_ends=(
            "convnext_tiny_stem",
            "convnext_tiny_stage_0_block_2_identity",
            "convnext_tiny_stage_1_block_2_identity",
            "convnext_tiny_stage_2_block_8_identity",
        ),
        gflops=8.76,
        **_files(
            _KA + "convnext/",
            "convnext_tiny_notop.h5",
            "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1",
            "convnext_tiny.h5",
            "8ae6e78ce2933352b1ef4008e6dd2f17bc40771563877d156bc6426c7cf503ff",
            algorithm="sha256",
        ),
        imagenet_top1=81.3,
        head_norm=True,
    ),
)
