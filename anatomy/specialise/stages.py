"""The stage mechanism: cached, verified, atomically committed, resumable artefacts in DIR/stages/NAME/.

A stage's key is the sha256 of its name, its parameters, the content hashes of the outside files it reads,
and the output digests of the stages it depends on (not their keys: an upstream stage redone with the same
bytes leaves its dependants alone). A stage runs in DIR/stages/.NAME.partial-KEY and commits by writing its
manifest (stage.json: key, parameters, inputs, the sha256 of every file it wrote, its summary, its seconds)
and renaming the folder into place, so DIR/stages/NAME either holds a whole stage or the previous one.
Before reuse the manifest's key must match and every listed file must still hash as recorded; otherwise the
stage runs again. A killed stage leaves its partial folder: a resumable stage (distillation) continues in it
when rerun with the same key, any other starts afresh.

Files matching `side` (measured timings, logs, reports no later stage reads) are kept and hashed for
verification but left out of the output digest, so a rerun that measures other timings, or a report that
changes while the artefact a later stage reads does not, leaves the later stages alone.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anatomy.errors import InputError

log = logging.getLogger(__name__)

STAGES_DIR = "stages"
MANIFEST = "stage.json"
SCHEMA_VERSION = 1


@dataclass
class StageRun:
    """What a stage's body gets: its working folder and the folders and summaries of what it depends on."""

    name: str
    folder: Path  # the partial folder to write into (renamed into place on success)
    final: Path  # where the folder will live once committed (paths recorded inside should use this)
    inputs: dict[str, Path]  # upstream stage name -> its committed folder
    summaries: dict[str, dict]  # upstream stage name -> its summary
    params: dict[str, Any]
    resume: bool  # a partial folder of the same key was left by a killed run
    progress: Callable[[float], None] = lambda _fraction: None  # share of this stage done, 0..1


@dataclass(frozen=True)
class Stage:
    name: str
    kind: str  # what it does (corpus, distill, ...): progress weights and the bill's grouping
    needs: tuple[str, ...]
    params: Callable[[dict[str, dict]], dict[str, Any]]  # from the upstream summaries (e.g. the context)
    run: Callable[[StageRun], dict[str, Any]]  # writes into run.folder; returns a small JSON summary
    files: Mapping[str, str] = field(default_factory=dict)  # outside inputs: label -> path (content-hashed)
    resumable: bool = False
    side: tuple[str, ...] = ()  # glob patterns (relative paths) left out of the output digest
    weight: float = 1.0  # expected share of the work, for the remaining-time estimate


@dataclass
class Outcome:
    name: str
    kind: str
    key: str
    reused: bool
    seconds: float  # this call's wall time (0-ish when reused)
    manifest: dict[str, Any]


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def file_hashes(folder: Path) -> dict[str, str]:
    from anatomy.io import file_sha256

    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel != MANIFEST and not any(part.startswith(".") for part in Path(rel).parts):
            out[rel] = file_sha256(path)
    return out


def digest(files: Mapping[str, str], side: tuple[str, ...]) -> str:
    kept = {k: v for k, v in files.items() if not any(fnmatch.fnmatch(k, p) for p in side)}
    return sha256_json(kept)


