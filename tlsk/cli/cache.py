"""Inspect, check and trim an HDF5 feature cache.

info     what the cache holds: its format version, size on disk, sorted runs
         and the memory its lookup index takes; the memo of file keys; and
         each namespace (one per extractor configuration) with its id, the
         fingerprint fields that define it, its entries, dimension and runs.
verify   read every file of the cache in full (checksums, layout, duplicate
         keys, non-finite vectors); print the problems and exit with 1 if
         there are any, or print "ok".
prune    remove one namespace, named by its id or a unique prefix of at least
         8 hex characters (as 'tlsk cache info' shows them).
compact  merge each namespace's runs into one now, instead of in the background
         as they pile up (a cache written by tlsk before format 2 is migrated).

A missing or damaged cache file, or a file that is not a tlsk feature cache
(never opened if it is not a regular file), is one line on stderr and exit
code 1.
"""

from __future__ import annotations

import dataclasses
import os

from tlsk.cli import CommandError
from tlsk.cli._options import SHARED_CACHE_HELP, shared_cache
from tlsk.cli._output import counted, print_json

HELP = "show, verify, prune or compact an HDF5 feature cache"
EXAMPLE = """examples:
  tlsk cache info                       # the cache every command shares
  tlsk cache info features.h5
  tlsk cache verify features.h5
  tlsk cache prune features.h5 3f2a9c1b7d0e
  tlsk cache compact features.h5
"""

ACTIONS = ("info", "verify", "prune", "compact")
_SHORT_ID = 12


def add_arguments(parser):
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument(
        "path",
        nargs="?",
        metavar="FILE.h5",
        help="the feature cache (default: " + SHARED_CACHE_HELP + ")",
    )
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

    given = args.path
    if args.action == "prune" and args.namespace is None and given:
        # 'prune NS_ID' alone prunes the shared cache; a FILE.h5 alone lacks NS_ID.
        if not (given.endswith(".h5") or os.path.lexists(given)):
            args.path, args.namespace = None, given
    if args.action == "prune" and args.namespace is None:
        args.cache_parser.error("prune needs the namespace to remove: NS_ID")
    if args.path is None:
        args.path = shared_cache()
    if args.action != "prune" and args.namespace is not None:
        args.cache_parser.error(f"{args.action} takes no NS_ID")
    # lexists: a link (even dangling) is refused by the cache, not "missing".
    if not (os.path.lexists(args.path) or os.path.isdir(args.path + ".parts")):
        raise CommandError(f"no feature cache at {args.path!r}")
    if os.path.isdir(args.path):
        raise CommandError(f"{args.path!r} is a folder, not a feature cache file")
    cache = FeatureCache(args.path)
    actions = {"info": _info, "verify": _verify, "prune": _prune, "compact": _compact}
    return actions[args.action](args, cache)


def _info(args, cache):
    info = cache.info()
    if args.json:
        data = dataclasses.asdict(info)
        data["entries"] = sum(ns.entries for ns in info.namespaces)
        print_json(data)
        return 0
    entries = sum(ns.entries for ns in info.namespaces)
    print(
        f"{info.path}: {counted(entries, 'entry', 'entries')} in "
        f"{counted(len(info.namespaces), 'namespace')}, "
        f"{_human_size(info.size_bytes)}, format {info.format_version}"
    )
    print(
        f"  {counted(info.runs, 'sorted run')}, lookup index "
        f"{_human_size(info.index_bytes)} in memory"
    )
    if info.pending_parts:
        parts = info.pending_parts
        print(
            f"  {counted(parts, 'format-1 part')} "
            "(migrated when the cache is next used)"
        )
    memo = info.file_keys
    print(f"  file-key memo: {counted(memo.entries if memo else 0, 'file')}")
    for ns in info.namespaces:
        print(f"\nnamespace {ns.id[:_SHORT_ID]}  ({ns.id})")
        print(f"  entries      {ns.entries}")
        print(f"  dim          {ns.dim}")
        print(f"  rows written {ns.rows_written}")
        print(f"  runs         {ns.runs}")
        print(f"  index        {_human_size(ns.index_bytes)}")
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
            f"removed namespace {ns.id} ({counted(removed, 'entry', 'entries')}, "
            f"dim {ns.dim}) from "
            f"{cache.path}"
        )
        fields = ", ".join(f"{k}={v}" for k, v in sorted(ns.fingerprint.items()))
        print(f"  fingerprint: {fields}")
    return 0


def _compact(args, cache):
    before = cache.info()
    cache.compact()
    after = cache.info()
    if args.json:
        print_json(
            {
                "path": cache.path,
                "runs_before": before.runs,
                "runs_after": after.runs,
                "format_version_before": before.format_version,
                "format_version": after.format_version,
                "size_bytes": after.size_bytes,
            }
        )
        return 0
    migrated = (
        f", migrated from format {before.format_version}"
        if before.format_version != after.format_version
        else ""
    )
    print(
        f"compacted {cache.path}: {counted(before.runs, 'run')} -> "
        f"{after.runs}{migrated}, "
        f"{_human_size(after.size_bytes)}"
    )
    return 0


def _human_size(size):
    if size < 1000:
        return f"{size} bytes"
    for unit in ("KB", "MB", "GB"):
        size /= 1000
        if size < 1000 or unit == "GB":
            break
    return f"{size:.1f} {unit}"
