"""`anatomy tokens`: token ids and lengths of a corpus, the context-window table and vocabulary coverage.

corpus.parquet -> OUT/tokens.parquet (one row per corpus row: prompt, source, subset, length with start and
end, ids; reused while the corpus file and the tokenizer are unchanged) -> OUT/results/tokens.json and
OUT/figures/tokens_*.png. Each distinct prompt is tokenized once. Blocks count distinct prompts: a prompt
in two subsets of one source counts once for that source, a prompt in two sources once overall.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from anatomy.context import context_table, id_counts, length_stats, recommend_context, vocab_stats
from anatomy.errors import AnatomyError, InputError
from anatomy.io import file_sha256, read_json, read_parquet, write_parquet, write_result

log = logging.getLogger(__name__)

TOKENS_FILE = "tokens.parquet"
TOKENS_META_KEY = b"anatomy.tokens"
TOKENS_FORMAT = 1  # bump when tokens.parquet's layout changes, so old files are rebuilt rather than misread
FIGURES = ("tokens_lengths", "tokens_context", "tokens_vocab")

# Reported by the SAM3-LiteText paper (metrics.md); shown beside ours, never recomputed.
PAPER = {
    "label": "paper (SAM3-LiteText; 404,796 prompts; reported values, not recomputed here)",
    "n_prompts": 404_796,
    "length": {"mean": 7.9},
    "context": {
        "32": {"density": 0.245, "padding": 0.755, "truncation": 0.001},
        "16": {"density": 0.480, "padding": 0.520, "truncation": 0.050, "token_loss": 0.021},
        "8": {"density": 0.800, "padding": 0.200, "truncation": 0.285, "token_loss": 0.123},
    },
    "context_note": "the paper's L=8 row is not consistent with its other rows under any single convention",
    "vocab": {"used": 17_300, "unused_share": 0.65, "top_k_coverage": {"100": 0.585}, "special_share": 0.346},
    "source_mean_length": {"lvis": 3.3, "saco": [5.4, 5.9], "refcoco": 9.4},
}


@dataclass(frozen=True)
class TokensConfig:
    contexts: tuple[int, ...] = (8, 16, 24, 32, 77)
    tokenizer: str = "clip"  # or an encoder spec: that encoder's own tokenizer
    max_token_loss: float = 0.01
    max_truncation: float = 0.05
    recommend_range: tuple[int, int] = (4, 77)
    top_k: tuple[int, ...] = (10, 100, 1000)
    n_top_tokens: int = 20


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


def _encode_distinct(tok, prompts) -> tuple[np.ndarray, np.ndarray]:
    """(flat content ids int32, offsets int64) for an Arrow string array of distinct prompts."""
    if hasattr(tok, "encode_flat"):
        return tok.encode_flat(prompts)
    content = tok.encode(prompts.to_pylist())
    sizes = np.fromiter(map(len, content), np.int64, count=len(content))
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    flat = np.fromiter((t for ids in content for t in ids), np.int32, count=int(offsets[-1]))
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


def _blocks(table) -> Blocks:
    import pyarrow.compute as pc

    prompt_code = pc.dictionary_encode(table.column("prompt")).combine_chunks().indices.to_numpy()
    source = pc.dictionary_encode(table.column("source")).combine_chunks()
    source_code, source_names = source.indices.to_numpy(), source.dictionary.to_pylist()
    names, rows = ["overall"], [np.unique(prompt_code, return_index=True)[1]]
    for s in sorted(range(len(source_names)), key=lambda i: source_names[i]):
        in_source = np.flatnonzero(source_code == s)
        first = np.unique(prompt_code[in_source], return_index=True)[1]
        names.append(source_names[s])
        rows.append(np.sort(in_source[first]))
    return Blocks(names, rows)


def _block(lengths, flat, offsets, rows, tok, config: TokensConfig) -> tuple[dict, np.ndarray]:
    n = lengths[rows].astype(np.int64)
    keep = np.zeros(len(lengths), dtype=bool)
    keep[rows] = True
    counts = id_counts(flat[np.repeat(keep, np.diff(offsets))], tok.vocab_size)
    block = {
        "n_prompts": int(len(rows)),
        "length": length_stats(n),
        "context": context_table(n, config.contexts),
        "vocab": vocab_stats(
            counts, len(rows), (tok.sot_id, tok.eot_id), tok.token_text, config.top_k, config.n_top_tokens
        ),
    }
    return block, counts


def analyse(table, tok, config: TokensConfig) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(results data, lengths per block, content id counts per block) from a tokens table."""
    ids = table.column("ids").combine_chunks()
    flat = ids.values.to_numpy(zero_copy_only=False)
    offsets = ids.offsets.to_numpy()
    lengths = table.column("length").to_numpy()
    blocks = _blocks(table)
    data: dict = {"overall": None, "sources": {}}
    lengths_by, counts_by = {}, {}
    for name, rows in zip(blocks.names, blocks.rows, strict=True):
        block, counts = _block(lengths, flat, offsets, rows, tok, config)
        lengths_by[name], counts_by[name] = lengths[rows], counts
        if name == "overall":
            data["overall"] = block
        else:
            data["sources"][name] = block
    shares = [b["vocab"]["special_share"] for b in data["sources"].values()]
    data["overall"]["vocab"]["special_share_mean_over_sources"] = float(np.mean(shares)) if shares else None
    lo, hi = config.recommend_range
    data["recommended_context"] = recommend_context(
        lengths_by["overall"], config.max_token_loss, config.max_truncation, range(lo, hi + 1)
    )
    data["conventions"] = {
        "unit": "distinct normalised prompt (overall: once across sources; per source: once within it)",
        "length": "tokens including start and end; percentiles by numpy's linear interpolation",
        "token_loss": "pooled = lost tokens / all tokens (the paper's); per prompt = mean of each prompt's lost share",
        "vocab": "used/unused_share count every id that occurs, start/end included; top_k_coverage over content "
        "tokens (top_k_coverage_with_special includes start/end); special_share = (start+end) / all tokens",
    }
    data["paper"] = PAPER
    return data, lengths_by, counts_by


