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
real prompts) are normalised by Python's normalize() on their DISTINCT raw values (engine.py).
"""

from __future__ import annotations

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


def jsonl_records(path: str, new_line: str, field: str, count_field: str | None) -> str:
    """JSON lines: blank lines are no records; an invalid line, a line that is not an object, a missing
    field or a value that is not a string is skipped with the Python reader's reason."""
    key = quote("$." + ident(field))
    value_type = f"json_type(line, {key})"
    type_names = " ".join(f"WHEN {quote(k)} THEN {quote(v)}" for k, v in _JSON_TYPES.items())
    bad = (
        "CASE WHEN NOT json_valid(line) THEN 'invalid JSON line' "
        "WHEN json_type(line) <> 'OBJECT' THEN 'line is not a JSON object' "
        f"WHEN {value_type} IS NULL THEN {quote(f'no field {field!r}')} "
        f"WHEN {value_type} <> 'VARCHAR' THEN 'not a string (' || CASE {value_type} {type_names} "
        f"ELSE lower({value_type}) END || ')' END"
    )
    cnt = "1::BIGINT"
    if count_field is not None:
        cnt = f"TRY_CAST(json_extract(line, {quote('$.' + ident(count_field))}) AS BIGINT)"
    return (
        f"SELECT n, CASE WHEN bad IS NULL THEN json_extract_string(line, {key}) END AS raw, {cnt} AS cnt, "
        f"bad, CASE WHEN bad LIKE 'not a string%' THEN json_extract(line, {key})::VARCHAR "
        "WHEN bad = 'invalid JSON line' THEN line ELSE left(line, 80) END AS example "
        f"FROM (SELECT n, line, {bad} AS bad FROM ({lines(path, new_line)}) WHERE trim(line) <> '')"
    )


def csv_scan(path: str, delimiter: str) -> str:
    """Every field a string; an empty field is '' (not NULL), a missing one NULL (null_padding)."""
    return (
        f"read_csv({quote(path)}, header=true, all_varchar=true, delim={quote(delimiter)}, quote='\"', "
        "escape='\"', null_padding=true, nullstr='\x1e\x1f', compression='auto')"
    )


def csv_records(path: str, delimiter: str, column: str, count_column: str | None) -> str:
    """CSV/TSV with a header row; n is the record's line when no record spans lines (the Python reader
    numbers physical lines: a quoted line break or a blank line between records shifts the two)."""
    scan = csv_scan(path, delimiter)
    cnt = "1::BIGINT" if count_column is None else f"TRY_CAST({ident(count_column)} AS BIGINT)"
    return (
        f"SELECT row_number() OVER () + 1 AS n, {ident(column)} AS raw, {cnt} AS cnt, "
        f"CASE WHEN {ident(column)} IS NULL THEN 'row has fewer fields than the header' END AS bad, "
        f"left(concat_ws({quote(delimiter)}, COLUMNS(*)), 80) AS example FROM {scan}"
    )


def parquet_records(path: str, column: str, count_column: str | None) -> str:
    """Parquet (a log, or `(prompt, count)` rows already aggregated elsewhere); n is the row, from 1."""
    cnt = "1::BIGINT" if count_column is None else f"{ident(count_column)}::BIGINT"
    return (
        f"SELECT file_row_number + 1 AS n, {ident(column)} AS raw, {cnt} AS cnt, "
        f"CASE WHEN {ident(column)} IS NULL THEN 'not a string (NoneType)' END AS bad, "
        "'None' AS example "
        f"FROM read_parquet({quote(path)}, file_row_number=true)"
    )
