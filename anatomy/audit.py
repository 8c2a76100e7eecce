"""`anatomy audit`: the whole chain for one corpus, ending in findings and a report.

Layout of an audit directory (also what `make reports` builds step by step, and what `collect` reads):

    DIR/corpus.parquet, corpus.manifest.json   the corpus (when INPUTS are raw files; a given .parquet is used in place)
    DIR/tokens.parquet                         token ids per prompt (anatomy tokens)
    DIR/results/tokens.json, DIR/figures/*.png  lengths, context table, vocabulary
    DIR/encoders/<slug>/spec.txt               the encoder spec behind the folder
    DIR/encoders/<slug>/results/NAME.json      per encoder: positions, spectrum, dims, robustness
    DIR/encoders/<slug>/figures/NAME_*.png
    DIR/agreement/results/agreement.json       student vs teacher (when both are given)
    DIR/results/audit.json                     what ran, what failed and why, and the findings
    DIR/report.md, DIR/index.html              the report (index.html is self-contained)

A stage that fails is recorded and the rest continues: an unreadable input file skips that file, an encoder
that fails to load skips that encoder's sections, an analysis that fails skips that analysis.
"""

from __future__ import annotations

import logging
import re
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from anatomy.errors import AnatomyError, InputError
from anatomy.findings import Finding, as_data, counts
from anatomy.findings import collect as collect_findings
from anatomy.io import package_versions, read_json, write_json, write_text

log = logging.getLogger(__name__)

DEFAULT_INPUT = "builtin:imagenet-prompts"
DEFAULT_ENCODER = "minilm"
ENCODER_ANALYSES = ("positions", "spectrum", "dims", "robustness")
AUDIT_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class AuditConfig:
    inputs: tuple[
        str, ...
    ] = ()  # raw files / builtin:NAME, or one corpus .parquet; empty: the built-in corpus
    source: str | None = None  # reader for every raw input; None: detected per file
    encoders: tuple[str, ...] = ()  # empty: minilm (unless a teacher/student pair is given)
    teacher: str | None = None
    student: str | None = None
    contexts: tuple[int, ...] = (8, 16, 24, 32, 77)
    sample: int | None = None  # prompts for the output analyses (dims, agreement); None: their default
    seed: int = 0
    device: str | None = None
    quiet: bool = False

    def encoder_specs(self) -> list[str]:
        specs = list(self.encoders)
        for spec in (self.teacher, self.student):
            if spec and spec not in specs:
                specs.append(spec)
        return specs or [DEFAULT_ENCODER]


@dataclass
class AuditResult:
    out_dir: Path
    findings: list[Finding]
    record: dict[str, Any]
    timings: dict[str, float] = field(
        default_factory=dict
    )  # stage -> seconds (not written: reruns stay identical)

    @property
    def failed(self) -> bool:
        return any(f.mark == "fail" for f in self.findings)


def slug(spec: str) -> str:
    """A folder name for an encoder spec: family plus the file or model name ('sam3:/x/sam3.pt' -> 'sam3-sam3')."""
    family, _, rest = spec.partition(":")
    name = Path(rest.rstrip("/")).stem if rest else ""
    text = f"{family}-{name}" if name else family
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "encoder"


def _error(err: BaseException) -> dict[str, str]:
    if isinstance(err, AnatomyError):
        return {"error": err.message, **({"hint": err.hint} if err.hint else {})}
    log.debug("unexpected error\n%s", "".join(traceback.format_exception(err)))
    return {"error": f"{type(err).__name__}: {err}"}


# ---------------------------------------------------------------------------------------------- stages


