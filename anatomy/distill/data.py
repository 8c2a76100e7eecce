"""Training data for distillation: the teacher's per-token outputs, computed once and cached.

The cache holds, for every distinct prompt, the ids at the student's context (in the teacher's tokenizer,
which the student shares), the valid mask, the teacher's per-token outputs (fp16) and each word's own token
ids (for the word-shuffle consistency loss). It is keyed by teacher, tokenizer, context and the exact prompt
list, and a sidecar JSON records the sha256 of the array file: a cache that fails that check is rebuilt
(or refused, on request), never trusted. Building or checking a cache holds its lock (anatomy.locks.locked), so
two runs sharing a cache folder compute it once; temporaries of a killed build are removed by the next.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from anatomy.errors import InputError
from anatomy.io import atomic_path, clean_temps, file_sha256, write_json
from anatomy.locks import locked

if TYPE_CHECKING:
    import torch

    from anatomy.encoders.base import TextEncoder

log = logging.getLogger(__name__)

CACHE_VERSION = 1
TEACHER_BATCH = 256
CACHE_LOCK_TIMEOUT_S = 6 * 3600.0  # a second run waits for the first's build, then reuses it


def load_prompts(corpus: str | Path, limit: int | None = None, seed: int = 0) -> tuple[list[str], str]:
    """Distinct non-empty prompts of a corpus (sorted), optionally a seeded sample of `limit`; and its sha256."""
    from anatomy.corpus import load_corpus

    frame = load_corpus(corpus)
    prompts = sorted({p for p in frame["prompt"].tolist() if p and p.strip()})
    if not prompts:
        raise InputError(f"{corpus}: no non-empty prompts", "ingest some prompts first (anatomy ingest)")
    if limit is not None and limit < len(prompts):
        keep = np.sort(np.random.default_rng(seed).choice(len(prompts), size=limit, replace=False))
        prompts = [prompts[i] for i in keep]
    return prompts, file_sha256(corpus)


def split_heldout(n: int, eval_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of prompt indices into (train, held-out); both sorted. Prompts are distinct, so no
    prompt text appears on both sides."""
    if not 0 < eval_size < n:
        raise InputError(
            f"held-out size {eval_size} must be between 1 and {n - 1} (the corpus has {n} prompts)"
        )
    order = np.random.default_rng([seed, 7]).permutation(n)
    return np.sort(order[eval_size:]), np.sort(order[:eval_size])


@dataclass
class TeacherCache:
    prompts: list[str]
    ids: np.ndarray  # [N, L] int64, start + content + end, zero-padded
    valid: np.ndarray  # [N, L] bool, True at start..end
    targets: np.ndarray  # [N, L, D] float16 teacher outputs (zero at padding)
    word_tokens: np.ndarray  # all words' ids, concatenated
    word_offsets: np.ndarray  # [W + 1] word w is word_tokens[word_offsets[w]:word_offsets[w + 1]]
    prompt_words: np.ndarray  # [N + 1] prompt i owns words prompt_words[i]:prompt_words[i + 1]
    sot_id: int
    eot_id: int
    pad_id: int
    meta: dict

    @property
    def context(self) -> int:
        return self.ids.shape[1]

    @property
    def dim(self) -> int:
        return self.targets.shape[2]

    def words(self, i: int) -> list[list[int]]:
        lo, hi = self.prompt_words[i], self.prompt_words[i + 1]
        return [
            self.word_tokens[self.word_offsets[w] : self.word_offsets[w + 1]].tolist() for w in range(lo, hi)
        ]


