"""What identifies an ingest's input (so re-ingesting it changes nothing) and what its outputs are.

An input's identity is (source, sha256, the options that change what is read); the encoding is compared by
the codec's canonical name, so `--encoding utf8`, `UTF-8` and `utf_8` name the same input. An input that is
one of the ingest's own outputs (the corpus, its manifest copy, its lock file) is refused.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Sequence
from pathlib import Path

from anatomy.errors import InputError


def canonical_encoding(name: str) -> str:
    """The codec's own name (utf8, UTF-8 and utf_8 are all 'utf-8'), so the spelling never changes a key."""
    try:
        return codecs.lookup(name).name
    except (LookupError, TypeError):
        raise InputError(
            f"unknown encoding {name!r}", "use a Python codec name such as utf-8 or latin-1"
        ) from None


def manifest_key(entry: dict) -> tuple[str, str, str]:
    options = dict(entry["options"])
    if "encoding" in options:  # entries written before encodings were canonicalised
        try:
            options["encoding"] = codecs.lookup(options["encoding"]).name
        except (LookupError, TypeError):
            pass
    return entry["source"], entry["sha256"], json.dumps(options, sort_keys=True)


def refuse_overwriting_inputs(inputs: Sequence[str], out: Path, outputs: Sequence[Path]) -> None:
    """An input that is one of the files this ingest writes would be destroyed by it: refuse."""
    if out.is_dir():
        raise InputError(f"{out}: is a directory; --out must name a corpus .parquet file")
    resolved = {p.resolve() for p in outputs}
    for spec in inputs:
        if spec == "-" or spec.startswith("builtin:"):
            continue
        path = Path(spec)
        same = path.resolve() in resolved or any(
            path.exists() and o.exists() and path.samefile(o) for o in outputs
        )
        if same:
            raise InputError(
                f"{spec}: is an output of this ingest (--out {out}); reading it would overwrite it",
                "write the corpus elsewhere, or copy the input first",
            )