def build_corpus(cfg: AuditConfig, out_dir: Path) -> tuple[Path, list[dict]]:
    """The corpus to audit, and the inputs that could not be read at all ({"input", "error", "hint"})."""
    inputs = list(cfg.inputs) or [DEFAULT_INPUT]
    parquet = [i for i in inputs if i.endswith(".parquet")]
    if parquet:
        if len(inputs) > 1:
            raise InputError(
                f"a corpus Parquet file ({parquet[0]}) was given together with other inputs",
                "give either one corpus .parquet or raw prompt files",
            )
        from anatomy.corpus import load_corpus

        load_corpus(parquet[0])  # fails early, naming the file, if it is not a corpus
        return Path(parquet[0]), []

    from anatomy.corpus import ingest
    from anatomy.corpus.corpus import manifest_path
    from anatomy.corpus.sources import ReadOptions, detect_source

    corpus = out_dir / "corpus.parquet"
    for stale in (corpus, manifest_path(corpus)):  # rebuilt from the inputs on every run
        stale.unlink(missing_ok=True)
    failed: list[dict] = []
    groups: dict[str, list[str]] = {}  # source -> inputs, in the order given
    for spec in inputs:
        try:
            groups.setdefault(cfg.source or detect_source(spec), []).append(spec)
        except AnatomyError as err:
            failed.append({"input": _display(spec), **_error(err)})
    for source, specs in groups.items():
        try:  # one call per source; if a file in it cannot be read, retry one by one to isolate it
            ingest(source, specs, corpus, ReadOptions())
        except AnatomyError:
            for spec in specs:
                try:
                    ingest(source, [spec], corpus, ReadOptions())
                except AnatomyError as err:
                    failed.append({"input": _display(spec), **_error(err)})
    if not corpus.exists():
        reasons = "; ".join(f"{f['input']}: {f['error']}" for f in failed)
        raise InputError(
            f"no prompts could be read from the inputs ({reasons})", "check the inputs and --source"
        )
    return corpus, failed


def _display(spec: str) -> str:
    """An input as shown in results: built-in names as given, files by name (no machine paths in results)."""
    return spec if spec.startswith("builtin:") or spec == "-" else Path(spec).name


def run_tokens_stage(cfg: AuditConfig, corpus: Path, out_dir: Path) -> dict:
    from anatomy.tokens import run_tokens

    return run_tokens(corpus, out_dir, contexts=cfg.contexts, tokenizer="clip", quiet=True)


def _analysis_runner(name: str) -> Callable[..., dict]:
    from anatomy.analysis import run

    return getattr(run, f"run_{name}")


def run_encoder_analysis(name: str, encoder, cfg: AuditConfig, corpus: Path, out_dir: Path) -> dict:
    """One per-encoder analysis into out_dir (results/NAME.json, figures/NAME*.png)."""
    runner = _analysis_runner(name)
    if name == "positions":
        return _call(runner, encoder, out_dir, quiet=True)
    if name == "spectrum":
        return _call(runner, encoder, out_dir, corpus=corpus, quiet=True)
    if name == "dims":
        return _call(
            runner, out_dir, encoder_spec=encoder, corpus=corpus, sample=cfg.sample, seed=cfg.seed, quiet=True
        )
    return _call(runner, encoder, corpus, out_dir, sample=cfg.sample, seed=cfg.seed, quiet=True)


def run_agreement_stage(teacher, student, cfg: AuditConfig, corpus: Path, out_dir: Path) -> dict:
    kwargs: dict[str, Any] = {"quiet": True, "seed": cfg.seed}
    if cfg.sample:
        kwargs["sample"] = cfg.sample
    return _call(_analysis_runner("agreement"), teacher, student, corpus, out_dir, **kwargs)


def _clear(out_dir: Path, name: str) -> None:
    """Remove a previous run's NAME results and figures, so a stage that fails now leaves no stale numbers."""
    (out_dir / "results" / f"{name}.json").unlink(missing_ok=True)
    for figure in (out_dir / "figures").glob(f"{name}*.png"):
        figure.unlink()


def _call(fn, *args, **kwargs):
    """Call fn with only the keyword arguments it accepts (analysis runners differ in their options)."""
    import inspect

    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params and v is not None}
    return fn(*args, **kwargs)


# ------------------------------------------------------------------------------------------- orchestration


