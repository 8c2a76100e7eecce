"""Run one registered analysis into a folder, and read its result back.

folder/results/NAME.json holds the result (its fields, plus the parameters and the provenance of what it
read: file names and hashes, package versions; no timestamps, so a rerun writes the same bytes) and
folder/figures/NAME*.png its figures. Previous figures of the analysis are removed first, so a figure that is
no longer drawn does not linger.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from anatomy.analysis.base import Analysis, Inputs, Need, Result
from anatomy.errors import InputError
from anatomy.layout import figure_paths, figures_dir, result_path


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


def recorded_params(analysis: Analysis, result: Result, params: Any) -> dict:
    hook = getattr(analysis, "record_params", None)
    return hook(result, params) if hook else dataclasses.asdict(params)


def run(analysis: Analysis, inputs: Inputs, params: Any, folder: str | Path) -> Result:
    """Compute, then write results/NAME.json and figures/NAME*.png into folder; return the result."""
    from anatomy.encoders.registry import require_trained
    from anatomy.figures.style import save_figure
    from anatomy.io import write_result

    folder = Path(folder)
    for encoder in (inputs.encoder, inputs.teacher, inputs.student):
        if encoder is not None:  # numbers of random weights describe nothing: refuse bare architectures
            require_trained(encoder, analysis.name)
    inputs.out_dir = inputs.out_dir or folder
    result = analysis.compute(inputs, params)
    files = {"corpus": inputs.corpus} if inputs.corpus is not None else {}
    if inputs.embeddings is not None:
        files["embeddings"] = inputs.embeddings
    files |= analysis.input_files(params)
    write_result(
        folder, analysis.name, result.to_json(), command=analysis.name,
        params=recorded_params(analysis, result, params), inputs=files,
    )  # fmt: skip
    for old in figure_paths(folder, analysis.name):
        old.unlink()
    for stem, figure in analysis.figures(result).items():
        save_figure(figure, figures_dir(folder) / f"{stem}.png")
    analysis.write_artefacts(result, folder)
    return result


def clear(analysis: Analysis, folder: str | Path) -> None:
    """Remove an analysis's results and figures (so a run that fails now leaves no stale numbers)."""
    result_path(folder, analysis.name).unlink(missing_ok=True)
    for old in figure_paths(folder, analysis.name):
        old.unlink()


def read(analysis: Analysis, folder: str | Path) -> Result | None:
    """The result an analysis wrote in folder, or None where it wrote none."""
    from anatomy.io import read_json

    path = result_path(folder, analysis.name)
    if not path.exists():
        return None
    data = read_json(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a results object", f"rerun `anatomy {analysis.name}`")
    try:
        return analysis.Result.from_json(data)
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(
            f"{path}: not a {analysis.name} result this version can read ({type(error).__name__}: {error})",
            f"rerun `anatomy {analysis.name}` to rebuild it",
        ) from None
