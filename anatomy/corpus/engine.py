"""Which text inputs the out-of-core engine ingests, and with what settings (the run is engine_run.py).

Why DuckDB. Measured once in one run (benchmarks/bench_logs.py, 2 cores shared with a load average near 12)
on a 10M-line synthetic log (213 MiB, 222,300 distinct prompts), the plain aggregation of the normalised
lines to Parquet: polars' streaming engine 20.3 s and 675 MiB peak, DuckDB 50.1 s and 182 MiB. polars is
faster here, but its memory grows with the input and nothing caps it (4.2 GiB at 100M lines, where
DuckDB took 248 MiB and the ingest 496 MiB at --memory-limit 1GiB), while DuckDB bounds its memory by a
setting (`memory_limit`) and spills hash tables and sorts to a folder we choose (`temp_directory`): the
issue's requirement (a 100M-line log within a fixed budget) is DuckDB's documented behaviour and not
polars'. DuckDB also reads gzip/zstd, globs, CSV, JSON and Parquet natively, numbers lines in order as it
streams them (the corpus keeps each prompt's first line), and its SQL runs on Arrow tables registered from
Python (the non-ASCII normalisation). So DuckDB is a core dependency; polars is only in the dev extra,
for the benchmark.

The engine reads `text` inputs: one-prompt-per-line files (.txt, ...), .csv/.tsv (--column), .jsonl
(--field), each optionally .gz/.zst compressed, and Parquet (--column; a `count` column, or
--count-column, says how often each row occurred: `(prompt, count)` aggregated by Spark, BigQuery or Ray is
a first-class input). A glob (quoted, so the shell leaves it) is expanded into its files; a directory reads
its Parquet files as one subset named after it. `--engine auto` (the default) uses the engine when an input
needs it (compressed, Parquet, a glob or a directory) or the inputs are large (ENGINE_MIN_BYTES); small
plain files keep the Python readers, which give the same corpus (tests/test_ingest_engine.py). A pipe given
as an input (`<(zcat log.gz)`, /dev/stdin) is first read once into a file beside the output (spool.py).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from anatomy.errors import InputError, OptionError

ENGINE_MIN_BYTES = 64 << 20  # auto: plain inputs this large (together) go to the engine
ENGINES = ("auto", "duckdb", "python")
COMPRESSION = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd"}
LINE_SUFFIXES = {".txt", ".text", ".lst", ".list", ""}  # as the Python text reader
KINDS = {**dict.fromkeys(LINE_SUFFIXES, "lines"), ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl",
         ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}  # fmt: skip
MEMORY_FRACTION = 0.25  # default --memory-limit: a quarter of the machine, within the range below
MEMORY_MIN, MEMORY_DEFAULT_MAX = 128 << 20, 8 << 30
_GLOB_CHARS = re.compile(r"[*?\[]")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class EngineOptions:
    engine: str = "auto"  # auto | duckdb | python
    memory_limit: str | None = None  # e.g. "2GiB", "500MB", "25%"; None: MEMORY_FRACTION of the machine
    count_column: str | None = None  # csv/tsv/parquet: the column holding each row's count
    count_field: str | None = None  # jsonl: the field holding each line's count
    threads: int | None = None  # DuckDB threads; None: DuckDB's default (the CPU count)


@dataclass(frozen=True)
class EngineInput:
    """One file the engine reads: `spec` names it in the manifest, `name` in refs, `subset` in the corpus."""

    spec: str
    path: Path
    kind: str  # lines | csv | tsv | jsonl | parquet
    compressed: bool
    subset: str

    @property
    def name(self) -> str:
        """The file name as refs give it (without a compression suffix: `log.txt:12` in log.txt.gz)."""
        return self.path.name[: -len(self.path.suffix)] if self.compressed else self.path.name


def machine_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_limit_bytes(value: str | None) -> int:
    """--memory-limit as bytes: a size (512MB, 2GiB, 4G) or a percentage of the machine's memory."""
    total = machine_memory()
    if value is None:
        return int(min(max(total * MEMORY_FRACTION, MEMORY_MIN), MEMORY_DEFAULT_MAX))
    text = value.strip()
    if text.endswith("%"):
        try:
            percent = float(text[:-1])
        except ValueError:
            percent = -1.0
        if not 1 <= percent <= 90:
            raise OptionError("--memory-limit", f"{value!r}: a percentage must be between 1% and 90%")
        return int(total * percent / 100)
    match = _SIZE.match(text)
    if not match:
        raise OptionError("--memory-limit", f"{value!r} is not a size", "write e.g. 2GiB, 500MB or 25%")
    number, unit, suffix = float(match[1]), match[2].lower(), (match[3] or "").lower()
    power = " kmgt".index(unit or " ")
    size = int(number * ((1024 if suffix == "ib" or not suffix else 1000) ** power))
    if not MEMORY_MIN <= size <= total:
        raise OptionError(
            "--memory-limit",
            f"{value!r} is outside {MEMORY_MIN >> 20} MiB .. {total >> 20} MiB (this machine's memory)",
        )
    return size


