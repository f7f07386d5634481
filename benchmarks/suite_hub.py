"""KerasHub backbones: tlsk from JPEG files against KerasHub's own ``predict``.

For each KerasHub network of the registry (DINOv2, DINOv3, SigLIP 2, CLIP,
ViT), at its native input size unless ``hub_size`` says otherwise:

- ``kerashub predict``: the KerasHub backbone class built from the registry's
  architecture (``keras_hub.models.DINOV2Backbone(...)`` and so on, its
  vision tower for CLIP and SigLIP), ``predict`` / ``predict_on_batch`` on
  images already decoded, resized and scaled as the preset's image converter
  does, in memory: the model-only bound. bfloat16 the KerasHub way
  (``dtype="bfloat16"`` at construction, mixed: float32 variables).
- ``tlsk from files``: ``ImageFeatureExtractor(backbone=name).transform(paths)``
  at the network's own pooling, which also reads, decodes, resizes and
  scales every JPEG file, in float32 and ``auto``;
- ``tlsk int8``: the same through OpenVINO, quantized by NNCF on the images
  (transformer mode), and the cosine of its vectors to float32's.

A fine-tuning table: ``KerasFineTuneClassifier`` on a KerasHub network
(``hub_finetune_backbone``, random weights) over photo crops of
``tlsk.images.sample_data``, unfreezing the last ``hub_finetune_blocks`` blocks
against LoRA adapters (``lora_rank``) on the same blocks, each in a process
of its own: seconds per fine-tuning epoch (the difference between a run of
three epochs and a run of one, halved, so that building and tracing do not
count), trainable parameters, peak resident memory (and its growth from
the process's start, after the imports and before the first fit), test
accuracy.

Both sides hold the same random weights (tlsk's seeded initialisation of the
registry architecture; pretrained presets cannot be downloaded on the
development machine): the same arithmetic as with the published weights.
Each run gets an untimed warm-up; then the runs of one network take turns for
``rounds`` rounds and each keeps its best.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
from _flops import model_gflops
from _suite import Section, cosine, seconds, write_photos

from tlsk import ImageFeatureExtractor, clear_caches
from tlsk.images.decode import read_image
from tlsk.networks.precision import resolve_precision
from tlsk.networks.registry import BACKBONES, HubSpec


def hub_names():
    return [name for name, spec in BACKBONES.items() if isinstance(spec, HubSpec)]


def run(settings, workdir):
    import keras

    auto = resolve_precision("auto")
    rounds, batch = settings["rounds"], settings["hub_batch"]
    section = Section(
        f"KerasHub backbones: tlsk from JPEG files vs KerasHub's predict on "
        f"decoded arrays, at each network's native size, batch {batch}, best of "
        f"{rounds} interleaved rounds (auto = {auto} here; random weights)",
        (
            "backbone",
            "size",
            "dim",
            "GFLOP/image",
            "precision",
            "images",
            "kerashub images/s",
            "tlsk images/s",
            "tlsk / kerashub",
            "cosine to float32",
        ),
    )
    photos = write_photos(os.path.join(workdir, "photos"), settings["hub_images"])
    for name in settings.get("hub_backbones") or hub_names():
        for row in _measure(name, photos, settings, auto):
            section.add(*row)
            precision, ratio, agreement = row[4], row[8], row[9]
            if precision.startswith("int8"):
                section.target(f"{name} int8 cosine to float32", agreement, ">=", 0.999)
            else:
                section.target(
                    f"{name} tlsk {precision} from files / kerashub predict",
                    ratio,
                    ">=",
                    0.95,
                )
        keras.backend.clear_session()
        clear_caches()
    section.notes.append(
        "kerashub: the backbone class of keras_hub 0.32 with the registry's "
        "architecture; its inputs converted beforehand (not timed), as the "
        "preset's image converter does"
    )
    section.notes.append(
        "int8: tlsk's OpenVINO engine, NNCF post-training quantization "
        "(transformer mode) calibrated on the images measured (32 at least); its "
        "ratio is to KerasHub's float32 predict; cosine: mean over the images, to "
        "tlsk's float32 vectors"
    )
    if settings.get("hub_finetune_backbone"):
        return [section, _finetune_section(settings, workdir)]
    return section


def _kerashub_inputs(network, arrays):
    """What KerasHub's own backbone (or vision tower) takes, and that model."""
    family, backbone = network.family, network.backbone
    if family == "dinov2":
        return backbone, {"images": arrays}
    if family == "dinov3":
        return backbone, {"pixel_values": arrays}
    if family == "vit":
        return backbone, arrays
    return backbone.vision_encoder, {"images": arrays}