def run_audit(
    cfg: AuditConfig, out_dir: str | Path, progress: Callable[[str], None] | None = None
) -> AuditResult:
    """Run every stage into out_dir, then write findings and the report. Failures are recorded, not raised,
    except when no corpus can be built at all."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    status: dict[str, Any] = {"encoders": [], "tokens": {}, "agreement": None}

    def timed(stage: str, fn: Callable[[], Any]) -> Any:
        say(f"{stage} ...")
        start = time.perf_counter()
        try:
            return fn()
        finally:
            timings[stage] = time.perf_counter() - start
            say(f"{stage}: {timings[stage]:.1f} s")

    corpus, failed = timed("ingest", lambda: build_corpus(cfg, out_dir))
    # a corpus built here is named relative to out_dir; a given .parquet keeps the path as the user gave it
    given = corpus.parent != out_dir
    status["corpus"] = {"path": str(corpus) if given else corpus.name, "failed": failed}
    _clear(out_dir, "tokens")
    try:
        timed("tokens", lambda: run_tokens_stage(cfg, corpus, out_dir))
    except Exception as err:  # noqa: BLE001 - any failure of a stage is reported, and the audit goes on
        status["tokens"] = {"error": _error(err)}

    from anatomy.encoders.registry import load

    loaded: dict[str, Any] = {}
    pair = {cfg.teacher, cfg.student} - {None}
    for spec in cfg.encoder_specs():
        entry: dict[str, Any] = {"spec": spec, "slug": _unique_slug(spec, status["encoders"]), "errors": {}}
        status["encoders"].append(entry)
        enc_dir = out_dir / "encoders" / entry["slug"]
        write_text(enc_dir / "spec.txt", spec + "\n")  # the same layout `make reports` writes
        try:
            encoder = timed(f"load {spec}", lambda s=spec: load(s, device=cfg.device))
        except Exception as err:  # noqa: BLE001
            entry["errors"]["load"] = _error(err)
            continue
        for name in ENCODER_ANALYSES:
            _clear(enc_dir, name)
            try:
                timed(
                    f"{name} {spec}",
                    lambda n=name, e=encoder, d=enc_dir: run_encoder_analysis(n, e, cfg, corpus, d),
                )
            except Exception as err:  # noqa: BLE001
                entry["errors"][name] = _error(err)
        if spec in pair:
            loaded[spec] = encoder
        else:
            del encoder  # free a large model before the next one loads

    if cfg.teacher and cfg.student:
        agreement: dict[str, Any] = {"spec": f"{cfg.student} vs {cfg.teacher}", "errors": {}}
        status["agreement"] = agreement
        missing = [s for s in (cfg.teacher, cfg.student) if s not in loaded]
        if missing:
            agreement["errors"]["load"] = {"error": f"{' and '.join(missing)} could not be loaded"}
        else:
            _clear(out_dir / "agreement", "agreement")
            try:
                timed(
                    "agreement",
                    lambda: run_agreement_stage(
                        loaded[cfg.teacher], loaded[cfg.student], cfg, corpus, out_dir / "agreement"
                    ),
                )
            except Exception as err:  # noqa: BLE001
                agreement["errors"]["agreement"] = _error(err)
    elif cfg.teacher or cfg.student:
        status["agreement"] = {
            "spec": cfg.teacher or cfg.student,
            "errors": {"agreement": {"error": "agreement needs both --teacher and --student"}},
        }
    loaded.clear()

    config = {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in asdict(cfg).items()
        if k not in ("quiet", "device")
    }
    config["inputs"] = [_display(i) for i in (cfg.inputs or (DEFAULT_INPUT,))]
    status["config"] = config
    start = time.perf_counter()
    result = finish(out_dir, status)
    timings["report"] = time.perf_counter() - start
    result.timings = timings
    return result


def _unique_slug(spec: str, entries: list[dict]) -> str:
    base, taken = slug(spec), {e["slug"] for e in entries}
    name, i = base, 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    return name


def finish(out_dir: str | Path, status: Mapping[str, Any] | None = None) -> AuditResult:
    """Collect what is in out_dir, compute findings, write results/audit.json and the report."""
    from anatomy.report.render import render

    out_dir = Path(out_dir)
    status = dict(status) if status is not None else _read_status(out_dir)
    record = collect(out_dir, status)
    findings = collect_findings(record)
    audit_json = {
        "schema_version": AUDIT_SCHEMA_VERSION,
        "config": status.get("config", {}),
        "layout": _layout(record),
        "stages": _stages(status),
        "counts": counts(findings),
        "findings": as_data(findings),
    }
    write_json(out_dir / "results" / "audit.json", audit_json)
    render(out_dir, record, findings)
    return AuditResult(out_dir, findings, record)


def _read_status(out_dir: Path) -> dict:
    """The failures a previous audit recorded (so `anatomy report` on an audit directory keeps them)."""
    path = out_dir / "results" / "audit.json"
    if not path.exists():
        return {}
    stages = read_json(path).get("stages", {})
    return {**stages, "config": read_json(path).get("config", {})}


def _stages(status: Mapping[str, Any]) -> dict:
    return {
        "corpus": status.get("corpus", {}),
        "tokens": status.get("tokens", {}),
        "encoders": [{k: e[k] for k in ("spec", "slug", "errors")} for e in status.get("encoders", [])],
        "agreement": status.get("agreement"),
    }


def _layout(record: Mapping[str, Any]) -> dict:
    return {
        "corpus": record.get("corpus", {}).get("path"),
        "tokens": "results/tokens.json" if record.get("tokens") else None,
        "encoders": {e["slug"]: f"encoders/{e['slug']}" for e in record.get("encoders", [])},
        "agreement": "agreement"
        if record.get("agreement", {}) and record["agreement"].get("result")
        else None,
        "report": ["report.md", "index.html"],
    }


# ------------------------------------------------------------------------------------------------ collect


def collect(out_dir: str | Path, status: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything an audit directory holds, as one record for findings and the report.

    Works on a directory built by `run_audit` or step by step (`make reports`): results are found by the
    layout above, failures come from `status` (what run_audit recorded).
    """
    out_dir = Path(out_dir)
    status = _read_status(out_dir) if status is None else status
    record: dict[str, Any] = {"corpus": _corpus_record(out_dir, status.get("corpus", {}))}
    tokens_path = out_dir / "results" / "tokens.json"
    if tokens_path.exists():
        record["tokens"] = read_json(tokens_path)
    if (status.get("tokens") or {}).get("error"):
        record["tokens_error"] = status["tokens"]["error"]["error"]
    record["figures"] = {"tokens": _figures(out_dir, out_dir / "figures")}

    # After an audit, only what it ran (a folder left from an earlier run is not this audit's); a folder built
    # step by step (`make reports`) has no audit record: everything in it.
    audited = "encoders" in status
    known = {e["slug"]: e for e in status.get("encoders", [])}
    folders = sorted(p.name for p in (out_dir / "encoders").glob("*") if p.is_dir())
    order = list(known) + ([] if audited else [s for s in folders if s not in known])
    record["encoders"] = [_encoder_record(out_dir, s, known.get(s)) for s in order]
    agreement = status.get("agreement")
    agreement_json = out_dir / "agreement" / "results" / "agreement.json"
    if agreement or (agreement_json.exists() and not audited):
        entry = dict(agreement or {})
        entry.setdefault("errors", {})
        if agreement_json.exists():
            entry["result"] = read_json(agreement_json)
            res = entry["result"]
            entry.setdefault("spec", f"{res.get('student', 'student')} vs {res.get('teacher', 'teacher')}")
        entry["figures"] = _figures(out_dir, out_dir / "agreement" / "figures")
        record["agreement"] = entry
    record["versions"] = _versions(record)
    return record


