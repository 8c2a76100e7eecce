"""Paths that are not regular files: a FIFO, a device or a socket would block a reader forever or never end.

`check_path` refuses such a path before anything opens it (the CLI checks every path option with it, the
library readers too); `open_regular` opens a file without ever blocking on one.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import IO

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"),
    (stat.S_ISREG, "a file"),
)  # fmt: skip
_EXPECTED = {"file": "a regular file", "dir": "a folder", "any": "a regular file or a folder"}


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _refusal(path: str | Path, mode: int, expect: str):
    from anatomy.errors import InputError

    return InputError(
        f"{path}: is {_kind(mode)}, expected {_EXPECTED[expect]}; refusing to open it",
        "give a regular file or folder (a pipe or device would block or never end)",
    )


def check_path(path: str | Path, expect: str = "file", *, missing_ok: bool = False) -> Path:
    """Refuse, before anything opens it, a path that is not `expect`: "file" (a regular file), "dir" (a
    folder) or "any" (either). A FIFO, a device (/dev/zero) or a socket would block a reader forever or never
    end; this is the one check the CLI (every path option) and the library readers use. Symbolic links are
    followed (a link to a regular file is fine). A missing path raises InputError unless `missing_ok`."""
    from anatomy.errors import InputError

    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if missing_ok:
            return path
        raise InputError(f"{path}: no such file or directory", "check the path") from None
    except OSError as err:  # a link loop, a name too long, a component that is a file
        if missing_ok and err.errno in (errno.ENOTDIR, errno.ENAMETOOLONG, errno.ELOOP):
            return path
        raise InputError(f"{path}: cannot be read ({err.strerror or err})", "check the path") from None
    ok = {
        "file": stat.S_ISREG(mode),
        "dir": stat.S_ISDIR(mode),
        "any": stat.S_ISREG(mode) or stat.S_ISDIR(mode),
    }[expect]
    if not ok:
        raise _refusal(path, mode, expect)
    return path


def open_regular(path: str | Path) -> IO[bytes]:
    """open(path, "rb") that never blocks on or streams from a special file: a FIFO is opened non-blocking
    and refused, as is a device or a folder (InputError, one line); race-free, the opened file is checked.
    A missing file raises FileNotFoundError, as open() does."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _refusal(path, mode, "file")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")