def _measure(name, photos, settings, auto):
    """The rows of one network: KerasHub and tlsk in float32 and auto, tlsk int8."""
    from tlsk.networks.hub import hub_network, pooled, vision_model

    spec = BACKBONES[name]
    try:  # hub_size where the network takes it (not CLIP, SigLIP, ViT)
        size = spec.input_size(settings.get("hub_size"))
    except ValueError:
        size = spec.native_size
    batch, rounds = settings["hub_batch"], settings["rounds"]
    float32 = hub_network(spec, size)
    tower = vision_model(float32)
    import keras

    head = keras.Model(
        tower.input,
        pooled(tower.output, spec.default_pooling, spec.prefix_tokens),
    )
    gflops = model_gflops(head, size)
    del head, tower
    # A few seconds a run at ~150 GFLOP/s, in whole batches.
    n = int(np.clip(settings["hub_seconds"] * 150 / gflops, batch, len(photos)))
    n -= n % batch
    paths = photos[:n]
    converter = spec.converter
    decoded = [read_image(p) for p in paths]
    arrays = converter.apply(np.stack([converter.resize(d, size) for d in decoded]))
    # hub_float32_only: the largest networks held four times over (KerasHub's
    # and tlsk's, float32 and bfloat16) do not fit in 24 GiB.
    only_float32 = auto == "float32" or name in settings.get("hub_float32_only", ())
    precisions = ("float32",) if only_float32 else ("float32", auto)
    runs, vectors = {}, {}
    for precision in precisions:
        network = float32 if precision == "float32" else hub_network(spec, size, auto)
        model, inputs = _kerashub_inputs(network, arrays)
        extractor = ImageFeatureExtractor(
            backbone=name, weights=None, batch_size=batch, precision=precision
        ).fit()
        runs["kerashub predict", precision] = lambda m=model, x=inputs: m.predict(
            x, batch_size=batch, verbose=0
        )
        runs["kerashub predict_on_batch", precision] = lambda m=model, x=inputs: [
            m.predict_on_batch(_rows(x, i, i + batch)) for i in range(0, n, batch)
        ]
        runs["tlsk", precision] = lambda e=extractor: e.transform(paths)
        model.predict(_rows(inputs, 0, batch), batch_size=batch, verbose=0)
        model.predict_on_batch(_rows(inputs, 0, batch))
        vectors[precision] = extractor.transform(paths)  # also the warm-up
    # NNCF calibrates on 32 images or more: the measured ones and the next.
    int8 = ImageFeatureExtractor(
        backbone=name, weights=None, batch_size=batch, precision="int8"
    ).fit(photos[: max(n, 32)])
    runs["tlsk", "int8"] = lambda: int8.transform(paths)
    vectors["int8"] = int8.transform(paths)
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for key, function in runs.items():
            best[key] = min(best[key], seconds(function)[0])
    rows = []
    for precision in (*precisions, "int8"):
        reference = "float32" if precision == "int8" else precision
        kerashub_rate = n / min(
            best["kerashub predict", reference],
            best["kerashub predict_on_batch", reference],
        )
        tlsk_rate = n / best["tlsk", precision]
        shown = {
            "int8": "int8 (OpenVINO)",
            auto: f"auto ({auto})" if auto != "float32" else "float32",
        }.get(precision, precision)
        rows.append(
            (
                name,
                size,
                spec.pooling_dim(spec.default_pooling),
                round(gflops, 2),
                shown,
                n,
                round(kerashub_rate, 2),
                round(tlsk_rate, 2),
                round(tlsk_rate / kerashub_rate, 3),
                round(float(cosine(vectors[precision], vectors["float32"]).mean()), 5),
            )
        )
    return rows


