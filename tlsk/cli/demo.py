"""tlsk demo: (being written in this session)."""

HELP = "(being written)"
EXAMPLE = ""


def add_arguments(parser):
    pass


def run(args):
    from tlsk.cli import CommandError

    raise CommandError("tlsk demo is not written yet")
