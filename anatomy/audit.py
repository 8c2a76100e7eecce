"""`anatomy audit`: the whole chain for one corpus, ending in findings and a report.

It ingests the inputs (or takes a corpus .parquet), then runs every registered analysis (anatomy.analysis.
ANALYSES) that fits what was given: corpus analyses into DIR, per-encoder analyses into DIR/encoders/<slug>,
teacher-student analyses into DIR/pair (see anatomy.layout). Each encoder is loaded once and each distinct
token sequence is encoded once per encoder (anatomy.embed_store), whatever number of analyses read it.

A stage that fails is recorded and the rest continues: an unreadable input file skips that file, an encoder
that fails to load skips that encoder's sections, an analysis that fails skips that analysis.
"""

from __future__ import annotations

import functools
import logging
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anatomy.analysis.base import Analysis, NotApplicable
from anatomy.audit_corpus import DEFAULT_INPUT, build_corpus, given_corpus, recorded_path
from anatomy.errors import AnatomyError, InputError
from anatomy.findings import Finding
from anatomy.layout import ENCODERS, PAIR, slug
from anatomy.report.collect import display
from anatomy.report.record import (
    COMPLETE,
    RUNNING,
    AuditRecord,
    CorpusStage,
    FolderRecord,
    GroupStage,
    StageError,
)

log = logging.getLogger(__name__)

DEFAULT_ENCODER = "minilm"


@dataclass(frozen=True)
class AuditConfig:
    inputs: tuple[
        str, ...
    ] = ()  # raw files / builtin:NAME, or one corpus .parquet; empty: the built-in corpus
    source: str | None = None  # reader for every raw input; None: detected per file
    encoders: tuple[str, ...] = ()  # empty: minilm (unless a teacher/student pair is given)
    teacher: str | None = None
    student: str | None = None
    analyses: tuple[str, ...] = ()  # empty: every registered analysis with in_audit
    # {"sample": N, "seed": S}: every Params field marked with that audit option (sample_param, seed_param);
    # {"NAME.FIELD": value}: one field of one analysis (e.g. {"dims.all": True})
    overrides: Mapping[str, Any] = field(default_factory=dict)
    device: str | None = None
    against: str | None = None  # a deployment to check the corpus against (anatomy.monitor) into DIR/check

    def check(self) -> None:
        """Options that do not go together: a usage error (OptionError, exit 2) before any work."""
        from anatomy.errors import OptionError

        if bool(self.teacher) != bool(self.student):
            given, other = ("--teacher", "--student") if self.teacher else ("--student", "--teacher")
            raise OptionError(given, f"the teacher-student analyses need both --teacher and --student; "
                              f"{given} was given without {other}",
                              "give both, or use --encoder/-e to analyse one encoder")  # fmt: skip
        if not self.teacher:  # an analysis asked for by name that would be skipped without a word
            from anatomy.analysis import ANALYSES
            from anatomy.analysis.runner import scope

            pair = [n for n in self.analyses if n in ANALYSES and scope(ANALYSES[n]) == "pair"]
            if pair:
                raise OptionError("--analysis", f"{', '.join(pair)} compares a student with its teacher",
                                  "give --teacher SPEC --student SPEC too")  # fmt: skip

    def encoder_specs(self) -> list[str]:
        specs = list(self.encoders)
        for spec in (self.teacher, self.student):
            if spec and spec not in specs:
                specs.append(spec)
        return specs or [DEFAULT_ENCODER]

    def selected(self) -> list[Analysis[Any, Any]]:
        from anatomy.analysis import ANALYSES

        if self.analyses:
            unknown = sorted(set(self.analyses) - set(ANALYSES))
            if unknown:
                raise InputError(
                    f"unknown analysis: {', '.join(unknown)}", f"choose from {', '.join(ANALYSES)}"
                )
            return [ANALYSES[n] for n in ANALYSES if n in self.analyses]
        return [a for a in ANALYSES.values() if a.in_audit]

    def params_for(self, analysis: Analysis[Any, Any]) -> Any:
        import dataclasses

        from anatomy.analysis.base import AUDIT_MARKERS, audit_fields

        names = {f.name for f in dataclasses.fields(analysis.Params)}
        values: dict[str, Any] = {}
        for key, value in self.overrides.items():
            owner, dot, name = key.rpartition(".")
            if not dot and key not in AUDIT_MARKERS:
                raise InputError(f"override {key!r}: not one of {', '.join(AUDIT_MARKERS)} nor NAME.FIELD")
            if dot and owner == analysis.name:
                if name not in names:
                    raise InputError(f"override {key!r}: {analysis.name} has no parameter {name!r}")
                values[name] = value
        for name, marker in audit_fields(analysis.Params).items():
            if marker in self.overrides and name not in values:
                values[name] = self.overrides[marker]
        return analysis.params_from(values)


