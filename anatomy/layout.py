"""Where things live in an output folder (an audit, `make reports`, or one analysis's --out).

DIR/corpus.parquet, corpus.manifest.json   the corpus
DIR/tokens.parquet                         token ids per prompt (the tokens analysis's cache)
DIR/results/NAME.json, DIR/figures/*.png   corpus-level analyses (tokens, vocab, ...)
DIR/encoders/<slug>/spec.txt               the encoder spec behind the folder
DIR/encoders/<slug>/results/NAME.json      per-encoder analyses, and figures/ beside them
DIR/pair/results/NAME.json                 teacher-student analyses (agreement, cost, ...)
DIR/embeddings/<slug>/                     `anatomy embed` caches of the corpus, read by analyses
DIR/results/audit.json                     what ran, what failed and why, and the findings
DIR/report.md, DIR/index.html              the report
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

ENCODERS = "encoders"
PAIR = "pair"


def slug(spec: str) -> str:
    """A folder name for an encoder spec: family plus the file or model name ('sam3:/x/sam3.pt' -> 'sam3-sam3')."""
    family, _, rest = spec.partition(":")
    name = Path(rest.rstrip("/")).stem if rest else ""
    text = f"{family}-{name}" if name else family
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "encoder"


def result_path(folder: str | Path, name: str) -> Path:
    return Path(folder) / "results" / f"{name}.json"


def figures_dir(folder: str | Path) -> Path:
    return Path(folder) / "figures"


def figure_paths(folder: str | Path, name: str) -> list[Path]:
    """The figures an analysis NAME wrote in folder (named NAME.png or NAME_*.png)."""
    figures = figures_dir(folder)
    return sorted(p for p in figures.glob(f"{name}*.png") if p.stem == name or p.stem.startswith(f"{name}_"))


@contextlib.contextmanager
def no_empty_folders_on_failure(path: Path) -> Iterator[None]:
    """If the enclosed work fails, remove the folders it created on the way to `path` that are still empty
    (a failed `anatomy embed -e nope:x` or analysis run leaves no empty folder behind)."""
    created: list[Path] = []
    probe = path.absolute()
    while not probe.exists() and probe != probe.parent:
        created.append(probe)
        probe = probe.parent
    try:
        yield
    except BaseException:
        for folder in created:  # deepest first
            try:
                folder.rmdir()
            except OSError:  # not empty (or not ours to remove): keep it
                break
        raise
