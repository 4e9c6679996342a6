"""Fetching a file over the network whole, or not at all; one process at a time per folder; and
an archive checked and extracted safely.

:func:`fetch` streams a URL into a temporary file beside its target, checks that the body is as
long as the server announced and that its digest is the expected one, and only then renames it
to the target: a cut connection, a timeout or an HTML error page served with status 200 never
leaves a file that a later call would trust. :func:`folder_lock` keeps two processes that fill
one folder (two notebooks downloading IMDB at once) from deleting each other's partial files:
the second waits for the first, then finds its work done.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

from tqdm import tqdm

__all__ = ["fetch", "folder_lock", "digests", "file_digest", "safe_extract"]

# What a failed download raises: no network, no answer in time, a refused or broken connection.
NETWORK_ERRORS = (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException)


def fetch(
    url: str,
    target: Path,
    *,
    where: str,
    digests: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    progress: bool = False,
    hint: str = "",
) -> Path:
    """Download ``url`` to ``target``: whole and checked, or not at all.

    Args:
        url: what to fetch (``http(s)://`` or ``file://``).
        target: where the file goes; the temporary ``.{name}.*.part`` beside it is removed
            whatever happens.
        where: the public function the messages start with, e.g. ``"load_imdb"``.
        digests: expected hex digests by ``hashlib`` name (``{"sha256": ...}``); checked before
            the file is renamed into place.
        timeout: seconds for the connection and for every read.
        progress: show a ``tqdm`` bar (on stderr).
        hint: what to do by hand, appended to the ``ConnectionError``'s message.

    Returns:
        ``target``.

    Raises:
        ConnectionError: no connection, no answer within ``timeout``, an HTTP error, or a body
            shorter than the ``Content-Length`` the server announced (a cut connection).
        ValueError: a digest differs (a truncated, changed or wrong file, such as an error page).
    """
    wanted = {name: value.lower() for name, value in (digests or {}).items()}
    hashers = {name: hashlib.new(name) for name in wanted}
    handle, tmp_name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".part"
    )
    tmp = Path(tmp_name)
    try:
        try:
            with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as r:
                _stream(r, out, hashers, f"{where}: {url}", progress)
        except NETWORK_ERRORS as err:
            reason = getattr(err, "reason", None) or err
            raise ConnectionError(
                f"{where}: could not download {url} ({type(err).__name__}: {reason}; "
                f"timeout {timeout} s).{' ' + hint if hint else ''}"
            ) from err
        for name, expected in wanted.items():
            got = hashers[name].hexdigest()
            if got != expected:
                raise ValueError(
                    f"{where}: {name} checksum mismatch for {url}: expected {expected}, got "
                    f"{got}; the download was deleted (a truncated or changed file, or an error "
                    f"page served in its place)"
                )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _stream(response, out, hashers: dict, where: str, progress: bool) -> None:
    """Copy ``response`` to ``out`` in 1 MiB chunks, feeding ``hashers``; a body shorter than
    its Content-Length raises (``HTTPResponse.read(n)`` returns b"" at a cut connection)."""
    size = response.headers.get("Content-Length")
    expected = int(size) if size and size.isdigit() else None
    received = 0
    name = where.rsplit("/", 1)[-1]
    with tqdm(
        total=expected,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=f"Downloading {name}",
        disable=not progress,
        ncols=80,
    ) as bar:
        for chunk in iter(lambda: response.read(1 << 20), b""):
            out.write(chunk)
            for hasher in hashers.values():
                hasher.update(chunk)
            received += len(chunk)
            bar.update(len(chunk))
    if expected is not None and received < expected:
        raise ConnectionError(f"the body was cut short: {received:,} of {expected:,} bytes")


@contextlib.contextmanager
def folder_lock(folder: Path, name: str, where: str) -> Iterator[None]:
    """Hold the lock file ``folder/.{name}.lock`` for the block: one process at a time.

    The lock is the operating system's (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on
    Windows), so a killed holder releases it. A process that finds it taken prints that it is
    waiting, and waits. The holder removes the file when it is done (a killed one leaves it,
    empty and unlocked, for the next to reuse).
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".{name}.lock"
    waited = False
    while True:
        file = open(path, "a+b")
        if not _try_lock(file, block=False):
            if not waited:
                print(f"{where}: waiting for another process that holds {path}", file=sys.stderr)
                waited = True
            _try_lock(file, block=True)
        # The holder before us removes the file when it is done: a lock on that removed file
        # would lock nothing, so start again on the new one.
        if os.name == "nt" or (path.exists() and os.path.samefile(path, file.name)):
            break
        _unlock(file)
        file.close()
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # Windows keeps an open file; it stays, empty
            path.unlink()
        _unlock(file)
        file.close()


def _try_lock(file, block: bool) -> bool:
    if os.name == "nt":  # pragma: no cover - Windows
        import msvcrt

        mode = msvcrt.LK_LOCK if block else msvcrt.LK_NBLCK
        file.seek(0)
        while True:
            try:
                msvcrt.locking(file.fileno(), mode, 1)
                return True
            except OSError:
                if not block:
                    return False  # LK_LOCK gives up after 10 s: try again
    import fcntl

    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def _unlock(file) -> None:
    if os.name == "nt":  # pragma: no cover - Windows
        import msvcrt

        file.seek(0)
        msvcrt.locking(file.fileno(), msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(file.fileno(), fcntl.LOCK_UN)


def digests(sha256: str | None, md5: str | None) -> dict[str, str]:
    """The digests to check, for :func:`fetch`: SHA-256 if given, else MD5, else none."""
    wanted = {}
    if sha256 is not None:
        wanted["sha256"] = sha256.lower()
    elif md5 is not None:
        wanted["md5"] = md5.lower()
    return wanted


def file_digest(path: Path, algorithm: str) -> str:
    """The hex digest of the file at ``path`` with ``algorithm`` ("sha256", "md5"), read in
    1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def safe_extract(archive: Path, destination: Path, *, where: str) -> None:
    """Extract the tar ``archive`` into ``destination``: plain files and folders only, none
    outside ``destination``; messages start with ``where``."""
    with tarfile.open(archive, "r:*") as tar:
        # Only plain files and folders, and none outside the destination, whatever the Python
        # version (the "data" filter of Python >= 3.11.4 checks this too). Links (which could
        # point outside) and devices are skipped, and said so: never silently.
        every = tar.getmembers()
        members = [m for m in every if m.isfile() or m.isdir()]
        skipped = [m.name for m in every if not (m.isfile() or m.isdir())]
        if skipped:
            warnings.warn(
                f"{where}: skipped {len(skipped)} entries of {archive.name} that are not "
                f"plain files or folders (symbolic or hard links, devices), e.g. "
                f"{skipped[:3]}; a data archive has none, so this one may not be the one expected",
                stacklevel=3,
            )
        for member in members:
            if member.name.startswith(("/", "\\")) or ".." in Path(member.name).parts:
                raise ValueError(f"{where}: refusing unsafe archive member {member.name!r}")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(destination, members=members, filter="data")
        else:  # Python < 3.11.4; members were checked above
            tar.extractall(destination, members=members)
