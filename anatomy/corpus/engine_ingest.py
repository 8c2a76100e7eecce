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
)
from anatomy.corpus.engine import EngineInput, EngineOptions
from anatomy.corpus.engine_run import (
    BATCH,
    CORPUS_DDL,
    connection,
    count_name,
    engine_error,
    python_records,
    records_sql,
    scan_file,
)
from anatomy.corpus.identity import manifest_key, read_options, refuse_rereading
from anatomy.corpus.no_prompts import refuse_empty
from anatomy.corpus.schema import REBUILD_HINT
from anatomy.errors import InputError
from anatomy.io import atomic_paths, dumps_json

log = logging.getLogger(__name__)

INT64_MAX = 2**63 - 1

# one row per distinct raw text (a log repeats its lines: 1M lines of the benchmark hold 223k distinct texts),
# so the normalisation below runs once per distinct text, not per line; skipped records group by reason
_DISTINCT = """
CREATE OR REPLACE TABLE r AS
SELECT bad, raw, min(n) AS first, sum(cnt) AS count, count(*) AS records, bad IS NULL AND {fast} AS fast
FROM (SELECT n, CASE WHEN bad IS NULL THEN raw END AS raw, cnt, bad FROM ({records}))
GROUP BY bad, raw
"""
_AGG = """
CREATE OR REPLACE TABLE agg AS
SELECT prompt, arg_min(raw, first) AS raw, min(first) AS first, sum(count) AS count, sum(records) AS records
FROM (SELECT CASE WHEN r.fast THEN {prompt} ELSE m.prompt END AS prompt, r.raw, r.first, r.count, r.records
      FROM r LEFT JOIN slowmap m ON NOT r.fast AND r.raw = m.raw WHERE r.bad IS NULL)
GROUP BY prompt
"""
# the first few skipped records of each reason, in file order (a second pass, only when something was skipped)
_EXAMPLES = """
SELECT reason, arg_min(struct_pack(n := n, raw := raw, example := example), n, {k}) FROM (
  SELECT coalesce(bad, 'empty prompt') AS reason, n, raw, example FROM ({records})
  WHERE bad IS NOT NULL OR raw IN (SELECT raw FROM agg_empty)
) GROUP BY reason
"""
_NEW = "NOT EXISTS (SELECT 1 FROM corpus c WHERE c.source = 'text' AND c.subset = $subset AND c.prompt = agg.prompt)"


def _row(pending: dict) -> str:
    """agg's columns as corpus rows of the input `pending` names (its subset, and its name for refs)."""
    subset, name = sql.quote(pending["subset"]), sql.quote(pending["name"] + ":")
    return (
        f"prompt, raw, 'text' AS source, {subset} AS subset, count::BIGINT AS count, {name} || first AS ref, "
        "'' AS meta"
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
        empty = not manifest and not con.execute("SELECT count(*) FROM corpus").fetchall()[0][0]
        seen = {manifest_key(m) for m in manifest}
        reports = []
        pending: dict | None = None  # the last file's new rows, still in `agg` (written from there if last)
        for f in files:
            sha, new_line = scan_file(f)
            chosen = _options_for("text", options)
            count = count_name(f, options, eopts)
            if count is not None:
                chosen["count"] = count  # as the Python reader's manifest says it, so the two keys agree
            chosen = read_options("text", f.spec, chosen)
            stats = FileStats(f.spec, "text", sha, chosen)
            key = ("text", sha, json.dumps(chosen, sort_keys=True))
            reports.append(stats)
            if key in seen:
                stats.already_ingested = True
                log.info("%s: already in %s (same sha256), not counted again", f.spec, out)
                continue
            refuse_rereading(manifest, f.spec, "text", sha, chosen, out)
            try:
                if pending is not None:
                    _insert(con, pending)
                    pending, empty = None, False
                records = records_sql(con, f, new_line, options, eopts)
                _ingest_file(con, f, records, stats, empty, lambda f=f: python_records(con, f, options))
            except duckdb.Error as err:  # a file the engine cannot parse, memory
                raise engine_error(f.spec, err) from None
            pending = {"subset": f.subset, "name": f.name}
            seen.add(key)
            stats.note_long_prompts()
            manifest.append(_manifest_entry(stats))
        fresh = refuse_empty(reports, [f.spec for f in files])
        if pending is not None and not empty:
            _insert(con, pending)
            pending = None
        if pending is not None:  # a new corpus from one input: its rows are `agg`'s, written from there
            n_rows = n_distinct = sum(r.kept for r in fresh)
        else:
            n_rows, n_distinct = con.execute(
                "SELECT count(*), count(DISTINCT prompt) FROM corpus"
            ).fetchall()[0]
        if fresh:
            _write(con, manifest, out, pending)
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
    ).fetchall()[0]
    for column, n in zip(CORPUS_COLUMNS, null_counts, strict=True):
        if n:
            raise InputError(f"{out}: column {column!r} has {n:,} missing (null) values", REBUILD_HINT)
    if low:
        raise InputError(f"{out}: column 'count' has values below 1", REBUILD_HINT)
    if empty:
        raise InputError(f"{out}: column 'prompt' has empty prompts", REBUILD_HINT)


