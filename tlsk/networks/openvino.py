"""The OpenVINO engine: a built Keras backbone converted, quantized and compiled.

:func:`get_openvino_backbone` turns the truncated Keras network of a
:class:`tlsk.networks.backbone.BackboneConfig` (always built in float32) into an
OpenVINO model in memory (``openvino.convert_model`` on a ``tf.function``
with a fixed input signature), and compiles it for the CPU once per process
per configuration, in float32, bfloat16 (``INFERENCE_PRECISION_HINT``), or
int8 after NNCF post-training quantization (:func:`quantize_backbone`).

Why it is worth it: a CPU with AMX computes int8 at twice its bfloat16
rate, and Keras does not expose int8; the measured figures are in
``benchmarks/README.md`` (``python benchmarks/run.py --sections engines``).

Where the int8 model lives
--------------------------
An int8 model is decided by the images it was calibrated on, which a
fitted extractor does not keep (a pickle stays in kilobytes). So
quantization writes the quantized model once, atomically, to a folder
beside Keras's cache (``<KERAS_HOME>/tlsk-openvino/``), named by the
SHA-256 of its quantization fingerprint (weights, calibration keys, NNCF
and OpenVINO versions, options). A fitted extractor keeps that name; in a
fresh process, or on a Dask worker sharing that folder, the same model is
read back, never quantized again from other data.

``openvino`` and ``nncf`` are the optional extra ``tlsk[openvino]``; without
them, :func:`require_openvino` says how to install it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import threading

import numpy as np

from tlsk._util.files import write_atomically
from tlsk._util.memo import Memo
from tlsk.networks.weights import keras_cache_dir

__all__ = [
    "ENGINES",
    "INSTALL_HINT",
    "OpenVINOBackbone",
    "QuantizedModelMissingError",
    "get_openvino_backbone",
    "openvino_available",
    "quantize_backbone",
    "quantized_model_dir",
    "require_openvino",
    "resolve_engine",
]

ENGINES = ("auto", "keras", "openvino")
INSTALL_HINT = "pip install 'tlsk[openvino]'  (or: pip install openvino nncf)"
# NNCF's options for every quantization tlsk makes; in the fingerprint.
QUANTIZATION_OPTIONS = {"preset": "performance", "fast_bias_correction": True}
# NNCF's own advice for transformers (KerasHub's networks): their softmax,
# normalisations and GELUs stay in floating point, where int8 would cost
# accuracy for little speed. CNNs keep the options above, and so their
# fingerprints.
TRANSFORMER_OPTIONS = {"model_type": "transformer"}
_BF16_HINT = {"float32": "f32", "bfloat16": "bf16"}


class QuantizedModelMissingError(FileNotFoundError):
    """A fitted int8 extractor's quantized model is not in this machine's store."""


def openvino_available():
    """True when the ``openvino`` and ``nncf`` packages can be imported."""
    try:
        require_openvino(nncf=True)
    except ImportError:
        return False
    return True


def require_openvino(nncf=False):
    """Import and return ``openvino`` (and check ``nncf``); else say what to install."""
    try:
        import openvino
    except ImportError as err:
        raise ImportError(
            "engine='openvino' needs the optional OpenVINO runtime, which is not "
            f"installed: {INSTALL_HINT}"
        ) from err
    if nncf:
        try:
            import nncf as _nncf  # noqa: F401
        except ImportError as err:
            raise ImportError(
                "precision='int8' needs NNCF (OpenVINO's quantization tool), which "
                f"is not installed: {INSTALL_HINT}"
            ) from err
    return openvino


def versions(int8):
    """The versions that decide the vectors: ``{"openvino": ..., "nncf": ...}``."""
    openvino = require_openvino(nncf=int8)
    found = {"openvino": openvino.__version__}
    if int8:
        import nncf

        found["nncf"] = nncf.__version__
    return found


def quantized_model_dir():
    """Where quantized models are kept: ``<KERAS_HOME>/tlsk-openvino``."""
    return os.path.join(os.path.dirname(keras_cache_dir()), "tlsk-openvino")


class OpenVINOBackbone:
    """A backbone compiled by OpenVINO, with the interface of ``Backbone``.

    ``fingerprint`` is the Keras backbone's, with ``"engine": "openvino"``,
    the OpenVINO version, the precision computed in and, for int8, the
    quantization's own fingerprint.
    """

    def __init__(self, compiled, fingerprint, output_dim):
        self.fingerprint = fingerprint
        self.output_dim = output_dim
        self._compiled = compiled
        # One infer request at a time; OpenVINO uses every core within it.
        self._lock = threading.Lock()

    def predict(self, batch):
        """Return float32 features ``(n, output_dim)`` of a preprocessed batch."""
        with self._lock:
            out = self._compiled(np.asarray(batch, dtype=np.float32))[0]
        return np.array(out, dtype=np.float32)

    def __reduce__(self):
        raise TypeError(
            "a tlsk OpenVINOBackbone holds a compiled model and is not pickled; "
            "keep the extractor and let it build the engine again"
        )


_COMPILED = Memo("compiled OpenVINO models", max_entries=8)


def get_openvino_backbone(keras_backbone, precision, quantization=None):
    """The OpenVINO engine for a float32 Keras backbone, compiled on first use.

    ``precision`` is ``"float32"``, ``"bfloat16"`` or ``"int8"``; for int8,
    ``quantization`` is the fingerprint returned by
    :func:`quantize_backbone`, whose model is read from
    :func:`quantized_model_dir`.
    """
    fingerprint = openvino_fingerprint(keras_backbone, precision, quantization)

    def build():
        if precision == "int8":
            model = _read_quantized(quantization)
        else:
            model = convert(keras_backbone)
        return OpenVINOBackbone(
            _compile(model, precision), fingerprint, keras_backbone.output_dim
        )

    return _COMPILED.get_or_build(json.dumps(fingerprint, sort_keys=True), build)


def openvino_fingerprint(keras_backbone, precision, quantization=None):
    """What decides the engine's vectors: the Keras fingerprint, engine, versions."""
    fingerprint = {
        **keras_backbone.fingerprint,
        "precision": precision,
        "engine": "openvino",
        **versions(int8=precision == "int8"),
    }
    if precision == "int8":
        fingerprint["quantization_sha256"] = quantization["quantization_sha256"]
    return fingerprint


