"""tlsk's benchmark suite: every figure measured beside its alternative, in one run.

Writes ``results.md`` (tables, targets met or not) and ``results.json`` to
``--out`` and prints the Markdown. Sections:

- extraction: tlsk from JPEG files (float32, auto, bfloat16) vs plain Keras on
  decoded arrays (the model-only bound), ``image_dataset_from_directory`` +
  ``predict``, and the one-image-at-a-time ``load_img`` loop; achieved GFLOP/s
  beside the matrix-multiply peak;
- accuracy: float32 vs bfloat16 features on the same classification task;
- cache: cold vs warm transforms; GridSearchCV with the tlsk cache vs
  ``Pipeline(memory=joblib.Memory)`` vs no cache;
- memory: peak RSS of extracting N vs 4N images;
- finetune: one epoch through tlsk vs plain Keras ``fit``;
- labels: 5% of the labels flipped on purpose; precision of the top-k
  suspects of tlsk's confident learning vs in-sample top losses, out-of-fold
  loss and a random pick (photo crops and digits);
- scratch (about 3 minutes): the from-scratch baseline, ``SmallCNNClassifier``'s
  defaults vs the classic small Keras convnet of the tutorials, on the same
  photo crops (test accuracy over seeds, and the ratio);
- report (only when asked for: about 5 minutes, needs Chromium): the
  evaluation report of 10,000 images, capped galleries vs every image shown:
  time to write, size, Chromium load time;
- backbones (only when asked for: about 15 minutes): every registered network
  from JPEG files at its native size vs Keras ``predict`` on decoded arrays,
  float32 and auto;
- hub (only when asked for: about 15 minutes): every KerasHub network
  (DINOv2, DINOv3, SigLIP 2, CLIP, ViT) from JPEG files at its native size
  vs KerasHub's own ``predict`` on decoded arrays, float32, auto and
  OpenVINO int8 (its cosine to float32); a fine-tuning row, LoRA against
  unfreezing the same blocks;
- tta (only when asked for: about 5 minutes): test-time augmentation, none
  vs flip vs ten_crop: accuracy of VGG16 features + logistic regression and
  of a small CNN (photo crops, digits), cold and warm transform times and
  their ratio to no TTA;
- finetune-tools (only when asked for): what each fine-tuning tool buys
  (schedules, discriminative rates, gradual unfreezing, "auto" rates, warm
  start, embeddings) in accuracy and time against the same fine-tuning
  without it, on photo crops;
- model-files (only when asked for: about 2 minutes): joblib vs skops, save
  and load time and file size of a bottleneck pipeline and a fine-tuned
  VGG16;
- cache-scaling (only when asked for: about 20 minutes, 10 GB of disk):
  caches of 10,000 to 1,000,000 vectors, each size vs the smallest: adding
  32 vectors, a cold 1,000-key lookup in a new process, filling by small
  appends vs one bulk fill.
- engines (only when asked for: about 10 minutes): Keras float32 and
  mixed_bfloat16 vs OpenVINO float32, bf16 and int8 (NNCF), on decoded
  arrays and from JPEG files through tlsk: images/s, GFLOP/s, cosine to
  Keras float32, accuracy on digits and on photo crops.

VGG16 uses ImageNet weights when Keras's cache has them, else a seeded random
initialisation (the same cost). Usage::

    python benchmarks/run.py                  # about 16 minutes on 2 cores
    python benchmarks/run.py --quick          # smaller images and fewer of them
    python benchmarks/run.py --sections cache memory
    python benchmarks/run.py --sections backbones --out benchmarks/results/backbones
    python benchmarks/run.py --sections hub --out benchmarks/results/hub
    python benchmarks/run.py --sections tta --out benchmarks/results/tta
    python benchmarks/run.py --sections finetune-tools \
        --out benchmarks/results/finetune_tools
    python benchmarks/run.py --sections cache-scaling \
        --out benchmarks/results/cache_scaling
    python benchmarks/run.py --sections model-files \
        --out benchmarks/results/model_files
    python benchmarks/run.py --sections near-duplicates \
        --out benchmarks/results/near_duplicates
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import _suite  # noqa: E402
import suite_accuracy  # noqa: E402
import suite_backbones  # noqa: E402
import suite_cache  # noqa: E402
import suite_cache_scaling  # noqa: E402
import suite_engines  # noqa: E402
import suite_extraction  # noqa: E402
import suite_finetune  # noqa: E402
import suite_finetune_tools  # noqa: E402
import suite_hub  # noqa: E402
import suite_labels  # noqa: E402
import suite_memory  # noqa: E402
import suite_model_files  # noqa: E402
import suite_near_duplicates  # noqa: E402
import suite_report  # noqa: E402
import suite_scratch  # noqa: E402
import suite_tta  # noqa: E402

SECTIONS = {
    "extraction": suite_extraction,
    "accuracy": suite_accuracy,
    "cache": suite_cache,
    "memory": suite_memory,
    "finetune": suite_finetune,
    "finetune-tools": suite_finetune_tools,
    "labels": suite_labels,
    "backbones": suite_backbones,
    "hub": suite_hub,
    "cache-scaling": suite_cache_scaling,
    "report": suite_report,
    "scratch": suite_scratch,
    "tta": suite_tta,
    "model-files": suite_model_files,
    "engines": suite_engines,
    "near-duplicates": suite_near_duplicates,
}
# Long: run when named.
ASKED_FOR_ONLY = (
    "backbones",
    "hub",
    "cache-scaling",
    "report",
    "tta",
    "finetune-tools",
    "model-files",
    "engines",
    "near-duplicates",
)
DEFAULT_SECTIONS = [name for name in SECTIONS if name not in ASKED_FOR_ONLY]

FULL = {
    "size": 224,
    "batch": 32,
    "images": 32,
    "loop_images": 8,
    "rounds": 3,
    "train": 600,
    "test": 300,
    "digit_size": 64,
    "cache_images": 2000,
    "cache_size": 32,
    "grid_images": 300,
    "grid_size": 32,
    "memory_images": (1000, 4000),
    "memory_size": 32,
    "finetune_images": 64,
    "finetune_rounds": 2,
    "backbone_images": 192,
    "backbone_seconds": 3.0,
    "backbone_size": None,  # each network's native size
    "backbones": None,  # all of them: keras.applications' networks
    "hub_images": 96,
    "hub_batch": 4,
    "hub_seconds": 3.0,
    "hub_size": None,  # each network's native size
    "hub_backbones": None,  # all of them
    "hub_float32_only": ("siglip2_so400m_patch14_224",),
    "hub_finetune_backbone": "dinov2_small",
    "hub_finetune_size": 224,
    "hub_finetune_blocks": 2,
    "hub_finetune_photos": 20,  # per class, six classes, 40% for testing
    "hub_lora_rank": 4,
    "scaling_sizes": (10_000, 100_000, 1_000_000),
    "scaling_rounds": 3,
    "scaling_append": 100,
    "labels_photos": 100,  # per class, six classes
    "labels_digits": 1000,
    "labels_size": 64,
    "report_images": 10_000,
    "tta_photos": 50,  # per class, six classes, a quarter of them to train on
    "tta_file_size": 160,
    "tta_digits": 400,
    "tta_size": 96,
    "tta_cnn_size": 64,
    "tta_cnn_epochs": 20,
    "finetune_tools_photos": 40,  # per class, six classes, 40% for testing
    "finetune_tools_size": 64,
    "finetune_tools_epochs": 6,
    "finetune_tools_seeds": (0, 1, 2),
    "finetune_tools_cnn_epochs": 10,
    "model_files_images": 600,  # feature vectors of the SVM, six classes
    "model_files_size": 224,
    "model_files_rounds": 3,
    "engine_images": 96,  # three batches: decoding overlaps inference
    "engine_photos": 50,  # per class, six classes, half of them to train on
    "engine_photo_file_size": 96,
    "scratch_train": 210,  # photo crops, five classes
    "scratch_test": 150,
    "scratch_size": 64,
    "scratch_epochs": 10,
    "scratch_seeds": 6,
}
QUICK = {
    **FULL,
    "size": 112,
    "images": 32,
    "loop_images": 8,
    "train": 300,
    "test": 150,
    "digit_size": 48,
    "cache_images": 500,
    "grid_images": 150,
    "memory_images": (250, 1000),
    "finetune_images": 32,
    "scaling_sizes": (10_000, 100_000),
    "scaling_rounds": 2,
    "tta_photos": 30,
    "tta_digits": 200,
    "tta_size": 64,
    "tta_cnn_epochs": 10,
    "finetune_tools_photos": 25,
    "finetune_tools_seeds": (0,),
    "model_files_images": 300,
    "model_files_size": 112,
    "model_files_rounds": 2,
    "engine_images": 64,
    "engine_photos": 30,
    "scratch_seeds": 3,
}

# Checks that the suite runs (the test suite uses it); its figures mean nothing.
SMOKE = {
    **QUICK,
    "size": 32,
    "images": 8,
    "loop_images": 4,
    "rounds": 1,
    "train": 40,
    "test": 20,
    "digit_size": 32,
    "cache_images": 40,
    "grid_images": 50,
    "memory_images": (20, 40),
    "finetune_images": 8,
    "backbone_images": 8,
    "backbone_seconds": 0.01,
    "backbone_size": 32,
    "backbones": ["vgg16", "mobilenet_v3_large"],
    "hub_images": 32,  # what int8 calibration takes
    "hub_batch": 2,
    "hub_seconds": 0.01,
    "hub_size": 32,
    "hub_backbones": ["dinov3_small", "vit_base_patch16_224_in21k"],
    "hub_finetune_backbone": "dinov3_small",
    "hub_finetune_size": 32,
    "hub_finetune_photos": 5,
    "scaling_sizes": (1_000, 2_000),
    "scaling_rounds": 1,
    "labels_photos": 10,
    "labels_digits": 60,
    "labels_size": 32,
    "report_images": 60,
    "scratch_train": 50,  # the fewest a 10% stratified hold-out of 5 classes takes
    "scratch_test": 25,
    "scratch_size": 32,
    "scratch_epochs": 1,
    "scratch_seeds": 1,
    "tta_photos": 4,
    "tta_file_size": 48,
    "tta_digits": 40,
    "tta_size": 32,
    "tta_cnn_size": 32,
    "tta_cnn_epochs": 1,
    "finetune_tools_photos": 18,
    "finetune_tools_size": 32,
    "finetune_tools_epochs": 2,
    "finetune_tools_cnn_epochs": 2,
    "finetune_tools_seeds": (0,),
    "model_files_images": 24,
    "model_files_size": 32,
    "model_files_rounds": 1,
    "engine_images": 8,
    "engine_photos": 12,  # 36 to train on: int8 calibrates on at least 32
    "engine_photo_file_size": 48,
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller runs")
    size.add_argument(
        "--smoke", action="store_true", help="tiny runs that only check the suite"
    )
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=DEFAULT_SECTIONS,
        metavar="NAME",
        help=f"run only these: {', '.join(SECTIONS)} (default: all but "
        f"{' and '.join(ASKED_FOR_ONLY)})",
    )
    parser.add_argument(
        "--out",
        default=os.path.join(os.path.dirname(__file__), "results"),
        help="folder for results.md and results.json (default: benchmarks/results)",
    )
    args = parser.parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    chosen = {"smoke": SMOKE, "quick": QUICK, "full": FULL}[mode]
    settings = dict(chosen, weights=_suite.weights_available())

    started = time.perf_counter()
    sections = []
    with tempfile.TemporaryDirectory(prefix="tlsk-bench-") as workdir:
        for name in args.sections:
            section_start = time.perf_counter()
            print(f"[{name}] ...", file=sys.stderr, flush=True)
            # A section's run gives its table, or a list of tables.
            result = SECTIONS[name].run(settings, os.path.join(workdir, name))
            tables = result if isinstance(result, list) else [result]
            tables[-1].notes.append(
                f"section time {time.perf_counter() - section_start:.0f} s"
            )
            sections.extend(tables)
    report = {
        "date": datetime.date.today().isoformat(),
        "mode": mode,
        "machine": _suite.machine(),
        "settings": {k: v for k, v in settings.items()},
        "seconds": round(time.perf_counter() - started, 1),
        "sections": [section.as_dict() for section in sections],
    }
    os.makedirs(args.out, exist_ok=True)
    markdown = to_markdown(report)
    with open(os.path.join(args.out, "results.md"), "w") as file:
        file.write(markdown)
    with open(os.path.join(args.out, "results.json"), "w") as file:
        json.dump(report, file, indent=1)
        file.write("\n")
    print(markdown)


def to_markdown(report):
    m = report["machine"]
    lines = [
        f"# tlsk benchmarks, {report['date']} ({report['mode']} run, "
        f"{report['seconds']:.0f} s)",
        "",
        f"{m['cpu']}, {m['cpus']} CPUs, native bfloat16 flags: "
        f"{', '.join(m['bfloat16_cpu_flags']) or 'none'} (auto = "
        f"{m['auto_precision']}); Python {m['python']}, TensorFlow "
        f"{m['tensorflow']}, Keras {m['keras']}, scikit-learn {m['scikit-learn']}; "
        f"VGG16 weights: {report['settings']['weights'] or 'seeded random'}",
    ]
    targets = []
    for section in report["sections"]:
        lines += ["", f"## {section['title']}", ""]
        lines += _table(section["columns"], [row.values() for row in section["rows"]])
        lines += [""] + [f"- {note}" for note in section["notes"]]
        targets += section["targets"]
    lines += ["", "## Targets", ""]
    lines += _table(
        ("target", "measured", "wanted", "met"),
        [
            (
                t["target"],
                _number(t["value"]),
                f"{t['op']} {_number(t['limit'])}",
                _met(t),
            )
            for t in targets
        ],
    )
    return "\n".join(lines) + "\n"


def _met(target):
    if target["met"] is None:
        return f"n/a: {target['why_not_applicable']}"
    return "yes" if target["met"] else "**no**"


def _table(columns, rows):
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        out.append("| " + " | ".join(_number(v) for v in row) + " |")
    return out


def _number(value):
    if value is None:
        return ""
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.6g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


if __name__ == "__main__":
    main()