def _kind_of(path: Path) -> tuple[str | None, bool]:
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] in COMPRESSION
    if compressed:
        suffixes = suffixes[:-1]
    return KINDS.get(suffixes[-1] if suffixes else ""), compressed


def _subset_of(path: Path, compressed: bool) -> str:
    name = path.name
    if compressed:
        name = name[: -len(path.suffix)]
    return Path(name).stem


def _expand(spec: str, copy: Path | None = None) -> tuple[list[EngineInput], bool] | None:
    """The engine inputs behind one spec, and whether only the engine can read them; None: it cannot.
    `copy`: the spec is a pipe read into this file (same name), which the engine reads instead."""
    if spec == "-" or spec.startswith("builtin:"):
        return None
    if copy is not None:
        kind, compressed = _kind_of(copy)
        if kind is None:
            return None
        return [EngineInput(spec, copy, kind, compressed, _subset_of(copy, compressed))], compressed
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _kind_of(p)[0] == "parquet")
        if not files:
            raise InputError(
                f"{spec}: a folder with no .parquet files in it",
                "the text source reads a folder only as a Parquet dataset; give the files themselves",
            )
        subset = path.resolve().name  # "." names the folder it is
        return [EngineInput(str(p), p, "parquet", False, subset) for p in files], True
    needs = False
    if not path.exists() and _GLOB_CHARS.search(spec):
        found = sorted(glob.glob(spec, recursive=True))
        if not found:
            raise InputError(f"{spec}: no file matches this pattern", "check the pattern and its quoting")
        paths, needs = [Path(p) for p in found if Path(p).is_file()], True
        if not paths:
            raise InputError(
                f"{spec}: matches only folders, no file", "check the pattern (e.g. 'logs/*.txt')"
            )
    else:
        paths = [path]
    inputs = []
    for p in paths:
        kind, compressed = _kind_of(p)
        if kind is None and needs:  # only the engine expands a pattern: it must read every file matched
            raise InputError(
                f"{spec}: matches {p}, which the engine does not read (it reads .txt/.csv/.tsv/.jsonl/"
                ".parquet, optionally .gz/.zst)",
                "narrow the pattern (e.g. '*.txt.gz'), and ingest other files by name",
            )
        if kind is None:
            return None
        needs = needs or compressed or kind == "parquet"
        inputs.append(EngineInput(str(p), p, kind, compressed, _subset_of(p, compressed)))
    return inputs, needs


def refuse_unread_options(source: str, inputs: Sequence[str], read, options: EngineOptions) -> None:
    """An option that no input reads would be silently ignored: a usage error (OptionError), before any work.
    A count or time option with any .txt or .json list input (its records would count 1, undated); --column
    when no input is a table, or beside JSON lines without --field (the default field would be read);
    --field when no input is JSON lines; either with a source other than text; --synonyms but with lvis."""
    if read.synonyms and source != "lvis":
        raise OptionError("--synonyms", f"only the lvis source has synonyms, not {source}")
    if source != "text":
        for flag, given in (("--column", read.column), ("--field", read.field)):
            if given is not None:
                raise OptionError(flag, f"the {source} source has no columns or fields to choose")
        return
    count = read.count or options.count_column or options.count_field
    kinds = []
    for spec in inputs:
        if spec == "-":
            if read.column is not None and read.field is not None:
                raise OptionError(
                    "--column", "stdin is read as CSV (--column) or JSON lines (--field), not both"
                )
            kinds.append((spec, _text_kind(spec, read)))
        elif Path(spec).is_dir():  # a Parquet dataset
            kinds.append((spec, "parquet"))
        elif not spec.startswith("builtin:"):
            pattern = not Path(spec).exists() and _GLOB_CHARS.search(spec)
            names = sorted(glob.glob(spec, recursive=True)) if pattern else [spec]
            kinds += [(name, _text_kind(name, read)) for name in names]
    for name, kind in kinds:
        for flag, given, readers in (
            ("--count-column/--count-field", count, "csv/tsv/jsonl/Parquet"),
            ("--time-column/--time-field", read.time, "csv/tsv/jsonl"),
        ):
            if given is not None and kind in ("lines", "json"):
                raise OptionError(
                    flag,
                    f"{name} is a {_KIND_WORDS[kind]} file: it has no column or field to read that from",
                    f"give it with {readers} inputs only; ingest this file in a separate run without it",
                )
        if kind == "jsonl" and read.column is not None and read.field is None:
            raise OptionError(
                "--column", f"{name} is a JSON lines file: its prompts are in a field", "name it with --field"
            )
    found = sorted({_KIND_WORDS[kind] for _, kind in kinds if kind in _KIND_WORDS})
    for flag, given, tables in (
        ("--column", read.column, "csv tsv parquet"),
        ("--field", read.field, "jsonl"),
    ):
        if given is not None and kinds and not any(kind in tables.split() for _, kind in kinds):
            raise OptionError(
                flag, f"no input has a {flag[2:]} to choose (the inputs: {', '.join(found)} files)"
            )


