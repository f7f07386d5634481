"""Pretrained files in Keras's cache folder: found, fetched and verified.

Keras keeps the files its applications download in ``$KERAS_HOME/models``
(``~/.keras/models`` by default). tlsk looks there first, under the same file
names, so a file Keras already downloaded is used as it is. A missing file is
downloaded there through a temporary file that is checked (size and pinned
digest) before it takes its place, so a partial download or a proxy's error
page never lands. With no network, or with ``TLSK_NO_DOWNLOAD`` set, the error
is immediate and says which file is missing, its URL and where to put it.

Every digest of a file is remembered per file state (path, inode, size,
mtime, ctime), so a 100 MB file is read once per process, not once per use.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tlsk._util.files import file_identity, write_atomically
from tlsk._util.memo import Memo, settled

__all__ = [
    "WeightsMismatchError",
    "WeightsUnavailableError",
    "fetch",
    "file_digest",
    "file_sha256",
    "keras_cache_dir",
    "keras_cached",
    "weights_file",
    "verify_file",
]

_DOWNLOAD_TIMEOUT_SECONDS = 10
_FILE_DIGESTS = Memo("digests of weights files", max_entries=256)
_ALGORITHM_NAMES = {"md5": "MD5", "sha256": "SHA-256"}


class WeightsUnavailableError(FileNotFoundError):
    """Pretrained weights that are neither cached nor downloadable."""


class WeightsMismatchError(ValueError):
    """A weights file whose checksum or layout is not what was expected."""


def file_sha256(path):
    """SHA-256 hex digest of a file, remembered per file state."""
    return file_digest(path, "sha256")


def file_digest(path, algorithm):
    """Hex digest of a file with a ``hashlib`` algorithm, remembered per file state.

    MD5 is only for checking files against the digests Keras itself pins.
    """
    identity = file_identity(path)  # None: missing, or no stable inode numbers
    digest = _FILE_DIGESTS.get((algorithm, identity)) if identity else None
    if digest is None:
        hasher = hashlib.new(algorithm)
        with open(path, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                hasher.update(chunk)
        digest = hasher.hexdigest()
        if settled(identity):
            _FILE_DIGESTS.put((algorithm, identity), digest)
    return digest


def keras_cache_dir():
    """The folder where Keras keeps downloaded models (``<KERAS_HOME>/models``).

    The same rule as ``keras.utils.get_file``: ``$KERAS_HOME`` or ``~/.keras``,
    or ``/tmp/.keras`` when that is not writable.
    """
    base = os.path.expanduser(os.environ.get("KERAS_HOME", os.path.join("~", ".keras")))
    if os.path.isdir(base) and not os.access(base, os.W_OK):
        base = os.path.join(tempfile.gettempdir(), ".keras")
    return os.path.join(base, "models")


def verify_file(path, pinned, what):
    """Raise :class:`WeightsMismatchError` unless ``path`` is the pinned file.

    ``pinned`` is a :class:`tlsk.networks.registry.WeightsFile`: its ``size`` (when
    known) and its ``digest`` under ``algorithm`` are checked.
    """
    size = os.path.getsize(path)
    expected = f"{_ALGORITHM_NAMES[pinned.algorithm]} {pinned.digest}"
    if pinned.size is not None:
        expected = f"{pinned.size} bytes with {expected}"
    if (pinned.size is not None and size != pinned.size) or file_digest(
        path, pinned.algorithm
    ) != pinned.digest:
        raise WeightsMismatchError(
            f"{what} {path!r} is damaged or not the expected file ({size} bytes, "
            f"expected {expected}); delete it and let tlsk download it again "
            f"from {pinned.url}"
        )


def keras_cached(pinned, what, download=True, verify=None, instead=""):
    """Path of the verified file ``pinned`` in Keras's cache, fetched if missing.

    Parameters
    ----------
    pinned : tlsk.networks.registry.WeightsFile
        Its name in Keras's cache folder, its URL and its pinned digest.
    what : str
        What the file is, for messages ("ResNet50's ImageNet weights (no top)").
    download : bool, default=True
        Fetch the file when it is not cached.
    verify : callable, optional
        ``verify(path)`` checks more than the digest (raising
        :class:`WeightsMismatchError`).
    instead : str, default=""
        The end of the "not available" message: what the user may pass instead.

    Raises
    ------
    WeightsUnavailableError
        Not cached and not downloadable (offline, ``TLSK_NO_DOWNLOAD``, or
        ``download=False``).
    WeightsMismatchError
        The cached or downloaded file is not the pinned one.
    """
    path = os.path.join(keras_cache_dir(), pinned.name)

    def check(candidate):
        verify_file(candidate, pinned, what)
        if verify is not None:
            verify(candidate)

    def unavailable(err):
        reason = f" and could not be downloaded ({err})" if err is not None else ""
        return (
            f"{what} {pinned.name!r} is not in Keras's cache at {path!r}{reason}. "
            f"Download {pinned.url} on a machine with network access and copy it "
            f"to {path!r}" + instead
        )

    if os.path.exists(path):
        check(path)
    elif download:
        fetch(pinned.url, path, check, unavailable)
    else:
        raise WeightsUnavailableError(unavailable(None))
    return path


def fetch(url, path, verify, unavailable_message):
    """Fetch ``url`` into ``path`` through a temporary file in the same folder.

    ``verify(temporary_path)`` runs before the file takes its place (raising
    to refuse it), so a partial download or a proxy's error page never lands
    in Keras's cache. A network or file system failure raises
    :class:`WeightsUnavailableError` with ``unavailable_message(error)``,
    which should say what is missing and where to put it by hand. With the
    environment variable ``TLSK_NO_DOWNLOAD`` set (air-gapped machines, test
    suites), nothing is fetched and that error comes at once.
    """
    if os.environ.get("TLSK_NO_DOWNLOAD"):
        raise WeightsUnavailableError(
            unavailable_message("downloads are switched off by TLSK_NO_DOWNLOAD")
        )
    os.makedirs(os.path.dirname(path), exist_ok=True)

    def download(out):
        with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_SECONDS) as src:
            shutil.copyfileobj(src, out, 1 << 20)

    try:
        write_atomically(path, download, verify)
    except (urllib.error.URLError, OSError) as err:
        raise WeightsUnavailableError(unavailable_message(err)) from err


def weights_file(weights, expected):
    """The absolute path of the Keras weights file ``weights`` names.

    The one check of a ``weights=`` path, for the extractors, the Keras
    classifiers and the ImageNet heads: an existing ``.weights.h5`` or legacy
    ``.h5`` file. ``expected`` says in the error what ``weights`` may be
    (``"'imagenet', None or the path of an existing weights file"``).
    """
    path = Path(os.fspath(weights)).expanduser()
    if not path.is_file():
        raise ValueError(
            f"weights must be {expected}; received {os.fspath(weights)!r}, "
            "which is not a file"
        )
    if not path.name.endswith(".h5"):
        raise ValueError(
            "weights file must be a Keras '.weights.h5' or legacy '.h5' file; "
            f"received {os.fspath(weights)!r}"
        )
    return str(path.resolve())
