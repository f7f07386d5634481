"""The ``tlsk`` command: the transfer-learning recipe from a shell.

Each sub-command lives in its own module of this package and provides
``HELP`` (one line), ``EXAMPLE`` (shown under ``--help``), ``add_arguments(parser)``
and ``run(args) -> int``. :func:`main` wires them together and turns expected
failures into one line on stderr and exit code 1 (``--debug`` shows the
traceback); usage errors exit with 2, as argparse does.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from tlsk._version import __version__

__all__ = ["CommandError", "main"]

# name -> module; modules are imported when the parser is built, and import
# TensorFlow only when their command runs.
COMMANDS = {
    "check": "tlsk.cli.check",
    "split": "tlsk.cli.split",
    "extract": "tlsk.cli.extract",
    "train": "tlsk.cli.train",
    "evaluate": "tlsk.cli.evaluate",
    "predict": "tlsk.cli.predict",
    "cache": "tlsk.cli.cache",
    "backbones": "tlsk.cli.backbones",
    "demo": "tlsk.cli.demo",
}


class CommandError(Exception):
    """An expected failure: reported as one line on stderr, exit code 1."""


def _expected_errors():
    from tlsk.cache import CacheError
    from tlsk.images.decode import ImageError
    from tlsk.networks.backbone import WeightsMismatchError, WeightsUnavailableError

    return (
        CommandError,
        ImageError,
        CacheError,
        WeightsUnavailableError,
        WeightsMismatchError,
        OSError,
        ValueError,
        ImportError,  # an optional extra (matplotlib) that is not installed
    )


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tlsk",
        description="Transfer learning with pretrained Keras networks, from a shell.",
        epilog="Run 'tlsk COMMAND --help' for a command's options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"tlsk {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = commands.add_parser(
            name,
            help=module.HELP,
            description=module.__doc__,
            epilog=module.EXAMPLE,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument(
            "--debug", action="store_true", help="show tracebacks of failures"
        )
        sub.add_argument(
            "-q", "--quiet", action="store_true", help="no progress bars or notes"
        )
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv=None):
    """Run the ``tlsk`` command with ``argv``; return its exit code."""
    # TensorFlow's C++ start-up chatter would bury the one-line messages on
    # stderr; the user's own setting wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except _expected_errors() as err:
        if args.debug:
            raise
        from tlsk.cli._output import in_cli_words, terminal_text

        message = terminal_text(in_cli_words(err))
        print(f"tlsk {args.command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tlsk {args.command}: interrupted", file=sys.stderr)
        return 130
