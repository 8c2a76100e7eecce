"""The engine's ingest, called by corpus.ingest under the corpus's lock (see engine.py and engine_run.py)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from anatomy.corpus import engine_sql as sql
from anatomy.corpus.corpus import (
    CORPUS_COLUMNS,
    LONG_PROMPT_CHARS,
    MANIFEST_KEY,
    MAX_SKIP_EXAMPLES,
    FileStats,
    IngestReport,
    _manifest_entry,
    _options_for,
    manifest_path,
    read_manifest,
    refuse_empty,
)
from anatomy.corpus.engine import EngineInput, EngineOptions
from anatomy.corpus.engine_run import BATCH, CORPUS_DDL, connection, engine_error, records_sql, scan_file
from anatomy.corpus.identity import manifest_key
from anatomy.corpus.schema import REBUILD_HINT
from anatomy.errors import InputError
from anatomy.io import atomic_paths, dumps_json

log = logging.getLogger(__name__)

_GROUPED = """
CREATE OR REPLACE TABLE g AS
SELECT bad, fast, key, arg_min(raw, n) AS raw, min(n) AS first, sum(cnt) AS count, count(*) AS records,
       max(length(raw)) FILTER (WHERE bad IS NULL) AS longest,
       count(*) FILTER (WHERE bad IS NULL AND length(raw) > {long}) AS long_n
FROM (SELECT n, raw, cnt, bad, fast, CASE WHEN bad IS NULL AND fast THEN {prompt} WHEN bad IS NULL THEN raw END AS key
      FROM (SELECT *, bad IS NULL AND {fast} AS fast
            FROM ({records})))
GROUP BY bad, fast, key
"""
_AGG = """
CREATE OR REPLACE TABLE agg AS
SELECT prompt, arg_min(raw, first) AS raw, min(first) AS first, sum(count) AS count, sum(records) AS records
FROM (SELECT CASE WHEN g.fast THEN g.key ELSE m.prompt END AS prompt, g.raw, g.first, g.count, g.records
      FROM g LEFT JOIN slowmap m ON NOT g.fast AND g.key = m.raw WHERE g.bad IS NULL)
