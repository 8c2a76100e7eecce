"""Everything an output folder holds, as one record for findings and the report.

Works on a folder built by `anatomy audit` or step by step (`make reports`, or the analysis commands with
--out): results are found through the registry and the layout (anatomy.layout); failures come from what
the audit recorded in results/audit.json.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from anatomy.findings import Finding, corpus_findings, stage_failed
from anatomy.layout import ENCODERS, PAIR, figure_paths

CORPUS_RESULT = "results/corpus.json"  # the corpus summary, kept beside the other results


def read_status(out_dir: Path) -> dict:
    """The stages a previous audit recorded (so `anatomy report` on an audit folder keeps its failures)."""
    from anatomy.errors import InputError
    from anatomy.io import read_json

    path = out_dir / "results" / "audit.json"
    if not path.exists():
        return {}
    data = read_json(path)
    stages = data.get("stages", {}) if isinstance(data, dict) else None
    if not isinstance(stages, dict) or not isinstance(data.get("config", {}), dict) or not _stages_ok(stages):
        raise InputError(f"{path}: not an audit record (expected a JSON object with 'stages')",
                         "delete it, or rerun `anatomy audit` into this folder")  # fmt: skip
    return {**{k: v for k, v in stages.items() if v is not None}, "config": data.get("config", {})}


def _stages_ok(stages: Mapping[str, Any]) -> bool:
    """The shapes collect() reads: corpus and pair an object or null, corpus_errors an object of objects,
    encoders a list of objects with a slug."""
    corpus, errors, pair = stages.get("corpus"), stages.get("corpus_errors"), stages.get("pair")
    encoders = stages.get("encoders") or []
    return (
        isinstance(corpus, dict | None)
        and isinstance(pair, dict | None)
        and isinstance(errors or {}, dict)
        and all(isinstance(e, dict) and "error" in e for e in (errors or {}).values())
        and isinstance(encoders, list)
        and all(isinstance(e, dict) and isinstance(e.get("slug"), str) for e in encoders)
    )


def _results(folder: Path, scope: str, root: Path) -> tuple[dict, dict]:
    """(name -> typed result, name -> figure paths relative to root) of every registered analysis in folder."""
    from anatomy.analysis import ANALYSES, runner

    results, figures = {}, {}
    for name, analysis in ANALYSES.items():
        if runner.scope(analysis) != scope:
            continue
        result = runner.read(analysis, folder)
        if result is not None:
            results[name] = result
            figures[name] = [p.relative_to(root).as_posix() for p in figure_paths(folder, name)]
    return results, figures


def collect(out_dir: str | Path, status: Mapping[str, Any] | None = None) -> dict[str, Any]:
    out_dir = Path(out_dir)
    status = read_status(out_dir) if status is None else status
    results, figures = _results(out_dir, "corpus", out_dir)
    record: dict[str, Any] = {
        "corpus": _corpus_record(out_dir, status.get("corpus") or {}),
        "results": results,
        "figures": figures,
        "errors": dict(status.get("corpus_errors") or {}),
    }
    # After an audit, only the encoders it ran (a folder left from an earlier run is not this audit's); a folder
    # built step by step has no audit record: every encoder folder in it.
    audited = status.get("encoders") is not None
    known = {e["slug"]: e for e in status.get("encoders") or []}
    folders = sorted(p.name for p in (out_dir / ENCODERS).glob("*") if p.is_dir())
    order = list(known) + ([] if audited else [s for s in folders if s not in known])
    record["encoders"] = [_encoder_record(out_dir, s, known.get(s)) for s in order]
    pair_status = status.get("pair")
    pair_results, pair_figures = _results(out_dir / PAIR, "pair", out_dir)
    if pair_status or (pair_results and not audited):
        entry = {"errors": {}, **dict(pair_status or {})}
        entry["results"], entry["figures"] = pair_results, pair_figures
        if "spec" not in entry:
            first = next(iter(pair_results.values()))
            entry["spec"] = (
                f"{getattr(first, 'student', 'student')} vs {getattr(first, 'teacher', 'teacher')}"
            )
        record["pair"] = entry
    found = (
        record["results"] or record["encoders"] or "pair" in record or "distinct_prompts" in record["corpus"]
    )
    if not found and not status:  # an audit's own record (its failures) is always reported
        from anatomy.errors import InputError

        raise InputError(
            f"{out_dir}: nothing to report (no corpus, no results/*.json, no encoders/*/results)",
            "give the --out folder of `anatomy audit` or of the analysis commands",
        )
    record["versions"] = _versions(out_dir, record)
    return record


def _corpus_record(out_dir: Path, corpus_status: Mapping[str, Any]) -> dict:
    """The corpus summary: from the corpus file when it is here, else from results/corpus.json (which `finish`
    writes), so a report folder without the corpus (the committed reports/) still renders the same."""
    from anatomy.corpus.corpus import corpus_summary, manifest_path
    from anatomy.io import read_json

    name = corpus_status.get("path") or "corpus.parquet"
    path = out_dir / name if (out_dir / name).exists() else Path(name)
    entry: dict[str, Any] = {"path": name, "failed": list(corpus_status.get("failed", [])), "files": []}
    if path.exists():
        from anatomy.corpus import load_corpus

        entry.update(corpus_summary(load_corpus(path)))
        manifest = manifest_path(path)
        if manifest.exists():
            files = read_json(manifest).get("inputs", [])
            entry["files"] = [{**f, "input": display(f["input"])} for f in files]
    elif (out_dir / CORPUS_RESULT).exists():
        saved = read_json(out_dir / CORPUS_RESULT)
        if isinstance(saved, dict):
            entry = {**saved, "failed": entry["failed"] or saved.get("failed", [])}
    return entry


def display(spec: str) -> str:
    """An input as shown in results: built-in names as given, files by name (no machine paths in results)."""
    return spec if spec.startswith("builtin:") or spec == "-" else Path(spec).name


def _encoder_record(out_dir: Path, name: str, status: Mapping[str, Any] | None) -> dict:
    enc_dir = out_dir / ENCODERS / name
    results, figures = _results(enc_dir, "encoder", out_dir)
    spec_file = enc_dir / "spec.txt"
    written = spec_file.read_text(encoding="utf-8").strip() if spec_file.exists() else None
    spec = (status or {}).get("spec") or written or name
    errors = dict((status or {}).get("errors", {}))
    return {"spec": spec, "slug": name, "errors": errors, "results": results, "figures": figures}


def _versions(out_dir: Path, record: Mapping[str, Any]) -> dict:
    """Package versions as the results recorded them (the report must not depend on the rendering machine)."""
    from anatomy.io import package_versions, read_json

    for path in sorted(out_dir.glob("results/*.json")) + sorted(out_dir.glob(f"{ENCODERS}/*/results/*.json")):
        if path.name == "audit.json":
            continue
        data = read_json(path)
        versions = ((data if isinstance(data, dict) else {}).get("provenance") or {}).get("versions")
        if versions:
            return dict(versions)
    return package_versions()


def collect_findings(record: Mapping[str, Any]) -> list[Finding]:
    """All findings of a record: corpus, corpus analyses, each encoder, the teacher-student pair."""
    from anatomy.analysis import ANALYSES

    found = corpus_findings(record.get("corpus", {}))
    for name, error in record.get("errors", {}).items():
        found.append(stage_failed(name, "the corpus", name, error["error"], error.get("hint")))
    for name, result in record.get("results", {}).items():
        found += ANALYSES[name].findings(result, name)
    for enc in record.get("encoders", []):
        section = f"encoder:{enc['slug']}"
        for stage, error in enc.get("errors", {}).items():
            found.append(stage_failed(section, enc["spec"], stage, error["error"], error.get("hint")))
        for name, result in enc.get("results", {}).items():
            found += ANALYSES[name].findings(result, section)
    pair = record.get("pair")
    if pair:
        for stage, error in pair.get("errors", {}).items():
            found.append(stage_failed(PAIR, pair["spec"], stage, error["error"], error.get("hint")))
        for name, result in pair.get("results", {}).items():
            found += ANALYSES[name].findings(result, PAIR)
    return found
