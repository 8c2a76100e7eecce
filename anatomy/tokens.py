"""Token ids of a corpus (the cache behind the `tokens` analysis, anatomy/analysis/tokens.py) and the numbers.

corpus.parquet -> OUT/tokens.parquet (one row per corpus row: prompt, source, subset, length with start and
end, ids; reused while the corpus file and the tokenizer are unchanged). Each distinct prompt is tokenized once. Blocks count distinct prompts: a prompt
in two subsets of one source counts once for that source, a prompt in two sources once overall.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anatomy.context import context_table, id_counts, length_stats, recommend_context, vocab_stats
from anatomy.errors import AnatomyError
from anatomy.io import file_sha256, read_parquet, write_parquet

log = logging.getLogger(__name__)

TOKENS_FILE = "tokens.parquet"
TOKENS_META_KEY = b"anatomy.tokens"
TOKENS_FORMAT = 1  # bump when tokens.parquet's layout changes, so old files are rebuilt rather than misread
FIGURES = ("tokens_lengths", "tokens_context", "tokens_vocab")


def resolve_tokenizer(spec: str):
    """(tokenizer, fingerprint): "clip" is the built-in CLIP BPE; anything else is an encoder spec."""
    if spec == "clip":
        from anatomy.tokenizer import clip_tokenizer

        tok = clip_tokenizer()
        return tok, tok.fingerprint
    from anatomy.encoders.registry import load_tokenizer

    tok = load_tokenizer(spec)
    return tok, f"{spec}|{tok.name}|{tok.vocab_size}"


def _read_corpus_columns(path: Path):
    from anatomy.corpus.corpus import read_corpus_table

    return read_corpus_table(path, ["prompt", "source", "subset"])  # checked: types, nulls, rows


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


def tokenize_corpus(corpus: Path, out_dir: Path, tok, fingerprint: str):
    """(tokens table, reused?): OUT/tokens.parquet, rebuilt only if the corpus or tokenizer changed."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    stamp = {"format": TOKENS_FORMAT, "corpus_sha256": file_sha256(corpus), "tokenizer": fingerprint}
    path = out_dir / TOKENS_FILE
    if path.exists():
        try:  # page checksums are verified: a truncated or bit-flipped file is rebuilt, not trusted
            meta = pq.read_schema(path).metadata or {}
            if json.loads(meta.get(TOKENS_META_KEY, b"{}")) == stamp:
                return read_parquet(path), True
        except Exception as error:  # an unreadable old file is rebuilt, not trusted
            log.warning("%s: unreadable or damaged (%s); rebuilding it", path, error)

    table = _read_corpus_columns(corpus)
    prompts = table.column("prompt").combine_chunks().cast(pa.large_string())
    distinct = pc.dictionary_encode(prompts)
    flat, offsets = _encode_distinct(tok, distinct.dictionary)
    if flat.size and (flat.min() < 0 or flat.max() >= tok.vocab_size):
        raise AnatomyError(f"tokenizer {fingerprint} produced ids outside its vocabulary of {tok.vocab_size}")
    ids = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), pa.array(flat, pa.int32()))
    lengths = (np.diff(offsets) + 2).astype(np.int32)
    which = distinct.indices
    rows = pa.table(
        {
            "prompt": prompts,
            "source": table.column("source"),
            "subset": table.column("subset"),
            "length": pa.array(lengths).take(which),
            "ids": ids.take(which),
        }
    )
    rows = rows.replace_schema_metadata({TOKENS_META_KEY: json.dumps(stamp, sort_keys=True).encode()})
    write_parquet(rows, path)
    return rows, False


@dataclass
class Blocks:
    """Per block (overall, then each source): the rows of its distinct prompts."""

    names: list[str]
    rows: list[np.ndarray]
    weights: list[np.ndarray | None]  # requests per distinct prompt of the block (None: distinct counting)


