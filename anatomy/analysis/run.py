"""The pipelines behind `anatomy positions | spectrum | dims | robustness | agreement`.

Each loads what it needs (an encoder is given as a spec string or an already-loaded TextEncoder, so the audit
loads each encoder once), runs the array-level analysis, writes OUT/results/NAME.json (io.write_result) and
OUT/figures/NAME_*.png, and returns the results dict.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from anatomy.errors import EncoderError, InputError

log = logging.getLogger(__name__)

DIMS_SAMPLE = 5000  # the paper's 5,000 prompts
AGREEMENT_SAMPLE = 2000
ROBUSTNESS_SAMPLE = 2000
MIN_SOURCE_POINTS = 50  # fewer distinct points than this: no estimate for that source (k = 20 neighbours)


# ------------------------------------------------------------------------------------------ inputs


def _encoder(spec_or_encoder, purpose: str):
    """A trained TextEncoder from a spec or an encoder object (refusing untrained architectures)."""
    from anatomy.encoders.registry import load, require_trained

    encoder = load(spec_or_encoder) if isinstance(spec_or_encoder, str) else spec_or_encoder
    require_trained(encoder, purpose)
    return encoder


def _token_groups(frame, encoder) -> tuple[list[str], list[tuple[int, ...]], dict[str, np.ndarray]]:
    """Distinct token-id sequences (as the encoder sees them, truncated to its context) of a corpus.

    Returns one representative prompt per sequence, the sequences, and per source the indices of its
    sequences. Two prompts with the same ids give the same embedding, so they are one point.
    """
    prompts = sorted(set(frame["prompt"]))
    content = encoder.tokenizer.encode(prompts)
    keep = max(encoder.context_length - 2, 1)
    seq_of: dict[tuple[int, ...], int] = {}
    representative, sequences, prompt_to_seq = [], [], {}
    for prompt, ids in zip(prompts, content, strict=True):
        key = tuple(ids[:keep])
        if key not in seq_of:
            seq_of[key] = len(sequences)
            sequences.append(key)
            representative.append(prompt)
        prompt_to_seq[prompt] = seq_of[key]
    by_source = {}
    for source, group in frame.groupby("source", sort=True):
        by_source[str(source)] = np.unique([prompt_to_seq[p] for p in group["prompt"]])
    return representative, sequences, by_source


def _sample(indices: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Up to n of `indices` (all when n is None), drawn without replacement, in ascending order."""
    if n is None or len(indices) <= n:
        return np.asarray(indices)
    return np.sort(np.random.default_rng(seed).choice(indices, size=n, replace=False))


def embed_sequences(encoder, prompts: Sequence[str], per_token: bool = False, quiet: bool = True):
    """Pooled float32 outputs [N, D] (and per-token outputs [N, W, D] with masks [N, W]) of prompts, through
    the embed step's batching (length-bucketed where that is exact)."""
    from anatomy.embed import embed_prompts

    got = embed_prompts(encoder, list(prompts), per_token=per_token, quiet=quiet)
    return got["pooled"], got.get("tokens"), got.get("mask")


def _corpus_inputs(corpus) -> dict:
    return {"corpus": corpus} if corpus is not None else {}


# --------------------------------------------------------------------------------------- positions


