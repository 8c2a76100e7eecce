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
- Each distinct token sequence (after truncation to the context) is encoded once and its outputs scattered
  to every row that has it, so repeated prompts cost nothing and get identical vectors.
- Verified chunks: a resume chunk is read whole (its zip CRC), checked for the rows and shapes it must hold,
  and re-encoded with a warning when it does not verify, never merged as good.
- All or nothing: the arrays and the manifest are committed together (anatomy.io.atomic_paths); a failed
  run (another per-token choice, a full disk) leaves the previous, good cache as it was.
- Readers verify too: load_embeddings checks each array it returns against the manifest's sha256 (once per
  process per file, anatomy.cachecheck), so a bit-flipped cache of the right shape is never used silently.
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

from anatomy.batching import DEFAULT_BATCH, distinct_content, embed_rows, plan_content, resolve_bucket
from anatomy.cachecheck import check_embeddings, file_record
from anatomy.errors import AnatomyError, InputError
from anatomy.io import (
    atomic_paths,
    atomic_write,
    clean_temps,
    dumps_json,
    file_sha256,
    package_versions,
    read_json,
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


def load_embeddings(out_dir: str | Path, per_token: bool = True) -> Embeddings:
    """The arrays of a finished `embed` run (memory-mapped), each verified against the sha256 its manifest
    recorded (once per process per file); InputError when one does not. per_token=False: pooled only."""
    out_dir = Path(out_dir)
    if not (out_dir / MANIFEST).exists():
        raise InputError(
            f"{out_dir}: no finished embeddings here ({MANIFEST} missing)", "run `anatomy embed` first"
        )
    manifest = read_json(out_dir / MANIFEST)
    if not isinstance(manifest, dict):
        raise InputError(f"{out_dir / MANIFEST}: not an embeddings manifest", "rerun `anatomy embed`")
    per_token = per_token and bool(manifest.get("per_token"))
    hashed = ("pooled.npy", "tokens.npy", "mask.npy") if per_token else ("pooled.npy",)
    problem = check_embeddings(out_dir, manifest, hashes=hashed)
    if problem:
        raise InputError(
            f"{out_dir}: embeddings are damaged: {problem}", "rerun `anatomy embed` to rebuild them"
        )
    tokens = mask = None
    if per_token:
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

    # The previous cache (another key) stays as it is until the new arrays and manifest commit together.
    from anatomy.encoders.registry import load

    encoder = load(encoder_spec, device=_default_device(device), dtype=dtype, context_length=context_length)
    prompts = load_corpus(corpus_path)["prompt"].tolist()
    if not prompts:
        raise InputError(f"{corpus_path}: the corpus has no rows to embed", "ingest prompts into it first")
    bucket = resolve_bucket(encoder, bucket)

    context = encoder.context_length
    content, inverse = distinct_content(encoder, prompts)  # each distinct sequence is encoded once
    n_valid, order = plan_content(encoder, content, bucket)
    width = int(n_valid.max())
    chunk_rows = chunk_rows or max(batch_size * 8, 2048)
    n_chunks = max(1, -(-len(content) // chunk_rows))
    partial = out_dir / f".partial-{key[:16]}-{chunk_rows}"
    partial.mkdir(parents=True, exist_ok=True)

    def chunk(c: int) -> np.ndarray:
        return order[c * chunk_rows : (c + 1) * chunk_rows]

    def encode_chunk(c: int) -> None:
        arrays = embed_rows(encoder, content, n_valid, chunk(c), batch_size, bucket, width, per_token)
        with atomic_write(_chunk_path(partial, c)) as handle:
            np.savez(handle, rows=chunk(c), **arrays)

    mine = [c for c in range(n_chunks) if c % world == rank]
    todo = [c for c in mine if not _chunk_path(partial, c).exists()]
    if len(todo) < len(mine):
        log.info("%s: resuming, %d of %d chunks already done", out_dir, len(mine) - len(todo), len(mine))
    total_rows = sum(len(chunk(c)) for c in mine)
    done_rows = total_rows - sum(len(chunk(c)) for c in todo)
    if on_progress:
        on_progress(done_rows, total_rows)
    for c in todo:
        encode_chunk(c)
        done_rows += len(chunk(c))
        if on_progress:
            on_progress(done_rows, total_rows)
    (partial / f"rank-{rank}-of-{world}.done").touch()

    if rank != 0:
        return EmbedResult(out_dir, None)
    _wait_for_chunks(partial, n_chunks, merge_timeout_s)
    dim = int(encoder.output_dim)
    manifest = {
        **key_fields,
        "encoder": {
            **key_fields["encoder"],
            "trained": bool(encoder.trained),
            "causal": bool(encoder.causal),
        },
        "corpus": corpus_path.name,
        "rows": len(prompts),
        "distinct_sequences": len(content),
        "dim": dim,
        "context_length": int(context),
        "token_width": width,
        "bucketed": bool(bucket),
        "key": key,
        "versions": package_versions(),
    }
    names = ["pooled"] + (["tokens", "mask"] if per_token else [])
    with atomic_paths(*(out_dir / f"{n}.npy" for n in names), out_dir / MANIFEST) as temps:
        shapes = _shapes(len(prompts), dim, width, per_token)
        targets = {n: np.lib.format.open_memmap(t, mode="w+", dtype=shapes[n][1], shape=shapes[n][0])
                   for n, t in zip(names, temps, strict=False)}  # fmt: skip
        scatter = _Scatter(inverse, len(content))
        for c in range(n_chunks):
            arrays = _read_chunk(partial, c, chunk(c), shapes)
            if arrays is None:  # damaged or foreign: encoded again here, never merged as good
                encode_chunk(c)
                arrays = _read_chunk(partial, c, chunk(c), shapes)
                assert arrays is not None
            rows, picks = scatter.rows(chunk(c))
            for n, target in targets.items():
                target[rows] = arrays[n][picks]
        for target in targets.values():
            target.flush()
        targets.clear()
        manifest["files"] = {f"{n}.npy": file_record(t) for n, t in zip(names, temps, strict=False)}
        temps[-1].write_text(dumps_json(manifest), encoding="utf-8")
    if not per_token:  # per-token arrays of an earlier run no longer match any manifest
        for stale in ("tokens.npy", "mask.npy"):
            (out_dir / stale).unlink(missing_ok=True)
    shutil.rmtree(partial, ignore_errors=True)
    for stale_partial in out_dir.glob(".partial-*"):  # chunks of an older encoder/corpus are not resumable
        shutil.rmtree(stale_partial, ignore_errors=True)
    return EmbedResult(out_dir, manifest)


def _shapes(n: int, dim: int, width: int, per_token: bool) -> dict[str, tuple[tuple[int, ...], type]]:
    shapes: dict[str, tuple[tuple[int, ...], type]] = {"pooled": ((n, dim), np.float32)}
    if per_token:
        shapes |= {"tokens": ((n, width, dim), np.float32), "mask": ((n, width), np.bool_)}
    return shapes


class _Scatter:
    """Corpus rows of each distinct sequence: rows(d) -> (corpus rows, index into d for each of them)."""

    def __init__(self, inverse: np.ndarray, n_distinct: int):
        self.by_sequence = np.argsort(inverse, kind="stable")
        self.starts = np.searchsorted(inverse[self.by_sequence], np.arange(n_distinct + 1))

    def rows(self, distinct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        counts = self.starts[distinct + 1] - self.starts[distinct]
        picks = np.repeat(np.arange(len(distinct)), counts)
        offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        return self.by_sequence[np.repeat(self.starts[distinct], counts) + offsets], picks


def _read_chunk(partial: Path, c: int, rows: np.ndarray, shapes: dict) -> dict | None:
    """The arrays of chunk `c`, read whole (a zip member's CRC is checked when it is read to the end) and
    checked against the rows and shapes it must hold; None (with a warning, the file removed) otherwise."""
    import zipfile

    path = _chunk_path(partial, c)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in ("rows", *shapes)}
        problem = None
        if not np.array_equal(arrays["rows"], rows):
            problem = "it holds other rows"
        for name, (shape, dtype) in shapes.items():
            want = (len(rows), *shape[1:])
            if arrays[name].shape != want or arrays[name].dtype != np.dtype(dtype):
                problem = f"{name} is {arrays[name].dtype}{list(arrays[name].shape)}, expected {want}"
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        problem = f"unreadable ({type(err).__name__}: {err})"
    if problem is None:
        return arrays
    log.warning("%s: resume chunk does not verify (%s); encoding it again", path, problem)
    path.unlink(missing_ok=True)
    return None


ARRAYS = ("pooled.npy", "tokens.npy", "mask.npy")
CHUNK_TEMP = re.compile(r"^\.chunk-\d{6}\.npz\.[a-z0-9_]{8}\.tmp$")  # atomic_write's name for a chunk


def _current_manifest(out_dir: Path, key: str) -> dict | None:
    """The manifest of finished arrays for `key` that still verify; None (rebuild) otherwise."""
    path = out_dir / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = read_json(path)
    except InputError as err:
        log.warning("%s: unreadable (%s); rebuilding the embeddings", path, err.message)
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("key"), str):
        log.warning("%s: not an embeddings manifest; rebuilding the embeddings", path)
        return None
    if manifest["key"] != key:
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
