"""Python's judgement of the few records the engine's SQL cannot judge as the Python readers do, registered in
DuckDB as vectorised (Arrow) functions and called only for those records (engine_sql.py says which):

CSV_UDF    a CSV line holding a quote: its fields as Python's csv module (strict) reads the line, or NULL
           when it cannot read the line alone (a quoted field spanning lines, a stray quote): the Python
           reader then reads the whole file (engine_sql.FALLBACK), and words the error if there is one
JSONL_UDF  a JSON line DuckDB may judge otherwise than json.loads (a trailing comma, duplicate keys, an
           integer past 64 bits, NaN, a lone surrogate, a long line): (raw, cnt, bad, example) as
           sources/text.py reads it, in engine_sql's shape (a count as its digits, examples as JSON text)
"""

from __future__ import annotations

import csv
import json

from anatomy.corpus import engine_sql as sql
from anatomy.corpus.records import SURROGATE_REASON

_JSONL_TYPE = "STRUCT(raw VARCHAR, cnt VARCHAR, bad VARCHAR, example VARCHAR)"


def csv_fields(line: str, delimiter: str) -> list[str] | None:
    """One line's fields as the Python reader's csv module reads them; None: it cannot read it alone."""
    try:
        rows = list(csv.reader([line], delimiter=delimiter, strict=True))
    except csv.Error:
        return None
    return rows[0] if len(rows) == 1 else None


def csv_rows(lines: list[str], delimiter: str) -> list[list[str] | None]:
    """csv_fields of each line: one reader over them all, line by line where one cannot be read alone."""
    out: list[list[str] | None] = []
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    try:
        for row in reader:
            if reader.line_num != len(out) + 1:  # a record spanning lines
                break
            out.append(row)
    except csv.Error:
        pass
    if len(out) == len(lines):
        return out
    return out + [csv_fields(line, delimiter) for line in lines[len(out) :]]


def _json_text(value: object) -> str:
    """`value` as JSON text that json.loads reads back to it (engine_ingest shows it as Python's repr)."""
    try:
        return json.dumps(value)
    except (ValueError, RecursionError):
        return repr(value)[:80]


def jsonl_record(line: str, field: str, count: str | None) -> dict:
    """One JSON line as sources/text.py's _read_jsonl and _traffic_record judge it."""
    from anatomy.corpus.traffic import parse_count

    def skip(reason: str, example: str) -> dict:
        return {"raw": None, "cnt": None, "bad": reason, "example": example}

    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return skip("invalid JSON line", line)  # the full line: engine_ingest says its column
    if not isinstance(obj, dict):
        return skip("line is not a JSON object", line[:80])
    missing = [f for f in (field, count) if f is not None and f not in obj]
    if missing:
        return skip(f"no field {missing[0]!r}", line[:80])
    value = obj[field]
    if not isinstance(value, str):
        return skip(f"not a string ({type(value).__name__})", _json_text(value))
    n = 1
    if count is not None:
        parsed = parse_count(obj[count])
        if parsed is None:
            return skip(sql.COUNT_REASON, _json_text(obj[count]))
        n = parsed
    try:  # after the count, as the Python reader (the count) and corpus._merge (the text) judge them
        value.encode("utf-8")
    except UnicodeEncodeError:
        return skip(SURROGATE_REASON, repr(value)[:80])
    return {"raw": value, "cnt": str(n), "bad": None, "example": None}


def register(con) -> None:
    """CSV_UDF and JSONL_UDF in this connection (once)."""
    import duckdb
    import pyarrow as pa

    def csv_udf(lines, delimiters):
        delimiter = delimiters[0].as_py() if len(delimiters) else ","
        return pa.array(csv_rows(lines.to_pylist(), delimiter), pa.list_(pa.string()))

    def jsonl_udf(lines, fields, counts):
        field = fields[0].as_py() if len(fields) else ""
        count = counts[0].as_py() if len(counts) else None
        out = [jsonl_record(line, field, count) for line in lines.to_pylist()]
        return pa.array(out, pa.struct([(k, pa.string()) for k in ("raw", "cnt", "bad", "example")]))

    for name, fn, args, ret in (
        (sql.CSV_UDF, csv_udf, ["VARCHAR", "VARCHAR"], "VARCHAR[]"),
        (sql.JSONL_UDF, jsonl_udf, ["VARCHAR", "VARCHAR", "VARCHAR"], _JSONL_TYPE),
    ):
        try:
            con.create_function(name, fn, args, ret, type="arrow", null_handling="special",
                                side_effects=False)  # fmt: skip
        except duckdb.NotImplementedException:  # registered already (an earlier input of this ingest)
            pass
