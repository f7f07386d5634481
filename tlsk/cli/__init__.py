"""The ``tlsk`` command: the transfer-learning recipe from a shell.

Each sub-command lives in its own module of this package and provides
``HELP`` (one line), ``EXAMPLE`` (shown under ``--help``), ``add_arguments(parser)``
and ``run(args) -> int``. :func:`main` wires them together and turns expected
failures into one line on stderr and exit code 1 (``--debug`` shows the
traceback, and TensorFlow's log lines, hidden otherwise); usage errors exit
with 2, as argparse does.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import os
import re
import sys
import tempfile

from tlsk._version import __version__

__all__ = ["CommandError", "hide_tensorflow_start_up", "main"]

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


_DEBUG_HELP = "show tracebacks of failures, and TensorFlow's own log lines"


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tlsk",
        description="Transfer learning with pretrained Keras networks, from a shell.",
        epilog="Run 'tlsk COMMAND --help' for a command's options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"tlsk {__version__}")
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
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
        # Given before or after the command; the default is the main parser's.
        sub.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP
        )
        sub.add_argument(
            "-q", "--quiet", action="store_true", help="no progress bars or notes"
        )
        module.add_arguments(sub)
        sub.set_defaults(run=module.run, usage_error=sub.error)
    return parser


def main(argv=None):
    """Run the ``tlsk`` command with ``argv``; return its exit code."""
    args = build_parser().parse_args(argv)
    if not args.debug:
        hide_tensorflow_start_up()
    try:
        return int(args.run(args) or 0)
    except _expected_errors() as err:
        if args.debug:
            raise
        from tlsk.cli._output import in_cli_words, terminal_text

        message = terminal_text(in_cli_words(err, args))
        print(f"tlsk {args.command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tlsk {args.command}: interrupted", file=sys.stderr)
        return 130


# TensorFlow's C++ log lines (glog/absl form: severity, date, time, thread,
# file:line]) and the lines they wrap onto. Those written while its shared
# libraries load ignore TF_CPP_MIN_LOG_LEVEL, since absl is not initialised yet.
_TENSORFLOW_LINE = re.compile(
    rb"^(?:WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.-]+:\d+\]"
    rb"|To enable the following instructions: .* rebuild TensorFlow with)"
)


def hide_tensorflow_start_up():
    """Keep TensorFlow's start-up lines off stderr: it carries tlsk's own lines.

    The rule: its logging stays at the level the user set in
    ``TF_CPP_MIN_LOG_LEVEL`` (3, errors hidden too, when unset), and the lines
    it prints while loading are hidden unless that level shows INFO (0).
    ``--debug`` shows everything. ``TF_ENABLE_ONEDNN_OPTS`` is never touched:
    it changes the numbers.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if os.environ["TF_CPP_MIN_LOG_LEVEL"].strip() in ("", "0"):
        return
    if "tensorflow" not in sys.modules and not any(
        isinstance(finder, _QuietTensorFlowImport) for finder in sys.meta_path
    ):
        sys.meta_path.insert(0, _QuietTensorFlowImport())


class _QuietTensorFlowImport:
    """A finder that loads ``tensorflow`` with its start-up lines filtered out.

    It answers for that one name, once, with the spec the other finders give;
    only the loading runs with stderr's file descriptor caught.
    """

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader:
    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        try:
            with _tensorflow_lines_filtered():
                self.loader.exec_module(module)
        finally:
            module.__loader__ = self.loader
            if module.__spec__ is not None:
                module.__spec__.loader = self.loader


@contextlib.contextmanager
def _tensorflow_lines_filtered():
    """Catch what file descriptor 2 receives; pass on all but TensorFlow's lines."""
    try:
        stderr_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # stderr is not a file
        yield
        return
    sys.stderr.flush()
    saved = os.dup(stderr_fd)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), stderr_fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, stderr_fd)
            os.close(saved)
            caught.seek(0)
            kept = [
                line
                for line in caught.read().splitlines(keepends=True)
                if not _TENSORFLOW_LINE.match(line)
            ]
            if kept:
                os.write(stderr_fd, b"".join(kept))
