"""The largest sizes tlsk accepts, and why each number.

One home for the bounds that the estimators' ``_parameter_constraints``, the
command line's options and the model loader (:mod:`tlsk.persistence.model_files`) apply,
so that the three agree: a value ``fit`` accepts loads from a model file, and
a value a shared file holds is one ``fit`` would have accepted. Each bound is
far beyond what a user needs and far below what exhausts a machine's memory
before an error can say why.
"""

__all__ = ["MAX_BATCH_SIZE", "MAX_IMAGE_PIXELS", "MAX_INPUT_SIZE", "MAX_N_JOBS"]

# Side of the square images are resized to. More than five times the largest
# native size of the registry (384 px, EfficientNetV2-S); at 2048 px VGG16's
# first block alone holds 2048 * 2048 * 64 float32 values, 1 GiB per image.
MAX_INPUT_SIZE = 2048

# Images per network call or training step. A float32 batch of 4096 images
# at 224 px takes 2.3 GiB before the network's first activation: no device
# tlsk runs on computes a larger one.
MAX_BATCH_SIZE = 4096

# Threads (or processes) that decode images or run an estimator's jobs. More
# than the cores of any one machine only costs memory: each decode thread
# holds a decoded image, each process a copy of the model.
MAX_N_JOBS = 1024

# The largest ``max_image_pixels``: 2**32 pixels, a 65,536 x 65,536 image (the
# largest a JPEG can hold), 12 GiB once decoded to RGB. The guard against
# decompression bombs is a number, never None.
MAX_IMAGE_PIXELS = 2**32
