"""Pipes given as ingest inputs (`anatomy ingest text <(zcat log.gz)`, /dev/stdin, a named FIFO) read once.

A pipe can be read only once, and an ingest reads each input twice (its sha256 for the manifest, then its
records). So a text input that is a FIFO is first copied, in one pass, into a folder beside the output
(.NAME.spool-XXXX, under the corpus's lock), and both readers take the copy: the manifest still names the
input as given, refs and the subset use its name. The folder is removed on success and on failure (and, if
the process was killed, by the next ingest). A device or a socket is refused before anything opens it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from anatomy.corpus.sources import SourceFile
from anatomy.errors import InputError
from anatomy.io import writing
from anatomy.paths import check_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpooledFile(SourceFile):
    """A SourceFile read from its spooled copy `file`; spec and name stay the input's."""

    file: Path = Path()

    @property
    def path(self) -> Path:
        return self.file

    @property
    def name(self) -> str:
        return Path(self.spec).name


def spool_dirs(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.spool-*"))


def _is_pipe(spec: str) -> bool:
    if spec == "-" or spec.startswith("builtin:"):
        return False
    try:
        mode = os.stat(spec).st_mode
    except OSError:  # missing, a glob pattern, ...: the readers word the error
        return False
    if stat.S_ISFIFO(mode):
        return True
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        check_path(spec, "any")  # a device or a socket: refused, never read (it may never end)
    return False


@contextlib.contextmanager
def spooled(source: str, inputs: Sequence[str], out: Path) -> Iterator[dict[str, Path]]:
    """{spec: its spooled copy} for the text inputs that are pipes; call it holding the corpus's lock."""
    for stale in spool_dirs(out):  # left by a killed ingest
        shutil.rmtree(stale, ignore_errors=True)
    pipes = [spec for spec in dict.fromkeys(inputs) if _is_pipe(spec)]
    if pipes and source != "text":
        raise InputError(
            f"{pipes[0]}: is a pipe; the {source} source reads files", "save it to a file and ingest that"
        )
    if not pipes:
        yield {}
        return
    with writing(out):
        folder = Path(tempfile.mkdtemp(prefix=f".{out.name}.spool-", dir=out.parent))
    try:
        copies = {}
        for i, spec in enumerate(pipes):
            copy = folder / str(i) / Path(spec).name
            copy.parent.mkdir()
            fd = os.open(spec, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO nobody writes to: EOF, never a hang
            os.set_blocking(fd, True)
            with os.fdopen(fd, "rb") as pipe, writing(copy), open(copy, "wb") as handle:
                shutil.copyfileobj(pipe, handle, 1 << 20)
            size = copy.stat().st_size
            if not size:  # a named FIFO nobody has opened for writing reads as empty: say so, never ingest it
                raise InputError(
                    f"{spec}: is a FIFO (named pipe) and nothing was written to it",
                    "start its writer first, or give a regular file",
                )
            log.info("%s: a pipe, read once into %s (%d bytes)", spec, copy, size)
            copies[spec] = copy
        yield copies
    finally:
        shutil.rmtree(folder, ignore_errors=True)
