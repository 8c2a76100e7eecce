"""Held-out prompt sets for the long-tail risk (`anatomy vocab --held-out`, `anatomy specialise --held-out`):
a prompt file read by the text source, or a builtin:NAME set, as distinct normalised prompts."""

from __future__ import annotations

import logging

from anatomy.corpus.sources import SourceFile
from anatomy.errors import InputError

log = logging.getLogger(__name__)

# What --held-out accepts, and how to fix a file that is not UTF-8 (the hints of their errors).
HELD_OUT_ACCEPTS = (
    "give a prompt file (.txt one prompt per line, .csv, .tsv, .jsonl or .json; UTF-8) "
    "or builtin:imagenet-classes"
)
REENCODE_HINT = (
    "held-out files are read as UTF-8: re-encode it as UTF-8 (e.g. `iconv -f latin1 -t utf-8 FILE > NEW.txt`)"
)


def read_raw_prompts(spec: str) -> list[str]:
    """The raw records of a held-out file (text reader: txt/csv/jsonl/json) or a builtin:NAME set, as read."""
    from anatomy.corpus.sources import ReadOptions, get_reader
    from anatomy.paths import check_path

    builtin = spec.startswith("builtin:")
    if not builtin and spec != "-":
        try:
            check_path(spec, "file")
        except InputError as err:  # a folder, a pipe, a device: say what is accepted instead
            raise InputError(err.message.removesuffix("; refusing to open it"), HELD_OUT_ACCEPTS) from None
    reader = get_reader("builtin" if builtin else "text")
    return [r.raw for r in reader(_HeldOutFile(spec), ReadOptions()) if hasattr(r, "raw")]


def read_prompts(spec: str) -> list[str]:
    """The distinct prompts of a held-out file or builtin:NAME set, in code-point order: each record in the
    corpus's normalisation (anatomy.corpus.normalize), empty ones dropped, repeats counted once. `vocab` and
    `specialise` both measure held-out sets this way. InputError naming the file when none is left."""
    from anatomy.corpus.normalize import normalize

    raw = read_raw_prompts(spec)
    prompts = sorted({n for n in map(normalize, raw) if n})
    if not prompts:
        what = f"{len(raw):,} record(s), all blank" if raw else "an empty file"
        raise InputError(
            f"{spec}: no prompts in this held-out file ({what})", "give a file with one prompt per line"
        )
    if len(prompts) < len(raw):
        log.info("%s: %d records, %d distinct prompts (blank ones and repeats dropped)", spec, len(raw),
                 len(prompts))  # fmt: skip
    return prompts


class _HeldOutFile(SourceFile):
    """A held-out file whose decoding error says to re-encode it: vocab reads held-out files as UTF-8 and has
    no --encoding option (the hint the readers give by default)."""

    def read_text(self, encoding: str = "utf-8", data: bytes | None = None) -> str:
        data = self.read_bytes() if data is None else data  # a missing file keeps its own message
        try:
            return super().read_text(encoding, data)
        except InputError as err:
            raise InputError(err.message, REENCODE_HINT) from None
