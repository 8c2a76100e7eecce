"""A corpus's prompts in batches, read from its Parquet file batch by batch (memory bounded by the batch).

For steps that need every prompt once but not all at the same time: the ids a corpus uses (spectrum), the
token sequences behind its tokens (anatomy.tokens), the corpus read for a sample (sampling.draw_sequences).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from anatomy.errors import InputError

BATCH = 8_192  # prompts per batch (a fast tokenizer keeps KBs per prompt of a batch)


def corpus_batches(corpus: str | Path, columns: list[str], batch: int = BATCH) -> Iterator:
    """Arrow record batches of `columns`, `batch` rows at a time, checked as read_corpus_table checks them
    (column types once; nulls, counts below 1 and empty prompts per batch; no rows at all).

    The counts are checked whichever columns are asked for (read beside them, 8 bytes a row, then dropped):
    a writer fed from these batches (tokens.parquet) fails before its commit, never after it."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from anatomy.corpus.corpus import _read_schema_checked
    from anatomy.corpus.schema import COUNT_COLUMN, REBUILD_HINT, check_corpus_table

    schema = _read_schema_checked(Path(corpus))
    check_corpus_table(schema.empty_table(), corpus, allow_empty=True)  # the column types
    read = list(dict.fromkeys([*columns, COUNT_COLUMN]))
    rows = 0
    try:
        reader = pq.ParquetFile(corpus, page_checksum_verification=True)
        for record_batch in reader.iter_batches(batch_size=batch, columns=read):
            for name in read:
                column = record_batch.column(name)
                if column.null_count:
                    raise InputError(f"{corpus}: column {name!r} has missing (null) values", REBUILD_HINT)
                if name == "count" and len(column) and pc.min(column).as_py() < 1:
                    raise InputError(f"{corpus}: column 'count' has values below 1", REBUILD_HINT)
                if name == "prompt" and pc.any(pc.equal(column, "")).as_py():
                    raise InputError(f"{corpus}: column 'prompt' has empty prompts", REBUILD_HINT)
            rows += record_batch.num_rows
            yield record_batch if read == columns else record_batch.select(columns)
    except (OSError, ValueError) as err:  # pyarrow's errors for a damaged file (ArrowInvalid is a ValueError)
        raise InputError(f"{corpus}: not a readable Parquet file or damaged ({err})") from None
    if not rows:
        raise InputError(
            f"{corpus}: the corpus has no rows", "ingest prompts into it first (`anatomy ingest`)"
        )


def prompt_batches(corpus: str | Path, batch: int = BATCH) -> Iterator[list[str]]:
    """The corpus's prompts, `batch` rows at a time (a prompt in two subsets comes twice)."""
    for record_batch in corpus_batches(corpus, ["prompt"], batch):
        yield record_batch.column(0).to_pylist()


def used_ids(corpus: str | Path, tokenizer, vocab_size: int, batch: int = BATCH) -> np.ndarray:
    """Sorted ids that `tokenizer` gives the corpus's prompts, plus its start and end ids."""
    used = np.zeros(vocab_size, dtype=bool)
    for prompts in prompt_batches(corpus, batch):
        content = tokenizer.encode(sorted(set(prompts)))
        used[np.fromiter(itertools.chain.from_iterable(content), dtype=np.int64)] = True
    used[[tokenizer.sot_id, tokenizer.eot_id]] = True  # every prompt also uses the start and end rows
    return np.flatnonzero(used)


def summary(corpus: str | Path, batch: int = 65_536) -> dict:
    """corpus.corpus_summary of the corpus file, read a batch at a time (every column checked); the distinct
    prompt count is the one step that holds the prompt column (Arrow strings, no Python objects)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from anatomy.corpus.schema import COUNT_COLUMN, STRING_COLUMNS

    rows = occurrences = 0
    by_subset: dict[tuple[str, str], int] = {}
    prompts = []
    for record_batch in corpus_batches(corpus, [*STRING_COLUMNS, COUNT_COLUMN], batch):
        rows += record_batch.num_rows
        occurrences += int(pc.sum(record_batch.column(COUNT_COLUMN)).as_py() or 0)
        table = pa.Table.from_batches([record_batch.select(["source", "subset"])])
        grouped = table.group_by(["source", "subset"]).aggregate([([], "count_all")]).to_pydict()
        for source, subset, n in zip(grouped["source"], grouped["subset"], grouped["count_all"], strict=True):
            by_subset[(source, subset)] = by_subset.get((source, subset), 0) + n
        prompts.append(record_batch.column("prompt"))
    distinct = len(sorted_distinct(pa.chunked_array(prompts), positions=False)[0])
    sources: dict[str, dict] = {}
    for (source, subset), n in sorted(by_subset.items()):
        entry = sources.setdefault(source, {"rows": 0, "subsets": {}})
        entry["rows"] += n
        entry["subsets"][subset] = n
    return {"rows": rows, "distinct_prompts": int(distinct), "occurrences": occurrences, "sources": sources}


def sorted_distinct(strings, positions: bool = True):
    """(the distinct values of an Arrow string column in code-point order, the index of each row's value in
    them, or None without `positions`), by a stable sort and neighbour comparison: no hash table of the
    strings, about half the memory of unique + index_in on millions of prompts."""
    import pyarrow as pa
    import pyarrow.compute as pc

    order = pc.sort_indices(strings).to_numpy()
    ranked = strings.take(pa.array(order))
    ranked = ranked.combine_chunks() if isinstance(ranked, pa.ChunkedArray) else ranked
    starts = np.ones(len(ranked), dtype=bool)
    starts[1:] = ~_same_as_previous(ranked)
    distinct = ranked.filter(pa.array(starts))
    del ranked
    if not positions:
        return distinct, None
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.cumsum(starts) - 1
    return distinct, position


def first_rows(table, keys: list[str]) -> np.ndarray:
    """Whether each row of an Arrow table is the first (lowest row) of the rows sharing its values of `keys`,
    by a stable sort and neighbour comparison, as sorted_distinct (no hash table of the strings)."""
    import pyarrow.compute as pc

    order = pc.sort_indices(table, sort_keys=[(k, "ascending") for k in keys]).to_numpy()
    same = np.ones(max(len(order) - 1, 0), dtype=bool)
    for key in keys:
        ranked = table.column(key).take(order).combine_chunks()
        same &= _same_as_previous(ranked)
        del ranked
    first = np.ones(len(order), dtype=bool)
    first[order[1:][same]] = False  # the sort is stable: a run's first entry is its lowest row
    return first


def _same_as_previous(ranked) -> np.ndarray:
    """ranked[i] == ranked[i - 1] for i >= 1 (an Arrow array in sorted order)."""
    import pyarrow.compute as pc

    if len(ranked) < 2:
        return np.zeros(0, dtype=bool)
    return pc.equal(ranked.slice(1), ranked.slice(0, len(ranked) - 1)).to_numpy(zero_copy_only=False)
