"""Token ids of a corpus (the cache behind the `tokens` analysis, anatomy/analysis/tokens.py) and the numbers.

corpus.parquet -> OUT/tokens.parquet (one row per corpus row: prompt, source, subset, length with start and
end, ids; reused while the corpus file and the tokenizer are unchanged), written a row group at a time; each
batch's distinct prompts are tokenized once. The statistics stream over its record batches into per-block
length histograms and id counts, so memory holds a few numbers per row, never the corpus's ids or strings.
Blocks count distinct prompts: a prompt in two subsets of one source counts once for that source, a prompt in
two sources once overall.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from anatomy.context import context_table, length_stats, recommend_context, vocab_stats
from anatomy.errors import AnatomyError
from anatomy.io import file_sha256

log = logging.getLogger(__name__)

TOKENS_FILE = "tokens.parquet"
TOKENS_META_KEY = b"anatomy.tokens"
TOKENS_FORMAT = 1  # bump when tokens.parquet's layout changes, so old files are rebuilt rather than misread
FIGURES = ("tokens_lengths", "tokens_context", "tokens_vocab")


TOKENIZER_CHOICES = (
    "use clip (CLIP BPE), minilm or hf:PATH|hf:ORG/NAME of a BERT-style (WordPiece) model, or an encoder "
    "spec whose tokenizer is CLIP BPE (see `anatomy encoders`)"
)


def check_tokenizer_spec(spec: str) -> None:
    """A --tokenizer value that names no tokenizer at all is a usage error (OptionError, exit 2); one that
    names a tokenizer that then cannot be loaded (a missing path) is a data error, found when loading."""
    from anatomy.encoders.registry import parse_spec
    from anatomy.errors import EncoderError, OptionError

    if spec == "clip":
        return
    try:
        parse_spec(spec)
    except EncoderError as err:
        raise OptionError(
            "--tokenizer", f"'{spec}' is not a tokenizer: {err.message}", TOKENIZER_CHOICES
        ) from None


def resolve_tokenizer(spec: str):
    """(tokenizer, fingerprint): "clip" is the built-in CLIP BPE; anything else is an encoder spec."""
    check_tokenizer_spec(spec)
    if spec == "clip":
        from anatomy.tokenizer import clip_tokenizer

        tok = clip_tokenizer()
        return tok, tok.fingerprint
    from anatomy.encoders.registry import load_tokenizer

    tok = load_tokenizer(spec)
    return tok, f"{spec}|{tok.name}|{tok.vocab_size}"


ENCODE_BATCH = 8_192  # prompts a tokenizer without encode_flat encodes at a time (its Python lists)


def _encode_distinct(tok, prompts) -> tuple[np.ndarray, np.ndarray]:
    """(flat content ids int32, offsets int64) for an Arrow string array of distinct prompts.

    A tokenizer without `encode_flat` returns Python lists; they are made batch by batch and packed into
    numpy at once, so only one batch of lists exists at a time."""
    if hasattr(tok, "encode_flat"):
        return tok.encode_flat(prompts)
    flats, sizes = [], []
    for start in range(0, len(prompts), ENCODE_BATCH):
        content = tok.encode(prompts.slice(start, ENCODE_BATCH).to_pylist())
        size = np.fromiter(map(len, content), np.int64, count=len(content))
        flats.append(np.fromiter((t for ids in content for t in ids), np.int32, count=int(size.sum())))
        sizes.append(size)
    size = np.concatenate(sizes) if sizes else np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum(size)]).astype(np.int64)
    flat = np.concatenate(flats) if flats else np.zeros(0, np.int32)
    return flat, offsets


ROW_GROUP = 65_536  # corpus rows tokenized and written at a time (one row group of tokens.parquet)


def _schema(stamp: dict):
    import pyarrow as pa

    fields = [("prompt", pa.large_string()), ("source", pa.string()), ("subset", pa.string()),
              ("length", pa.int32()), ("ids", pa.large_list(pa.int32()))]  # fmt: skip
    return pa.schema(fields, metadata={TOKENS_META_KEY: json.dumps(stamp, sort_keys=True).encode()})


def _reusable(path: Path, stamp: dict) -> bool:
    """Whether tokens.parquet was made from this corpus and tokenizer and reads back whole: every page is
    read (checksums verified) a row group at a time, so a truncated or bit-flipped file is rebuilt."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
        if json.loads(meta.get(TOKENS_META_KEY, b"{}")) != stamp:
            return False
        reader = pq.ParquetFile(path, page_checksum_verification=True)
        for group in range(reader.num_row_groups):
            reader.read_row_group(group)
        return True
    except Exception as error:  # an unreadable old file is rebuilt, not trusted
        log.warning("%s: unreadable or damaged (%s); rebuilding it", path, error)
        return False