def _ingest_file(con, f: EngineInput, records: str, stats: FileStats, empty: bool, fallback) -> None:
    """Count `f`'s records into `stats` and leave its prompts, grouped, in table `agg`; the corpus's counts
    are updated here, its new rows added by _insert (or written from `agg` by _write). A record the engine
    cannot judge alone (engine_sql.FALLBACK) has the Python reader read the file: `fallback()` its records."""
    from anatomy.corpus.normalize import normalize

    fast = sql.fast_match("raw")
    con.execute(_DISTINCT.format(fast=fast, records=records))
    if con.execute("SELECT count(*) FROM r WHERE bad = $b", {"b": sql.FALLBACK}).fetchall()[0][0]:
        log.info("%s: a record spans lines or is malformed; the Python reader reads the file", f.spec)
        records = fallback()
        con.execute(_DISTINCT.format(fast=fast, records=records))
    con.execute("CREATE OR REPLACE TABLE slowmap (raw VARCHAR, prompt VARCHAR)")
    slow = con.cursor()  # Python's normalize() on the distinct raw strings the SQL form does not cover
    slow.execute("SELECT raw FROM r WHERE bad IS NULL AND NOT fast")
    while raws := [row[0] for row in slow.fetchmany(BATCH)]:
        con.execute("INSERT INTO slowmap SELECT unnest($raw), unnest($prompt)",
                    {"raw": raws, "prompt": [normalize(r) for r in raws]})  # fmt: skip
    slow.close()
    con.execute(_AGG.format(prompt=sql.fast_prompt("r.raw")))
    _refuse_overflow(con, f, empty)

    read, longest, long_n = con.execute(
        f"SELECT sum(records), max(length(raw)) FILTER (WHERE bad IS NULL), "
        f"sum(records) FILTER (WHERE bad IS NULL AND length(raw) > {LONG_PROMPT_CHARS}) FROM r"
    ).fetchall()[0]
    stats.read, stats.longest, stats.long_prompts = int(read or 0), int(longest or 0), int(long_n or 0)
    skipped = dict(
        con.execute("SELECT bad, sum(records) FROM r WHERE bad IS NOT NULL GROUP BY bad").fetchall()
    )
    n_empty = con.execute("SELECT sum(records) FROM agg WHERE prompt = ''").fetchall()[0][0]
    if n_empty:
        skipped["empty prompt"] = n_empty
    if skipped:
        _skips(con, f, records, stats, skipped)
    params = {"subset": f.subset}
    new = "TRUE" if empty else _NEW
    kept, good = con.execute(
        f"SELECT count(*) FILTER (WHERE {new}), coalesce(sum(records), 0) FROM agg WHERE prompt <> ''",
        {} if empty else params,
    ).fetchall()[0]
    stats.kept, stats.merged = int(kept), int(good) - int(kept)
    if not empty:
        con.execute(
            "UPDATE corpus SET count = corpus.count + agg.count FROM agg WHERE corpus.source = 'text' "
            "AND corpus.subset = $subset AND corpus.prompt = agg.prompt AND agg.prompt <> ''",
            params,
        )
    assert stats.read == stats.kept + stats.merged + stats.skipped, stats


def _refuse_overflow(con, f: EngineInput, empty: bool) -> None:
    """A prompt whose counts (with the corpus's) sum past what the corpus's int64 column holds: refused."""
    total = "agg.count" if empty else (
        "agg.count + coalesce((SELECT c.count FROM corpus c WHERE c.source = 'text' AND c.subset = $subset "
        "AND c.prompt = agg.prompt), 0)"
    )  # fmt: skip
    rows = con.execute(
        f"SELECT prompt, ({total})::VARCHAR FROM agg WHERE prompt <> '' AND {total} > {INT64_MAX} LIMIT 1",
        {} if empty else {"subset": f.subset},
    ).fetchall()
    if rows:
        prompt, n = rows[0]
        raise InputError(
            f"{f.spec}: the counts of {prompt[:60]!r} sum to {int(n):,}, more than a corpus count holds (2^63-1)",
            "check the count column: a count per record is at most 10^12",
        )


