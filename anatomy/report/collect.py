"""Everything an output folder holds, as one record for findings and the report.

Works on a folder built by `anatomy audit` or step by step (`make reports`, or the analysis commands with
--out): results are found through the registry and the layout (anatomy.layout); failures come from what
the audit recorded in results/audit.json. An encoder or pair analysis command (`anatomy positions -e SPEC --out
DIR`, `anatomy agreement ... --out DIR`) writes DIR/results/NAME.json: in a folder no audit wrote, those are
reported under the encoder each result records; in an audit's folder they are listed as left out.

Every result shown is checked against the corpus the report is about: the corpus file the folder holds
(corpus.parquet, or the .parquet the audit was given), hashed when the report is built; only where that file is
gone (the committed reports/) the hash the audit recorded. A result computed on another corpus (by the sha256
its provenance records), of an analysis the audit did not run or of an encoder it did not load is left out with
an "info" finding naming the file and what it wrote beside it (figures, artefacts such as vocab.json). So is
a result whose recorded parameters are not those the audit's options asked for (its --sample, --seed and
NAME.FIELD overrides over the analysis's defaults): on the same corpus, a killed rerun with other options
leaves the first audit's results beside its own, and only the parameters tell them apart.

The audit's record (results/audit.json) is trusted only where it describes that corpus and is complete: an
audit writes a "running" record before it starts and the complete one last, so a killed audit leaves a record
that says so; a corpus that changed after the audit (a given .parquet ingested into again) no longer has the
recorded hash. Either way the report says so in a warning, shows only the results computed on the corpus now
there, and leaves out the record's failures (they were about another corpus, or never completed).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from anatomy.errors import InputError
from anatomy.findings import Finding, corpus_findings, stage_failed
from anatomy.layout import ENCODERS, PAIR
from anatomy.report.record import AuditRecord, FolderRecord, GroupRecord, GroupStage, Leftover

if TYPE_CHECKING:
    from anatomy.analysis.base import Analysis
    from anatomy.analysis.runner import Stored

CORPUS_RESULT = "results/corpus.json"  # the corpus summary, kept beside the other results


def read_status(out_dir: Path) -> AuditRecord:
    """The stages a previous audit recorded (so `anatomy report` on an audit folder keeps its failures)."""
    return AuditRecord.read(out_dir)


class _Filter:
    """Which stored results belong to this report: the audit's analyses, on the corpus the report is about."""

    def __init__(self, out_dir: Path, audit: AuditRecord, corpus_sha256: str | None, changed: bool = False):
        self.root, self.audit, self.sha256, self.changed = out_dir, audit, corpus_sha256, changed
        self.ignored: list[Leftover] = []

    def group(self, folder: Path, scope: str, stage: GroupStage | None, spec: str) -> GroupRecord:
        from anatomy.analysis import ANALYSES, runner

        record = GroupRecord(spec, stage.slug if stage else None)
        if stage is not None:
            record.errors, record.not_applicable = dict(stage.errors), dict(stage.not_applicable)
        ran = self.audit.analyses()
        for name, analysis in ANALYSES.items():
            if runner.scope(analysis) != scope:
                continue
            stored = runner.read_stored(analysis, folder)
            if stored is None:
                continue
            where = stored.path.relative_to(self.root).as_posix()
            sha256 = stored.input_hash("corpus") if runner.reads_corpus(analysis) else self.sha256
            reason = self._reason(name, sha256, ran, record) or self._params_reason(analysis, stored)
            if reason:
                self.ignored.append(Leftover(where, reason, _beside(self.root, folder, name, stored)))
                continue
            record.results[name] = stored.result
            record.figures[name] = [p.relative_to(self.root).as_posix() for p in stored.figures(folder)]
        return record

    def _reason(self, name: str, sha256: str | None, ran: list[str] | None, record: GroupRecord) -> str:
        if self.audit.audited and ran is not None and name not in ran:
            return "the audit did not run this analysis"
        if name in record.errors or name in record.not_applicable:
            return "this audit's run of it failed or did not apply"
        if self.sha256 and sha256 != self.sha256:
            if not sha256:
                return "computed without this audit's corpus"
            recorded = self.audit.corpus.sha256 if self.audit.corpus is not None else None
            if self.changed and sha256 == recorded:
                return "computed on another corpus: the audit's, which has changed since"
            return "computed on another corpus"
        return ""

    def _params_reason(self, analysis: Analysis[Any, Any], stored: Stored) -> str:
        """Why a result's recorded parameters are not those the audit asked for ("" where they are, or where
        there is no audit to ask: a folder built step by step, a record without its options)."""
        asked = _asked_params(analysis, self.audit)
        if asked is None:
            return ""
        differ = [f"{k} {_show(stored.params[k])}, the audit's {_show(v)}" for k, v in asked.items()
                  if k in stored.params and not _same_value(stored.params[k], v)]  # fmt: skip
        return f"computed with other parameters: {'; '.join(differ)}" if differ else ""