def refuse_untimed_inputs(inputs: Sequence[str]) -> None:
    """Timestamps are read by the Python readers only, which take no compressed, Parquet or globbed input: a
    usage error naming the input, before any work."""
    for spec in inputs:
        path = Path(spec)
        kind, compressed = _kind_of(path) if spec != "-" else (None, False)
        if (
            compressed
            or kind == "parquet"
            or path.is_dir()
            or (not path.exists() and _GLOB_CHARS.search(spec))
        ):
            raise OptionError(
                "--time-column/--time-field",
                f"{spec}: timestamps are read by the Python reader, which takes no compressed, Parquet or "
                "globbed input",
                "decompress the file (or name the files) first",
            )


_KIND_WORDS = {"lines": "one-prompt-per-line", "json": "JSON list", "jsonl": "JSON lines", "csv": "CSV",
               "tsv": "TSV", "parquet": "Parquet"}  # fmt: skip


def _text_kind(spec: str, read) -> str:
    """How the text source reads `spec` (engine or Python reader): lines, json, csv, tsv, jsonl or parquet."""
    if spec == "-":
        return "jsonl" if read.field else "csv" if read.column else "lines"
    if Path(spec).suffix.lower() == ".json":
        return "json"
    return _kind_of(Path(spec))[0] or ""


def _refuse_forced(source: str, inputs: Sequence[str], expanded: list, utf8: bool) -> None:
    """--engine duckdb with inputs it cannot read: say which and why (a usage error)."""
    if source != "text":
        raise OptionError("--engine", f"duckdb reads the text source, not {source}", "leave --engine at auto")
    if not utf8:
        raise OptionError("--engine", "duckdb reads UTF-8 only", "use --engine python with --encoding")
    spec = next(spec for spec, e in zip(inputs, expanded, strict=True) if e is None)
    if spec == "-":
        raise OptionError(
            "--engine", "duckdb does not read stdin ('-')", "leave --engine at auto, or give /dev/stdin"
        )
    raise OptionError(
        "--engine",
        f"duckdb does not read {spec} (it reads .txt/.csv/.tsv/.jsonl/.parquet, optionally .gz/.zst)",
        "leave --engine at auto",
    )


def plan(
    source: str,
    inputs: Sequence[str],
    encoding: str,
    options: EngineOptions,
    pipes: Mapping[str, Path] | None = None,
) -> list[EngineInput] | None:
    """The files the engine ingests for these inputs, or None when the Python readers take them; `pipes`
    maps an input that is a pipe to its spooled copy (spool.py), which the engine reads instead."""
    if options.engine not in ENGINES:
        raise OptionError("--engine", f"{options.engine!r} is not one of {', '.join(ENGINES)}")
    if options.engine == "python":
        return None
    pipes = pipes or {}
    expanded = [_expand(spec, pipes.get(spec)) for spec in inputs] if source == "text" else []
    needed = [spec for spec, e in zip(inputs, expanded, strict=False) if e is not None and e[1]]
    utf8 = encoding.lower().replace("_", "-") in ("utf-8", "utf8")
    if source != "text" or not utf8 or any(e is None for e in expanded):
        if options.engine == "duckdb" and not needed:
            _refuse_forced(source, inputs, expanded, utf8)
        if needed or options.engine == "duckdb":
            what = needed[0] if needed else "these inputs"
            raise InputError(
                f"{what}: only the engine reads it, and the engine reads text sources in UTF-8 "
                "(.txt/.csv/.tsv/.jsonl/.parquet, optionally .gz/.zst) together with nothing else",
                "ingest the other inputs in a separate `anatomy ingest` into the same --out",
            )
        return None
    files = [f for e in expanded if e is not None for f in e[0]]
    if options.engine == "auto" and not needed:
        if not all(f.path.is_file() for f in files):  # the Python readers word the error
            return None
        if sum(f.path.stat().st_size for f in files) < ENGINE_MIN_BYTES:
            return None
    return files
