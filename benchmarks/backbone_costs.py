"""Measure every registered backbone's cost and feature lengths; check the registry.

For each network of ``tlsk.networks.registry``: its GFLOP per image without the top
at its native size (TensorFlow's profiler, see ``_flops.py``; for a KerasHub
network, its vision tower up to its default pooling, random weights), the
channels at each cut point, and its parameter count, beside what the
registry entry records. Exits with 1 when a recorded figure is off by more
than 1 %, so that the registry's "measured, not guessed" figures stay
measured. Usage::

    python benchmarks/backbone_costs.py            # all of them, ~1 minute
    python benchmarks/backbone_costs.py dinov2_small --size 224
    python benchmarks/backbone_costs.py resnet50   # some
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from _flops import model_gflops  # noqa: E402

from tlsk.networks.registry import BACKBONES, HubSpec, get_spec  # noqa: E402


def measure(name, size=None):
    """``(gflops, dims, parameters)`` of a backbone as Keras builds it.

    At ``size`` px, or the network's native size when None.
    """
    spec = get_spec(name)
    size = size or spec.native_size
    if isinstance(spec, HubSpec):
        return measure_hub(spec, size)
    model = spec.build(input_size=size)
    dims = [
        int(model.get_layer(layer).output.shape[-1]) for layer in spec.cut_points[:-1]
    ]
    dims.append(int(model.output.shape[-1]))
    return model_gflops(model, size), tuple(dims), model.count_params()


def measure_hub(spec, size):
    """The same for a KerasHub network: its vision tower up to its default pooling.

    Random weights (no download); the dims are those of the default pooling
    at each block, the parameters those of the whole network.
    """
    import keras

    from tlsk.networks.hub import hub_network, pooled, vision_model

    network = hub_network(spec, size)
    tower = vision_model(network)
    model = keras.Model(
        tower.input, pooled(tower.output, spec.default_pooling, spec.prefix_tokens)
    )
    gflops = model_gflops(model, size)
    width = int(model.output.shape[-1])
    dims = (width,) * spec.n_blocks
    return gflops, dims, network.backbone.count_params()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(BACKBONES), metavar="NAME")
    parser.add_argument(
        "--size",
        type=int,
        metavar="PX",
        help="measure at this input size instead (the registry is checked at "
        "the native size only)",
    )
    args = parser.parse_args(argv)
    print(
        f"{'backbone':<20}{'size':>6}{'GFLOP':>9}{'recorded':>10}{'params':>12}  dims"
    )
    wrong = []
    for name in args.names:
        spec = get_spec(name)
        size = args.size or spec.native_size
        gflops, dims, parameters = measure(name, size)
        expected = (
            tuple(spec.pooling_dim(spec.default_pooling) for _ in spec.dims)
            if isinstance(spec, HubSpec)
            else spec.dims
        )
        ok = dims == expected and (
            size != spec.native_size or abs(gflops - spec.gflops) <= 0.01 * spec.gflops
        )
        if not ok:
            wrong.append(name)
        print(
            f"{name:<20}{size:>6}{gflops:>9.3f}{spec.gflops:>10.3f}"
            f"{parameters:>12,}  {list(dims)}{'' if ok else '  <- registry differs'}",
            flush=True,
        )
    if wrong:
        print(f"the registry differs for: {', '.join(wrong)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
