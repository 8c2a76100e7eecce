"""What identifies an ingest's input (so re-ingesting it changes nothing) and what its outputs are.

An input's identity is (source, sha256, the options that change what is read); the encoding is compared by
the codec's canonical name, so `--encoding utf8`, `UTF-8` and `utf_8` name the same input. The same bytes
read again another way are refused unless another named column or field picks other prompts from them. An input that is
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


_READS = {"lines": (), "json": (), "jsonl": ("field", "count", "time"), "csv": ("column", "count", "time"),
          "tsv": ("column", "count", "time"), "parquet": ("column", "count")}  # fmt: skip


def read_options(source: str, spec: str, options: dict) -> dict:
    """The options an input of the text source reads (a .txt reads no --column given for the run's CSVs):
    the ones its manifest key holds, so the same file ingested alone or beside others is the same input."""
    if source != "text" or spec == "-":
        return options
    from anatomy.corpus.engine import COMPRESSION, KINDS

    path = Path(spec)
    suffixes = [x.lower() for x in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSION:
        suffixes.pop()
    last = suffixes[-1] if suffixes else ""
    kind = "parquet" if path.is_dir() else "json" if last == ".json" else KINDS.get(last)
    if kind is None:
        return options
    kept = {k: v for k, v in options.items() if k == "encoding" or k in _READS[kind]}
    # column and field stay as keys (None: not read), as the manifests of single-kind ingests always held them
    return {**{k: None for k in ("column", "field") if k in options}, **kept}


def manifest_key(entry: dict) -> tuple[str, str, str]:
    options = read_options(entry["source"], entry.get("input", "-"), dict(entry["options"]))
    if "encoding" in options:  # entries written before encodings were canonicalised
        try:
            options["encoding"] = codecs.lookup(options["encoding"]).name
        except (LookupError, TypeError):
            pass
    return entry["source"], entry["sha256"], json.dumps(options, sort_keys=True)


def refuse_rereading(
    manifest: list[dict], spec: str, source: str, sha256: str, options: dict, out: Path
) -> None:
    """InputError when these bytes are in the corpus already, read by `source` with other options that do
    not choose other prompts (another encoding, count, time or --synonyms, or a default column against a
    named one): reading them again would count the same records twice. Two named columns or fields of one
    file are two sets of prompts, and both may be ingested."""
    key = json.dumps(options, sort_keys=True)
    for entry in manifest:
        if (entry["source"], entry["sha256"]) != (source, sha256) or manifest_key(entry)[2] == key:
            continue
        before = json.loads(manifest_key(entry)[2])
        chosen = [tuple(o.get(k) for k in ("column", "field")) for o in (before, options)]
        if chosen[0] != chosen[1] and all(any(c) for c in chosen):
            continue  # another named column or field: other prompts
        raise InputError(
            f"{spec}: its bytes are in {out} already ({entry['input']}, read with {_described(before)}); "
            f"reading them again with {_described(options)} would count its records twice",
            "ingest into a new corpus (--out) to read the file another way; to add another column or field "
            "of it, name it with --column/--field both times",
        )


def _described(options: dict) -> str:
    shown = [f"{k}={v!r}" for k, v in sorted(options.items()) if v not in (None, False)]
    return ", ".join(shown) or "the defaults"


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
