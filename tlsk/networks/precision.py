"""Numeric precision: float32, or bfloat16 where the hardware computes it natively.

``precision`` is a parameter of every tlsk estimator that runs VGG16:

``"float32"``
    Everything in float32.
``"bfloat16"``
    Keras mixed precision (the ``"mixed_bfloat16"`` dtype policy, set per
    layer): convolutions and matrix products compute in bfloat16, weights stay
    float32, and the final pooling, the softmax and every output are float32.
``"int8"`` (feature extraction only)
    Post-training int8 quantization with NNCF, calibrated on the images
    given to ``fit``, run by the OpenVINO engine (:mod:`tlsk.networks.openvino`).
``"auto"`` (the default)
    ``"bfloat16"`` where the hardware computes it natively (x86 CPUs with AMX
    or AVX512-BF16; with a GPU visible, a GPU of compute capability 8.0 or
    more), else ``"float32"``. Without native support, TensorFlow emulates
    bfloat16 and it is no faster than float32 (0.87x to 1.08x for VGG16 on an
    AMD EPYC Zen 3, measured by ``benchmarks/run.py``), so "auto" never picks
    it there.

The precision is resolved once, at ``fit``, into ``precision_`` and the cache
fingerprint, so features made in bfloat16 are never served as float32 ones.
tlsk sets the dtype on the layers it builds and never changes Keras's global
dtype policy.
"""

from __future__ import annotations

import os

__all__ = [
    "PRECISIONS",
    "COMPUTE_PRECISIONS",
    "EXTRACTION_PRECISIONS",
    "NATIVE_BFLOAT16_CPU_FLAGS",
    "cpu_flags",
    "keras_dtype",
    "native_bfloat16",
    "resolve_precision",
]

PRECISIONS = ("auto", "float32", "bfloat16")
COMPUTE_PRECISIONS = ("float32", "bfloat16")  # what "auto" resolves to
# The feature extractors also quantize (the OpenVINO engine); training never does.
EXTRACTION_PRECISIONS = (*PRECISIONS, "int8")
# Linux /proc/cpuinfo flags of x86 CPUs with bfloat16 matrix instructions.
NATIVE_BFLOAT16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
_MIN_GPU_COMPUTE_CAPABILITY = (8, 0)  # NVIDIA Ampere: bf16 tensor cores


def resolve_precision(precision, cpu_flags_=None, allowed=PRECISIONS):
    """The precision to compute in: ``"float32"`` or ``"bfloat16"`` (or ``"int8"``).

    ``cpu_flags_`` (a set of flag names) replaces the flags read from the
    machine, to ask what "auto" would pick elsewhere. ``allowed`` are the
    accepted values (:data:`EXTRACTION_PRECISIONS` for the extractors).

    Examples
    --------
    >>> resolve_precision("float32")
    'float32'
    >>> resolve_precision("auto", cpu_flags_={"avx2", "fma"})
    'float32'
    >>> resolve_precision("auto", cpu_flags_={"avx512f", "amx_bf16"})
    'bfloat16'
    """
    if precision not in allowed:
        raise ValueError(f"precision must be one of {allowed}; received {precision!r}")
    if precision != "auto":
        return precision
    return "bfloat16" if native_bfloat16(cpu_flags_) else "float32"


def native_bfloat16(cpu_flags_=None):
    """True when the device TensorFlow computes on does bfloat16 natively.

    With a GPU visible, TensorFlow runs VGG16 there, so the GPU alone decides
    (compute capability 8.0 or more); otherwise the CPU's flags do.
    """
    gpu = _gpu_has_bfloat16()
    if gpu is not None:
        return gpu
    flags = cpu_flags() if cpu_flags_ is None else set(cpu_flags_)
    return bool(flags & NATIVE_BFLOAT16_CPU_FLAGS)


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The CPU feature flags (Linux); an empty set where they cannot be read."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as file:
            for line in file:
                name, _, value = line.partition(":")
                if name.strip() == "flags":
                    return set(value.split())
    except OSError:
        pass
    return set()


def _gpu_has_bfloat16():
    """None without a visible GPU; else whether the first one does bfloat16."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return None
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    capability = tf.config.experimental.get_device_details(gpus[0]).get(
        "compute_capability"
    )
    return bool(capability) and tuple(capability) >= _MIN_GPU_COMPUTE_CAPABILITY


def keras_dtype(precision):
    """The Keras dtype policy name for a resolved precision.

    >>> keras_dtype("bfloat16")
    'mixed_bfloat16'
    """
    return {"float32": "float32", "bfloat16": "mixed_bfloat16"}[precision]