def _blocks(table, counts: np.ndarray | None = None) -> Blocks:
    """Blocks of distinct prompts; with `counts` (requests per corpus row) each block's weights are the
    requests of its prompts summed over the rows that hold them (in that block)."""
    import pyarrow.compute as pc

    prompt_code = pc.dictionary_encode(table.column("prompt")).combine_chunks().indices.to_numpy()
    source = pc.dictionary_encode(table.column("source")).combine_chunks()
    source_code, source_names = source.indices.to_numpy(), source.dictionary.to_pylist()
    n_codes = int(prompt_code.max()) + 1 if len(prompt_code) else 0

    def weights_of(rows_in: np.ndarray, first: np.ndarray) -> np.ndarray | None:
        if counts is None:
            return None
        per_prompt = np.bincount(prompt_code[rows_in], weights=counts[rows_in], minlength=n_codes)
        return per_prompt[prompt_code[first]].astype(np.int64)

    everything = np.arange(len(prompt_code))
    first = np.unique(prompt_code, return_index=True)[1]
    names, rows, weights = ["overall"], [first], [weights_of(everything, first)]
    for s in sorted(range(len(source_names)), key=lambda i: source_names[i]):
        in_source = np.flatnonzero(source_code == s)
        first = np.sort(in_source[np.unique(prompt_code[in_source], return_index=True)[1]])
        names.append(source_names[s])
        rows.append(first)
        weights.append(weights_of(in_source, first))
    return Blocks(names, rows, weights)


def _block(lengths, flat, offsets, rows, tok, config, contexts, w=None) -> tuple[dict, np.ndarray]:
    n = lengths[rows].astype(np.int64)
    per_row = np.zeros(len(lengths), dtype=np.int64)
    per_row[rows] = 1 if w is None else w
    if w is None:
        counts = id_counts(flat[np.repeat(per_row > 0, np.diff(offsets))], tok.vocab_size)
    else:  # each occurrence of an id counts its prompt's requests
        weighted = np.bincount(flat, weights=np.repeat(per_row, np.diff(offsets)), minlength=tok.vocab_size)
        counts = np.rint(weighted).astype(np.int64)
    block = {
        "n_prompts": int(len(rows)),
        "length": length_stats(n, w),
        "context": context_table(n, contexts, w),
        "vocab": vocab_stats(
            counts, int(len(rows) if w is None else w.sum()), (tok.sot_id, tok.eot_id), tok.token_text,
            config.top_k, config.n_top_tokens,
        ),
    }  # fmt: skip
    if w is not None:
        block["n_requests"] = int(w.sum())
    return block, counts


def analyse(
    table, tok, config, contexts, counts: np.ndarray | None = None
) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(results data, lengths per block, content id counts per block) from a tokens table.

    config: the tokens analysis Params (limits, top-k, weight); contexts: the sorted context lengths of the
    table; counts: requests per row (the corpus's count column). With config.weight "traffic" every number is
    a share of requests; when some prompt repeats, `other_weight` holds the overall block counted the other
    way (so an audit shows both).
    """
    ids = table.column("ids").combine_chunks()
    flat = ids.values.to_numpy(zero_copy_only=False)
    offsets = ids.offsets.to_numpy()
    lengths = table.column("length").to_numpy()
    traffic = getattr(config, "weight", "distinct") == "traffic"
    repeats = counts is not None and len(counts) and int(np.max(counts)) > 1
    blocks = _blocks(table, counts if counts is not None else np.ones(len(lengths), np.int64))
    data: dict = {"overall": None, "sources": {}, "weight": "traffic" if traffic else None}
    lengths_by, counts_by = {}, {}
    for name, rows, w in zip(blocks.names, blocks.rows, blocks.weights, strict=True):
        block, id_count = _block(lengths, flat, offsets, rows, tok, config, contexts, w if traffic else None)
        lengths_by[name], counts_by[name] = lengths[rows], id_count
        if name == "overall":
            data["overall"] = block
            if repeats:
                other, _ = _block(lengths, flat, offsets, rows, tok, config, contexts, None if traffic else w)
                data["other_weight"] = {"weight": "distinct" if traffic else "traffic", "block": other}
        else:
            data["sources"][name] = block
    shares = [b["vocab"]["special_share"] for b in data["sources"].values()]
    data["overall"]["vocab"]["special_share_mean_over_sources"] = float(np.mean(shares)) if shares else None
    lo, hi = config.recommend_range
    data["recommended_context"] = recommend_context(
        lengths_by["overall"], config.max_token_loss, config.max_truncation, range(lo, hi + 1),
        blocks.weights[0] if traffic else None,
    )  # fmt: skip
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