@dataclass
class AuditResult:
    out_dir: Path
    findings: list[Finding]
    record: FolderRecord
    timings: dict[str, float] = field(
        default_factory=dict
    )  # stage -> seconds (not written: reruns stay identical)
    rows_encoded: dict[str, int] = field(default_factory=dict)  # encoder spec -> distinct sequences encoded

    @property
    def failed(self) -> bool:
        return any(f.mark == "fail" for f in self.findings)


def _error(err: BaseException) -> StageError:
    if isinstance(err, AnatomyError):
        return StageError(err.message, err.hint)
    log.debug("unexpected error\n%s", "".join(traceback.format_exception(err)))
    return StageError(f"{type(err).__name__}: {err}")


# ---------------------------------------------------------------------------------------------- stages


# What marks a folder as another command's output: `anatomy specialise` writes its stages and bill there.
SPECIALISE_MARKS = ("bill.json", "stages")


def refuse_other_output(out_dir: Path, kind: str) -> None:
    """An audit (or its report) and a specialise run never share a folder: both write index.html there. kind is
    what is about to be written ("audit" or "specialise"); the other kind's output there is refused (exit 1)."""
    if not out_dir.is_dir():
        return
    if kind == "audit":
        found = [m for m in SPECIALISE_MARKS if (out_dir / m).exists()]
        other, command = "a `anatomy specialise` output", "specialise"
    else:
        found = [m for m in ("results/audit.json",) if (out_dir / m).exists()]
        other, command = "an `anatomy audit` output", "audit"
    if found:
        raise InputError(
            f"{out_dir}: holds {other} ({', '.join(found)}); its index.html would be overwritten",
            f"give another folder (or rerun `anatomy {command}` to update that one)",
        )


# ------------------------------------------------------------------------------------------- orchestration


