"""Source readers: each turns one input (file, directory or stdin) into PromptRecords and Skipped records.

A reader is a function `read(src: SourceFile, options: ReadOptions) -> Iterator[PromptRecord | Skipped]`.
It raises InputError for a file it cannot read at all, and yields Skipped for single bad records.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from anatomy.corpus.records import PromptRecord, Skipped
from anatomy.errors import InputError

# source name -> module under anatomy.corpus.sources that defines `read`
READERS = {
    "lvis": "lvis",
    "refcoco": "refcoco",
    "saco": "saco",
    "rf100vl": "rf100vl",
    "text": "text",
    "builtin": "builtin",
}


@dataclass(frozen=True)
class ReadOptions:
    synonyms: bool = False  # lvis: add each synonym as its own prompt
    column: str | None = None  # text: csv/tsv column
    field: str | None = None  # text: jsonl field
    encoding: str = "utf-8"


@dataclass(frozen=True)
class SourceFile:
    """One input as given on the command line: a path, a directory, '-' for stdin, or 'builtin:NAME'."""

    spec: str

    @property
    def is_stdin(self) -> bool:
        return self.spec == "-"

    @property
    def path(self) -> Path:
        return Path(self.spec)

    @property
    def name(self) -> str:
        return "<stdin>" if self.is_stdin else self.path.name

    def read_bytes(self) -> bytes:
        if self.is_stdin:
            return sys.stdin.buffer.read()
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            raise InputError(f"{self.spec}: no such file", "check the path") from None
        except IsADirectoryError:
            raise InputError(f"{self.spec}: is a directory, expected a file") from None

    def read_text(self, encoding: str = "utf-8", data: bytes | None = None) -> str:
        """Decode strictly; a bad byte is an error naming the file and offset, never a silent replacement."""
        data = self.read_bytes() if data is None else data
        if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
            encoding = "utf-8-sig"  # accept (and drop) a byte-order mark
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as err:
            raise InputError(
                f"{self.spec}: bytes at offset {err.start} are not valid {err.encoding} ({err.reason})",
                "give the file's encoding with --encoding (e.g. --encoding latin-1)",
            ) from None
        except LookupError:
            raise InputError(f"unknown encoding {encoding!r}", "use a Python codec name such as utf-8 or latin-1") from None


Reader = Callable[[SourceFile, ReadOptions], Iterator[PromptRecord | Skipped]]


def get_reader(source: str) -> Reader:
    if source not in READERS:
        raise InputError(f"unknown source {source!r}", f"choose one of: {', '.join(READERS)}")
    return importlib.import_module(f"anatomy.corpus.sources.{READERS[source]}").read