def run_positions(encoder_spec, out_dir, block: int = 8, rows: str = "context", quiet: bool = True) -> dict:
    """Positional-table anatomy: the first context_length rows ('context') or the whole table ('all')."""
    from anatomy.analysis.positional import positional_anatomy
    from anatomy.figures import representation as fig
    from anatomy.io import write_result

    encoder = _encoder(encoder_spec, "positions")
    table = encoder.positional_embedding()
    if table is None:
        raise EncoderError(
            f"{encoder.name} has no learned positional table (rotary or relative positions)",
            "positions applies to encoders with an absolute position table",
        )
    full = table.detach().float().cpu().numpy() if hasattr(table, "detach") else np.asarray(table)
    if rows not in ("context", "all"):
        raise InputError(f"rows must be 'context' or 'all', got '{rows}'")
    used = full if rows == "all" else full[: encoder.context_length]
    got = positional_anatomy(used, block=block)
    result = {
        "encoder": encoder.name,
        "table_rows": int(full.shape[0]),
        "rows_analysed": got.n_positions,
        "rows_rule": (
            f"the first {got.n_positions} rows (the encoder's context length) of its {full.shape[0]}-row table"
            if rows == "context"
            else f"the whole {full.shape[0]}-row table"
        ),
        "dim": got.dim,
        "block": block,
        "within_block": got.within_block,
        "block_means": got.block_means,
        "adjacent": {"mean": float(got.adjacent.mean()), "values": got.adjacent},
        "pca": {"n90": got.n90_pca, "cumulative": got.pca_curve},
        "spectrum": {"centred": got.spectrum.centred, "uncentred": got.spectrum.uncentred},
    }
    out_dir = Path(out_dir)
    write_result(out_dir, "positions", result, command="positions", params={"block": block, "rows": rows})
    figures = out_dir / "figures"
    fig.save_figure(fig.draw_positions_heatmap(got.cosine), figures / "positions_heatmap.png")
    fig.save_figure(
        fig.draw_positions_blocks(fig.prepare_positions_blocks(result)), figures / "positions_blocks.png"
    )
    fig.save_figure(fig.draw_positions_pca(fig.prepare_positions_pca(result)), figures / "positions_pca.png")
    return result


# ---------------------------------------------------------------------------------------- spectrum


def _spectrum_entry(matrix: np.ndarray) -> dict:
    from anatomy.analysis.spectrum import matrix_spectrum

    spec = matrix_spectrum(matrix)
    return {
        "rows": spec.shape[0],
        "dim": spec.shape[1],
        "centred": spec.centred,
        "uncentred": spec.uncentred,
        "singular_values": {
            "centred": spec.singular_values_centred,
            "uncentred": spec.singular_values_uncentred,
        },
    }


def run_spectrum(encoder_spec, out_dir, corpus=None, quiet: bool = True) -> dict:
    """SVD of the token-embedding matrix: the full vocabulary, and the ids the corpus uses."""
    from anatomy.corpus import load_corpus
    from anatomy.figures import representation as fig
    from anatomy.io import write_result

    encoder = _encoder(encoder_spec, "spectrum")
    table = encoder.token_embedding()
    matrix = table.detach().float().cpu().numpy() if hasattr(table, "detach") else np.asarray(table)
    result = {"encoder": encoder.name, "vocab_size": int(matrix.shape[0]), "full": _spectrum_entry(matrix)}
    if corpus is not None:
        tok = encoder.tokenizer
        content = tok.encode(sorted(set(load_corpus(corpus)["prompt"])))
        used = np.unique(np.fromiter((i for ids in content for i in ids), dtype=np.int64))
        used = np.union1d(used, [tok.sot_id, tok.eot_id])  # every prompt also uses the start and end rows
        result["used"] = {"n_ids": int(used.size), "rule": "ids in the corpus plus start and end"}
        result["used"] |= _spectrum_entry(matrix[used])
    out_dir = Path(out_dir)
    write_result(out_dir, "spectrum", result, command="spectrum", params={}, inputs=_corpus_inputs(corpus))
    fig.save_figure(fig.draw_spectrum(fig.prepare_spectrum(result)), out_dir / "figures" / "spectrum.png")
    return result


# -------------------------------------------------------------------------------------------- dims


def _dims_entry(points: np.ndarray, seed: int, n_boot: int) -> dict:
    from anatomy.analysis.intrinsic_dim import intrinsic_dim

    return intrinsic_dim(points, n_boot=n_boot, seed=seed).as_result()