class Store:
    """DIR/stages: the committed stage folders and their manifests."""

    def __init__(self, root: str | Path):
        self.root = Path(root) / STAGES_DIR

    def folder(self, name: str) -> Path:
        return self.root / name

    def manifest(self, name: str) -> dict[str, Any] | None:
        path = self.folder(name) / MANIFEST
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def verified(self, name: str, key: str) -> dict[str, Any] | None:
        """The committed manifest of `name` if its key is `key` and every file it lists is intact."""
        manifest = self.manifest(name)
        if manifest is None or manifest.get("key") != key or manifest.get("schema_version") != SCHEMA_VERSION:
            return None
        folder = self.folder(name)
        from anatomy.io import file_sha256

        for rel, sha in manifest.get("outputs", {}).items():
            path = folder / rel
            if not path.is_file() or file_sha256(path) != sha:
                log.warning(
                    "stage %s: %s changed or vanished since it was written; redoing the stage", name, rel
                )
                return None
        return manifest

    def partial(self, name: str, key: str) -> Path:
        return self.root / f".{name}.partial-{key[:16]}"

    def clean(self, name: str, keep: Path | None = None) -> None:
        """Remove what killed runs left for `name` (other partial folders, half-swapped old folders)."""
        if not self.root.is_dir():
            return
        for child in self.root.iterdir():
            stale = child.name.startswith((f".{name}.partial-", f".{name}.old-"))
            if stale and child != keep:
                shutil.rmtree(child, ignore_errors=True)

    def commit(self, name: str, partial: Path, manifest: dict[str, Any]) -> None:
        """Write the manifest (last file of the stage), then swap the folder into place."""
        from anatomy.io import write_json

        write_json(partial / MANIFEST, manifest)
        final = self.folder(name)
        old = self.root / f".{name}.old-{os.getpid()}"
        if final.exists():
            os.replace(final, old)
        os.replace(partial, final)
        shutil.rmtree(old, ignore_errors=True)


def stage_key(stage: Stage, params: dict, upstream: dict[str, str], files: dict[str, str]) -> str:
    return sha256_json(
        {"v": SCHEMA_VERSION, "stage": stage.name, "params": params, "needs": upstream, "files": files}
    )


def outside_hashes(stage: Stage) -> dict[str, str]:
    from anatomy.io import file_sha256

    hashes = {}
    for label, path in stage.files.items():
        p = Path(path)
        if p.is_dir():  # a dataset tree (e.g. RF100-VL): every file's path and content
            hashes[label] = sha256_json({f.relative_to(p).as_posix(): file_sha256(f)
                                         for f in sorted(p.rglob("*")) if f.is_file()})  # fmt: skip
        elif p.is_file():
            hashes[label] = file_sha256(p)
        else:
            raise InputError(f"{path}: no such file (input of stage {stage.name})", "check the path")
    return hashes


def run_stage(
    store: Store, stage: Stage, done: dict[str, Outcome], progress: Callable[[float], None]
) -> Outcome:
    """Reuse `stage` if its verified artefact matches its key, else run and commit it."""
    summaries = {n: done[n].manifest["summary"] for n in stage.needs}
    params = stage.params(summaries)
    upstream = {n: done[n].manifest["digest"] for n in stage.needs}
    files = outside_hashes(stage)
    key = stage_key(stage, params, upstream, files)
    found = store.verified(stage.name, key)
    if found is not None:
        store.clean(stage.name)
        return Outcome(stage.name, stage.kind, key, True, 0.0, found)
    partial = store.partial(stage.name, key)
    store.clean(stage.name, keep=partial if stage.resumable else None)
    resume = stage.resumable and partial.is_dir()
    partial.mkdir(parents=True, exist_ok=True)
    run = StageRun(stage.name, partial, store.folder(stage.name),
                   {n: store.folder(n) for n in stage.needs}, summaries, params, resume, progress)  # fmt: skip
    start = time.perf_counter()
    try:
        summary = stage.run(run)
    except Exception:  # a failure (not a kill): nothing of it is kept unless the stage can resume from it
        if not stage.resumable:
            shutil.rmtree(partial, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    outputs = file_hashes(partial)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "stage": stage.name,
        "kind": stage.kind,
        "key": key,
        "params": params,
        "needs": upstream,
        "files": files,
        "outputs": outputs,
        "side": list(stage.side),
        "digest": digest(outputs, stage.side),
        "summary": summary,
        "seconds": seconds,  # measured: the one field a rerun changes
        "resumed": resume,
    }
    store.commit(stage.name, partial, manifest)
    return Outcome(stage.name, stage.kind, key, False, seconds, manifest)