def run_tokens(
    corpus_path: str | Path,
    out_dir: str | Path,
    contexts: Sequence[int] = (8, 16, 24, 32, 77),
    tokenizer: str = "clip",
    quiet: bool = False,
) -> dict:
    """Tokenize a corpus and write tokens.parquet, results/tokens.json and figures; return the results."""
    corpus_path, out_dir = Path(corpus_path), Path(out_dir)
    contexts = tuple(sorted({int(c) for c in contexts}))
    if not contexts or contexts[0] < 1:
        raise InputError(
            f"context lengths must be positive integers, got {contexts}", "e.g. --context 8,16,32"
        )
    config = TokensConfig(contexts=contexts, tokenizer=tokenizer)
    if not corpus_path.exists():
        raise InputError(
            f"{corpus_path}: no such corpus",
            "build one with `anatomy ingest SOURCE PATH --out CORPUS.parquet`",
        )
    tok, fingerprint = resolve_tokenizer(tokenizer)
    table, reused = tokenize_corpus(corpus_path, out_dir, tok, fingerprint)
    if not quiet:
        from rich.console import Console

        note = "reused (corpus and tokenizer unchanged)" if reused else f"{table.num_rows:,} rows tokenized"
        Console(stderr=True).print(f"{out_dir / TOKENS_FILE}: {note}", highlight=False)
    data, lengths_by, counts_by = analyse(table, tok, config)
    params = {**asdict(config), "tokenizer_fingerprint": fingerprint}
    path = write_result(
        out_dir, "tokens", data, command="tokens", params=params, inputs={"corpus": corpus_path}
    )
    write_figures(out_dir, lengths_by, counts_by, data["recommended_context"], contexts)
    return read_json(path)


def write_figures(out_dir: Path, lengths_by, counts_by, recommended: dict, contexts) -> list[Path]:
    from anatomy.figures import tokens as figs
    from anatomy.figures.style import save_figure

    folder = out_dir / "figures"
    tradeoff = figs.prepare_context_tradeoff(lengths_by, range(1, max(77, *contexts) + 1))
    drawn = {
        "tokens_lengths": figs.draw_length_histogram(figs.prepare_length_histogram(lengths_by)),
        "tokens_context": figs.draw_context_tradeoff(tradeoff, marks=contexts, recommended=recommended),
        "tokens_vocab": figs.draw_vocab_rank(figs.prepare_vocab_rank(counts_by)),
    }
    return [save_figure(fig, folder / f"{name}.png") for name, fig in drawn.items()]