GROUP BY prompt
"""
# the first few skipped records of each reason, in file order (a second pass, only when something was skipped)
_EXAMPLES = """
SELECT reason, arg_min(struct_pack(n := n, raw := raw, example := example), n, {k}) FROM (
  SELECT coalesce(bad, 'empty prompt') AS reason, n, raw, example FROM ({records})
  WHERE bad IS NOT NULL OR (CASE WHEN {fast} THEN {prompt} = '' ELSE raw IN
        (SELECT raw FROM slowmap WHERE prompt = '') END)
) GROUP BY reason
"""
_NEW = "NOT EXISTS (SELECT 1 FROM corpus c WHERE c.source = 'text' AND c.subset = $subset AND c.prompt = agg.prompt)"


def checked(records: str) -> str:
    """`records` with a missing, non-integer or non-positive count skipped too."""
    return (
        "SELECT n, raw, cnt, CASE WHEN bad IS NULL AND (cnt IS NULL OR cnt < 1) THEN 'count is not a "
        "positive integer' ELSE bad END AS bad, CASE WHEN bad IS NULL AND (cnt IS NULL OR cnt < 1) THEN "
        f"left(coalesce(example, raw), 80) ELSE example END AS example FROM ({records})"
    )


def ingest_engine(files: Sequence[EngineInput], out: Path, options, eopts: EngineOptions) -> IngestReport:
    import duckdb

    with connection(out, eopts) as con:
        manifest: list[dict] = []
        if out.exists():
            _load_corpus(con, out)
            manifest = read_manifest(out)
        else:
            con.execute(CORPUS_DDL)
        seen = {manifest_key(m) for m in manifest}
        reports = []
        for f in files:
            sha, new_line = scan_file(f)
            chosen = _options_for("text", options)
            chosen.update({k: v for k, v in (("count_column", eopts.count_column),
                                              ("count_field", eopts.count_field)) if v is not None})  # fmt: skip
            stats = FileStats(f.spec, "text", sha, chosen)
            key = ("text", sha, json.dumps(chosen, sort_keys=True))
            reports.append(stats)
            if key in seen:
                stats.already_ingested = True
                log.info("%s: already in %s (same sha256), not counted again", f.spec, out)
                continue
            try:
                _ingest_file(con, f, checked(records_sql(con, f, new_line, options, eopts)), stats)
            except duckdb.Error as err:  # a file the engine cannot parse, memory
                raise engine_error(f.spec, err) from None
            seen.add(key)
            stats.note_long_prompts()
            manifest.append(_manifest_entry(stats))
        fresh = refuse_empty(reports, [f.spec for f in files])
        n_rows, n_distinct = con.execute("SELECT count(*), count(DISTINCT prompt) FROM corpus").fetchone()
        if fresh:
            _write(con, manifest, out)
        return IngestReport(out, reports, n_rows, n_distinct)


def _load_corpus(con, out: Path) -> None:
    """The existing corpus into the engine, checked as corpus._read_table checks it, without loading it here."""
    import pyarrow.parquet as pq

    from anatomy.corpus.schema import check_corpus_table

    try:
        schema = pq.read_schema(out)
    except Exception as err:
        raise InputError(f"{out}: not a readable Parquet file ({err})") from None
    missing = [c for c in CORPUS_COLUMNS if c not in schema.names]
    if missing:
        raise InputError(f"{out}: not a corpus; missing columns {missing} (found {schema.names})",
                         "build one with `anatomy ingest`")  # fmt: skip
    check_corpus_table(schema.empty_table(), out, allow_empty=True)  # the types
    cols = ", ".join(sql.ident(c) for c in CORPUS_COLUMNS)
    con.execute(CORPUS_DDL)
    con.execute(f"INSERT INTO corpus SELECT file_row_number, {cols} FROM read_parquet($p, file_row_number=true)",
                {"p": str(out)})  # fmt: skip
    nulls = ", ".join(f"count(*) FILTER (WHERE {sql.ident(c)} IS NULL)" for c in CORPUS_COLUMNS)
    *null_counts, low, empty = con.execute(
        f"SELECT {nulls}, count(*) FILTER (WHERE count < 1), count(*) FILTER (WHERE prompt = '') FROM corpus"
    ).fetchone()
    for column, n in zip(CORPUS_COLUMNS, null_counts, strict=True):
        if n:
            raise InputError(f"{out}: column {column!r} has {n:,} missing (null) values", REBUILD_HINT)
    if low:
        raise InputError(f"{out}: column 'count' has values below 1", REBUILD_HINT)
    if empty:
        raise InputError(f"{out}: column 'prompt' has empty prompts", REBUILD_HINT)


def _ingest_file(con, f: EngineInput, records: str, stats: FileStats) -> None:
    import pyarrow as pa

    from anatomy.corpus.normalize import normalize

    fast, prompt = sql.fast_match("raw"), sql.fast_prompt("raw")
    con.execute(_GROUPED.format(long=LONG_PROMPT_CHARS, prompt=prompt, fast=fast, records=records))
    con.execute("CREATE OR REPLACE TABLE slowmap (raw VARCHAR, prompt VARCHAR)")
    slow = con.cursor()  # Python's normalize() on the distinct raw strings the SQL form does not cover
    reader = slow.sql("SELECT key FROM g WHERE bad IS NULL AND NOT fast").to_arrow_reader(BATCH)
    for batch in reader:
        raws = batch.column(0).to_pylist()
        con.register("slow_batch", pa.table({"raw": raws, "prompt": [normalize(r) for r in raws]}))
        con.execute("INSERT INTO slowmap SELECT raw, prompt FROM slow_batch")
        con.unregister("slow_batch")
    slow.close()
    con.execute(_AGG)

    read, longest, long_n = con.execute("SELECT sum(records), max(longest), sum(long_n) FROM g").fetchone()
    stats.read, stats.longest, stats.long_prompts = int(read or 0), int(longest or 0), int(long_n or 0)
    skipped = dict(
        con.execute("SELECT bad, sum(records) FROM g WHERE bad IS NOT NULL GROUP BY bad").fetchall()
    )
    empty = con.execute("SELECT sum(records) FROM agg WHERE prompt = ''").fetchone()[0]
    if empty:
        skipped["empty prompt"] = empty
    if skipped:
        _skips(con, f, records, stats, skipped)
    params = {"subset": f.subset}
    kept, good = con.execute(
        f"SELECT count(*) FILTER (WHERE {_NEW}), coalesce(sum(records), 0) FROM agg WHERE prompt <> ''",
        params,
    ).fetchone()
    stats.kept, stats.merged = int(kept), int(good) - int(kept)
    con.execute(
        "UPDATE corpus SET count = corpus.count + agg.count FROM agg WHERE corpus.source = 'text' "
        "AND corpus.subset = $subset AND corpus.prompt = agg.prompt AND agg.prompt <> ''",
        params,
    )
    con.execute(
        "INSERT INTO corpus SELECT (SELECT coalesce(max(ord), -1) FROM corpus) + row_number() OVER (ORDER BY first), "
        f"prompt, raw, 'text', $subset, count, $name || ':' || first, '' FROM agg WHERE prompt <> '' AND {_NEW}",
        {**params, "name": f.name},
    )
    assert stats.read == stats.kept + stats.merged + stats.skipped, stats


def _skips(con, f: EngineInput, records: str, stats: FileStats, counts: dict[str, int]) -> None:
    """Skip counts with their first examples, worded as the Python readers word them, in file order."""
    fast, prompt = sql.fast_match("raw"), sql.fast_prompt("raw")
    rows = con.execute(
        _EXAMPLES.format(k=MAX_SKIP_EXAMPLES, fast=fast, prompt=prompt, records=records)
    ).fetchall()
    for reason, examples in sorted(rows, key=lambda row: min(e["n"] for e in row[1])):
        texts = []
        for e in sorted(examples, key=lambda e: e["n"]):
            example = e["example"]
            if reason == "empty prompt":
                example = repr(e["raw"])[:80]
            elif reason.startswith("not a string") and f.kind == "jsonl" and example is not None:
                example = repr(json.loads(example))[:80]
            where = f"{f.name}:{e['n']}"
            if reason == "invalid JSON line" and example is not None:  # the full line: say the column
                where, example = where + _json_column(example), example[:80]
            texts.append(f"{where}: {example}" if example else where)
        stats.skips[reason] = {"count": int(counts[reason]), "examples": texts}
        stats.skipped += int(counts[reason])


def _json_column(line: str) -> str:
    try:
        json.loads(line)
    except json.JSONDecodeError as err:
        return f", column {err.colno}"
    except (ValueError, RecursionError):
        pass
    return ""


def _write(con, manifest: list[dict], out: Path) -> None:
    """Corpus (its rows in order, the manifest in its metadata) and the manifest copy, committed together."""
    meta = sql.quote(json.dumps(manifest, sort_keys=True))
    side = manifest_path(out)
    cols = ", ".join(sql.ident(c) for c in CORPUS_COLUMNS)
    with atomic_paths(side, out) as (side_tmp, out_tmp):
        side_tmp.write_text(dumps_json({"corpus": out.name, "inputs": manifest}), encoding="utf-8")
        con.execute(
            f"COPY (SELECT {cols} FROM corpus ORDER BY ord) TO {sql.quote(str(out_tmp))} "
            f"(FORMAT parquet, COMPRESSION zstd, KV_METADATA {{{sql.quote(MANIFEST_KEY.decode())}: {meta}}})"
        )
