"""What the CLI calls: fetch sources, report their state, and list what a data folder gives the readers."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anatomy.datasets.fetch import Limits, Progress
from anatomy.datasets.lock import LOCK_NAME, Lock
from anatomy.datasets.paths import refuse_special
from anatomy.datasets.registry import HTTP, HUB, ROBOFLOW, SHARED_LAYOUT, SOURCES, DataError, Source, select
from anatomy.errors import AnatomyError


@dataclass
class SourceState:
    name: str
    state: str  # present | missing | partial | failed verification
    files: int
    bytes: int
    license: str
    terms: str
    needs: str
    detail: str = ""


def state(source: Source, root: Path, lock: Lock) -> SourceState:
    good, bad = lock.verified_files(source.name, root)
    size = sum(lock.entry(source.name).get("files", {}).get(rel, {}).get("size", 0) for rel in good)
    part = root / source.dest / (source.filename + ".part") if source.kind == HTTP else None
    if bad:
        label, detail = "failed verification", f"changed or missing: {', '.join(bad[:3])}"
    elif good and not _missing_archive(source, root):
        label, detail = "present", ""
    elif part is not None and part.exists():
        label, detail = "partial", f"{part.stat().st_size:,} bytes in {part.name}; fetch again to resume"
    else:
        label, detail = "missing", ""
    return SourceState(
        source.name, label, len(good), size, source.license, source.terms, source.needs, detail
    )


def _missing_archive(source: Source, root: Path) -> bool:
    return source.kind == HTTP and source.keep_archive and not (root / source.dest / source.filename).exists()


def list_sources(root: Path) -> list[SourceState]:
    lock = Lock(root)
    return [state(s, root, lock) for s in SOURCES]


@dataclass
class Outcome:
    name: str
    ok: bool
    message: str
    hint: str | None = None


def fetch(
    names: list[str] | None,
    root: Path,
    base_url: str | None = None,
    progress: Progress | None = None,
    limits: Limits | None = None,
) -> list[Outcome]:
    """Fetch the named sources (all by default) into root; one outcome per source.

    Sources already present and verified are left alone. A source that fails (no login, no key, a refused
    hash, a damaged or hostile archive) does not stop the others; its outcome says why and what to do.
    The data folder is locked for the whole fetch (anatomy.locks on its lock file): a second fetch into
    the same folder waits, then finds what the first one verified."""
    from anatomy.locks import locked

    refuse_special(root, folder=True)
    root.mkdir(parents=True, exist_ok=True)
    with locked(root / LOCK_NAME):
        return _fetch_locked(names, root, base_url, progress, limits or Limits())


def _fetch_locked(
    names: list[str] | None, root: Path, base_url: str | None, progress: Progress | None, limits: Limits
) -> list[Outcome]:
    from anatomy.datasets.hub import fetch_hub
    from anatomy.datasets.roboflow import KEY_ENV, fetch_roboflow
    from anatomy.datasets.sources import fetch_http

    lock = Lock(root)
    outcomes = []
    for source in select(names):
        current = state(source, root, lock)
        present = current.state == "present"
        if present and (source.kind != ROBOFLOW or not os.environ.get(KEY_ENV)):
            outcomes.append(
                Outcome(
                    source.name, True, f"{source.name}: already present ({current.files} file(s) verified)"
                )
            )
            continue
        try:
            if source.kind == HTTP:
                line = fetch_http(source, root, lock, base_url, progress, limits)
            elif source.kind == HUB:
                line = fetch_hub(source, root, lock)
            else:
                line = fetch_roboflow(source, root, lock, base_url, progress, limits)
            outcomes.append(Outcome(source.name, True, line))
        except AnatomyError as error:  # DataError, and a write error naming its file
            outcomes.append(Outcome(source.name, False, error.message, error.hint))
    return outcomes


def inputs(data: Path) -> list[tuple[str, Path]]:
    """(reader, path) for every input present under data: the registry's layout (what `anatomy data fetch`
    writes) and the shared-data layout, in registry order, without duplicates. A missing data folder, or an
    input that is a FIFO or a device (which a reader would block on), is a DataError."""
    if not data.exists():
        raise DataError(
            f"{data}: no such data folder",
            "fetch the datasets with `make data` (anatomy data fetch --out DIR), or use --data ../shared/data "
            "(set DATA= for make reports)",
        )
    refuse_special(data, folder=True)
    if not data.is_dir():
        raise DataError(
            f"{data}: is a file, not a data folder", "--data names the folder holding the datasets"
        )
    found: list[tuple[str, Path]] = []
    seen: set[Path] = set()
    patterns = [(s.reader, p) for s in SOURCES for p in s.inputs] + list(SHARED_LAYOUT)
    for reader, pattern in patterns:
        for match in sorted(glob.glob(os.path.join(glob.escape(str(data)), pattern))):
            path = Path(match)
            if path in seen or path.name == LOCK_NAME or path.name.endswith((".part", ".part.meta")):
                continue
            refuse_special(path, folder=True)
            if path.is_dir():
                annotations = list(path.rglob("_annotations.coco.json"))
                for annotation in annotations:  # what the reader will open, checked before it does
                    refuse_special(annotation)
                if not annotations:
                    continue
            seen.add(path)
            found.append((reader, path))
    return found


def ingest_found(data: Path, corpus: Path) -> list[tuple[str, Any]]:
    """Ingest every input `inputs(data)` finds into `corpus`, one ingest per reader, committed together (all
    readers or none); [(reader, IngestReport)]."""
    from anatomy.datasets.ingest import ingest_groups

    found = inputs(data)
    if not found:
        raise DataError(
            f"{data}: no dataset inputs found",
            "fetch them with `make data` (anatomy data fetch), or set DATA=../shared/data",
        )
    by_reader: dict[str, list[str]] = {}
    for reader, path in found:
        by_reader.setdefault(reader, []).append(str(path))
    return ingest_groups(by_reader, corpus)
