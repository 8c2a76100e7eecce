"""Locks on outputs updated in place (a corpus, an embeddings or teacher cache): one writer at a time.

An fcntl.flock on a sidecar .NAME.lock file beside the output; it dies with its process, so a killed writer never
blocks the next one. Not POSIX: no advisory locks (writes stay atomic through anatomy.io).

The lock file is opened with O_NOFOLLOW and must be a regular file: a symbolic link (or a FIFO, a device)
where the lock file belongs is refused with one line, never followed, truncated or written through.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from anatomy.io import clean_temps, writing

log = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 600.0  # how long a writer waits for another writer of the same output

_held: dict[str, int] = {}  # lock file -> depth, so a process may nest locks on the same output
_held_guard = threading.Lock()


def lock_path(path: str | Path) -> Path:
    """The sidecar lock file of an output: .NAME.lock beside it."""
    path = Path(path)
    return path.parent / f".{path.name}.lock"


@contextlib.contextmanager
def locked(path: str | Path, timeout: float | None = None, clean: bool = True) -> Iterator[None]:
    """Hold the exclusive lock of output `path` (an fcntl.flock on its sidecar .NAME.lock file).

    Every command that updates an output in place holds it from reading the old state to committing the
    new one, so two writers run one after the other (each sees the other's result) instead of one silently
    overwriting the other. Waits up to `timeout` seconds (LOCK_TIMEOUT_S) and then raises AnatomyError
    naming the process holding it. The lock dies with its process, so a killed writer never blocks.
    With `clean`, temporaries of `path` left by a killed writer are removed once the lock is held.
    """

    path = Path(path)
    lock = lock_path(path)
    key = str(lock.parent.resolve() / lock.name)  # the lock file itself, never what a link there points to
    with _held_guard:
        if key in _held:  # already ours (nested use in the same process)
            _held[key] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield
        finally:
            with _held_guard:
                _held[key] -= 1
        return
    try:
        import fcntl  # noqa: F401
    except ImportError:  # not POSIX: no advisory locks; writes stay atomic
        yield
        return
    fd = _acquire(lock, path, LOCK_TIMEOUT_S if timeout is None else timeout)
    try:
        with _held_guard:
            _held[key] = 1
        try:
            if clean:
                clean_temps(path)
            yield
        finally:
            with _held_guard:
                _held.pop(key, None)
            with contextlib.suppress(OSError):
                os.unlink(lock)  # still held: a waiter that opened this file sees it gone and reopens
    finally:
        os.close(fd)  # releases the flock


def _acquire(lock: Path, path: Path, timeout: float) -> int:
    """An open descriptor of `lock` holding its flock, the file still being the one at that path."""
    import fcntl

    from anatomy.errors import AnatomyError

    deadline = time.monotonic() + timeout
    waited = False
    while True:
        fd = _open_lock(lock, path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if not waited:  # a notice: --quiet silences it (anatomy.cli.common.guarded)
                log.warning(
                    "%s: another process (pid %s) is writing it; waiting",
                    path,
                    holder,
                    extra={"notice": True},
                )
                waited = True
            if time.monotonic() >= deadline:
                raise AnatomyError(
                    f"{path}: another process (pid {holder}) is still writing it",
                    "wait for it to finish, then rerun (its result and yours will be merged)",
                ) from None
            time.sleep(0.05)
            continue
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            return fd
        os.close(fd)  # the holder removed this file as it released it: lock the new one


def _open_lock(lock: Path, path: Path) -> int:
    """Open (creating) the lock file without following a symbolic link or blocking on a FIFO; refuse any
    lock path that is not a regular file, so nothing outside the lock file is ever truncated or written."""
    import stat

    from anatomy.errors import AnatomyError

    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    refuse = AnatomyError(
        f"{lock}: the lock file of {path.name} is not a regular file (a symbolic link, FIFO or device); "
        "refusing to follow or write it",
        f"remove {lock} (nothing else holds it), then rerun",
    )
    if os.path.islink(lock):
        raise refuse
    with writing(lock):
        lock.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(lock, flags, 0o666)
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.EMLINK, errno.ENXIO):  # a link (O_NOFOLLOW), a socket
                raise refuse from None
            raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise refuse
    return fd