def _rows(inputs, start, stop):
    if isinstance(inputs, dict):
        return {key: value[start:stop] for key, value in inputs.items()}
    return inputs[start:stop]


# -- fine-tuning: LoRA against unfreezing -------------------------------------


def _finetune_section(settings, workdir):
    name = settings["hub_finetune_backbone"]
    blocks = settings["hub_finetune_blocks"]
    section = Section(
        f"Fine-tuning {name} (random weights, {settings['hub_finetune_size']} px): "
        f"the last {blocks} blocks unfrozen vs LoRA adapters on the same blocks, "
        "each in a new process",
        (
            "how",
            "trainable parameters",
            "s / fine-tuning epoch",
            "peak RSS MiB",
            "peak above start MiB",
            "test accuracy",
        ),
    )
    from tlsk.images.sample_data import write_photo_folder

    folder = os.path.join(workdir, "finetune_photos")
    write_photo_folder(folder, per_class=settings["hub_finetune_photos"], size=96)
    rows = {}
    for how, lora in (
        ("unfreeze", None),
        (f"LoRA rank {settings['hub_lora_rank']}", settings["hub_lora_rank"]),
    ):
        job = {
            "backbone": name,
            "blocks": blocks,
            "lora_rank": lora,
            "size": settings["hub_finetune_size"],
            "folder": folder,
            "batch": settings["hub_batch"] * 2,
        }
        out = subprocess.run(
            [sys.executable, os.path.abspath(__file__), json.dumps(job)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows[how] = json.loads(out.stdout.strip().splitlines()[-1])
        row = rows[how]
        section.add(
            how,
            row["trainable"],
            round(row["epoch_seconds"], 2),
            round(row["peak_mib"]),
            round(row["peak_mib"] - row["start_mib"]),
            round(row["accuracy"], 3),
        )
    unfreeze, lora = rows.values()
    ratios = {key: lora[key] / unfreeze[key] for key in lora}
    ratios["above"] = (lora["peak_mib"] - lora["start_mib"]) / max(
        unfreeze["peak_mib"] - unfreeze["start_mib"], 1
    )
    section.notes.append(
        f"LoRA trains {ratios['trainable']:.3f}x the parameters of unfreezing, "
        f"in {ratios['epoch_seconds']:.2f}x the time per epoch and "
        f"{ratios['above']:.2f}x the memory above the process's start"
    )
    section.notes.append(
        "accuracy of random-weight networks means little: what pretrained weights "
        "would reach cannot be measured on a machine that cannot download them"
    )
    return section


def _finetune_child(job):
    """Train three times (1 untimed, 1 and 3 fine-tuning epochs); print JSON."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    from tlsk import KerasFineTuneClassifier, load_image_folder

    paths, labels = load_image_folder(job["folder"])
    train, test, y_train, y_test = train_test_split(
        paths, labels, test_size=0.4, stratify=labels, random_state=0
    )
    elapsed = {}
    start_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # A first run of one epoch pays the process's one-time costs (TensorFlow's
    # start, the first tracing); the two timed ones do not.
    for epochs in (0, 1, 3):
        model = KerasFineTuneClassifier(
            backbone=job["backbone"],
            weights=None,
            input_size=job["size"],
            trainable_blocks=job["blocks"],
            lora_rank=job["lora_rank"],
            head_epochs=1,
            finetune_epochs=max(epochs, 1),
            early_stopping=False,
            validation_fraction=0,
            augmentation=False,
            batch_size=job["batch"],
            random_state=0,
        )
        start = time.perf_counter()
        model.fit(train, y_train)
        elapsed[epochs] = time.perf_counter() - start
    trainable = int(sum(np.prod(v.shape) for v in model.model_.trainable_weights))
    print(
        json.dumps(
            {
                "trainable": trainable,
                "epoch_seconds": (elapsed[3] - elapsed[1]) / 2,
                "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "start_mib": start_mib,
                "accuracy": float(model.score(test, y_test)),
            }
        )
    )


if __name__ == "__main__":
    _finetune_child(json.loads(sys.argv[1]))