def _standalone_encoders(keep: _Filter, out_dir: Path, taken: set[str | None]) -> list[GroupRecord]:
    """The encoder analyses a command wrote at the top of the folder (DIR/results/NAME.json), one group per
    encoder as each result records it (`encoder`); a result that records none joins the only encoder named, or
    stands as "the encoder" (not recorded)."""
    from anatomy.layout import slug as slug_of

    found = keep.group(out_dir, "encoder", None, "")
    specs = {n: getattr(r, "encoder", None) for n, r in found.results.items()}
    named = sorted({s for s in specs.values() if isinstance(s, str) and s})
    groups: dict[str, GroupRecord] = {}
    for name, result in found.results.items():
        spec = specs[name] if isinstance(specs[name], str) and specs[name] else None
        spec = spec or (named[0] if len(named) == 1 else "the encoder (not recorded in its results)")
        if spec not in groups:
            base = slug_of(spec) if spec in named else "encoder"
            slug, i = base, 2
            while slug in taken:
                slug, i = f"{base}-{i}", i + 1
            taken.add(slug)
            groups[spec] = GroupRecord(spec, slug)
        groups[spec].results[name] = result
        groups[spec].figures[name] = found.figures.get(name, [])
    return list(groups.values())


def _standalone_leftovers(out_dir: Path) -> list[Leftover]:
    """Encoder and pair results at the top of an audit's folder: an analysis command's (--out DIR), never the
    audit's (it writes them under encoders/ and pair/)."""
    from anatomy.analysis import ANALYSES, runner
    from anatomy.layout import figure_paths, result_path

    found = []
    for name, analysis in ANALYSES.items():
        path = result_path(out_dir, name)
        if runner.scope(analysis) != "corpus" and path.is_file():
            beside = [p.relative_to(out_dir).as_posix() for p in figure_paths(out_dir, name)]
            found.append(Leftover(path.relative_to(out_dir).as_posix(),
                                  f"written by `anatomy {name} --out`, not by this audit", beside))  # fmt: skip
    return found


