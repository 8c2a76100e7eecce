"""The SQL of the ingest engine: how each input format becomes records, and the normalisation in SQL.

Every reader here yields one relation of records `(n, raw, cnt, bad, example)`:
n        the record's position (a line number for line-based files, a row number for Parquet); the first
         occurrence of a prompt is the one with the smallest n, and the corpus `ref` is `NAME:n`
raw      the prompt text as found (NULL when the record is skipped)
cnt      how many times it occurred (1, or the count column of an aggregated input)
bad      NULL, or why the record is skipped (the same reasons as the Python readers)
example  for a skipped record, the text shown as its example (the raw line, cut to 80 characters)

Printable ASCII without '&' is left unchanged by ftfy and html.unescape (see normalize.py), so for it the
one normalisation is "collapse runs of spaces, strip, lowercase": FAST_PROMPT below. Other rows (0.01% of
real prompts) are normalised by Python's normalize() on their DISTINCT raw values (engine_ingest.py).

A count (--count-column/--count-field, or a Parquet `count` column) is read as traffic.parse_count reads it:
a whole number from 1 to MAX_COUNT. Plain ASCII digits are read in SQL (count_value); any other text
("3.0", "1e3", " 4 ") goes to parse_count itself, registered in DuckDB as COUNT_UDF (engine_run.py). A
record whose count fails is skipped with COUNT_REASON (the Python reader's words) and its count as example.
"""

from __future__ import annotations

import json
import re

from anatomy.corpus.traffic import MAX_COUNT

COUNT_UDF = "anatomy_parse_count"
COUNT_REASON = "count is not a positive whole number"  # as sources/text.py words it
CSV_UDF = "anatomy_csv_fields"  # Python's csv module on one line (engine_run.register_udfs)
JSONL_UDF = (
    "anatomy_jsonl_record"  # the Python reader's judgement of one JSON line (engine_run.register_udfs)
)
# a record the engine cannot judge alone (a CSV field spanning lines, a CSV error): the Python reader reads
# the whole file instead (engine_ingest); never a reason a user sees
FALLBACK = "(the python reader reads this file)"

# the characters str.isspace() holds (what str.strip() removes), as an RE2 class (tests check the list)
PY_SPACE = (
    "[\\t\\n\\x{0b}\\x{0c}\\r\\x{1c}-\\x{1f} \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}"
    "\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}]"
)
# JSON lines DuckDB may judge otherwise than Python's json module go to Python (JSONL_UDF, json_plain): a
# trailing comma (DuckDB accepts it), a key written with an escape (it may repeat the field: DuckDB keeps a
# repeated key's first value, Python its last), a line DuckDB finds invalid (Python may not: a lone surrogate)
# and a long line with a deep nesting or a number past 4300 digits (Python refuses both); and every line the
# SQL skips, so that a skip's reason and example are Python's (a value past 64 bits is an int there)
JSON_TRAILING_COMMA = ",[ \\t\\n\\r]*[\\]}]"
JSON_ESCAPED_KEY = '"(?:[^"\\\\]|\\\\.)*\\\\(?:[^"\\\\]|\\\\.)*"[ \\t\\n\\r]*:'
JSON_SHORT_BYTES = 512  # a shorter line has no nesting Python refuses (its limit is near 1000 levels)
JSON_LONG_BYTES = 4096  # a longer line goes to Python (a number past 4300 digits)
JSON_MAX_NESTS = 400  # '[' and '{' in a line from 512 to 4096 bytes sent to Python

# RE2 syntax; the same class as normalize.PLAIN_ASCII (printable ASCII except '&')
FAST_MATCH = "regexp_full_match({x}, '[\\x20-\\x25\\x27-\\x7e]*')"
FAST_PROMPT = "lower(trim(regexp_replace({x}, ' {{2,}}', ' ', 'g')))"


def fast_match(x: str) -> str:
    return FAST_MATCH.format(x=x)


def fast_prompt(x: str) -> str:
    return FAST_PROMPT.format(x=x)