def tokenize_corpus(corpus: Path, out_dir: Path, tok, fingerprint: str, batch: int = ROW_GROUP):
    """(OUT/tokens.parquet, reused?): rebuilt only if the corpus or tokenizer changed.

    The corpus is read `batch` rows at a time; each batch's distinct prompts are tokenized once and the batch
    is written as one row group (ids as an Arrow list array), into a temporary file moved into place at the
    end, so memory is bounded by the batch, not the corpus."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from anatomy.corpus.stream import corpus_batches
    from anatomy.io import atomic_path

    stamp = {"format": TOKENS_FORMAT, "corpus_sha256": file_sha256(corpus), "tokenizer": fingerprint}
    path = Path(out_dir) / TOKENS_FILE
    if path.exists() and _reusable(path, stamp):
        return path, True
    schema = _schema(stamp)
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, schema, compression="zstd", write_page_checksum=True) as writer:
            for rows in corpus_batches(corpus, ["prompt", "source", "subset"], batch):
                prompts = rows.column("prompt").cast(pa.large_string())
                distinct = pc.dictionary_encode(prompts)
                flat, offsets = _encode_distinct(tok, distinct.dictionary)
                if flat.size and (flat.min() < 0 or flat.max() >= tok.vocab_size):
                    raise AnatomyError(
                        f"tokenizer {fingerprint} produced ids outside its vocabulary of {tok.vocab_size}"
                    )
                ids = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), pa.array(flat, pa.int32()))
                lengths = pa.array((np.diff(offsets) + 2).astype(np.int32))
                which = distinct.indices
                columns = [prompts, rows.column("source").cast(pa.string()),
                           rows.column("subset").cast(pa.string()), lengths.take(which), ids.take(which)]  # fmt: skip
                writer.write_table(pa.Table.from_arrays(columns, schema=schema))
    return path, False


class _Histogram:
    """A growing histogram of whole numbers (token lengths), optionally weighted."""

    def __init__(self) -> None:
        self.counts = np.zeros(0, dtype=np.float64)

    def add(self, values: np.ndarray, weights: np.ndarray | None = None) -> None:
        if not len(values):
            return
        got = np.bincount(values, weights=weights, minlength=len(self.counts)).astype(np.float64)
        if len(got) > len(self.counts):
            got[: len(self.counts)] += self.counts
            self.counts = got
        else:
            self.counts += got

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """(lengths that occur, how many prompts or requests have each)."""
        counts = np.rint(self.counts).astype(np.int64)
        values = np.flatnonzero(counts)
        return values, counts[values]


class _Tally:
    """What one block adds up: lengths and ids of its distinct prompts, and of its requests."""

    def __init__(self, vocab_size: int) -> None:
        self.lengths, self.weighted_lengths = _Histogram(), _Histogram()
        self.ids = np.zeros(vocab_size, dtype=np.int64)
        self.weighted_ids = np.zeros(vocab_size, dtype=np.float64)

    def add(self, first: np.ndarray, inside: np.ndarray, lengths, flat, sizes, requests) -> None:
        """first: rows of the batch that are their prompt's first in this block; inside: rows in the block."""
        self.lengths.add(lengths[first])
        self.ids += np.bincount(flat[np.repeat(first, sizes)], minlength=len(self.ids))
        w = np.where(inside, requests, 0).astype(np.float64)
        self.weighted_lengths.add(lengths, w)
        self.weighted_ids += np.bincount(flat, weights=np.repeat(w, sizes), minlength=len(self.ids))

    def block(self, tok, config, contexts, traffic: bool) -> tuple[dict, np.ndarray]:
        values, distinct = self.lengths.table()
        n_prompts = int(distinct.sum())
        if traffic:
            values, counts = self.weighted_lengths.table()
            ids, n = np.rint(self.weighted_ids).astype(np.int64), int(counts.sum())
        else:
            counts, ids, n = distinct, self.ids, n_prompts
        block = {
            "n_prompts": n_prompts,
            "length": length_stats(values, counts),
            "context": context_table(values, contexts, counts),
            "vocab": vocab_stats(ids, n, (tok.sot_id, tok.eot_id), tok.token_text, config.top_k,
                                 config.n_top_tokens),
        }  # fmt: skip
        if traffic:
            block["n_requests"] = n
        return block, ids