def run_audit(
    cfg: AuditConfig, out_dir: str | Path, progress: Callable[[str], None] | None = None
) -> AuditResult:
    """Run every stage into out_dir, then write findings and the report. Failures are recorded, not raised,
    except when no corpus can be built at all. The folder is locked for the whole audit: a second audit into
    it waits, then rebuilds the corpus from its own inputs."""
    from anatomy.analysis import runner

    out_dir = Path(out_dir)
    cfg.check()
    analyses = cfg.selected()
    params = {a.name: cfg.params_for(a) for a in analyses}  # bad values fail here, before any work
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(
            f"{out_dir}: exists and is not a directory", "give --out a folder (created if missing)"
        )
    refuse_other_output(out_dir, "audit")
    given_corpus(cfg.inputs)  # a given corpus that is missing or no corpus fails before the folder is made
    created = _missing_parents(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = [False]  # set once this run has committed a corpus into the folder
    try:
        with runner.folder_lock(out_dir):
            runner.clean_leftovers(out_dir)
            return _run_locked(cfg, out_dir, analyses, params, progress or (lambda _msg: None), started)
    except Exception:
        if (
            created and not started[0]
        ):  # failed before it wrote anything worth keeping: leave no folder behind
            import shutil

            shutil.rmtree(created[0], ignore_errors=True)
        raise


def _missing_parents(path: Path) -> list[Path]:
    """The folders mkdir(parents=True) would create for path, outermost first."""
    missing: list[Path] = []
    probe = path.absolute()
    while not probe.exists() and probe != probe.parent:
        missing.insert(0, probe)
        probe = probe.parent
    return missing


def _start(out_dir: Path, status: AuditRecord) -> None:
    """Mark the folder as holding an audit in progress: results/audit.json says "running" until the audit
    writes its complete record last, and the previous report pages go (they described the previous audit), so a
    killed audit never leaves the old record or report presenting the folder's mixture as current."""
    from anatomy.io import write_json

    write_json(out_dir / "results" / "audit.json", status.to_json({}, []))
    for page in ("report.md", "index.html"):
        (out_dir / page).unlink(missing_ok=True)


def _run_locked(cfg: AuditConfig, out_dir: Path, analyses: list[Analysis[Any, Any]], params: dict[str, Any],
                say: Callable[[str], None], started: list[bool]) -> AuditResult:  # fmt: skip
    from anatomy.analysis import runner
    from anatomy.analysis.base import Inputs
    from anatomy.embed_store import EmbeddingStore, default_cache
    from anatomy.encoders.registry import load
    from anatomy.io import file_sha256, write_text

    timings: dict[str, float] = {}
    by_scope = {s: [a for a in analyses if runner.scope(a) == s] for s in ("corpus", "encoder", "pair")}
    pair = {cfg.teacher, cfg.student} - {None}
    # encoders are loaded only when an analysis reads them (`audit -a tokens` loads none)
    specs = cfg.encoder_specs() if by_scope["encoder"] or (by_scope["pair"] and pair) else []
    encoders: list[GroupStage] = []
    for spec in specs:
        encoders.append(GroupStage(spec, _unique_slug(spec, encoders)))
    status = AuditRecord(config=_config_record(cfg, analyses), encoders=encoders, state=RUNNING)
    if cfg.teacher and cfg.student and by_scope["pair"]:
        status.pair = GroupStage(f"{cfg.student} vs {cfg.teacher}")

    def timed(stage: str, fn: Callable[[], Any]) -> Any:
        say(f"{stage} ...")
        start = time.perf_counter()
        try:
            return fn()
        finally:
            timings[stage] = time.perf_counter() - start
            say(f"{stage}: {timings[stage]:.1f} s")

    def attempt(analysis: Analysis[Any, Any], inputs: Inputs, folder: Path, errors: dict[str, StageError],
                not_applicable: dict[str, str], label: str) -> None:  # fmt: skip
        try:
            timed(
                f"{analysis.name} {label}".strip(),
                lambda: runner.run(analysis, inputs, params[analysis.name], folder),
            )
        except NotApplicable as err:  # not a failure: the audit says so and goes on
            not_applicable[analysis.name] = err.message.split(": ", 1)[-1]
            runner.clear(analysis, folder)
        except Exception as err:  # noqa: BLE001 - any failure of a stage is reported, and the audit goes on
            errors[analysis.name] = _error(err)
            runner.clear(analysis, folder)  # no stale numbers of an earlier run beside the failure

    corpus, failed = timed("ingest", lambda: build_corpus(cfg.inputs, cfg.source, out_dir, say, checked=True))
    started[0] = True
    # From here the folder is a mixture until the complete record is written last. (A kill during the ingest
    # leaves the previous audit whole; one just after its commit, a record whose corpus hash no longer matches.)
    status.corpus = CorpusStage(recorded_path(corpus, out_dir), file_sha256(corpus), failed)
    _start(out_dir, status)
    for analysis in by_scope["corpus"]:
        inputs = Inputs(corpus=corpus, out_dir=out_dir)
        attempt(analysis, inputs, out_dir, status.corpus_errors, status.corpus_not_applicable, "")

    if cfg.against:  # the corpus as a live log against what was deployed (anatomy check)
        status.check = _check(cfg, corpus, out_dir, timed)
    else:  # no stale verdicts of an earlier run's check
        (out_dir / CHECK / "results" / "check.json").unlink(missing_ok=True)

    loaded: dict[str, tuple[Any, Any]] = {}
    rows_encoded: dict[str, int] = {}
    for entry in encoders:
        spec = entry.spec
        enc_dir = out_dir / ENCODERS / str(entry.slug)
        write_text(enc_dir / "spec.txt", spec + "\n")  # the same layout `make reports` writes
        try:
            encoder = timed(f"load {spec}", functools.partial(load, spec, device=cfg.device))
        except Exception as err:  # noqa: BLE001
            entry.errors["load"] = _error(err)
            continue
        store = EmbeddingStore(encoder, keep_tokens=spec in pair and bool(by_scope["pair"]))
        store.load_cache(default_cache(corpus, spec), corpus)
        for analysis in by_scope["encoder"]:  # an untrained architecture is refused by the runner
            inputs = Inputs(corpus=corpus, encoder=encoder, store=store, out_dir=enc_dir, progress=say)
            attempt(analysis, inputs, enc_dir, entry.errors, entry.not_applicable, spec)
        rows_encoded[spec] = store.rows_encoded
        if spec in pair:
            loaded[spec] = (encoder, store)
        del encoder, store  # free a large model before the next one loads (pair members stay in `loaded`)

    if status.pair is not None and cfg.teacher and cfg.student:
        missing = [s for s in (cfg.teacher, cfg.student) if s not in loaded]
        if missing:
            status.pair.errors["load"] = StageError(f"{' and '.join(missing)} could not be loaded")
        else:
            (teacher, t_store), (student, s_store) = loaded[cfg.teacher], loaded[cfg.student]
            inputs = Inputs(corpus=corpus, teacher=teacher, student=student, teacher_store=t_store,
                            student_store=s_store, out_dir=out_dir / PAIR, progress=say)  # fmt: skip
            for analysis in by_scope["pair"]:
                attempt(analysis, inputs, out_dir / PAIR, status.pair.errors, status.pair.not_applicable, "")
            rows_encoded = {**rows_encoded, cfg.teacher: t_store.rows_encoded,
                            cfg.student: s_store.rows_encoded}  # fmt: skip
    loaded.clear()

    status.state = COMPLETE
    start = time.perf_counter()
    result = finish(out_dir, status)
    timings["report"] = time.perf_counter() - start
    result.timings, result.rows_encoded = timings, rows_encoded
    return result


def _config_record(cfg: AuditConfig, analyses: list[Analysis[Any, Any]]) -> dict[str, Any]:
    return {
        "inputs": [display(i) for i in (cfg.inputs or (DEFAULT_INPUT,))],
        "source": cfg.source,
        "encoders": cfg.encoder_specs(),
        "teacher": cfg.teacher,
        "student": cfg.student,
        "analyses": [a.name for a in analyses],
        "overrides": {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(cfg.overrides.items())},
        **({"against": cfg.against} if cfg.against else {}),
    }


def _check(cfg: AuditConfig, corpus: Path, out_dir: Path, timed) -> GroupStage:
    from anatomy.monitor.check import CheckConfig, run_check

    stage = GroupStage(str(cfg.against))
    try:
        timed("check", lambda: run_check([str(corpus)], str(cfg.against), out_dir / CHECK, cfg=CheckConfig(
            seed=cfg.overrides.get("seed", 0), device=cfg.device)))  # fmt: skip
    except Exception as err:  # noqa: BLE001 - reported as a failed stage; the audit goes on
        stage.errors["check"] = _error(err)
    return stage


CHECK = "check"  # DIR/check: the check's folder inside an audit


def _unique_slug(spec: str, entries: list[GroupStage]) -> str:
    base, taken = slug(spec), {e.slug for e in entries}
    name, i = base, 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    return name


def finish(out_dir: str | Path, status: AuditRecord | None = None) -> AuditResult:
    """Collect what is in out_dir, compute findings, write the report and, last, results/audit.json (under the
    folder's lock). status: the record of the audit that is finishing; None: the one the folder holds."""
    from anatomy.analysis import runner
    from anatomy.findings import as_data, counts, stage_failed
    from anatomy.io import write_json
    from anatomy.monitor.check import read_findings
    from anatomy.report.collect import CORPUS_RESULT, collect, collect_findings, read_status
    from anatomy.report.render import render

    out_dir = Path(out_dir)
    with runner.folder_lock(out_dir):
        fresh = status is not None
        status = status if status is not None else read_status(out_dir)
        record = collect(out_dir, status, fresh=fresh)
        findings = collect_findings(record)
        if (
            status.check is not None and not record.problem
        ):  # `--against`: its verdicts, or why it did not run
            findings += read_findings(out_dir / CHECK)
            for stage, error in status.check.errors.items():
                findings.append(
                    stage_failed("check", status.check.spec, stage, error.error, error.hint, "check")
                )
        if record.corpus.get("distinct_prompts") is not None:
            write_json(out_dir / CORPUS_RESULT, record.corpus)
        render(out_dir, record, findings)
        # last: a record that says "complete" only once everything it describes is written
        write_json(out_dir / "results" / "audit.json", status.to_json(counts(findings), as_data(findings)))
    return AuditResult(out_dir, findings, record)