def cache_key(teacher_name: str, context: int, prompts: Sequence[str]) -> str:
    """The teacher's spec fixes its weights and its tokenizer, so (spec, context, prompts) names a cache."""
    digest = hashlib.sha256("\n".join(prompts).encode("utf-8")).hexdigest()
    blob = json.dumps(
        {"v": CACHE_VERSION, "teacher": teacher_name, "context": context, "prompts": digest}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cache_paths(cache_dir: str | Path, key: str) -> tuple[Path, Path]:
    base = Path(cache_dir) / f"teacher-{key}"
    return base.with_suffix(".safetensors"), base.with_suffix(".json")


def _problem(arrays: Path, meta_path: Path, key: str) -> str | None:
    """Why a cache cannot be trusted, or None when it is whole."""
    if not meta_path.exists():
        return f"{meta_path.name} is missing"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        return f"{meta_path.name} is unreadable ({error})"
    if meta.get("key") != key or meta.get("version") != CACHE_VERSION:
        return f"{meta_path.name} belongs to another teacher, corpus or context"
    if not arrays.exists():
        return f"{arrays.name} is missing"
    if file_sha256(arrays) != meta.get("sha256"):
        return f"{arrays.name} does not match the sha256 recorded in {meta_path.name}"
    return None


def teacher_cache(
    teacher: TextEncoder | str,
    prompts: Sequence[str],
    context: int,
    cache_dir: str | Path,
    *,
    corpus_sha256: str = "",
    on_corrupt: str = "rebuild",
    progress: Callable[[int, int], None] | None = None,
) -> TeacherCache:
    """Load the cache for (teacher, prompts, context) from `cache_dir`, computing it once if absent.

    `teacher` is an encoder, or its spec: then it is loaded only if the cache must be computed.
    on_corrupt: "rebuild" recomputes a cache that fails its hash check (with a warning); "refuse" raises.
    """
    key = cache_key(teacher if isinstance(teacher, str) else teacher.name, context, prompts)
    arrays, meta_path = cache_paths(cache_dir, key)
    with locked(arrays, timeout=CACHE_LOCK_TIMEOUT_S):
        clean_temps(meta_path)
        return _load_or_build(
            teacher, prompts, context, arrays, meta_path, key, corpus_sha256, on_corrupt, progress
        )


def _load_or_build(teacher, prompts, context, arrays, meta_path, key, corpus_sha256, on_corrupt, progress):
    if arrays.exists() or meta_path.exists():
        problem = _problem(arrays, meta_path, key)
        if problem is None:
            return read_cache(arrays, meta_path)
        if on_corrupt == "refuse":
            raise InputError(
                f"teacher cache {arrays} is corrupted: {problem}",
                f"delete {arrays.name} and {meta_path.name} (or run with the rebuild policy) to recompute it",
            )
        log.warning("teacher cache %s is corrupted (%s); rebuilding it", arrays, problem)
    if isinstance(teacher, str):
        from anatomy.encoders.registry import load

        teacher = load(teacher, context_length=context)
    _build(teacher, list(prompts), context, arrays, meta_path, key, corpus_sha256, progress)
    return read_cache(arrays, meta_path)


def _encode_rows(teacher: TextEncoder, prompts: list[str], ids: np.ndarray, valid: np.ndarray) -> np.ndarray:
    if hasattr(teacher, "encode_ids"):  # ModuleEncoder: exactly the ids the student will see
        out = teacher.encode_ids(ids, valid)
    else:
        out = teacher.encode(prompts, context_length=ids.shape[1])
    tokens = out.tokens.float().cpu().numpy()
    if tokens.shape[:2] != ids.shape:
        raise InputError(f"teacher {teacher.name} returned shape {tokens.shape} for ids of shape {ids.shape}")
    return tokens


def _build(teacher, prompts, context, arrays, meta_path, key, corpus_sha256, progress) -> None:
    from safetensors.numpy import save_file

    from anatomy.encoders.base import valid_mask
    from anatomy.tokenizer import pack

    tok = teacher.tokenizer
    content = tok.encode(prompts)
    ids = pack(content, context, tok.sot_id, tok.eot_id, tok.pad_id)
    valid = valid_mask(ids, [len(c) for c in content])
    targets = None
    for start in range(0, len(prompts), TEACHER_BATCH):
        stop = min(start + TEACHER_BATCH, len(prompts))
        tokens = _encode_rows(teacher, prompts[start:stop], ids[start:stop], valid[start:stop])
        if targets is None:
            targets = np.zeros((len(prompts), context, tokens.shape[2]), dtype=np.float16)
        tokens = tokens * valid[start:stop, :, None]
        if not np.isfinite(tokens).all() or np.abs(tokens).max(initial=0.0) > 6e4:
            raise InputError(
                f"teacher {teacher.name} gave non-finite or fp16-overflowing outputs for prompts {start}-{stop}"
            )
        targets[start:stop] = tokens.astype(np.float16)
        if progress:
            progress(stop, len(prompts))
    if targets is None:
        raise InputError("no prompts to encode with the teacher", "give a corpus with at least one prompt")
    words_per_prompt = [p.split() for p in prompts]
    flat_words = [w for ws in words_per_prompt for w in ws]
    word_ids = tok.encode(flat_words) if flat_words else []
    word_offsets = np.zeros(len(word_ids) + 1, dtype=np.int64)
    word_offsets[1:] = np.cumsum([len(w) for w in word_ids])
    prompt_words = np.zeros(len(prompts) + 1, dtype=np.int64)
    prompt_words[1:] = np.cumsum([len(ws) for ws in words_per_prompt])
    tensors = {
        "ids": ids,
        "valid": valid,
        "targets": targets,
        "word_tokens": np.asarray([i for w in word_ids for i in w], dtype=np.int64),
        "word_offsets": word_offsets,
        "prompt_words": prompt_words,
    }
    with atomic_path(arrays) as tmp:
        save_file(tensors, str(tmp))
    meta = {
        "version": CACHE_VERSION,
        "key": key,
        "teacher": teacher.name,
        "tokenizer": tok.name,
        "context": context,
        "corpus_sha256": corpus_sha256,
        "n_prompts": len(prompts),
        "dim": int(targets.shape[2]),
        "sot_id": int(tok.sot_id),
        "eot_id": int(tok.eot_id),
        "pad_id": int(tok.pad_id),
        "vocab_size": int(tok.vocab_size),
        "sha256": file_sha256(arrays),
        "prompts": list(prompts),
    }
    write_json(meta_path, meta)  # written last: a cache without its sidecar is never trusted


def read_cache(arrays: str | Path, meta_path: str | Path) -> TeacherCache:
    """A cache already checked (by teacher_cache on this or another rank); needs no teacher."""
    from safetensors.numpy import load_file

    meta = json.loads(Path(meta_path).read_text(encoding="utf-8"))
    t = load_file(str(arrays))
    return TeacherCache(
        prompts=meta.pop("prompts"),
        ids=t["ids"],
        valid=t["valid"],
        targets=t["targets"],
        word_tokens=t["word_tokens"],
        word_offsets=t["word_offsets"],
        prompt_words=t["prompt_words"],
        sot_id=meta["sot_id"],
        eot_id=meta["eot_id"],
        pad_id=meta["pad_id"],
        meta=meta,
    )


@dataclass
class Batch:
    ids: torch.Tensor
    valid: torch.Tensor
    targets: torch.Tensor
    shuffled_ids: torch.Tensor | None = None
    shuffled_valid: torch.Tensor | None = None


def make_batch(
    cache: TeacherCache, rows: np.ndarray, device, shuffle_rng: np.random.Generator | None = None
) -> Batch:
    """Tensors for the prompts at `rows`; with `shuffle_rng`, also their word-shuffled ids (consistency)."""
    import torch

    from anatomy.encoders.base import valid_mask
    from anatomy.tokenizer import pack

    batch = Batch(
        ids=torch.from_numpy(cache.ids[rows]).to(device),
        valid=torch.from_numpy(cache.valid[rows]).to(device),
        targets=torch.from_numpy(cache.targets[rows].astype(np.float32)).to(device),
    )
    if shuffle_rng is not None:
        from anatomy.distill.losses import shuffle_word_ids

        content = [shuffle_word_ids(cache.words(int(i)), shuffle_rng) for i in rows]
        ids = pack(content, cache.context, cache.sot_id, cache.eot_id, cache.pad_id)
        batch.shuffled_ids = torch.from_numpy(ids).to(device)
        batch.shuffled_valid = torch.from_numpy(valid_mask(ids, [len(c) for c in content])).to(device)
    return batch