def _insert(con, pending: dict) -> None:
    """The prompts of `agg` not in the corpus yet (_ingest_file added the counts of the others), in order."""
    con.execute(
        "INSERT INTO corpus SELECT (SELECT coalesce(max(ord), -1) FROM corpus) + row_number() OVER (ORDER BY "
        f"first), {_row(pending)} FROM agg WHERE prompt <> '' AND {_NEW}",
        {"subset": pending["subset"]},
    )


def _skips(con, f: EngineInput, records: str, stats: FileStats, counts: dict[str, int]) -> None:
    """Skip counts with their first examples, worded as the Python readers word them, in file order."""
    con.execute(  # the raw texts that normalise to '': for plain ASCII (fast), those of spaces only
        "CREATE OR REPLACE TABLE agg_empty AS SELECT raw FROM r "
        "WHERE bad IS NULL AND fast AND trim(raw) = '' UNION ALL SELECT raw FROM slowmap WHERE prompt = ''"
    )
    rows = con.execute(_EXAMPLES.format(k=MAX_SKIP_EXAMPLES, records=records)).fetchall()
    for reason, examples in sorted(rows, key=lambda row: min(e["n"] for e in row[1])):
        texts = []
        for e in sorted(examples, key=lambda e: e["n"]):
            example = e["example"]
            if reason == "empty prompt":
                example = repr(e["raw"])[:80]
            elif reason.startswith("not a string") and f.kind == "jsonl" and example is not None:
                example = _json_repr(example)
            elif reason == sql.COUNT_REASON and f.kind != "parquet":  # the count as Python's reader shows it
                example = _json_repr(example) if f.kind == "jsonl" else repr(example)[:80]
            where = f"{f.name}:{e['n']}"
            if reason == "invalid JSON line" and example is not None:  # the full line: say the column
                where, example = where + _json_column(example), example[:80]
            texts.append(f"{where}: {example}" if example else where)
        stats.skips[reason] = {"count": int(counts[reason]), "examples": texts}
        stats.skipped += int(counts[reason])


def _json_repr(text: str) -> str:
    """A JSON value's text shown as the Python reader shows the value (its repr, cut to 80 characters); the
    text itself where Python cannot read it back (a 5000-digit number, a deep nesting): never a crash."""
    try:
        return repr(json.loads(text))[:80]
    except (ValueError, RecursionError):
        return text[:80]


def _json_column(line: str) -> str:
    try:
        json.loads(line)
    except json.JSONDecodeError as err:
        return f", column {err.colno}"
    except (ValueError, RecursionError):
        pass
    return ""


def _write(con, manifest: list[dict], out: Path, pending: dict | None) -> None:
    """Corpus (its rows in order, the manifest in its metadata) and the manifest copy, committed together;
    `pending`: the corpus is `agg`'s rows alone (a new corpus from one input), written straight from there."""
    meta = sql.quote(json.dumps(manifest, sort_keys=True))
    side = manifest_path(out)
    cols = ", ".join(sql.ident(c) for c in CORPUS_COLUMNS)
    rows = f"SELECT {cols} FROM corpus ORDER BY ord"
    if pending is not None:
        rows = (
            f"SELECT {cols} FROM (SELECT first, {_row(pending)} FROM agg WHERE prompt <> '') ORDER BY first"
        )
    import duckdb

    with atomic_paths(side, out) as (side_tmp, out_tmp):
        side_tmp.write_text(dumps_json({"corpus": out.name, "inputs": manifest}), encoding="utf-8")
        try:
            _copy(con, rows, out_tmp, meta)
        except duckdb.Error as err:  # a full disk, a value the corpus cannot hold
            raise InputError(
                f"{out}: the engine cannot write it ({str(err).strip().splitlines()[0]})"
            ) from None


def _copy(con, rows: str, path: Path, meta: str) -> None:
    con.execute(
        f"COPY ({rows}) TO {sql.quote(str(path))} "
        f"(FORMAT parquet, COMPRESSION zstd, KV_METADATA {{{sql.quote(MANIFEST_KEY.decode())}: {meta}}})"
    )
