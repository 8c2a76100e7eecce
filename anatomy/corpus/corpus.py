"""Build, merge and load the corpus: one Parquet row per unique (source, subset, normalised prompt).

The manifest (which inputs were ingested, with their sha256 and per-file counts) lives inside the Parquet
file's metadata, so corpus and manifest are replaced together in one atomic write; a readable copy is written
beside the corpus as CORPUS.manifest.json, committed with it (both change, or neither). An input already in
the manifest (same source, options and sha256; the encoding compared by its codec, however it is spelled) is
not counted twice, so ingesting the same file again changes nothing. An ingest holds the corpus's lock
(anatomy.locks.locked) from reading the old corpus to committing the new one, so concurrent ingests into one
corpus run one after the other and their union is kept.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from anatomy.corpus.engine import (
    EngineOptions,
    memory_limit_bytes,
    refuse_unread_options,
    refuse_untimed_inputs,
)
from anatomy.corpus.engine import plan as engine_plan
from anatomy.corpus.identity import (
    canonical_encoding,
    manifest_key,
    read_options,
    refuse_overwriting_inputs,
    refuse_rereading,
)
from anatomy.corpus.no_prompts import refuse_empty
from anatomy.corpus.normalize import normalize
from anatomy.corpus.records import SURROGATE_REASON, Skipped
from anatomy.corpus.rows import Rows
from anatomy.corpus.schema import CORPUS_COLUMNS, check_corpus_table
from anatomy.corpus.sources import ReadOptions, SourceFile, get_reader
from anatomy.corpus.spool import SpooledFile, spooled
from anatomy.corpus.traffic import row_days, traffic_path, traffic_table
from anatomy.errors import InputError, OptionError
from anatomy.io import atomic_paths, check_path, clean_temps, dumps_json, file_sha256, read_parquet
from anatomy.locks import lock_path, locked

log = logging.getLogger(__name__)

MANIFEST_KEY = b"anatomy.manifest"
MAX_SKIP_EXAMPLES = 5
LONG_PROMPT_CHARS = 100_000  # a "prompt" this long is almost surely not one: kept, but reported


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
    long_prompts: int = 0  # prompts over LONG_PROMPT_CHARS characters (kept; reported as a warning)
    longest: int = 0  # characters in the longest prompt read
    warnings: list[str] = field(default_factory=list)

    def note_long_prompts(self) -> None:
        """Warn (in the report; the CLI prints it) when prompts of absurd length were read: kept, but said."""
        if self.long_prompts:
            self.warnings.append(
                f"{self.long_prompts:,} prompt(s) over {LONG_PROMPT_CHARS:,} characters (longest "
                f"{self.longest:,}): probably not prompts (a file without line breaks?); kept"
            )

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
    relevant = {
        "lvis": ("synonyms", "encoding"),
        "text": ("column", "field", "encoding", "count", "time"),
    }.get(source, ("encoding",))
    chosen = {k: getattr(options, k) for k in relevant}
    chosen = {k: v for k, v in chosen.items() if v is not None or k not in ("count", "time")}  # fmt: skip
    if "encoding" in chosen:
        chosen["encoding"] = canonical_encoding(chosen["encoding"])
    return chosen


def _input_sha256(src: SourceFile, data: bytes | None) -> str:
    if data is not None:
        return hashlib.sha256(data).hexdigest()
    if src.spec.startswith("builtin:"):
        from anatomy.corpus.sources.builtin import fingerprint

        return hashlib.sha256(fingerprint(src.spec).encode()).hexdigest()
    path = src.path
    if path.is_dir():  # a dataset tree (rf100vl): hash the annotation files it reads, not the images
        from anatomy.corpus.sources.rf100vl import ANNOTATIONS

        digest = hashlib.sha256()
        for child in sorted(path.rglob(ANNOTATIONS)):
            digest.update(str(child.relative_to(path)).encode() + b"\0" + file_sha256(child).encode())
        return digest.hexdigest()
    if not path.exists():
        raise InputError(f"{src.spec}: no such file or directory", "check the path")
    try:
        return file_sha256(path)
    except OSError as err:  # permissions, a vanished mount, ...
        raise InputError(f"{src.spec}: cannot read ({err.strerror or err})") from None


def load_corpus(path: str | Path, *, allow_empty: bool = False):
    """Read a corpus Parquet file into a DataFrame, checking it is one (schema, types, nulls, rows)."""
    return read_corpus_table(path, allow_empty=allow_empty).to_pandas()


def read_corpus_table(
    path: str | Path, columns: Sequence[str] = CORPUS_COLUMNS, *, allow_empty: bool = False
):
    """The corpus as a checked Arrow table (all columns are checked; `columns` are returned)."""
    table = _read_table(Path(path), allow_empty=allow_empty)
    return table.select(list(columns))


def _read_table(path: Path, *, allow_empty: bool = True):
    """The corpus columns of `path` as an Arrow table; InputError when it is missing or not a corpus."""
    _read_schema_checked(path)
    table = read_parquet(path, columns=list(CORPUS_COLUMNS))
    check_corpus_table(table, path, allow_empty=allow_empty)
    return table


def _read_schema_checked(path: Path):
    """The Parquet schema of `path`; InputError when it is missing or has not the corpus columns."""
    import pyarrow.parquet as pq

    if not path.exists():
        raise InputError(
            f"{path}: no such corpus", "build one with `anatomy ingest SOURCE PATH --out CORPUS.parquet`"
        )
    check_path(path)  # a FIFO or device is refused before pyarrow opens it
    try:
        names = pq.read_schema(path).names
    except Exception as err:  # pyarrow raises several types for non-Parquet input
        raise InputError(f"{path}: not a readable Parquet file ({err})") from None
    missing = [c for c in CORPUS_COLUMNS if c not in names]
    if missing:
        raise InputError(
            f"{path}: not a corpus; missing columns {missing} (found {names})",
            "build one with `anatomy ingest`",
        )
    return pq.read_schema(path)


def read_manifest(path: str | Path) -> list[dict]:
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    return json.loads(metadata[MANIFEST_KEY]) if MANIFEST_KEY in metadata else []


def ingest(
    source: str,
    inputs: Sequence[str],
    out: str | Path,
    options: ReadOptions = ReadOptions(),
    engine: EngineOptions = EngineOptions(),
) -> IngestReport:
    """Read `inputs` with the `source` reader and merge them into the corpus at `out` (created if absent).

    Nothing is written unless every input reads cleanly, and then corpus and manifest are replaced atomically;
    when every input is already in the manifest the corpus is not rewritten at all. Large, compressed,
    globbed and Parquet text inputs are read by the out-of-core engine (corpus/engine.py), to the same corpus.
    """
    out = Path(out)
    if not inputs:
        raise InputError("no inputs given", "name at least one file, directory, '-' (stdin) or builtin:NAME")
    reader = get_reader(source)
    _options_for(source, options)  # an unknown encoding fails here, before any work
    if not out.name or out.is_dir():  # --out "" or a folder: there is no file name to write
        raise InputError(f"{out}: is a directory; --out must name a corpus .parquet file")
    if options.time and engine.engine == "duckdb":
        raise OptionError(
            "--engine", "the DuckDB engine keeps no timestamps: use --engine python with --time-*"
        )
    refuse_unread_options(source, inputs, options, engine)
    if options.time:
        refuse_untimed_inputs(inputs)
    memory_limit_bytes(engine.memory_limit)  # a bad value is refused whichever engine runs
    refuse_overwriting_inputs(inputs, out, [out, manifest_path(out), traffic_path(out), lock_path(out)])
    if out.suffix != ".parquet":  # its side files are named by its stem: c.csv would share c.parquet's
        raise InputError(
            f"{out}: --out must name a corpus .parquet file", f"e.g. --out {out.with_suffix('.parquet')}"
        )
    with locked(out):
        for side in (manifest_path(out), traffic_path(out)):  # side files' temporaries of a killed ingest
            clean_temps(side)
        with spooled(source, inputs, out) as pipes:  # a pipe is read once, into a copy both readers take
            files = None if options.time else engine_plan(source, inputs, options.encoding, engine, pipes)
            specs = inputs if files is None else [f.spec for f in files]
            refuse_overwriting_inputs(
                specs, out, [out, manifest_path(out), traffic_path(out), lock_path(out)]
            )
            if files is not None:
                from anatomy.corpus.engine_ingest import ingest_engine

                return ingest_engine(files, out, options, engine)
            return _ingest_locked(source, reader, inputs, out, options, pipes)


def _ingest_locked(source, reader, inputs, out: Path, options: ReadOptions, pipes) -> IngestReport:
    rows = Rows()
    manifest: list[dict] = []
    if out.exists():
        rows.load(_read_table(out))
        rows.days = row_days(traffic_path(out), rows.base)
        manifest = read_manifest(out)
    seen = {manifest_key(m) for m in manifest}

    reports = []
    for spec in inputs:
        src = SpooledFile(spec, pipes[spec]) if spec in pipes else SourceFile(spec)
        data = src.read_bytes() if src.is_stdin else None
        chosen = read_options(source, spec, _options_for(source, options))
        stats = FileStats(spec, source, _input_sha256(src, data), chosen)
        key = (source, stats.sha256, json.dumps(stats.options, sort_keys=True))
        if key in seen:
            stats.already_ingested = True
            reports.append(stats)
            log.info("%s: already in %s (same sha256), not counted again", spec, out)
            continue
        refuse_rereading(manifest, spec, source, stats.sha256, stats.options, out)
        records = reader(src, options) if data is None else reader(_BufferedStdin(data), options)
        _merge(rows, source, records, stats)
        seen.add(key)
        reports.append(stats)
        stats.note_long_prompts()
        manifest.append(_manifest_entry(stats))

    fresh = refuse_empty(reports, inputs)
    report = IngestReport(out, reports, len(rows), rows.n_distinct())
    if not fresh:
        return report  # nothing new: leave the bytes alone
    days, table = rows.days, rows.take_table()
    _write_corpus(
        table, manifest, out, traffic_table(days, [table.column(c) for c in ("source", "subset", "prompt")])
    )
    return report


def _manifest_entry(stats: FileStats) -> dict:
    entry = asdict(stats)
    del entry["already_ingested"]
    if not stats.long_prompts:  # the long-prompt fields only when there is something to say
        for key in ("long_prompts", "longest", "warnings"):
            del entry[key]
    return entry


def _merge(rows: Rows, source: str, records, stats: FileStats) -> None:
    """Count every record into `stats` and add the prompts to `rows` (the hot loop of a large ingest).
    A log repeats its lines: each distinct raw text is normalised once (memoised)."""
    clean = functools.lru_cache(maxsize=1 << 18)(_normalized)
    for record in records:
        stats.read += 1
        if isinstance(record, Skipped):
            stats.skip(record)
            continue
        raw = record.raw
        if not isinstance(raw, str):
            stats.skip(Skipped("not a string", record.ref, repr(raw)[:80]))
            continue
        if len(raw) > stats.longest:
            stats.longest = len(raw)
        if len(raw) > LONG_PROMPT_CHARS:
            stats.long_prompts += 1
        prompt = clean(raw)
        if prompt is None:
            stats.skip(Skipped(SURROGATE_REASON, record.ref, repr(raw)[:80]))
            continue
        if not prompt:
            stats.skip(Skipped("empty prompt", record.ref, repr(raw)[:80]))
            continue
        meta = json.dumps(record.meta, sort_keys=True) if record.meta else ""
        try:
            new = rows.add(source, record.subset, prompt, raw, record.ref, meta, record.count, record.day)
        except OverflowError:  # the int64 count column: only counts near 10^12 a million times reach it
            raise InputError(
                f"{record.ref}: the counts of {prompt[:60]!r} sum past what a corpus count holds (2^63-1)",
                "check the count column: a count per record is at most 10^12",
            ) from None
        if new:
            stats.kept += 1
        else:
            stats.merged += 1


def _normalized(raw: str) -> str | None:
    """normalize(raw), or None for text no file can hold: a lone surrogate (JSON's "\\ud83d" alone)."""
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return normalize(raw)


class _BufferedStdin:
    """Stands in for SourceFile('-') once stdin has been read (it can be read only once)."""

    def __init__(self, data: bytes):
        self.spec, self.name, self.is_stdin, self._data = "-", "<stdin>", True, data

    def read_bytes(self) -> bytes:
        return self._data

    def read_text(self, encoding: str = "utf-8", data: bytes | None = None) -> str:
        return SourceFile("-").read_text(encoding, self._data)


def _write_corpus(table, manifest: list[dict], out: Path, traffic=None) -> None:
    """Corpus and its readable manifest copy (and, for timed inputs, its traffic side table), committed
    together: the side files first, the corpus (whose metadata is the manifest of record) last; if any cannot
    be written, all stay as they were."""
    import pyarrow.parquet as pq

    table = table.replace_schema_metadata({MANIFEST_KEY: json.dumps(manifest, sort_keys=True).encode()})
    side = [manifest_path(out)] + ([traffic_path(out)] if traffic is not None else [])
    with atomic_paths(*side, out) as temps:
        temps[0].write_text(dumps_json({"corpus": out.name, "inputs": manifest}), encoding="utf-8")
        if traffic is not None:
            pq.write_table(traffic, temps[1], compression="zstd", write_page_checksum=True)
        pq.write_table(table, temps[-1], compression="zstd", write_page_checksum=True)


def manifest_path(corpus: str | Path) -> Path:
    corpus = Path(corpus)
    return corpus.with_name(corpus.stem + ".manifest.json")


def corpus_summary(frame) -> dict:
    """Counts per source and subset, and distinct prompts overall (a prompt in two sources counts once)."""
    by_source: Counter[str] = Counter()
    by_subset: dict[str, Counter] = {}
    for source, subset in zip(frame["source"], frame["subset"], strict=True):
        by_source[source] += 1
        by_subset.setdefault(source, Counter())[subset] += 1
    return {
        "rows": len(frame),
        "distinct_prompts": int(frame["prompt"].nunique()),
        "occurrences": int(frame["count"].sum()),
        "sources": {
            s: {"rows": by_source[s], "subsets": dict(sorted(by_subset[s].items()))}
            for s in sorted(by_source)
        },
    }
