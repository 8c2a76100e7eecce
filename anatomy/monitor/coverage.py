"""Coverage: how far each log prompt lies from the training corpus in the teacher's embedding space.

Training embeddings are the run's teacher cache (pooled = masked mean of the cached per-token outputs), or,
without one, the teacher's pooled outputs of the training corpus's prompts, computed once into OUT/cache.
The log's are the teacher's pooled outputs at the deployed context, cached the same way. A prompt's distance
is 1 - cosine to its nearest training prompt (knn.nearest, exact). The yardstick is the training corpus's own
leave-one-out distances: their QUANTILE (95th percentile) is the threshold, so about 5% of an in-distribution
log lies beyond it by construction; a log far from the training data puts much more traffic there.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from anatomy.monitor.tokenization import Ranked

QUANTILE = 0.95
TOP = 20


@dataclass
class Far(Ranked):
    distance: float = 0.0
    nearest: str = ""  # the nearest training prompt


@dataclass
class CoverageCheck:
    teacher: str
    backend: str
    train_prompts: int
    quantile: float
    threshold: float  # the training corpus's leave-one-out distance at `quantile`
    train_loo_median: float
    beyond_prompts: float  # share of distinct log prompts farther than the threshold
    beyond_requests: float  # share of requests
    distance_mean_requests: float  # traffic-weighted mean distance
    distance_median_prompts: float
    farthest: list[Far] = field(default_factory=list)  # beyond the threshold, by requests


def _key(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:20]


def pooled_cached(teacher, spec: str, prompts: Sequence[str], context: int, cache_dir: Path) -> np.ndarray:
    """The teacher's pooled outputs of `prompts` at `context`, reused from cache_dir when the sidecar's key and
    sha256 match (verified before reuse), else computed and written (array first, sidecar last)."""
    from anatomy.batching import embed_prompts
    from anatomy.io import atomic_path, file_sha256, write_json

    key = _key(spec, str(context), "\n".join(prompts))
    arrays, meta = cache_dir / f"pooled-{key}.npy", cache_dir / f"pooled-{key}.json"
    if arrays.exists() and meta.exists():
        try:
            if json.loads(meta.read_text(encoding="utf-8")).get("sha256") == file_sha256(arrays):
                cached = np.load(arrays)
                if cached.shape[0] == len(prompts):
                    return cached
        except (OSError, ValueError):
            pass  # rebuilt below
    pooled = embed_prompts(teacher(), list(prompts))["pooled"].astype(np.float32)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(arrays) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, pooled)
    write_json(
        meta, {"teacher": spec, "context": context, "rows": len(prompts), "sha256": file_sha256(arrays)}
    )
    return pooled


def train_embeddings(dep, teacher, cache_dir: Path) -> tuple[list[str], np.ndarray]:
    """(training prompts, their pooled teacher outputs): from the run's teacher cache where it has one."""
    if dep.teacher_cache is not None:
        from anatomy.distill.data import read_cache

        cache = read_cache(*dep.teacher_cache)
        valid = cache.valid[..., None].astype(np.float32)
        pooled = (cache.targets.astype(np.float32) * valid).sum(1) / np.maximum(valid.sum(1), 1.0)
        return list(cache.prompts), pooled
    from anatomy.distill.data import load_prompts
    from anatomy.errors import InputError

    if dep.corpus is None:
        raise InputError(
            f"{dep.folder}: its training corpus cannot be found", "keep the corpus beside the run"
        )
    prompts, _ = load_prompts(dep.corpus)
    return prompts, pooled_cached(teacher, dep.teacher, prompts, dep.context, cache_dir)


def check_coverage(prompts: Sequence[str], requests: np.ndarray, log_pooled: np.ndarray, train: Sequence[str],
                   train_pooled: np.ndarray, teacher: str, backend: str = "auto") -> tuple[CoverageCheck, dict]:  # fmt: skip
    """The check, and per-prompt arrays (distance, beyond) for the per-period figures and the prompts to add."""
    from anatomy.monitor.knn import _pick, leave_one_out, nearest

    used = _pick(backend)
    loo = leave_one_out(train_pooled, backend=used)
    threshold = float(np.quantile(loo, QUANTILE))
    distance, at = nearest(log_pooled, train_pooled, backend=used)
    beyond = distance > threshold
    total = max(int(requests.sum()), 1)
    idx = np.flatnonzero(beyond)
    order = idx[np.lexsort((idx, -requests[idx]))][:TOP]
    result = CoverageCheck(
        teacher=teacher, backend=used, train_prompts=len(train), quantile=QUANTILE, threshold=threshold,
        train_loo_median=float(np.median(loo)), beyond_prompts=float(beyond.mean()) if len(beyond) else 0.0,
        beyond_requests=float(requests[beyond].sum() / total),
        distance_mean_requests=float((distance * requests).sum() / total),
        distance_median_prompts=float(np.median(distance)) if len(distance) else 0.0,
        farthest=[Far(prompts[i], int(requests[i]), 1, float(distance[i]), train[at[i]]) for i in order],
    )  # fmt: skip
    return result, {"distance": distance, "beyond": beyond}
