"""Length statistics, the context-window table and vocabulary coverage: pure numpy on lengths and ids.

n_i counts a prompt's tokens INCLUDING start and end (metrics.md). Every context quantity is a function of
the length histogram alone, so the same code serves a corpus's lengths and a histogram read back from a
results file. Token loss has two conventions: pooled (lost tokens / all tokens, the paper's) and per prompt
(the mean of each prompt's lost share); both are reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

PERCENTILES = (50, 90, 95, 99)
TOP_K = (10, 100, 1000)


def _histogram(n, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """(distinct lengths, how many prompts have each): each prompt counts once, or its weight (its requests)."""
    n = np.asarray(n, dtype=np.int64)
    if n.size == 0:
        raise ValueError("no prompts: length statistics need at least one prompt")
    if n.min() < 1:
        raise ValueError(f"token counts must be >= 1 (they include start and end), got {n.min()}")
    if weights is None:
        return np.unique(n, return_counts=True)
    w = np.asarray(weights, dtype=np.int64)
    if w.shape != n.shape or (w.size and w.min() < 1):
        raise ValueError("weights must be one positive whole count per prompt")
    values, inverse = np.unique(n, return_inverse=True)
    return values, np.bincount(inverse, weights=w, minlength=len(values)).astype(np.int64)


def _percentiles(values: np.ndarray, counts: np.ndarray, q) -> list[float]:
    """numpy's linear-interpolation percentiles of the histogram expanded (without expanding it)."""
    ends = np.cumsum(counts)
    h = (ends[-1] - 1) * np.asarray(q, dtype=np.float64) / 100
    lo, hi = np.floor(h).astype(np.int64), np.ceil(h).astype(np.int64)
    at_lo, at_hi = values[np.searchsorted(ends, lo, "right")], values[np.searchsorted(ends, hi, "right")]
    return [float(v) for v in at_lo + (h - lo) * (at_hi - at_lo)]


def lengths_from_histogram(histogram: dict[str, int]) -> np.ndarray:
    """Expand a {"<n>": count} histogram (as written in results) back into one length per prompt."""
    values = np.array([int(k) for k in histogram], dtype=np.int64)
    return np.repeat(values, np.array(list(histogram.values()), dtype=np.int64))


def length_stats(n, weights=None) -> dict:
    """Mean, median, p90/p95/p99 (numpy's linear interpolation), max and the full histogram; with `weights`
    (requests per prompt) each prompt counts that many times."""
    values, counts = _histogram(n, weights)
    median, p90, p95, p99 = _percentiles(values, counts, PERCENTILES)
    return {
        "mean": float(values @ counts / counts.sum()),
        "median": median,
        "p90": p90,
        "p95": p95,
        "p99": p99,
        "max": int(values[-1]),
        "histogram": {str(v): int(c) for v, c in zip(values.tolist(), counts.tolist(), strict=True)},
    }


def context_curve(n, contexts: Iterable[int], weights=None) -> dict[str, np.ndarray]:
    """Density, padding, truncation and both token losses at each context length L (arrays over L); with
    `weights` every share is of requests (a prompt counts as often as it was sent)."""
    values, counts = _histogram(n, weights)
    L = np.asarray(list(contexts), dtype=np.int64)
    if L.size and L.min() < 1:
        raise ValueError(f"context lengths must be positive, got {L.min()}")
    n_prompts, n_tokens = counts.sum(), values @ counts
    kept = np.minimum(values[None, :], L[:, None]) @ counts
    lost = np.maximum(values[None, :] - L[:, None], 0)
    density = kept / (n_prompts * L)
    return {
        "L": L,
        "density": density,
        "padding": 1.0 - density,
        "truncation": (values[None, :] > L[:, None]) @ counts / n_prompts,
        "token_loss": lost @ counts / n_tokens,
        "token_loss_per_prompt": (lost / values[None, :]) @ counts / n_prompts,
    }


_ROW_KEYS = ("density", "padding", "truncation", "token_loss", "token_loss_per_prompt")


def context_table(n, contexts: Sequence[int], weights=None) -> dict[str, dict[str, float]]:
    """{"<L>": {density, padding, truncation, token_loss, token_loss_per_prompt}} for each requested L."""
    curve = context_curve(n, contexts, weights)
    return {str(L): {k: float(curve[k][i]) for k in _ROW_KEYS} for i, L in enumerate(curve["L"].tolist())}


def recommend_context(
    n,
    max_token_loss: float = 0.01,
    max_truncation: float = 0.05,
    candidates: Iterable[int] = range(4, 78),
    weights=None,
) -> dict:
    """The smallest L whose token loss and truncation are both within bounds, under each loss convention."""
    curve = context_curve(n, candidates, weights)
    result: dict = {
        "rule": f"smallest L in {int(curve['L'].min())}..{int(curve['L'].max())} with token loss <= "
        f"{max_token_loss:g} and truncation <= {max_truncation:g}",
        "max_token_loss": max_token_loss,
        "max_truncation": max_truncation,
    }
    for convention, loss_key in (("pooled", "token_loss"), ("per_prompt", "token_loss_per_prompt")):
        ok = np.flatnonzero((curve[loss_key] <= max_token_loss) & (curve["truncation"] <= max_truncation))
        if ok.size == 0:
            result[convention] = {"L": None, "reason": "no candidate length meets both bounds"}
            continue
        i = int(ok[0])
        result[convention] = {"L": int(curve["L"][i]), **{k: float(curve[k][i]) for k in _ROW_KEYS}}
    return result


def id_counts(ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """Occurrences of each id (content ids, flattened) as an int64 array of length vocab_size."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"token ids outside 0..{vocab_size - 1}: min {ids.min()}, max {ids.max()}")
    return np.bincount(ids, minlength=vocab_size)


def vocab_stats(
    content_counts: np.ndarray,
    n_prompts: int,
    special_ids: tuple[int, int],
    token_text: Callable[[int], str] = str,
    top_k: Sequence[int] = TOP_K,
    n_top: int = 20,
) -> dict:
    """Vocabulary use of a block: used ids, top-k coverage, special-token share and the commonest tokens.

    Every prompt adds one start and one end token to the content counts. `used` and `unused_share` count
    every id that occurs (specials included) out of the whole vocabulary. `top_k_coverage` is over content
    tokens (start/end excluded: they alone would take 2/mean(n) of any top-k); the share with them included
    is given as `top_k_coverage_with_special`. `special_share` = (start + end) / all tokens = 2 / mean(n).
    """
    content = np.asarray(content_counts, dtype=np.int64)
    with_special = content.copy()
    for sid in special_ids:
        with_special[sid] += n_prompts
    n_content, n_all = int(content.sum()), int(with_special.sum())

    def coverage(counts: np.ndarray, total: int) -> dict[str, float]:
        ranked = np.sort(counts)[::-1]
        cumulative = np.cumsum(ranked)
        return {str(k): float(cumulative[min(k, len(ranked)) - 1] / total) if total else 0.0 for k in top_k}

    order = np.argsort(-content, kind="stable")  # ties broken by id, so the list is deterministic
    top = [[token_text(int(i)), int(content[i])] for i in order[:n_top] if content[i] > 0]
    used = int((with_special > 0).sum())
    return {
        "used": used,
        "used_content": int((content > 0).sum()),
        "unused_share": 1.0 - used / len(content),
        "top_k_coverage": coverage(content, n_content),
        "top_k_coverage_with_special": coverage(with_special, n_all),
        "special_share": len(special_ids) * n_prompts / n_all if n_all else 0.0,
        "top_tokens": top,
    }