def run_dims(
    out_dir,
    encoder_spec=None,
    corpus=None,
    embeddings=None,
    sample: int | None = DIMS_SAMPLE,
    all_points: bool = False,
    seed: int = 0,
    n_boot: int = 200,
    quiet: bool = True,
) -> dict:
    """Intrinsic dimension of pooled outputs (an encoder over a corpus, or a saved .npy), overall and per source."""
    from anatomy.figures import representation as fig
    from anatomy.io import write_result

    if (
        not isinstance(out_dir, str | Path)
        and isinstance(encoder_spec, str | Path)
        and hasattr(out_dir, "encode")
    ):
        out_dir, encoder_spec = encoder_spec, out_dir  # the audit calls run_dims(encoder, out_dir, ...)
    if (embeddings is None) == (encoder_spec is None):
        raise InputError("give either an encoder (with a corpus) or an embeddings file, not both or neither")
    n = None if all_points else sample
    inputs: dict = {}
    sources: dict = {}
    if embeddings is not None:
        path = Path(embeddings)
        try:
            raw = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as error:
            raise InputError(f"{path}: not a readable .npy array ({error})") from None
        if raw.ndim != 2:
            raise InputError(f"{path}: expected a 2-D array [points, dims], got shape {raw.shape}")
        from anatomy.analysis.intrinsic_dim import dedupe_rows

        unique, _ = dedupe_rows(raw)
        overall = unique[_sample(np.arange(len(unique)), n, seed)]
        name, dedupe_rule, inputs = path.name, "identical rows", {"embeddings": path}
        duplicates_before, skipped = len(raw) - len(unique), []
    else:
        if corpus is None:
            raise InputError("--encoder needs --corpus (the prompts to embed)")
        from anatomy.corpus import load_corpus

        encoder = _encoder(encoder_spec, "dims")
        frame = load_corpus(corpus)
        prompts, _, by_source = _token_groups(frame, encoder)
        picks = {"overall": _sample(np.arange(len(prompts)), n, seed)}
        picks |= {s: _sample(idx, n, seed) for s, idx in by_source.items() if len(idx) >= MIN_SOURCE_POINTS}
        needed = np.unique(np.concatenate(list(picks.values())))
        pooled, _, _ = embed_sequences(encoder, [prompts[i] for i in needed], quiet=quiet)
        row_of = {int(seq): r for r, seq in enumerate(needed)}
        rows = {key: [row_of[int(i)] for i in idx] for key, idx in picks.items()}
        overall = pooled[rows.pop("overall")]
        sources = {s: pooled[r] for s, r in rows.items()}
        name, dedupe_rule, inputs = (
            encoder.name,
            "token-id sequences (truncated to the context)",
            {"corpus": corpus},
        )
        duplicates_before = frame["prompt"].nunique() - len(prompts)  # prompts sharing token ids
        skipped = sorted(set(by_source) - set(sources))
    result = {
        "input": name,
        "overall": _dims_entry(overall, seed, n_boot),
        "sources": {s: _dims_entry(x, seed, n_boot) for s, x in sources.items()},
        "method": {
            "deduplication": f"{dedupe_rule}; then identical float64 rows",
            "duplicates_removed_before_sampling": duplicates_before,
            "knn": "one exact kNN (k = 20, Euclidean, float64) shared by TwoNN and MLE",
            "twonn_linear": "fit -log(1 - i/N) = d log mu through the origin, largest 10% of mu discarded",
            "twonn_closed_form": "(N - 1) / sum log mu",
            "mle": "Levina-Bickel, k = 20; harmonic mean (scikit-dimension default) and arithmetic mean",
            "erank": "Roy-Vetterli effective rank of the centred points' singular values",
            "spread": f"bootstrap over points ({n_boot} draws, neighbours fixed): std and 95% percentile interval",
        },
    }
    if skipped:
        result["method"]["sources_skipped"] = (
            f"{', '.join(skipped)}: fewer than {MIN_SOURCE_POINTS} distinct points"
        )
    out_dir = Path(out_dir)
    params = {"sample": None if all_points else sample, "all": all_points, "seed": seed, "n_boot": n_boot}
    write_result(out_dir, "dims", result, command="dims", params=params, inputs=inputs)
    fig.save_figure(fig.draw_dims(fig.prepare_dims(result)), out_dir / "figures" / "dims.png")
    return result


# -------------------------------------------------------------------------------------- robustness