def _asked_params(analysis: Analysis[Any, Any], audit: AuditRecord) -> dict[str, Any] | None:
    """The parameters the audit ran an analysis with, as JSON: its defaults with the audit's options applied
    (as anatomy.audit.AuditConfig.params_for applies them: NAME.FIELD, then --sample/--seed on the fields
    marked with them). None where the record does not say (no audit, or one recorded without its options)."""
    import dataclasses
    import json

    from anatomy.analysis.base import audit_fields
    from anatomy.io import to_jsonable

    overrides = audit.config.get("overrides")
    if not audit.audited or not isinstance(overrides, dict):
        return None
    names = {f.name for f in dataclasses.fields(analysis.Params)}
    values = {k.rpartition(".")[2]: v for k, v in overrides.items()
              if k.rpartition(".")[0] == analysis.name and k.rpartition(".")[2] in names}  # fmt: skip
    for name, marker in audit_fields(analysis.Params).items():
        if marker in overrides and name not in values:
            values[name] = overrides[marker]
    try:
        params = analysis.params_from({k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    except (InputError, TypeError, ValueError):  # options this version does not take: nothing to compare
        return None
    asked = json.loads(json.dumps(to_jsonable(dataclasses.asdict(params))))
    return asked if isinstance(asked, dict) else None


def _same_value(recorded: Any, asked: Any) -> bool:
    """Equal as JSON; a list an analysis records sorted and without repeats (tokens' contexts) also matches."""
    if recorded == asked:
        return True
    if isinstance(recorded, list) and isinstance(asked, list):
        try:
            return sorted(set(recorded)) == sorted(set(asked))
        except TypeError:  # unhashable or unorderable items: only equality counts
            return False
    return False


def _show(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)


def _beside(root: Path, folder: Path, name: str, stored) -> list[str]:
    """What a left-out result wrote beside it: its figures, and its artefacts at the top of its folder (NAME.*,
    e.g. vocab.json, tokens.parquet), so a reader of the report knows those files are not this audit's either."""
    figures = [p for p in stored.figures(folder) if p.is_file()]
    artefacts = sorted(p for p in folder.glob(f"{name}.*") if p.is_file() and not p.name.startswith("."))
    return [p.relative_to(root).as_posix() for p in artefacts + figures]


def collect(out_dir: str | Path, status: AuditRecord | None = None, fresh: bool = False) -> FolderRecord:
    """What out_dir holds for the report. fresh: `status` was just recorded by the audit that is finishing (its
    corpus hash is current; the file is not hashed again)."""
    out_dir = Path(out_dir)
    audit = read_status(out_dir) if status is None else status
    sha256 = _corpus_sha256(out_dir, audit, fresh)
    recorded = audit.corpus.sha256 if audit.corpus is not None else None
    changed = bool(recorded and sha256 and recorded != sha256)
    problem = _record_problem(out_dir, audit, changed)
    if problem:  # the record's failures are about another corpus, or an audit that never completed
        audit = _without_stages(audit)
    corpus = _corpus_record(out_dir, audit)
    keep = _Filter(out_dir, audit, sha256, changed)
    analyses = keep.group(out_dir, "corpus", None, "the corpus")
    analyses.errors, analyses.not_applicable = dict(audit.corpus_errors), dict(audit.corpus_not_applicable)
    # After an audit, only the encoders it ran; a folder built step by step: every encoder folder in it.
    known = {e.slug: e for e in audit.encoders or [] if e.slug}
    folders = sorted(p.name for p in (out_dir / ENCODERS).glob("*") if p.is_dir())
    encoders = []
    for slug in list(known) + ([] if audit.audited else [s for s in folders if s not in known]):
        stage = known.get(slug)
        spec_file = out_dir / ENCODERS / slug / "spec.txt"
        written = spec_file.read_text(encoding="utf-8").strip() if spec_file.exists() else None
        group = keep.group(
            out_dir / ENCODERS / slug, "encoder", stage, (stage and stage.spec) or written or slug
        )
        group.slug = slug
        encoders.append(group)
    if audit.audited:
        for slug in folders:
            if slug not in known and (out_dir / ENCODERS / slug / "results").is_dir():
                keep.ignored.append(Leftover(f"{ENCODERS}/{slug}/", "an encoder this audit did not load"))
        keep.ignored += _standalone_leftovers(out_dir)
    else:  # `anatomy positions -e SPEC --out DIR` and the like write DIR/results/NAME.json
        encoders += _standalone_encoders(keep, out_dir, {e.slug for e in encoders})
    pair = None
    pair_group = keep.group(out_dir / PAIR, "pair", audit.pair, audit.pair.spec if audit.pair else "")
    if not audit.audited and not pair_group.results:  # `anatomy agreement --out DIR`: DIR/results/NAME.json
        pair_group = keep.group(out_dir, "pair", None, "")
    if audit.pair is not None or (pair_group.results and not audit.audited):
        if not pair_group.spec:
            first = next(iter(pair_group.results.values()))
            pair_group.spec = (
                f"{getattr(first, 'student', 'student')} vs {getattr(first, 'teacher', 'teacher')}"
            )
        pair = pair_group
    record = FolderRecord(corpus, analyses, encoders, pair, ignored=keep.ignored, problem=problem)
    found = analyses.results or encoders or pair or "distinct_prompts" in corpus
    if not found and not audit.audited and audit.corpus is None:
        raise InputError(
            f"{out_dir}: nothing to report (no corpus, no results/NAME.json of a registered analysis, "
            "no encoders/*/results, no pair/results)",
            "give the --out folder of `anatomy audit` or of the analysis commands",
        )
    record.versions = _versions(out_dir)
    return record


def _corpus_sha256(out_dir: Path, audit: AuditRecord, fresh: bool = False) -> str | None:
    """The hash of the corpus this report is about: of the corpus file as it is now (what every result is
    checked against); where the file is gone, as the audit recorded it."""
    from anatomy.io import file_sha256

    recorded = audit.corpus.sha256 if audit.corpus is not None else None
    if fresh and recorded:
        return recorded
    path = _corpus_path(out_dir, audit)
    return file_sha256(path) if path.is_file() else recorded


def _record_problem(out_dir: Path, audit: AuditRecord, changed: bool) -> str | None:
    """Why the audit's record does not describe the folder as it is (None: it does)."""
    record = "results/audit.json"
    if not audit.finished:
        return (f"{record} records an audit into this folder that did not finish (it was killed or failed): "
                "only results computed on the corpus now here are shown")  # fmt: skip
    if changed:
        path = audit.corpus.path if audit.corpus is not None else "corpus.parquet"
        return (f"the corpus {path} has changed since the audit recorded in {record} (sha256 "
                f"{audit.corpus.sha256[:12] if audit.corpus and audit.corpus.sha256 else '?'}): only results "
                "computed on the corpus as it is now are shown")  # fmt: skip
    return None


def _without_stages(audit: AuditRecord) -> AuditRecord:
    """The record's plan (what it meant to run, on which encoders) without what its stages gave."""
    import dataclasses

    encoders = None if audit.encoders is None else [GroupStage(e.spec, e.slug) for e in audit.encoders]
    corpus = None if audit.corpus is None else dataclasses.replace(audit.corpus, failed=[])
    pair = None if audit.pair is None else GroupStage(audit.pair.spec)
    return dataclasses.replace(audit, corpus=corpus, corpus_errors={}, corpus_not_applicable={},
                               encoders=encoders, pair=pair, check=None)  # fmt: skip


def _corpus_path(out_dir: Path, audit: AuditRecord) -> Path:
    name = audit.corpus.path if audit.corpus is not None else "corpus.parquet"
    return out_dir / name if (out_dir / name).exists() else Path(name)


def _corpus_record(out_dir: Path, audit: AuditRecord) -> dict[str, Any]:
    """The corpus summary: from the corpus file when it is here, else from results/corpus.json (which `finish`
    writes), so a report folder without the corpus (the committed reports/) still renders the same."""
    from anatomy.corpus.corpus import manifest_path
    from anatomy.io import read_json

    name = audit.corpus.path if audit.corpus is not None else "corpus.parquet"
    failed = [f.to_json() for f in audit.corpus.failed] if audit.corpus is not None else []
    path = _corpus_path(out_dir, audit)
    entry: dict[str, Any] = {"path": name, "failed": failed, "files": []}
    if path.exists():
        from anatomy.corpus.stream import summary

        entry.update(summary(path))  # a batch at a time: a log's corpus may hold millions of rows
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


def _versions(out_dir: Path) -> dict[str, str]:
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


def collect_findings(record: FolderRecord) -> list[Finding]:
    """All findings of a record: corpus, corpus analyses, each encoder, the teacher-student pair, leftovers."""
    from anatomy.analysis import ANALYSES

    found = corpus_findings(record.corpus)
    groups: list[tuple[str, str, GroupRecord]] = [("", "the corpus", record.analyses)]
    groups += [(f"encoder:{e.slug}", e.spec, e) for e in record.encoders]
    if record.pair is not None:
        groups.append((PAIR, record.pair.spec, record.pair))
    for section, what, group in groups:
        for stage, error in group.errors.items():
            command = stage if stage in ANALYSES else None  # each analysis is a command of its name
            found.append(stage_failed(section or stage, what, stage, error.error, error.hint, command))
        for name, reason in group.not_applicable.items():
            found.append(Finding("info", section or name, f"{name}.not_applicable",
                                 f"{name} does not apply to {what}: {reason}", name))  # fmt: skip
        for name, result in group.results.items():
            found += ANALYSES[name].findings(result, section or name)
    if record.problem:
        found.append(Finding("warn", "report", "report.stale_record", record.problem, "results/audit.json",
                             "rerun `anatomy audit` into this folder"))  # fmt: skip
    for left in record.ignored:
        beside = f" (nor is what it wrote beside it: {', '.join(left.beside)})" if left.beside else ""
        found.append(Finding(
            "info", "report", "report.leftover",
            f"{left.path} is not in this report ({left.reason}){beside}", left.path,
            "another run left it in this folder; remove it, or audit into an empty folder",
        ))  # fmt: skip
    return found
