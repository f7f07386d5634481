"""Inspect, check and trim an HDF5 feature cache.

info     what the cache holds: its size, the parts not yet merged into the main
         file, and each namespace (one per extractor configuration) with its
         id, the fingerprint fields that define it, its entries and dimension.
verify   read every file of the cache in full (checksums, layout, duplicate
         keys, non-finite vectors); print the problems and exit with 1 if
         there are any, or print "ok".
prune    remove one namespace, named by its id or a unique prefix of at least
         8 hex characters (as 'tlsk cache info' shows them).

A missing or damaged cache file is one line on stderr and exit code 1.
"""

from __future__ import annotations

import dataclasses
import os

from tlsk.cli import CommandError
from tlsk.cli._common import print_json

HELP = "show, verify or prune an HDF5 feature cache"
EXAMPLE = """examples:
  tlsk cache info features.h5
  tlsk cache verify features.h5
  tlsk cache prune features.h5 3f2a9c1b7d0e
"""

ACTIONS = ("info", "verify", "prune")
_SHORT_ID = 12


def add_arguments(parser):
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("path", metavar="FILE.h5", help="the feature cache")
    parser.add_argument(
        "namespace",
        nargs="?",
        metavar="NS_ID",
        help="prune: the namespace id, or a unique prefix of at least 8 hex digits",
    )
    parser.add_argument("--json", action="store_true", help="output as JSON")
    # prune's namespace is checked in run(), reported as argparse reports usage.
    parser.set_defaults(cache_parser=parser)


def run(args):
    from tlsk.cache import FeatureCache

    if args.action == "prune" and args.namespace is None:
        args.cache_parser.error("prune needs the namespace to remove: NS_ID")
    if args.action != "prune" and args.namespace is not None:
        args.cache_parser.error(f"{args.action} takes no NS_ID")
    if not (os.path.exists(args.path) or os.path.isdir(args.path + ".parts")):
        raise CommandError(f"no feature cache at {args.path!r}")
    if os.path.isdir(args.path):
        raise CommandError(f"{args.path!r} is a folder, not a feature cache file")
    cache = FeatureCache(args.path)
    return {"info": _info, "verify": _verify, "prune": _prune}[args.action](args, cache)


def _info(args, cache):
    info = cache.info()
    if args.json:
        data = dataclasses.asdict(info)
        data["entries"] = sum(ns.entries for ns in info.namespaces)
        print_json(data)
        return 0
    entries = sum(ns.entries for ns in info.namespaces)
    print(
        f"{info.path}: {entries} entries in {len(info.namespaces)} namespace"
        f"{'' if len(info.namespaces) == 1 else 's'}, "
        f"{_human_size(info.size_bytes)}, {info.pending_parts} pending parts"
    )
    for ns in info.namespaces:
        print(f"\nnamespace {ns.id[:_SHORT_ID]}  ({ns.id})")
        print(f"  entries      {ns.entries}")
        print(f"  dim          {ns.dim}")
        print(f"  rows written {ns.rows_written}")
        for field, value in sorted(ns.fingerprint.items()):
            print(f"  {field + ':':<16} {value}")
    return 0


def _verify(args, cache):
    problems = cache.verify()
    if args.json:
        print_json({"path": cache.path, "ok": not problems, "problems": problems})
    elif problems:
        for problem in problems:
            print(problem)
    else:
        print("ok")
    if problems:
        raise CommandError(
            f"{len(problems)} problem{'s' if len(problems) > 1 else ''} in "
            f"feature cache {cache.path!r}"
        )
    return 0


def _prune(args, cache):
    prefix = args.namespace.lower()
    matches = [ns for ns in cache.info().namespaces if ns.id.startswith(prefix)]
    # prune() validates the prefix and refuses no match or several.
    removed = cache.prune(prefix)
    ns = matches[0]
    if args.json:
        print_json(
            {
                "path": cache.path,
                "removed_namespace": ns.id,
                "fingerprint": ns.fingerprint,
                "entries": removed,
            }
        )
    else:
        print(
            f"removed namespace {ns.id} ({removed} entries, dim {ns.dim}) from "
            f"{cache.path}"
        )
        fields = ", ".join(f"{k}={v}" for k, v in sorted(ns.fingerprint.items()))
        print(f"  fingerprint: {fields}")
    return 0


def _human_size(size):
    if size < 1000:
        return f"{size} bytes"
    for unit in ("KB", "MB", "GB"):
        size /= 1000
        if size < 1000 or unit == "GB":
            break
    return f"{size:.1f} {unit}"