def convert(keras_backbone):
    """The float32 Keras model of ``keras_backbone`` as an ``openvino.Model``."""
    openvino = require_openvino()
    import tensorflow as tf

    model = keras_backbone.model
    size = int(model.input_shape[1])
    signature = [tf.TensorSpec((None, size, size, 3), tf.float32)]
    function = tf.function(
        lambda x: model(x, training=False), input_signature=signature
    )
    return openvino.convert_model(function.get_concrete_function())


def _compile(model, precision):
    openvino = require_openvino()
    # int8 layers are int8 whatever the hint; the rest computes in bfloat16
    # where the CPU does it natively.
    hint = _BF16_HINT["bfloat16" if precision == "int8" else precision]
    if precision == "int8" and not _native_bfloat16():
        hint = "f32"
    # Unpinned: the decode threads share the cores with inference, and pinned
    # OpenVINO threads starve them (benchmarks/README.md, "Engines").
    config = {"INFERENCE_PRECISION_HINT": hint, "ENABLE_CPU_PINNING": False}
    return openvino.Core().compile_model(model, "CPU", config)


def _native_bfloat16():
    from tlsk.networks.precision import native_bfloat16

    return native_bfloat16()


def quantize_backbone(keras_backbone, calibration, calibration_keys, verbose=False):
    """Quantize ``keras_backbone`` to int8 with NNCF; return its fingerprint.

    ``calibration`` is a float32 array of preprocessed images ``(n, s, s, 3)``
    and ``calibration_keys`` their content keys (hex), in that order. The
    quantized model is stored under the fingerprint's SHA-256 in
    :func:`quantized_model_dir` (unless already there) for this and any
    later process. NNCF's progress bars are shown only when ``verbose``.
    """
    quantization = quantization_fingerprint(keras_backbone, calibration_keys)
    path = _quantized_path(quantization)
    if not os.path.isfile(path):
        import nncf

        model = convert(keras_backbone)
        items = [calibration[i : i + 1] for i in range(len(calibration))]
        # NNCF draws its bars with rich on sys.stdout and has no switch for them.
        quiet = (
            contextlib.nullcontext()
            if verbose
            else contextlib.redirect_stdout(io.StringIO())
        )
        extra = {}
        if quantization.get("model_type") == "transformer":
            extra["model_type"] = nncf.ModelType.TRANSFORMER
        with quiet:
            quantized = nncf.quantize(
                model,
                nncf.Dataset(items),
                subset_size=len(items),
                preset=nncf.QuantizationPreset(QUANTIZATION_OPTIONS["preset"]),
                fast_bias_correction=QUANTIZATION_OPTIONS["fast_bias_correction"],
                **extra,
            )
        _write_quantized(quantized, path)
    return quantization


