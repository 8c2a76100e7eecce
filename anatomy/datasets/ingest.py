"""`anatomy data ingest`: every reader's inputs into one corpus, committed all together or not at all.

Each reader's ingest (anatomy.corpus.ingest) is run against a staged copy of the corpus in a hidden folder
beside it (.NAME.stage.XXXX/NAME), while the corpus's own lock is held; only when every reader succeeded
are the staged corpus and its manifest moved into place together (anatomy.io.atomic_paths). A failure in
any reader leaves the corpus, its manifest and the folder as they were; a stage left by a killed run is
removed by the next one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from anatomy.datasets.paths import refuse_special
from anatomy.errors import AnatomyError, InputError
from anatomy.io import atomic_paths, clean_temps, writing

log = logging.getLogger(__name__)


def _stage_prefix(corpus: Path) -> str:
    return f".{corpus.name}.stage."


def _clean_stages(corpus: Path) -> None:
    """Remove stages a killed `data ingest` left beside the corpus (call while holding its lock)."""
    with contextlib.suppress(OSError):
        for child in corpus.parent.iterdir():
            if child.name.startswith(_stage_prefix(corpus)) and child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
                log.info("%s: removed %s left by an interrupted data ingest", corpus, child.name)


def _renamed(error: AnatomyError, stage: Path, corpus: Path) -> AnatomyError:
    """The error with the staged corpus's path replaced by the corpus's own."""
    staged = stage / corpus.name
    for old, new in ((str(staged), str(corpus)), (str(stage), str(corpus.parent))):
        error.message = error.message.replace(old, new)
        if error.hint:
            error.hint = error.hint.replace(old, new)
    error.args = (error.message,)
    return error


def ingest_groups(groups: dict[str, list[str]], corpus: Path) -> list[tuple[str, Any]]:
    """Ingest each reader's paths into `corpus`, all or nothing; [(reader, IngestReport)] in order."""
    from anatomy.corpus import ingest
    from anatomy.corpus.corpus import manifest_path
    from anatomy.corpus.identity import refuse_overwriting_inputs
    from anatomy.corpus.sources import ReadOptions
    from anatomy.locks import lock_path, locked

    corpus = Path(corpus)
    if not corpus.name or corpus.is_dir():
        raise InputError(f"{corpus}: is a directory; --out must name a corpus .parquet file")
    side = manifest_path(corpus)
    refuse_special(corpus)
    refuse_special(side)
    every = [p for paths in groups.values() for p in paths]
    refuse_overwriting_inputs(every, corpus, [corpus, side, lock_path(corpus)])
    with writing(corpus):
        corpus.parent.mkdir(parents=True, exist_ok=True)
    with locked(corpus):
        _clean_stages(corpus)
        clean_temps(side)  # the manifest's temporaries of a killed commit (the corpus's: locked)
        with writing(corpus):
            stage = Path(tempfile.mkdtemp(prefix=_stage_prefix(corpus), dir=corpus.parent))
        try:
            staged = stage / corpus.name
            if corpus.exists():
                try:
                    os.link(corpus, staged)  # ingest replaces, never writes in place: a link is a copy
                except OSError:
                    shutil.copy2(corpus, staged)
            reports = []
            for reader, paths in groups.items():
                try:
                    report = ingest(reader, paths, staged, ReadOptions())
                except AnatomyError as error:
                    raise _renamed(error, stage, corpus) from None
                report.corpus = corpus
                reports.append((reader, report))
            fresh = any(not f.already_ingested for _, r in reports for f in r.files)
            if fresh:  # every reader succeeded: corpus and manifest move into place together
                with atomic_paths(side, corpus) as (side_tmp, corpus_tmp):
                    os.replace(manifest_path(staged), side_tmp)
                    os.replace(staged, corpus_tmp)
            return reports
        finally:
            shutil.rmtree(stage, ignore_errors=True)
