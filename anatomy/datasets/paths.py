"""What the data commands may open: a regular file (or a folder where one is expected), never a FIFO, a
socket or a device, which would block forever or stream endless bytes. Checked with a stat before opening."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from anatomy.datasets.registry import DataError


def kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def refuse_special(path: Path, folder: bool = False) -> None:
    """DataError unless `path` is missing, a regular file, or (with folder) a folder; follows symlinks."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror or err})") from None
    if stat.S_ISREG(mode) or (folder and stat.S_ISDIR(mode)):
        return
    expected = "a regular file or a folder" if folder else "a regular file"
    raise DataError(f"{path}: is {kind(mode)}, not {expected}; not opened", "move it away, then rerun")
