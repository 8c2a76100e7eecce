"""Build, merge and load the corpus: one Parquet row per unique (source, subset, normalised prompt).

The manifest (which inputs were ingested, with their sha256 and per-file counts) lives inside the Parquet
file's metadata, so corpus and manifest are replaced together in one atomic write; a readable copy is written
beside the corpus as CORPUS.manifest.json. An input already in the manifest (same source, options and
sha256) is not counted twice, so ingesting the same file again changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from anatomy.corpus.normalize import normalize
from anatomy.corpus.records import PromptRecord, Skipped
from anatomy.corpus.sources import ReadOptions, SourceFile, get_reader
from anatomy.errors import InputError
from anatomy.io import atomic_path, file_sha256, write_json

log = logging.getLogger(__name__)

CORPUS_COLUMNS = ("prompt", "raw", "source", "subset", "count", "ref", "meta")
MANIFEST_KEY = b"anatomy.manifest"
MAX_SKIP_EXAMPLES = 5


@dataclass
class FileStats:
    """Per-input counts; read = kept + merged + skipped always holds."""

    input: str
    source: str
    sha256: str
    options: dict
    read: int = 0
    kept: int = 0
    merged: int = 0
    skipped: int = 0
    skips: dict[str, dict] = field(default_factory=dict)  # reason -> {"count", "examples"}
    already_ingested: bool = False

    def skip(self, record: Skipped) -> None:
        self.skipped += 1
        entry = self.skips.setdefault(record.reason, {"count": 0, "examples": []})
        entry["count"] += 1
        if len(entry["examples"]) < MAX_SKIP_EXAMPLES:
            entry["examples"].append(f"{record.ref}: {record.example}" if record.example else record.ref)


@dataclass
class IngestReport:
    corpus: Path
    files: list[FileStats]
    n_rows: int
    n_distinct_prompts: int


def _options_for(source: str, options: ReadOptions) -> dict:
    """Only the options that change what a source reads, so the manifest key is stable."""
    relevant = {"lvis": ("synonyms", "encoding"), "text": ("column", "field", "encoding")}.get(source, ("encoding",))
    return {k: getattr(options, k) for k in relevant}


def _input_sha256(src: SourceFile, data: bytes | None) -> str:
    if data is not None:
        return hashlib.sha256(data).hexdigest()
    if src.spec.startswith("builtin:"):
        from anatomy.corpus.sources.builtin import fingerprint

        return hashlib.sha256(fingerprint(src.spec).encode()).hexdigest()
    path = src.path
    if path.is_dir():  # a dataset tree (rf100vl): hash the sorted relative names and contents
        digest = hashlib.sha256()
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(child.relative_to(path)).encode() + b"\0" + file_sha256(child).encode())
        return digest.hexdigest()
    if not path.exists():
        raise InputError(f"{src.spec}: no such file or directory", "check the path")
    return file_sha256(path)


def load_corpus(path: str | Path):
    """Read a corpus Parquet file into a DataFrame, checking it is one."""
    import pandas as pd
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such corpus", "build one with `anatomy ingest SOURCE PATH --out CORPUS.parquet`")
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for non-Parquet input
        raise InputError(f"{path}: not a readable Parquet file ({err})") from None
    missing = [c for c in CORPUS_COLUMNS if c not in table.column_names]
    if missing:
        raise InputError(
            f"{path}: not a corpus; missing columns {missing} (found {table.column_names})",
            "build one with `anatomy ingest`",
        )
    frame: pd.DataFrame = table.to_pandas()
    return frame


def read_manifest(path: str | Path) -> list[dict]:
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    return json.loads(metadata[MANIFEST_KEY]) if MANIFEST_KEY in metadata else []


def ingest(
    source: str,
    inputs: Sequence[str],
    out: str | Path,
    options: ReadOptions = ReadOptions(),
) -> IngestReport:
    """Read `inputs` with the `source` reader and merge them into the corpus at `out` (created if absent)."""
    import pandas as pd

    out = Path(out)
    if not inputs:
        raise InputError("no inputs given", "name at least one file, directory, '-' (stdin) or builtin:NAME")
    reader = get_reader(source)

    rows: dict[tuple[str, str, str], list] = {}  # (source, subset, prompt) -> [raw, count, ref, meta]
    manifest: list[dict] = []
    if out.exists():
        existing = load_corpus(out)
        manifest = read_manifest(out)
        for r in existing.itertuples(index=False):
            rows[(r.source, r.subset, r.prompt)] = [r.raw, int(r.count), r.ref, r.meta]
    seen = {(m["source"], m["sha256"], json.dumps(m["options"], sort_keys=True)) for m in manifest}

    reports = []
    for spec in inputs:
        src = SourceFile(spec)
        data = src.read_bytes() if src.is_stdin else None
        stats = FileStats(spec, source, _input_sha256(src, data), _options_for(source, options))
        key = (source, stats.sha256, json.dumps(stats.options, sort_keys=True))
        if key in seen:
            stats.already_ingested = True
            reports.append(stats)
            log.info("%s: already in %s (same sha256), not counted again", spec, out)
            continue
        records = reader(src, options) if data is None else reader(_BufferedStdin(data), options)
        for record in records:
            stats.read += 1
            if isinstance(record, Skipped):
                stats.skip(record)
                continue
            _add(rows, source, record, stats)
        seen.add(key)
        reports.append(stats)
        manifest.append({k: v for k, v in asdict(stats).items() if k != "already_ingested"})

    if not rows:
        raise InputError(
            f"no prompts found in {', '.join(inputs)}",
            "check the source type (`anatomy ingest --help`) and, for csv/jsonl, --column/--field",
        )
    frame = pd.DataFrame(
        [(k[2], v[0], k[0], k[1], v[1], v[2], v[3]) for k, v in rows.items()], columns=list(CORPUS_COLUMNS)
    ).astype({"count": "int64"})
    _write_corpus(frame, manifest, out)
    return IngestReport(out, reports, len(frame), frame["prompt"].nunique())


def _add(rows: dict, source: str, record: PromptRecord, stats: FileStats) -> None:
    raw = record.raw
    if not isinstance(raw, str):
        stats.skip(Skipped("not a string", record.ref, repr(raw)[:80]))
        return
    prompt = normalize(raw)
    if not prompt:
        stats.skip(Skipped("empty prompt", record.ref, repr(raw)[:80]))
        return
    key = (source, record.subset, prompt)
    row = rows.get(key)
    if row is None:
        meta = json.dumps(record.meta, sort_keys=True) if record.meta else ""
        rows[key] = [raw, 1, record.ref, meta]
        stats.kept += 1
    else:
        row[1] += 1
        stats.merged += 1


class _BufferedStdin:
    """Stands in for SourceFile('-') once stdin has been read (it can be read only once)."""

    def __init__(self, data: bytes):
        self.spec, self.name, self.is_stdin, self._data = "-", "<stdin>", True, data

    def read_bytes(self) -> bytes:
        return self._data

    def read_text(self, encoding: str = "utf-8", data: bytes | None = None) -> str:
        return SourceFile("-").read_text(encoding, self._data)


def _write_corpus(frame, manifest: list[dict], out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({MANIFEST_KEY: json.dumps(manifest, sort_keys=True).encode()})
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    write_json(manifest_path(out), {"corpus": out.name, "inputs": manifest})


def manifest_path(corpus: str | Path) -> Path:
    corpus = Path(corpus)
    return corpus.with_name(corpus.stem + ".manifest.json")


def corpus_summary(frame) -> dict:
    """Counts per source and subset, and distinct prompts overall (a prompt in two sources counts once)."""
    by_source = Counter()
    by_subset: dict[str, Counter] = {}
    for source, subset in zip(frame["source"], frame["subset"], strict=True):
        by_source[source] += 1
        by_subset.setdefault(source, Counter())[subset] += 1
    return {
        "rows": len(frame),
        "distinct_prompts": int(frame["prompt"].nunique()),
        "occurrences": int(frame["count"].sum()),
        "sources": {
            s: {"rows": by_source[s], "subsets": dict(sorted(by_subset[s].items()))} for s in sorted(by_source)
        },
    }
