"""Run one registered analysis into a folder, and read its result back.

folder/results/NAME.json holds the result (its fields, plus the parameters and the provenance of what it
read: file names and hashes, package versions, the figures it drew; no timestamps, so a rerun writes the same
bytes) and folder/figures/NAME*.png its figures. The runner names the figure files (NAME.png, NAME_STEM.png),
so an analysis cannot write a figure the report and the next run do not find.

One writer per folder: a run holds the folder's lock (anatomy.locks) from reading its inputs to committing.
Everything an analysis writes (figures, artefacts such as vocab.json, then results/NAME.json last, the commit
point) is first written to temporaries beside the targets and moved into place only when all of it exists;
old figures no longer drawn are removed after the commit. Temporaries left by a killed run (figures/.NAME.*.png,
results/.NAME.json.*.tmp, .NAME.staging.* folders) are removed by the next run that holds the lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anatomy.analysis.base import Analysis, Inputs, Need, NotApplicable, Result
from anatomy.errors import InputError
from anatomy.layout import figure_paths, figures_dir, no_empty_folders_on_failure, result_path

# Temporaries of anatomy.io (.NAME.XXXXXXXX.ext, .NAME.ext.XXXXXXXX.tmp|bak) and the runner's staging folders.
_LEFTOVER = re.compile(r"^\..+\.(?:[a-z0-9_]{8}(?:\.[A-Za-z0-9]+)?|[A-Za-z0-9]+\.[a-z0-9_]{8}\.(?:tmp|bak))$")
_STAGING = re.compile(r"^\..+\.staging\.[A-Za-z0-9_]+$")


def scope(analysis: Analysis) -> str:
    """Where an analysis's results live: 'corpus' (the folder), 'encoder' (encoders/<slug>) or 'pair'."""
    needs = analysis.needs
    if Need.PAIR in needs:
        return "pair"
    if needs & {Need.ENCODER, Need.EMBEDDINGS}:
        return "encoder"
    return "corpus"


def reads_corpus(analysis: Analysis) -> bool:
    """Whether the analysis takes a corpus (required or optional; embeddings of an encoder are over a corpus)."""
    return bool((analysis.needs | analysis.optional) & {Need.CORPUS, Need.EMBEDDINGS, Need.PAIR})


def recorded_params(analysis: Analysis[Any, Any], result: Result, params: Any) -> dict[str, Any]:
    hook = getattr(analysis, "record_params", None)
    return hook(result, params) if hook else dataclasses.asdict(params)