def _corpus_record(out_dir: Path, corpus_status: Mapping[str, Any]) -> dict:
    from anatomy.corpus.corpus import corpus_summary, manifest_path

    name = corpus_status.get("path") or "corpus.parquet"
    path = out_dir / name if (out_dir / name).exists() else Path(name)
    entry: dict[str, Any] = {"path": name, "failed": list(corpus_status.get("failed", [])), "files": []}
    if path.exists():
        from anatomy.corpus import load_corpus

        entry.update(corpus_summary(load_corpus(path)))
        manifest = manifest_path(path)
        if manifest.exists():
            files = read_json(manifest).get("inputs", [])
            entry["files"] = [{**f, "input": _display(f["input"])} for f in files]
    return entry


def _encoder_record(out_dir: Path, name: str, status: Mapping[str, Any] | None) -> dict:
    enc_dir = out_dir / "encoders" / name
    results = {}
    for analysis in ENCODER_ANALYSES + tuple(
        sorted(p.stem for p in (enc_dir / "results").glob("*.json") if p.stem not in ENCODER_ANALYSES)
    ):
        path = enc_dir / "results" / f"{analysis}.json"
        if path.exists():
            results[analysis] = read_json(path)
    spec_file = enc_dir / "spec.txt"
    written = spec_file.read_text(encoding="utf-8").strip() if spec_file.exists() else None
    spec = (status or {}).get("spec") or written or _spec_from_results(results) or name
    return {
        "spec": spec,
        "slug": name,
        "errors": dict((status or {}).get("errors", {})),
        "results": results,
        "figures": _figures(out_dir, enc_dir / "figures"),
    }


def _spec_from_results(results: Mapping[str, Any]) -> str | None:
    for res in results.values():
        for key in ("encoder", "spec"):
            value = (res.get("params") or {}).get(key) or res.get(key)
            if isinstance(value, str):
                return value
    return None


def _figures(root: Path, folder: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in sorted(folder.glob("*.png"))]


def _versions(record: Mapping[str, Any]) -> dict:
    """Package versions as the results recorded them (the report must not depend on the rendering machine)."""
    candidates = [record.get("tokens")] + [
        r for e in record.get("encoders", []) for r in e["results"].values()
    ]
    for res in candidates:
        versions = ((res or {}).get("provenance") or {}).get("versions")
        if versions:
            return dict(versions)
    return package_versions()