def quantization_fingerprint(keras_backbone, calibration_keys):
    """What decides a quantized model: network, calibration set, tools, options."""
    digest = hashlib.sha256("\n".join(calibration_keys).encode()).hexdigest()
    quantization = {
        **keras_backbone.fingerprint,
        "calibration_sha256": digest,
        "n_calibration": len(calibration_keys),
        **versions(int8=True),
        **QUANTIZATION_OPTIONS,
        **(TRANSFORMER_OPTIONS if _is_transformer(keras_backbone) else {}),
    }
    canonical = json.dumps(quantization, sort_keys=True, separators=(",", ":"))
    quantization["quantization_sha256"] = hashlib.sha256(canonical.encode()).hexdigest()
    return quantization


def _is_transformer(keras_backbone):
    """Whether the backbone is a KerasHub transformer (it has a preset converter)."""
    return getattr(keras_backbone, "converter", None) is not None


def _quantized_path(quantization):
    name = f"int8-{quantization['quantization_sha256'][:32]}.ovpack"
    return os.path.join(quantized_model_dir(), name)


def _write_quantized(model, path):
    """One file: 8 bytes of XML length, the IR's XML, then its weights."""
    openvino = require_openvino()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        xml = os.path.join(folder, "model.xml")
        openvino.save_model(model, xml, compress_to_fp16=False)
        with open(xml, "rb") as file:
            xml_bytes = file.read()
        with open(os.path.join(folder, "model.bin"), "rb") as file:
            bin_bytes = file.read()

    def write(file):
        file.write(len(xml_bytes).to_bytes(8, "little"))
        file.write(xml_bytes)
        file.write(bin_bytes)

    write_atomically(path, write)


def _read_quantized(quantization):
    openvino = require_openvino()
    path = _quantized_path(quantization)
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        raise QuantizedModelMissingError(
            f"the int8 model this extractor was fitted with is not in "
            f"{quantized_model_dir()!r} (expected {os.path.basename(path)!r}); "
            "fit the extractor again on its calibration images, or copy that "
            "file from the machine where it was fitted"
        ) from None
    length = int.from_bytes(data[:8], "little")
    xml = data[8 : 8 + length].decode()
    weights = np.frombuffer(data, dtype=np.uint8, offset=8 + length).copy()
    return openvino.Core().read_model(xml, openvino.Tensor(weights))


def resolve_engine(engine, precision):
    """The engine that runs ``precision`` (resolved): ``"keras"`` or ``"openvino"``.

    ``"auto"`` picks OpenVINO for int8, which only it runs, and Keras for
    float32 and bfloat16: there OpenVINO is no faster than Keras beyond the
    noise (benchmarks/README.md, "Engines"), and Keras's vectors are the ones
    existing caches hold.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}; received {engine!r}")
    if precision == "int8":
        if engine == "keras":
            raise ValueError(
                "precision='int8' is computed by the OpenVINO engine: use "
                "engine='openvino' or 'auto'; received engine='keras'"
            )
        require_openvino(nncf=True)
        return "openvino"
    if engine == "openvino":
        require_openvino()
        return "openvino"
    return "keras"