def figure_name(analysis: Analysis, stem: str) -> str:
    """The file an analysis's figure `stem` is saved as: NAME.png for NAME, else NAME_STEM.png."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") or "figure"
    name = analysis.name
    if clean == name or clean.startswith(f"{name}_"):
        return f"{clean}.png"
    return f"{name}_{clean}.png"


@contextlib.contextmanager
def folder_lock(folder: str | Path) -> Iterator[None]:
    """The lock of an output folder (its .results.lock file): one analysis or audit writes it at a time; a
    second waits (anatomy.locks.LOCK_TIMEOUT_S), then gives up naming the folder and the process holding it."""
    from anatomy.errors import AnatomyError
    from anatomy.locks import locked

    target = Path(folder) / "results"
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(locked(target, clean=False))
        except AnatomyError as error:
            raise AnatomyError(
                error.message.replace(str(target), str(folder)),
                "wait for it to finish, then rerun (one command writes an output folder at a time)",
            ) from None
        yield


def clean_leftovers(folder: str | Path) -> list[Path]:
    """Remove what a killed writer left in folder (temporaries, staging folders); call it under folder_lock."""
    folder = Path(folder)
    removed: list[Path] = []
    for where in (folder, folder / "results", figures_dir(folder)):
        if not where.is_dir():
            continue
        for child in where.iterdir():
            if where == folder and _STAGING.match(child.name) and child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child)
            elif where != folder and _LEFTOVER.match(child.name) and child.is_file():
                child.unlink(missing_ok=True)
                removed.append(child)
    return removed


def run(analysis: Analysis, inputs: Inputs, params: Any, folder: str | Path) -> Result:
    """Compute, then commit results/NAME.json, figures/NAME*.png and artefacts into folder; return the result.

    Raises NotApplicable (before any work) when the analysis does not apply to the inputs.
    """
    from anatomy.encoders.registry import require_trained

    folder = Path(folder)
    for encoder in (inputs.encoder, inputs.teacher, inputs.student):
        if encoder is not None:  # numbers of random weights describe nothing: refuse bare architectures
            require_trained(encoder, analysis.name)
    reason = analysis.not_applicable(inputs)
    if reason:
        raise NotApplicable(f"{analysis.name} does not apply: {reason}")
    inputs.out_dir = inputs.out_dir or folder
    with no_empty_folders_on_failure(folder), folder_lock(folder):
        clean_leftovers(folder)
        result = analysis.compute(inputs, params)
        files = {"corpus": inputs.corpus} if inputs.corpus is not None else {}
        if inputs.embeddings is not None:
            files["embeddings"] = inputs.embeddings
        files |= analysis.input_files(params)
        commit(analysis, result, recorded_params(analysis, result, params), files, folder)
    return result


def commit(analysis: Analysis, result: Result, params: Mapping[str, Any], files: Mapping[str, Path],
           folder: Path) -> None:  # fmt: skip
    """Write everything of one run to temporaries, then move it into place (results JSON last)."""
    from anatomy.figures.style import save_figure
    from anatomy.io import atomic_paths, dumps_json, result_payload

    figures = {figure_name(analysis, stem): fig for stem, fig in analysis.figures(result).items()}
    previous = owned_figures(analysis, folder)
    names = sorted(figures)
    payload = result_payload(result.to_json(), command=analysis.name, params=params, inputs=files,
                             figures=names)  # fmt: skip
    with _staging(folder, analysis.name) as staging:
        analysis.write_artefacts(result, staging)
        artefacts = sorted(p.relative_to(staging) for p in staging.rglob("*") if p.is_file())
        targets = [folder / a for a in artefacts] + [figures_dir(folder) / n for n in names]
        targets.append(result_path(folder, analysis.name))
        with atomic_paths(*targets) as temps:
            for artefact, tmp in zip(artefacts, temps, strict=False):
                shutil.copyfile(staging / artefact, tmp)
            for name, tmp in zip(names, temps[len(artefacts) :], strict=False):
                save_figure(figures[name], tmp)
            temps[-1].write_text(dumps_json(payload), encoding="utf-8")
    for old in previous:  # figures the previous run drew and this one does not (after the commit)
        if old.name not in figures:
            old.unlink(missing_ok=True)


@contextlib.contextmanager
def _staging(folder: Path, name: str) -> Iterator[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f".{name}.staging.", dir=folder))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def owned_figures(analysis: Analysis[Any, Any], folder: str | Path) -> list[Path]:
    """The figures of `analysis` in folder: as its result lists them, else by name (NAME.png, NAME_*.png) but
    not those of another analysis in the folder whose name extends this one ('tokens' does not own the figures
    of a 'tokens_x' whose results/tokens_x.json is there)."""
    folder = Path(folder)
    try:
        stored = read_stored(analysis, folder)
    except InputError:
        stored = None
    if stored is not None and isinstance(stored.provenance.get("figures"), list):
        return [p for p in stored.figures(folder) if p.exists()]
    longer = [p.stem for p in (folder / "results").glob(f"{analysis.name}_*.json")]
    return [p for p in figure_paths(folder, analysis.name)
            if not any(p.stem == n or p.stem.startswith(f"{n}_") for n in longer)]  # fmt: skip


def clear(analysis: Analysis, folder: str | Path) -> None:
    """Remove an analysis's results and figures (so a run that failed leaves no stale numbers)."""
    with folder_lock(folder):
        for old in owned_figures(analysis, folder):
            old.unlink(missing_ok=True)
        result_path(folder, analysis.name).unlink(missing_ok=True)


@dataclass
class Stored:
    """A result as a folder holds it: the typed result, its parameters and its provenance."""

    path: Path
    result: Result
    params: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def input_hash(self, role: str) -> str | None:
        entry = (self.provenance.get("inputs") or {}).get(role)
        return entry.get("sha256") if isinstance(entry, dict) else None

    def figures(self, folder: Path) -> list[Path]:
        """The figures this result drew (as its provenance lists them; older results: by name)."""
        listed = self.provenance.get("figures")
        if isinstance(listed, list):
            return [figures_dir(folder) / str(n) for n in listed]
        return figure_paths(folder, self.path.stem)


def read_stored(analysis: Analysis, folder: str | Path) -> Stored | None:
    """The result an analysis wrote in folder with its provenance, or None where it wrote none."""
    from anatomy.io import read_json

    path = result_path(folder, analysis.name)
    if not path.exists():
        return None
    data = read_json(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a results object", f"rerun `anatomy {analysis.name}`")
    try:
        result = analysis.Result.from_json(data)
    except InputError as error:  # a schema this version does not read: name the file, not the class
        raise InputError(f"{path}: {error.message}", error.hint) from None
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise InputError(
            f"{path}: not a {analysis.name} result this version can read ({type(error).__name__}: {error})",
            f"rerun `anatomy {analysis.name}` to rebuild it",
        ) from None
    params, provenance = data.get("params"), data.get("provenance")
    return Stored(path, result, params if isinstance(params, dict) else {},
                  provenance if isinstance(provenance, dict) else {})  # fmt: skip


def read(analysis: Analysis, folder: str | Path) -> Result | None:
    """The result an analysis wrote in folder, or None where it wrote none."""
    stored = read_stored(analysis, folder)
    return stored.result if stored is not None else None
