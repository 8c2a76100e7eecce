"""Embed every corpus row with one encoder: pooled vectors (and per-token outputs on request), cached.

OUT/ holds pooled.npy [N, D] float32 aligned with the corpus rows, optionally tokens.npy [N, W, D] and
mask.npy [N, W] (W = the longest prompt in tokens, at most the context; outputs at invalid positions are
zero), and embeddings.json, the manifest written LAST: its presence means the arrays are complete.

- Reuse: a rerun with the same encoder (spec + weight-file hashes), corpus (sha256), context, dtype and
  per-token choice returns the existing arrays without loading the encoder.
- Verified reuse: the manifest records each array's size and sha256; an array that no longer matches
  (truncated, bytes flipped, replaced) or is not a whole .npy of the recorded shape is rebuilt with a warning.
- Locking: rank 0 holds OUT's lock (anatomy.locks.locked) from the reuse check to the manifest, so two runs
  into one folder run one after the other; temporaries of a killed run are removed on the next.
- Resume: rows are processed in chunks, each written atomically to OUT/.partial-KEY/; a killed run
  restarts at the first missing chunk.
- Length bucketing where it is exact (anatomy.batching).
- Sharding: under torchrun (RANK/WORLD_SIZE) rank r embeds chunks r, r + W, ...; rank 0 waits for every
  rank's chunks and merges them into the same files a single process writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anatomy.batching import DEFAULT_BATCH, embed_rows, plan, resolve_bucket
from anatomy.cachecheck import check_embeddings, file_record
from anatomy.errors import AnatomyError, InputError
from anatomy.io import (
    atomic_path,
    atomic_write,
    clean_temps,
    file_sha256,
    package_versions,
    read_json,
    write_json,
)
from anatomy.locks import locked

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MANIFEST = "embeddings.json"
LOCK_TIMEOUT_S = 6 * 3600.0  # a second run into OUT waits for the first, then reuses its arrays


@dataclass
class EmbedResult:
    out_dir: Path
    manifest: dict | None  # None on a non-zero rank (rank 0 merges and writes it)
    reused: bool = False


@dataclass
class Embeddings:
    pooled: np.ndarray  # [N, D] float32 (memory-mapped)
    tokens: np.ndarray | None  # [N, W, D] float32, zero outside the mask
    mask: np.ndarray | None  # [N, W] bool, True at start..end
    manifest: dict


def encoder_fingerprint(spec: str) -> dict:
    """What identifies an encoder's weights without loading it: the spec and the sha256 of its files.

    The encoder's family names those files (anatomy.encoders.family.Family.fingerprint).
    """
    from anatomy.encoders.registry import fingerprint_path

    parsed, path = fingerprint_path(spec)
    path = Path(path) if path is not None else None
    return {"spec": spec, "family": parsed.family, "weights_sha256": _tree_sha256(path) if path else None}


def _tree_sha256(path: Path) -> str:
    if not path.exists():
        raise InputError(f"{path}: not found")
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for child in sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(child.relative_to(path)).encode() + b"\0" + file_sha256(child).encode())
    return digest.hexdigest()


def load_embeddings(out_dir: str | Path) -> Embeddings:
    """The arrays of a finished `embed` run (memory-mapped)."""
    out_dir = Path(out_dir)
    if not (out_dir / MANIFEST).exists():
        raise InputError(
            f"{out_dir}: no finished embeddings here ({MANIFEST} missing)", "run `anatomy embed` first"
        )
    manifest = read_json(out_dir / MANIFEST)
    problem = check_embeddings(out_dir, manifest, hashes=False)
    if problem:
        raise InputError(
            f"{out_dir}: embeddings are damaged: {problem}", "rerun `anatomy embed` to rebuild them"
        )
    tokens = mask = None
    if manifest["per_token"]:
        tokens = np.load(out_dir / "tokens.npy", mmap_mode="r")
        mask = np.load(out_dir / "mask.npy", mmap_mode="r")
    return Embeddings(np.load(out_dir / "pooled.npy", mmap_mode="r"), tokens, mask, manifest)


def _rank_and_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    if not 0 <= rank < world:
        raise AnatomyError(f"rank {rank} is outside a world of {world} processes")
    return rank, world


def _default_device(device: str | None) -> str | None:
    """Under torchrun each rank takes its own GPU (LOCAL_RANK)."""
    if device is not None or "LOCAL_RANK" not in os.environ:
        return device
    import torch

    return f"cuda:{os.environ['LOCAL_RANK']}" if torch.cuda.is_available() else "cpu"


def embed_corpus(
    corpus_path: str | Path,
    encoder_spec: str,
    out: str | Path,
    context_length: int | None = None,
    dtype: str = "fp32",
    batch_size: int = DEFAULT_BATCH,
    per_token: bool = False,
    quiet: bool = False,
    *,
    device: str | None = None,
    bucket: bool | None = None,
    chunk_rows: int | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    merge_timeout_s: float = 24 * 3600,
) -> EmbedResult:
    """Embed every row of a corpus; see the module docstring for caching, resuming and sharding.

    bucket: None = automatically when exact (causal or padding-masked encoders); False = full context.
    """
    out_dir = Path(out)
    rank, world = _rank_and_world(rank, world_size)
    lock = locked(out_dir / MANIFEST, timeout=LOCK_TIMEOUT_S) if rank == 0 else contextlib.nullcontext()
    with lock:
        if world == 1:
            _clean_leftovers(out_dir)
        return _embed_corpus(
            corpus_path, encoder_spec, out_dir, context_length, dtype, batch_size, per_token, quiet,
            device=device, bucket=bucket, chunk_rows=chunk_rows, rank=rank, world=world,
            on_progress=on_progress, merge_timeout_s=merge_timeout_s,
        )  # fmt: skip


def _clean_leftovers(out_dir: Path) -> None:
    """Temporaries of a killed single-process run: the arrays' and the manifest's, and half-written chunks."""
    for name in (*ARRAYS, MANIFEST):
        clean_temps(out_dir / name)
    for partial in out_dir.glob(".partial-*"):
        for chunk in partial.glob(".chunk-*.tmp"):
            if CHUNK_TEMP.match(chunk.name):
                chunk.unlink(missing_ok=True)


def _embed_corpus(
    corpus_path, encoder_spec, out_dir: Path, context_length, dtype, batch_size, per_token, quiet, *,
    device, bucket, chunk_rows, rank, world, on_progress, merge_timeout_s,
) -> EmbedResult:  # fmt: skip
    from anatomy.corpus import load_corpus

    corpus_path = Path(corpus_path)
    key_fields = {
        "schema_version": SCHEMA_VERSION,
        "encoder": encoder_fingerprint(encoder_spec),
        "corpus_sha256": file_sha256(corpus_path),
        "context_requested": context_length,
        "dtype": dtype,
        "per_token": per_token,
    }
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()
    existing = _current_manifest(out_dir, key)
    if existing is not None:
        log.info("%s: embeddings are current (same encoder and corpus); reused", out_dir)
        return EmbedResult(out_dir, existing if rank == 0 else None, reused=True)

    if rank == 0:  # arrays are about to change: a manifest must never describe arrays of another key
        (out_dir / MANIFEST).unlink(missing_ok=True)

    from anatomy.encoders.registry import load

    encoder = load(encoder_spec, device=_default_device(device), dtype=dtype, context_length=context_length)
    prompts = load_corpus(corpus_path)["prompt"].tolist()
    if not prompts:
        raise InputError(f"{corpus_path}: the corpus has no rows to embed", "ingest prompts into it first")
    bucket = resolve_bucket(encoder, bucket)

    context = encoder.context_length
    content, n_valid, order = plan(encoder, prompts, bucket)
    width = int(n_valid.max()) if len(prompts) else 1
    chunk_rows = chunk_rows or max(batch_size * 8, 2048)
    n_chunks = max(1, -(-len(prompts) // chunk_rows))
    partial = out_dir / f".partial-{key[:16]}-{chunk_rows}"
    partial.mkdir(parents=True, exist_ok=True)

    mine = [c for c in range(n_chunks) if c % world == rank]
    todo = [c for c in mine if not _chunk_path(partial, c).exists()]
    if len(todo) < len(mine):
        log.info("%s: resuming, %d of %d chunks already done", out_dir, len(mine) - len(todo), len(mine))
    total_rows = sum(len(order[c * chunk_rows : (c + 1) * chunk_rows]) for c in mine)
    done_rows = total_rows - sum(len(order[c * chunk_rows : (c + 1) * chunk_rows]) for c in todo)
    if on_progress:
        on_progress(done_rows, total_rows)
    for c in todo:
        rows = order[c * chunk_rows : (c + 1) * chunk_rows]
        arrays = embed_rows(encoder, content, n_valid, rows, batch_size, bucket, width, per_token)
        with atomic_write(_chunk_path(partial, c)) as handle:
            np.savez(handle, rows=rows, **arrays)
        done_rows += len(rows)
        if on_progress:
            on_progress(done_rows, total_rows)
    (partial / f"rank-{rank}-of-{world}.done").touch()

    if rank != 0:
        return EmbedResult(out_dir, None)
    _wait_for_chunks(partial, n_chunks, merge_timeout_s)
    manifest = {
        **key_fields,
        "encoder": {
            **key_fields["encoder"],
            "trained": bool(encoder.trained),
            "causal": bool(encoder.causal),
        },
        "corpus": corpus_path.name,
        "rows": len(prompts),
        "dim": int(encoder.output_dim),
        "context_length": int(context),
        "token_width": width,
        "bucketed": bool(bucket),
        "key": key,
        "versions": package_versions(),
    }
    _merge(partial, n_chunks, out_dir, len(prompts), int(encoder.output_dim), width, per_token)
    names = ["pooled"] + (["tokens", "mask"] if per_token else [])
    manifest["files"] = {f"{n}.npy": file_record(out_dir / f"{n}.npy") for n in names}
    write_json(out_dir / MANIFEST, manifest)
    shutil.rmtree(partial, ignore_errors=True)
    for stale in out_dir.glob(".partial-*"):  # chunks of an older encoder/corpus are no longer resumable
        shutil.rmtree(stale, ignore_errors=True)
    return EmbedResult(out_dir, manifest)


ARRAYS = ("pooled.npy", "tokens.npy", "mask.npy")
CHUNK_TEMP = re.compile(r"^\.chunk-\d{6}\.npz\.[a-z0-9_]{8}\.tmp$")  # atomic_write's name for a chunk


def _current_manifest(out_dir: Path, key: str) -> dict | None:
    """The manifest of finished arrays for `key` that still verify; None (rebuild) otherwise."""
    manifest = None
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError, InputError):
        manifest = read_json(out_dir / MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("key") != key:
        return None
    problem = check_embeddings(out_dir, manifest, hashes=True)
    if problem:
        log.warning("%s: cached embeddings do not verify (%s); rebuilding them", out_dir, problem)
        return None
    return manifest


def _chunk_path(partial: Path, index: int) -> Path:
    return partial / f"chunk-{index:06d}.npz"


def _wait_for_chunks(partial: Path, n_chunks: int, timeout_s: float) -> None:
    """Rank 0 waits (polling the shared folder) until every rank has written its chunks."""
    deadline = time.monotonic() + timeout_s
    while True:
        missing = [c for c in range(n_chunks) if not _chunk_path(partial, c).exists()]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise AnatomyError(
                f"{partial}: {len(missing)} of {n_chunks} chunks still missing after {timeout_s:.0f} s "
                f"(first: {missing[0]})",
                "another rank failed or is still running; rerun `anatomy embed` with the same options to finish",
            )
        time.sleep(1.0)


def _merge(
    partial: Path, n_chunks: int, out_dir: Path, n: int, dim: int, width: int, per_token: bool
) -> None:
    """Chunk files -> the final arrays in corpus row order, each written atomically (memory-mapped)."""
    names: dict[str, tuple[tuple[int, ...], type[np.generic]]] = {"pooled": ((n, dim), np.float32)}
    if per_token:
        names |= {"tokens": ((n, width, dim), np.float32), "mask": ((n, width), np.bool_)}
    for name, (shape, dtype) in names.items():
        with atomic_path(out_dir / f"{name}.npy") as tmp:
            target = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
            for c in range(n_chunks):
                with np.load(_chunk_path(partial, c)) as chunk:
                    target[chunk["rows"]] = chunk[name]
            target.flush()
            del target
