"""A corpus's prompts in batches, read from its Parquet file batch by batch (memory bounded by the batch).

For steps that need every prompt once but not all at the same time: the ids a corpus uses (spectrum), the
token sequences behind its distinct prompts (sampling.distinct_sequences).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from anatomy.errors import InputError

BATCH = 8_192  # prompts per batch (a fast tokenizer keeps KBs per prompt of a batch)


def prompt_batches(corpus: str | Path, batch: int = BATCH) -> Iterator[list[str]]:
    """The corpus's prompts, `batch` rows at a time (a prompt in two subsets comes twice)."""
    import pyarrow.parquet as pq

    from anatomy.corpus.corpus import _read_schema_checked
    from anatomy.corpus.schema import REBUILD_HINT, check_corpus_table

    schema = _read_schema_checked(Path(corpus))
    check_corpus_table(schema.empty_table(), corpus, allow_empty=True)  # the column types
    rows = 0
    for record_batch in pq.ParquetFile(corpus).iter_batches(batch_size=batch, columns=["prompt"]):
        if record_batch.column(0).null_count:
            raise InputError(f"{corpus}: column 'prompt' has missing (null) values", REBUILD_HINT)
        rows += record_batch.num_rows
        yield record_batch.column(0).to_pylist()
    if not rows:
        raise InputError(
            f"{corpus}: the corpus has no rows", "ingest prompts into it first (`anatomy ingest`)"
        )


def used_ids(corpus: str | Path, tokenizer, vocab_size: int, batch: int = BATCH) -> np.ndarray:
    """Sorted ids that `tokenizer` gives the corpus's prompts, plus its start and end ids."""
    used = np.zeros(vocab_size, dtype=bool)
    for prompts in prompt_batches(corpus, batch):
        content = tokenizer.encode(sorted(set(prompts)))
        used[np.fromiter((i for ids in content for i in ids), dtype=np.int64)] = True
    used[[tokenizer.sot_id, tokenizer.eot_id]] = True  # every prompt also uses the start and end rows
    return np.flatnonzero(used)