def run_robustness(
    encoder_spec, corpus, out_dir, noise: Sequence[float] = (0.1,), seed: int = 0,
    sample: int = ROBUSTNESS_SAMPLE, quiet: bool = True,
) -> dict:  # fmt: skip
    """Softmax error attenuation on the pooled outputs of a sample of the corpus's prompts."""
    from anatomy.analysis.robustness import CONSTRUCTION, softmax_robustness
    from anatomy.corpus import load_corpus
    from anatomy.figures import representation as fig
    from anatomy.io import write_result

    encoder = _encoder(encoder_spec, "robustness")
    prompts, _, _ = _token_groups(load_corpus(corpus), encoder)
    picked = _sample(np.arange(len(prompts)), sample, seed)
    pooled, _, _ = embed_sequences(encoder, [prompts[i] for i in picked], quiet=quiet)
    levels = [softmax_robustness(pooled, noise=float(s), seed=seed) for s in noise]
    result = {
        "encoder": encoder.name,
        "construction": {"X": f"pooled encoder outputs of {len(picked)} distinct prompts"} | CONSTRUCTION,
        "levels": levels,
    }
    out_dir = Path(out_dir)
    params = {"noise": [float(s) for s in noise], "seed": seed, "sample": sample}
    write_result(
        out_dir, "robustness", result, command="robustness", params=params, inputs={"corpus": corpus}
    )
    fig.save_figure(
        fig.draw_robustness(fig.prepare_robustness(result)), out_dir / "figures" / "robustness.png"
    )
    return result


# --------------------------------------------------------------------------------------- agreement


def run_agreement(
    teacher_spec, student_spec, corpus, out_dir, sample: int = AGREEMENT_SAMPLE, seed: int = 0, k: int = 10,
    n_boot: int = 200, quiet: bool = True,
) -> dict:  # fmt: skip
    """Teacher vs student on the same prompts: token and pooled cosine, kNN overlap@k, intrinsic dimension."""
    from anatomy.analysis.agreement import agreement
    from anatomy.corpus import load_corpus
    from anatomy.figures import representation as fig
    from anatomy.io import write_result

    teacher = _encoder(teacher_spec, "agreement")
    student = _encoder(student_spec, "agreement")
    prompts, _, _ = _token_groups(load_corpus(corpus), teacher)
    picked = [prompts[i] for i in _sample(np.arange(len(prompts)), sample, seed)]
    t_pooled, t_tokens, t_mask = embed_sequences(teacher, picked, per_token=True, quiet=quiet)
    s_pooled, s_tokens, s_mask = embed_sequences(student, picked, per_token=True, quiet=quiet)
    same_tokens = getattr(teacher.tokenizer, "name", None) == getattr(student.tokenizer, "name", None)
    got = agreement(
        t_tokens if same_tokens else None,
        t_mask,
        t_pooled,
        s_tokens if same_tokens else None,
        s_mask,
        s_pooled,
        k,
    )
    result = {
        "teacher": teacher.name,
        "student": student.name,
        "n_prompts": len(picked),
        "token_cosine": got.token_cosine,
        "pooled_cosine": got.pooled_cosine,
        f"knn_overlap@{k}": got.knn_overlap,
        "intrinsic_dim": {
            "teacher": _dims_entry(t_pooled, seed, n_boot),
            "student": _dims_entry(s_pooled, seed, n_boot),
        },
        "notes": got.notes,
        "method": {
            "token_cosine": "cosine per token over positions valid in both encoders (same tokenizer only)",
            "pooled_cosine": "cosine of the two pooled outputs of each prompt",
            "knn_overlap": f"share of the {k} exact Euclidean nearest neighbours common to both spaces",
        },
    }
    out_dir = Path(out_dir)
    params = {"sample": sample, "seed": seed, "k": k, "n_boot": n_boot}
    write_result(out_dir, "agreement", result, command="agreement", params=params, inputs={"corpus": corpus})
    fig.save_figure(fig.draw_agreement(fig.prepare_agreement(result)), out_dir / "figures" / "agreement.png")
    return result
