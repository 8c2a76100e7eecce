"""The corpus under construction during an ingest (anatomy.corpus.corpus): rows, counts and dedupe indexes."""

from __future__ import annotations

from anatomy.corpus.schema import CORPUS_COLUMNS


class Rows:
    """The corpus under construction, with an index per (source, subset) for dedupe.

    Rows of an existing corpus stay in their Arrow table (only their prompts are indexed and their counts
    copied); new rows are kept column by column, `raw` sharing the prompt's string when the two are equal.
    That keeps a million-prompt ingest to a few hundred bytes a row.
    """

    def __init__(self) -> None:
        from array import array

        self.index: dict[tuple[str, str], dict[str, int]] = {}
        self.names: dict[tuple[str, str], tuple[str, str]] = {}
        self.columns: dict[str, list] = {c: [] for c in CORPUS_COLUMNS if c != "count"}
        self.count = array("q")  # every row's count: existing rows first, then new ones
        self.base = None  # the existing corpus (Arrow table, without its count column)
        self.days: dict[tuple[int, int], int] = {}  # (row, day) -> requests, for timed inputs (traffic.py)

    def __len__(self) -> int:
        return len(self.count)

    def _group(self, source: str, subset: str) -> dict[str, int]:
        group = self.index.get((source, subset))
        if group is None:
            group = self.index[(source, subset)] = {}
            self.names[(source, subset)] = (source, subset)
        return group

    def add(self, source: str, subset: str, prompt: str, raw: str, ref: str, meta: str, count: int = 1,
            day: int | None = None) -> bool:  # fmt: skip
        """Add `count` requests of a prompt; True when it is a new row, False when it merged into one."""
        group = self._group(source, subset)
        at = group.get(prompt)
        if day is not None:
            key = (len(self.count) if at is None else at, day)
            self.days[key] = self.days.get(key, 0) + count
        if at is not None:
            self.count[at] += count
            return False
        group[prompt] = len(self.count)
        source, subset = self.names[(source, subset)]  # one shared string per source and subset
        cols = self.columns
        cols["prompt"].append(prompt)
        cols["raw"].append(prompt if raw == prompt else raw)
        cols["source"].append(source)
        cols["subset"].append(subset)
        cols["ref"].append(ref)
        cols["meta"].append(meta)
        self.count.append(count)
        return True

    def n_distinct(self) -> int:
        return len({p for group in self.index.values() for p in group})

    def load(self, table) -> None:
        """Start from an existing corpus table."""
        import pyarrow as pa

        self.count.extend(table.column("count").to_pylist())
        self.base = table.drop_columns(["count"]).replace_schema_metadata(None)
        # source and subset through their (small) dictionaries, so no string object per row is made
        codes = {}
        for name in ("source", "subset"):
            encoded = pa.chunked_array(table.column(name)).combine_chunks().dictionary_encode()
            codes[name] = (encoded.dictionary.to_pylist(), encoded.indices.to_pylist())
        (sources, source_at), (subsets, subset_at) = codes["source"], codes["subset"]
        for i, (prompt, so, su) in enumerate(
            zip(table.column("prompt").to_pylist(), source_at, subset_at, strict=True)
        ):
            self._group(sources[so], subsets[su]).setdefault(prompt, i)

    def take_table(self):
        """All rows as an Arrow table; empties this object as it goes, so Python and Arrow copies of a
        large corpus are never held at once."""
        import pyarrow as pa

        self.index.clear()
        new = {name: pa.array(self.columns.pop(name), pa.string()) for name in list(self.columns)}
        table = pa.table({c: new[c] for c in CORPUS_COLUMNS if c != "count"})
        if self.base is not None:
            table = pa.concat_tables([self.base.select(table.column_names).cast(table.schema), table])
            self.base = None
        table = table.append_column("count", pa.array(self.count, pa.int64()))
        return table.select(list(CORPUS_COLUMNS))
