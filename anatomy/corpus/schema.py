"""What a corpus Parquet file must hold, checked before any of it is used.

A file with the right column names can still be no corpus: a count column of strings (which pandas would
"sum" by concatenation), nulls in prompt or source, non-positive counts. Each such file is refused with an
InputError naming the file, the column and what was found, never read into numbers that mean nothing.
"""

from __future__ import annotations

from pathlib import Path

from anatomy.errors import InputError

CORPUS_COLUMNS = ("prompt", "raw", "source", "subset", "count", "ref", "meta")
STRING_COLUMNS = ("prompt", "raw", "source", "subset", "ref", "meta")
COUNT_COLUMN = "count"
REBUILD_HINT = "rebuild it with `anatomy ingest SOURCE PATH --out CORPUS.parquet`"


def check_corpus_table(table, path: str | Path, *, allow_empty: bool = False) -> None:
    """Raise InputError unless `table` (Arrow) has string columns without nulls and positive int counts."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for name in STRING_COLUMNS:
        kind = table.schema.field(name).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise InputError(f"{path}: column {name!r} holds {kind}, expected strings", REBUILD_HINT)
    kind = table.schema.field(COUNT_COLUMN).type
    if not pa.types.is_integer(kind):
        raise InputError(f"{path}: column 'count' holds {kind}, expected integers", REBUILD_HINT)
    for name in (*STRING_COLUMNS, COUNT_COLUMN):
        nulls = table.column(name).null_count
        if nulls:
            raise InputError(
                f"{path}: column {name!r} has {nulls:,} missing (null) values of {table.num_rows:,}",
                REBUILD_HINT,
            )
    if table.num_rows and pc.min(table.column(COUNT_COLUMN)).as_py() < 1:
        raise InputError(f"{path}: column 'count' has values below 1", REBUILD_HINT)
    if table.num_rows and pc.any(pc.equal(table.column("prompt"), "")).as_py():
        raise InputError(f"{path}: column 'prompt' has empty prompts", REBUILD_HINT)
    if not allow_empty and table.num_rows == 0:
        raise InputError(f"{path}: the corpus has no rows", "ingest prompts into it first (`anatomy ingest`)")
