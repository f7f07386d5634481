"""The one per-process memo: bounded, least recently used out, cleared as one."""

import threading
import time

import numpy as np
import pytest

from tlsk import clear_caches
from tlsk._util import memo as memo_module
from tlsk._util.files import file_identity
from tlsk._util.memo import Memo, settled
from tlsk.networks.backbone import BackboneConfig, get_backbone

SEVEN = {
    "built networks",
    "compiled OpenVINO models",
    "ImageNet heads",
    "digests of weights files",
    "content keys of files",
    "feature-cache readers",
    "parsed cache manifests",
}


def test_every_per_process_cache_is_a_memo_and_clear_caches_empties_them():
    import tlsk.cache._manifest  # noqa: F401 - each module creates its memo
    import tlsk.cache._reader  # noqa: F401
    import tlsk.networks.imagenet  # noqa: F401
    import tlsk.networks.openvino  # noqa: F401

    names = {memo.name for memo in memo_module._MEMOS}
    assert SEVEN <= names
    backbone = get_backbone(BackboneConfig(weights=None, input_size=32))
    assert backbone is get_backbone(BackboneConfig(weights=None, input_size=32))
    clear_caches()
    assert all(len(memo) == 0 for memo in memo_module._MEMOS)
    assert backbone is not get_backbone(BackboneConfig(weights=None, input_size=32))


def test_a_memo_keeps_its_bound_and_evicts_the_least_recently_used():
    memo = Memo("test", max_entries=3)
    for key in "abc":
        memo.put(key, key.upper())
    memo.get("a")  # now the most recently used
    memo.put("d", "D")
    assert memo.get("b") is None
    assert [memo.get(key) for key in "acd"] == ["A", "C", "D"]
    assert len(memo) == 3
    with pytest.raises(ValueError, match="max_entries must be at least 1"):
        Memo("test", max_entries=0)


def test_get_or_build_builds_once_for_threads_asking_together():
    memo, builds = Memo("test", max_entries=2), []

    def build():
        builds.append(1)
        time.sleep(0.05)
        return object()

    found = []
    threads = [
        threading.Thread(target=lambda: found.append(memo.get_or_build("k", build)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and len({id(value) for value in found}) == 1
    # A value no longer current is built again.
    memo.get_or_build("k", build, is_current=lambda value: False)
    assert len(builds) == 2


def test_a_file_is_settled_only_two_seconds_after_its_last_change(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(np.arange(4).tobytes())
    identity = file_identity(path)
    assert not settled(identity)
    assert not settled(None)
    later = max(identity[1], identity[2]) + memo_module.SETTLED_NS + 1
    assert settled(identity, now_ns=later)
