"""A process that applies or undoes fixes and is killed part-way, for
tests/test_fixes.py.

Usage::

    python _fixes_worker.py

It prints ``ready`` once tlsk is imported, then reads one JSON command a
line from stdin::

    {"op": "apply", "root": ROOT, "csv": CSV, "quarantine": null,
     "kill_at": K, "tear": false, "copy": false}
    {"op": "undo", "root": ROOT, "kill_at": K}

and runs each in a forked child. Every change the fixes make to the file
system is one call of a function of :mod:`tlsk.images.fixes.system_calls`
(a journal line, a folder made or removed, a link, a rename, an unlink, a
copy); before call ``K`` (counted from 0) the child kills itself with
SIGKILL. With ``tear``, a journal line due at ``K`` is first half written
(as a kill in the middle of ``write`` leaves it). With ``copy``, every move
is planned as one across file systems (copy, fsync, remove). For each
command the worker prints ``killed`` or ``finished`` (the child did
everything before call K), or ``failed`` and the child's traceback on
stderr.
"""

import json
import os
import signal
import sys
import traceback

from tlsk.images import fixes
from tlsk.images.fixes import plan, system_calls

STEPS = ("write_line", "truncate", "mkdir", "rmdir", "link", "rename", "unlink")
STEPS += ("copy",)


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def _stopping(command):
    count = {"calls": 0}
    kill_at = command["kill_at"]

    def wrap(name, function):
        def step(*args):
            if count["calls"] == kill_at:
                if name == "write_line" and command.get("tear"):
                    fd, data = args
                    os.write(fd, data[: max(1, len(data) // 2)])
                _die()
            count["calls"] += 1
            return function(*args)

        return step

    for name in STEPS:
        setattr(system_calls, name, wrap(name, getattr(system_calls, name)))
    if command.get("copy"):
        plan.same_device = lambda a, b: False


def _child(command):
    _stopping(command)
    if command["op"] == "apply":
        found = fixes.read_fixes(
            command["csv"], command["root"], quarantine=command.get("quarantine")
        )
        fixes.apply_fixes(command["root"], found, quarantine=command.get("quarantine"))
    else:
        fixes.undo_fixes(command["root"])


def main():
    print("ready", flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                _child(command)
            except BaseException:
                traceback.print_exc()
                sys.stderr.flush()
                os._exit(3)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            print("killed", flush=True)
        elif os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            print("finished", flush=True)
        else:
            print("failed", flush=True)


if __name__ == "__main__":
    main()