def _row_flags(path: Path):
    """(first row of its prompt overall, first row of its prompt within its source, source code per row,
    source names); the second is None for a one-source corpus (the same as the first).

    The one step that reads a whole column (the prompts, as Arrow, then dropped): a prompt may repeat across
    rows anywhere in the corpus, and each block counts it once."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from anatomy.corpus.stream import first_rows

    table = pq.read_table(path, columns=["prompt", "source"])
    source = pc.dictionary_encode(table.column("source")).combine_chunks()
    names = [str(s) for s in source.dictionary.to_pylist()]
    first = first_rows(table, ["prompt"])
    within = first_rows(table, ["source", "prompt"]) if len(names) > 1 else None
    return first, within, source.indices.to_numpy(), names


def analyse(
    path: Path, tok, config, contexts, counts: np.ndarray | None = None, batch: int = ROW_GROUP
) -> tuple[dict, dict[str, tuple[np.ndarray, np.ndarray]], dict[str, np.ndarray]]:
    """(results data, length histogram per block, content id counts per block) from tokens.parquet.

    config: the tokens analysis Params (limits, top-k, weight); contexts: the sorted context lengths of the
    table; counts: requests per row (the corpus's count column). With config.weight "traffic" every number is
    a share of requests; when some prompt repeats, `other_weight` holds the overall block counted the other
    way (so an audit shows both). The ids are read a batch at a time and added into histograms and id counts
    per block, so memory holds a few numbers per row, not the ids of the corpus.
    """
    import pyarrow.parquet as pq

    first_overall, first_within, source_code, source_names = _row_flags(path)
    n_rows = len(first_overall)
    counts = np.ones(n_rows, np.int64) if counts is None else np.asarray(counts, np.int64)
    order = sorted(range(len(source_names)), key=lambda i: source_names[i])
    names = ["overall"] + [source_names[i] for i in order]
    tallies = {name: _Tally(tok.vocab_size) for name in names}
    if first_within is None:  # one source (a log): its block is the overall block
        tallies.update({name: tallies["overall"] for name in names})
        order = []
    start = 0
    reader = pq.ParquetFile(path, page_checksum_verification=True)
    for rows in reader.iter_batches(batch_size=batch, columns=["length", "ids"]):
        end = start + rows.num_rows
        ids = rows.column("ids")
        flat = ids.values.to_numpy(zero_copy_only=False).astype(np.int64)
        sizes = np.diff(ids.offsets.to_numpy())
        lengths = rows.column("length").to_numpy().astype(np.int64)
        requests = counts[start:end]
        everything = np.ones(end - start, dtype=bool)
        tallies["overall"].add(first_overall[start:end], everything, lengths, flat, sizes, requests)
        for i in order:
            inside = source_code[start:end] == i
            tallies[source_names[i]].add(
                inside & first_within[start:end], inside, lengths, flat, sizes, requests
            )
        start = end
    traffic = getattr(config, "weight", "distinct") == "traffic"
    repeats = bool(len(counts) and int(np.max(counts)) > 1)
    data: dict = {"overall": None, "sources": {}, "weight": "traffic" if traffic else None}
    lengths_by, counts_by = {}, {}
    for name in names:
        block, id_count = tallies[name].block(tok, config, contexts, traffic)
        lengths_by[name], counts_by[name] = tallies[name].lengths.table(), id_count
        if name == "overall":
            data["overall"] = block
            if repeats:
                other, _ = tallies[name].block(tok, config, contexts, not traffic)
                data["other_weight"] = {"weight": "distinct" if traffic else "traffic", "block": other}
        else:
            data["sources"][name] = block
    shares = [b["vocab"]["special_share"] for b in data["sources"].values()]
    data["overall"]["vocab"]["special_share_mean_over_sources"] = float(np.mean(shares)) if shares else None
    lo, hi = config.recommend_range
    overall = tallies["overall"]
    values, weights = (overall.weighted_lengths if traffic else overall.lengths).table()
    data["recommended_context"] = recommend_context(
        values, config.max_token_loss, config.max_truncation, range(lo, hi + 1), weights
    )
    unit = "distinct normalised prompt (overall: once across sources; per source: once within it)"
    if traffic:
        unit = "request: each distinct prompt weighted by its count (summed over the rows holding it)"
    data["conventions"] = {
        "unit": unit,
        "length": "tokens including start and end; percentiles by numpy's linear interpolation",
        "token_loss": "pooled = lost tokens / all tokens (the paper's); per prompt = mean of each prompt's lost share",
        "vocab": "used/unused_share count every id that occurs, start/end included; top_k_coverage over content "
        "tokens (top_k_coverage_with_special includes start/end); special_share = (start+end) / all tokens",
    }
    return data, lengths_by, counts_by
