"""Measure every registered backbone's cost and feature lengths; check the registry.

For each network of ``tlsk.backbones``: its GFLOP per image without the top
at its native size (TensorFlow's profiler, see ``_flops.py``), the channels
at each cut point, and its parameter count, beside what the registry entry
records. Exits with 1 when a recorded figure is off by more than 1 %, so that
the registry's "measured, not guessed" figures stay measured. Usage::

    python benchmarks/backbone_costs.py            # all of them, ~1 minute
    python benchmarks/backbone_costs.py resnet50   # some
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from _flops import model_gflops  # noqa: E402

from tlsk.backbones import BACKBONES, get_spec  # noqa: E402


def measure(name):
    """``(gflops, dims, parameters)`` of a backbone as Keras builds it."""
    spec = get_spec(name)
    model = spec.build(input_size=spec.native_size)
    dims = [
        int(model.get_layer(layer).output.shape[-1]) for layer in spec.cut_points[:-1]
    ]
    dims.append(int(model.output.shape[-1]))
    return model_gflops(model, spec.native_size), tuple(dims), model.count_params()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(BACKBONES), metavar="NAME")
    args = parser.parse_args(argv)
    print(
        f"{'backbone':<20}{'size':>6}{'GFLOP':>9}{'recorded':>10}{'params':>12}  dims"
    )
    wrong = []
    for name in args.names:
        spec = get_spec(name)
        gflops, dims, parameters = measure(name)
        ok = abs(gflops - spec.gflops) <= 0.01 * spec.gflops and dims == spec.dims
        if not ok:
            wrong.append(name)
        print(
            f"{name:<20}{spec.native_size:>6}{gflops:>9.3f}{spec.gflops:>10.3f}"
            f"{parameters:>12,}  {list(dims)}{'' if ok else '  <- registry differs'}",
            flush=True,
        )
    if wrong:
        print(f"the registry differs for: {', '.join(wrong)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