def quote(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def ident(name: str) -> str:
    """A SQL identifier (a column name as the file spells it)."""
    return '"' + name.replace('"', '""') + '"'


def lines(path: str, new_line: str) -> str:
    """One record per line, split on "\\n" only (the Python reader's rule), numbered from 1.

    DuckDB's CSV scanner with no quote, no escape and a delimiter that text never holds (the unit
    separator 0x1f: a line holding one fails the scan and the Python reader takes the file) reads a
    line-based file, compressed or not, in parallel and in order; row_number() OVER () numbers the rows
    in that order as they stream. `new_line` is "\\r\\n" when the file has CRLF endings (the scanner drops
    the CR as the Python reader does); a CR alone sends the file to the Python reader (engine.py).
    """
    escaped = new_line.replace("\r", "\\r").replace("\n", "\\n")  # as DuckDB spells it
    scan = (
        f"read_csv({quote(path)}, columns={{'line': 'VARCHAR'}}, delim='\x1f', quote='', escape='', "
        f"header=false, auto_detect=false, strict_mode=false, new_line={quote(escaped)}, "
        f"compression='auto')"
    )
    return f"SELECT row_number() OVER () AS n, coalesce(line, '') AS line FROM {scan}"


def lines_records(path: str, new_line: str) -> str:
    """Plain text: every line is a prompt (a blank one is skipped later as an empty prompt). A UTF-8
    byte-order mark at the start of the file is dropped, as decoding with utf-8-sig does."""
    return (
        "SELECT n, CASE WHEN n = 1 AND starts_with(line, '\ufeff') THEN substr(line, 2) ELSE line END "
        "AS raw, 1::BIGINT AS cnt, NULL::VARCHAR AS bad, NULL::VARCHAR AS example "
        f"FROM ({lines(path, new_line)})"
    )


# json_type names -> the Python type name the reader's skip reason uses
_JSON_TYPES = {
    "BIGINT": "int",
    "UBIGINT": "int",
    "HUGEINT": "int",
    "DOUBLE": "float",
    "BOOLEAN": "bool",
    "NULL": "NoneType",
    "ARRAY": "list",
    "OBJECT": "dict",
}


def count_value(text: str) -> str:
    """The count in `text` (VARCHAR) as parse_count reads it: BIGINT from 1 to MAX_COUNT, else NULL."""
    return (
        f"CASE WHEN regexp_full_match({text}, '[0-9]{{1,13}}') THEN CASE WHEN {text}::BIGINT BETWEEN 1 AND "
        f"{MAX_COUNT} THEN {text}::BIGINT END ELSE {COUNT_UDF}({text}) END"
    )


def counted(records: str) -> str:
    """`records` whose `cnt` is a count's text (or NULL: none found) with the count read: a record with no
    readable count is skipped with COUNT_REASON, its count's text kept as the example."""
    return (
        f"SELECT n, raw, c AS cnt, CASE WHEN bad IS NULL AND c IS NULL THEN {quote(COUNT_REASON)} "
        "ELSE bad END AS bad, CASE WHEN bad IS NULL AND c IS NULL THEN cnt ELSE example END AS example "
        f"FROM (SELECT *, {count_value('cnt')} AS c FROM ({records}))"
    )


def pointer(key: str) -> str:
    """A JSON Pointer (RFC 6901) to the top-level `key`, as a SQL literal: any key, a '"' or '.' included."""
    return quote("/" + key.replace("~", "~0").replace("/", "~1"))


def json_plain(fields: list[str]) -> str:
    """Whether DuckDB judges the JSON line `line` as Python's json module does, for the top-level `fields`
    (else JSONL_UDF judges it). Each test is cheap where it is not needed (CASE evaluates lazily)."""
    repeats = " AND ".join(
        f"(strpos(line, {quote(k)}) = 0 OR strpos(substr(line, strpos(line, {quote(k)}) + {len(k)}), "
        f"{quote(k)}) = 0)"
        for k in (json.dumps(field, ensure_ascii=False) for field in fields)
    )
    nests = "strlen(line) - strlen(replace(replace(line, '[', ''), '{', ''))"
    return (
        f"(json_valid(line) AND NOT regexp_matches(line, {quote(JSON_TRAILING_COMMA)}) AND {repeats} "
        f"AND CASE WHEN contains(line, '\\') THEN NOT regexp_matches(line, {quote(JSON_ESCAPED_KEY)}) "
        f"ELSE true END AND CASE WHEN strlen(line) <= {JSON_SHORT_BYTES} THEN true WHEN strlen(line) > "
        f"{JSON_LONG_BYTES} THEN false ELSE {nests} <= {JSON_MAX_NESTS} END)"
    )


def json_blank(line: str = "line") -> str:
    """A line the Python reader ignores as blank (`not line.strip()`)."""
    return f"regexp_full_match({line}, {quote(PY_SPACE + '*')})"


def jsonl_records(path: str, new_line: str, field: str, count_field: str | None) -> str:
    """JSON lines: blank lines are no records; an invalid line, a line that is not an object, a missing
    field or a value that is not a string is skipped with the Python reader's reason. With `count_field`,
    `cnt` is the count as JSON text (a string's own text) and `counted` reads it. Lines DuckDB may judge
    otherwise than Python's json module (json_plain) are judged by JSONL_UDF, which reads them in Python."""
    key = pointer(field)
    value_type = f"json_type(line, {key})"
    type_names = " ".join(f"WHEN {quote(k)} THEN {quote(v)}" for k, v in _JSON_TYPES.items())
    missing = f"WHEN {value_type} IS NULL THEN {quote(f'no field {field!r}')} "
    cnt, count_text = "1::BIGINT", "NULL"
    if count_field is not None:
        count_key = pointer(count_field)
        missing += f"WHEN json_type(line, {count_key}) IS NULL THEN {quote(f'no field {count_field!r}')} "
        cnt = (
            f"CASE WHEN json_type(line, {count_key}) = 'VARCHAR' THEN json_extract_string(line, {count_key}) "
            f"ELSE json_extract(line, {count_key})::VARCHAR END"
        )
        count_text = f"json_extract(line, {count_key})::VARCHAR"
    bad = (  # for plain lines (json_valid holds): the Python reader's checks in its order
        "CASE WHEN json_type(line) <> 'OBJECT' THEN 'line is not a JSON object' "
        f"{missing}"
        f"WHEN {value_type} <> 'VARCHAR' THEN 'not a string (' || CASE {value_type} {type_names} "
        f"ELSE lower({value_type}) END || ')' END"
    )
    # one pass: the lines DuckDB may judge otherwise, and those it skips (a few of a real log), through Python
    udf = f"{JSONL_UDF}(line, {quote(field)}, {quote(count_field) if count_field is not None else 'NULL'})"
    sql_cnt = cnt if count_field is not None else "NULL::VARCHAR"
    fields = [field] if count_field is None else [field, count_field]
    records = (
        f"SELECT n, CASE WHEN sql THEN json_extract_string(line, {key}) ELSE j.raw END AS raw, "
        f"CASE WHEN sql THEN {sql_cnt} ELSE j.cnt END AS cnt, CASE WHEN NOT sql THEN j.bad END AS bad, "
        f"CASE WHEN sql THEN {count_text} ELSE j.example END AS example "
        f"FROM (SELECT n, line, sql, CASE WHEN NOT sql THEN {udf} END AS j FROM ("
        f"SELECT n, line, CASE WHEN plain THEN {bad} IS NULL ELSE false END AS sql "  # no json_type on bad JSON
        f"FROM (SELECT n, line, {json_plain(fields)} AS plain FROM ({lines(path, new_line)}) "
        f"WHERE NOT {json_blank()})))"
    )
    if count_field is None:
        return f"SELECT n, raw, 1::BIGINT AS cnt, bad, example FROM ({records})"
    # the count's JSON text is the example of a bad count (engine_ingest shows it as Python's repr)
    return (
        f"SELECT n, raw, c AS cnt, CASE WHEN bad IS NULL AND c IS NULL THEN {quote(COUNT_REASON)} "
        "ELSE bad END AS bad, example FROM (SELECT *, CASE WHEN bad IS NULL THEN "
        f"{count_value('cnt')} END AS c FROM ({records}))"
    )


def csv_records(
    path: str, new_line: str, delimiter: str, header: list[str], column: str, count_column: str | None
) -> str:
    """CSV/TSV with a header row, read as Python's csv module reads it (strict, a line break ends a record):
    a line without a quote is its fields split on the delimiter; a line with one goes to Python's csv
    module (CSV_UDF), and a line it cannot read alone (a quoted field spanning lines, a stray quote) sends
    the file to the Python reader (FALLBACK). n is the record's line; a blank line is no record. A row with
    more fields than the header is a counted skip unless the extra fields are blank (sources.csv_table)."""
    width, at = len(header), header.index(column)
    need = max(at, header.index(count_column)) if count_column is not None else at
    sep = quote(delimiter)
    fields = f"CASE WHEN contains(line, '\"') THEN {CSV_UDF}(line, {sep}) ELSE string_split(line, {sep}) END"
    wide = (
        f"'row has ' || len(f) || {quote(f' fields, the header {width} (an unquoted {delimiter!r} in a field? ')}"
        " || 'quote it)'"
    )
    bad = (
        f"CASE WHEN f IS NULL THEN {quote(FALLBACK)} "
        f"WHEN len(f) > {width} AND regexp_matches(array_to_string(f[{width + 1}:], ''), "
        f"{quote('[^' + PY_SPACE[1:])}) THEN {wide} "
        f"WHEN len(f) <= {need} THEN 'row has fewer fields than the header' END"
    )
    cnt = "1::BIGINT" if count_column is None else f"f[{header.index(count_column) + 1}]"
    records = (
        f"SELECT n, CASE WHEN bad IS NULL THEN f[{at + 1}] END AS raw, CASE WHEN bad IS NULL THEN {cnt} END "
        f"AS cnt, bad, CASE WHEN bad IS NOT NULL THEN left(array_to_string(f, {sep}), 80) END AS example "
        f"FROM (SELECT n, f, {bad} AS bad FROM (SELECT n, {fields} AS f FROM ({lines(path, new_line)}) "
        "WHERE n > 1 AND line <> ''))"
    )
    return records if count_column is None else counted(records)


# DuckDB types a Parquet count column may have (another type is refused: text, dates, intervals, ...)
PARQUET_COUNT_TYPE = re.compile(r"U?(TINY|SMALL|BIG|HUGE)?INT(EGER)?|DECIMAL\(\d+,\s*\d+\)|FLOAT|DOUBLE|REAL")


def parquet_records(path: str, column: str, count_column: str | None, count_type: str = "BIGINT") -> str:
    """Parquet (a log, or `(prompt, count)` rows already aggregated elsewhere); n is the row, from 1. A count
    must be whole and from 1 to MAX_COUNT (3.0 counts 3; 3.5, 0, -1, NaN or NULL are skipped)."""
    cnt, text, bad = "1::BIGINT", "NULL", ""
    if count_column is not None:
        c = ident(count_column)
        whole = (
            ""
            if count_type.endswith("INT") or count_type.endswith("INTEGER")
            else f" AND isfinite({c}::DOUBLE) AND {c} = floor({c})"
        )
        cnt, text = f"CASE WHEN {c} BETWEEN 1 AND {MAX_COUNT}{whole} THEN {c}::BIGINT END", f"{c}::VARCHAR"
        bad = f"WHEN cnt IS NULL THEN {quote(COUNT_REASON)} "
    return (
        f"SELECT n, raw, cnt, CASE WHEN raw IS NULL THEN 'not a string (NoneType)' {bad}END AS bad, "
        "CASE WHEN raw IS NULL THEN 'None' ELSE coalesce(text, 'None') END AS example "
        f"FROM (SELECT file_row_number + 1 AS n, {ident(column)} AS raw, {cnt} AS cnt, {text} AS text "
        f"FROM read_parquet({quote(path)}, file_row_number=true))"
    )
