"""An ingest on the engine (DuckDB): read, normalise and aggregate each input out of core, merge into the corpus.

Per input, a scan of its bytes (sha256 for the manifest; line endings, see scan_file) and one pass of the
engine that groups the records by their raw text (a log repeats its lines: 1M lines of the benchmark hold
223k distinct texts), keeping each text's count and first position and the skips by reason; each distinct
text is then normalised once (the SQL form for printable ASCII, Python's normalize() for the rest), a small
second aggregation groups the texts by prompt (first raw text, first position, summed counts), and the
corpus table (inside DuckDB, the old corpus read from its Parquet file) is updated: counts added to rows it
has, new rows appended in order of first occurrence (a new corpus from one input is written straight from
the aggregate). This is what the Python path does row by row, so the corpus, its manifest and the FileStats
(read = kept + merged + skipped) are the same.

DuckDB's memory is capped by --memory-limit and it spills to a folder beside the output
(.NAME.engine-XXXX), removed on success and on failure (and, if the process was killed, by the next ingest,
which holds the corpus's lock). The corpus and its manifest are committed together by atomic_paths.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from anatomy.corpus import engine_sql as sql
from anatomy.corpus.engine import EngineInput, EngineOptions, memory_limit_bytes
from anatomy.errors import InputError

log = logging.getLogger(__name__)

BATCH = 100_000  # rows per batch when Python touches rows (non-ASCII normalisation, the fallback reader)
CORPUS_DDL = (
    "CREATE TABLE corpus (ord BIGINT, prompt VARCHAR, raw VARCHAR, source VARCHAR, subset VARCHAR, "
    "count BIGINT, ref VARCHAR, meta VARCHAR)"
)


def work_dirs(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.engine-*"))


@contextlib.contextmanager
def connection(out: Path, options: EngineOptions):
    """A DuckDB connection capped at --memory-limit, spilling into a fresh folder beside `out`."""
    import duckdb

    limit = memory_limit_bytes(options.memory_limit)
    for stale in work_dirs(out):  # left by a killed ingest; we hold the corpus's lock
        shutil.rmtree(stale, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.engine-", dir=out.parent))
    try:
        config: dict[str, Any] = {
            "memory_limit": f"{limit >> 20}MiB",
            "temp_directory": str(work),
            "preserve_insertion_order": True,
        }
        if options.threads:
            config["threads"] = options.threads
        con = duckdb.connect(":memory:", config=config)
        con.execute("SET enable_progress_bar = false")
        try:
            yield con
        finally:
            con.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def engine_error(spec: str, err: Exception) -> InputError:
    """One line for a DuckDB error on `spec`: invalid UTF-8 named by its line, a CSV error with its reason."""
    text = str(err).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    message = lines[0] if lines else type(err).__name__
    at = re.search(r"CSV Error on Line: (\d+)", message)
    if "Invalid unicode" in text:
        return InputError(
            f"{spec}: {f'line {at[1]}' if at else 'a line'} is not valid UTF-8",
            "the engine reads UTF-8: convert the file (e.g. `iconv -f latin1 -t utf-8`), or read an "
            "uncompressed file with --engine python --encoding NAME",
        )
    if at:  # the reason DuckDB gives after the offending line (never the line itself: user text)
        reason = next((x for x in lines[1:] if not x.startswith(("Original Line", "Possible", "*"))), "")
        message = f"line {at[1]}: {reason}" if reason else message
    hint = "raise --memory-limit" if "memory" in message.lower() else "check the file, or use --engine python"
    if "Maximum line size" in text:  # DuckDB's scanner stops at 2 MB lines; the Python reader has no limit
        hint = (
            "a line that long is hardly a prompt: check the file; to read it anyway, decompress it (if it is "
        )
        hint += "compressed) and use --engine python"
    if any(word in message.lower() for word in ("compressed", "gzip", "zstd", "zlib", "inflate")):
        hint = "the compressed file is damaged or incomplete: check it with `gzip -t` or `zstd -t`"
    return InputError(f"{spec}: the engine cannot read it ({message})", hint)


def scan_file(f: EngineInput) -> tuple[str, str | None]:
    """sha256 of the file's bytes, and the line ending the engine splits on: "\\n", "\\r\\n", or None when
    a line-based file holds a CR alone or a unit separator (0x1f) and the Python reader must take it. One
    pass; CRs are counted only in the chunks that hold one (memchr first), so a plain log costs its hash."""
    digest = hashlib.sha256()
    line_based = f.kind != "parquet"  # csv/tsv too: the engine reads their lines (engine_sql.csv_records)
    ends = _LineEnds()
    try:
        with open(f.path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
                if line_based and not f.compressed:
                    ends.add(chunk)
        if line_based and f.compressed:
            import pyarrow as pa

            with pa.input_stream(str(f.path), compression="detect") as stream:
                for chunk in iter(lambda: stream.read(1 << 20), b""):
                    ends.add(chunk)
    except FileNotFoundError:
        raise InputError(f"{f.spec}: no such file", "check the path") from None
    except IsADirectoryError:
        raise InputError(f"{f.spec}: is a directory, expected a file") from None
    except OSError as err:
        if f.compressed and not err.strerror:  # pyarrow: a damaged or truncated gzip/zstd stream
            raise engine_error(f.spec, err) from None
        raise InputError(f"{f.spec}: cannot read ({err.strerror or err})") from None
    except Exception as err:  # pyarrow: a damaged gzip/zstd stream
        raise engine_error(f.spec, err) from None
    return digest.hexdigest(), ends.new_line() if line_based else "\n"


class _LineEnds:
    """Counts CRs, CRLFs and unit separators (0x1f) over consecutive chunks of a file."""

    def __init__(self) -> None:
        self.cr = self.crlf = self.unit = 0
        self.last = b""

    def add(self, chunk: bytes) -> None:
        if self.last == b"\r" and chunk[:1] == b"\n":
            self.crlf += 1
        if b"\r" in chunk:
            self.cr += chunk.count(b"\r")
            self.crlf += chunk.count(b"\r\n")
        if not self.unit and b"\x1f" in chunk:
            self.unit = 1
        self.last = chunk[-1:]

    def new_line(self) -> str | None:
        return None if self.unit or self.cr != self.crlf else "\r\n" if self.crlf else "\n"


def count_name(f: EngineInput, options, eopts: EngineOptions) -> str | None:
    """The column/field holding each record's count: --count-column/--count-field (one ReadOptions.count, as
    the Python reader reads it, or EngineOptions for library callers); None: every record counts 1."""
    return options.count or eopts.count_column or eopts.count_field


def records_sql(con, f: EngineInput, new_line: str | None, options, eopts: EngineOptions) -> str:
    """The SQL relation of `f`'s records (engine_sql's shape)."""
    from anatomy.corpus.sources import SourceFile
    from anatomy.corpus.sources.text import _pick

    if new_line is None:
        return python_records(con, f, options)
    src = SourceFile(f.spec)
    count = count_name(f, options, eopts)
    if count is not None and f.kind != "parquet":
        _register_count(con)
    if f.kind == "lines":
        return sql.lines_records(str(f.path), new_line)
    if f.kind in ("jsonl", "csv", "tsv"):
        from anatomy.corpus import engine_udf

        engine_udf.register(con)
    if f.kind == "jsonl":
        field = options.field if options.field is not None else _first_fields(con, f, new_line, src)
        return sql.jsonl_records(str(f.path), new_line, field, count)
    if f.kind in ("csv", "tsv"):
        delimiter = "\t" if f.kind == "tsv" else ","
        header = _csv_header(f, new_line, delimiter)
        if header is None:  # a header the engine cannot read alone: the Python reader words it
            return python_records(con, f, options)
        column = _pick(src, header, options.column, "--column")
        if count is not None:
            _pick(src, header, count, "--count-column")
        return sql.csv_records(str(f.path), new_line, delimiter, header, column, count)
    described = con.execute(f"DESCRIBE SELECT * FROM read_parquet({sql.quote(str(f.path))})").fetchall()
    types = {row[0]: row[1] for row in described}
    header = list(types)
    column = _pick(src, header, options.column, "--column")
    if types[column] != "VARCHAR":
        raise InputError(
            f"{f.spec}: column {column!r} holds {types[column]}, not strings", "pass --column NAME"
        )
    count = count or ("count" if "count" in types and column != "count" else None)
    if count is not None:
        _pick(src, header, count, "--count-column")
        if not sql.PARQUET_COUNT_TYPE.fullmatch(types[count]):
            raise InputError(
                f"{f.spec}: count column {count!r} holds {types[count]}, not integers",
                "pass --count-column NAME",
            )
    return sql.parquet_records(str(f.path), column, count, types[count] if count else "BIGINT")


def _first_fields(con, f: EngineInput, new_line: str, src) -> str:
    """The field holding the prompts, picked (as the Python reader does) from the keys of the first line that
    json.loads reads as an object; "prompt" when none does."""
    cur = con.cursor()
    cur.execute(
        f"SELECT line FROM ({sql.lines(str(f.path), new_line)}) WHERE regexp_matches(line, "
        f"{sql.quote('^' + sql.PY_SPACE + '*{')})"
    )
    try:
        while batch := cur.fetchmany(1000):
            for (line,) in batch:
                try:
                    obj = json.loads(line)
                except (ValueError, RecursionError):
                    continue
                if isinstance(obj, dict):
                    from anatomy.corpus.sources.text import _pick

                    return _pick(src, sorted(map(str, obj)), None, "--field")
    finally:
        cur.close()
    return "prompt"


def _csv_header(f: EngineInput, new_line: str, delimiter: str) -> list[str] | None:
    """The header row as the Python reader reads it (fields stripped); None when the engine cannot read it
    alone (an empty or undecodable first line, a quoted field spanning lines, a stray quote)."""
    import pyarrow as pa

    from anatomy.corpus.engine_udf import csv_fields

    head = b""
    with pa.input_stream(str(f.path), compression="detect") as stream:
        while b"\n" not in head and (chunk := stream.read(1 << 16)):
            head += chunk
    try:
        line = head.split(b"\n", 1)[0].decode("utf-8")
    except UnicodeDecodeError:
        return None
    line = line.removeprefix("\ufeff")
    if new_line == "\r\n":
        line = line.removesuffix("\r")
    fields = csv_fields(line, delimiter) if line else None
    return [h.strip() for h in fields] if fields else None


def _register_count(con) -> None:
    """traffic.parse_count as a DuckDB function, for counts not in plain digits (engine_sql.count_value)."""
    import duckdb

    from anatomy.corpus.traffic import parse_count

    try:
        con.create_function(sql.COUNT_UDF, parse_count, ["VARCHAR"], "BIGINT", type="native",
                            null_handling="special", side_effects=False)  # fmt: skip
    except duckdb.NotImplementedException:  # registered already (an earlier input of this ingest)
        pass


def python_records(con, f: EngineInput, options) -> str:
    """The Python text reader's records of `f`, loaded into DuckDB in batches (the rare fallback)."""
    import pyarrow as pa

    from anatomy.corpus.records import Skipped
    from anatomy.corpus.sources.text import read

    schema = pa.schema([("n", pa.int64()), ("raw", pa.string()), ("cnt", pa.int64()),
                        ("bad", pa.string()), ("example", pa.string())])  # fmt: skip
    con.execute(
        "CREATE OR REPLACE TABLE fallback (n BIGINT, raw VARCHAR, cnt BIGINT, bad VARCHAR, example VARCHAR)"
    )
    rows: list[tuple] = []

    def flush() -> None:
        batch = pa.Table.from_pylist([dict(zip(schema.names, r, strict=True)) for r in rows], schema)
        con.register("fallback_batch", batch)
        con.execute("INSERT INTO fallback SELECT * FROM fallback_batch")
        con.unregister("fallback_batch")
        rows.clear()

    for record in read(_Decompressed(f), options):  # type: ignore[arg-type]  # duck-typed SourceFile
        n = int(record.ref[len(f.name) + 1 :].split(",")[0])
        if isinstance(record, Skipped):
            rows.append((n, None, 1, record.reason, record.example))
        else:
            rows.append((n, record.raw, 1, None, None))
        if len(rows) >= BATCH:
            flush()
    if rows:
        flush()
    return "SELECT * FROM fallback"


class _Decompressed:
    """Stands in for a SourceFile of a (possibly compressed) engine input, for the Python text reader."""

    is_stdin = False

    def __init__(self, f: EngineInput):
        self.spec, self.name, self._f = f.spec, f.name, f

    def read_bytes(self) -> bytes:
        import pyarrow as pa

        with pa.input_stream(str(self._f.path), compression="detect") as stream:
            return stream.read()

    def read_text(self, encoding: str = "utf-8", data: bytes | None = None) -> str:
        from anatomy.corpus.sources import SourceFile

        return SourceFile(self.spec).read_text(encoding, self.read_bytes() if data is None else data)
