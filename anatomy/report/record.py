"""The audit's record (results/audit.json) and the report's record of a folder, typed.

AuditRecord is what an audit ran and what failed (written to results/audit.json with the findings; read back
by `anatomy report`). FolderRecord is what a folder holds for the report: the corpus summary, and per scope
(the corpus, each encoder, the teacher-student pair) a GroupRecord of typed results, figures and failures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anatomy.analysis.base import Result
from anatomy.errors import InputError

AUDIT_SCHEMA_VERSION = 2
COMPLETE, RUNNING = "complete", "running"  # AuditRecord.state


class RecordError(InputError):
    """results/audit.json is not an audit record this version reads."""


def _check(ok: bool, path: Path | str, what: str) -> None:
    if not ok:
        raise RecordError(f"{path}: not an audit record ({what})",
                          "delete it, or rerun `anatomy audit` into this folder")  # fmt: skip


def _str(value: Any) -> bool:
    return isinstance(value, str)


def _opt_str(value: Any) -> bool:
    return value is None or isinstance(value, str)


@dataclass(frozen=True)
class StageError:
    """Why a stage (loading an encoder, one analysis) failed."""

    error: str
    hint: str | None = None

    def to_json(self) -> dict[str, str]:
        return {"error": self.error, **({"hint": self.hint} if self.hint else {})}

    @classmethod
    def from_json(cls, data: Any, path: Path | str) -> StageError:
        _check(isinstance(data, dict) and _str(data.get("error")) and _opt_str(data.get("hint")), path,
               "an error entry needs a string 'error'")  # fmt: skip
        return cls(data["error"], data.get("hint"))


def _errors_from(data: Any, path: Path | str) -> dict[str, StageError]:
    _check(isinstance(data, dict | None), path, "errors must be an object")
    return {str(k): StageError.from_json(v, path) for k, v in (data or {}).items()}


def _reasons_from(data: Any, path: Path | str) -> dict[str, str]:
    _check(isinstance(data, dict | None) and all(_str(v) for v in (data or {}).values()), path,
           "not_applicable must map analyses to reasons")  # fmt: skip
    return dict(data or {})


@dataclass(frozen=True)
class InputFailure:
    """An input the audit could not read at all."""

    input: str
    error: str
    hint: str | None = None

    def to_json(self) -> dict[str, str]:
        return {"input": self.input, "error": self.error, **({"hint": self.hint} if self.hint else {})}

    @classmethod
    def from_json(cls, data: Any, path: Path | str) -> InputFailure:
        _check(isinstance(data, dict) and _str(data.get("input")) and _str(data.get("error")), path,
               "a failed input needs 'input' and 'error'")  # fmt: skip
        return cls(data["input"], data["error"], data.get("hint"))


@dataclass
class CorpusStage:
    """The corpus the audit built or was given: its path (relative to the folder when built there), its hash."""

    path: str
    sha256: str | None = None
    failed: list[InputFailure] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"path": self.path, "failed": [f.to_json() for f in self.failed]}
        if self.sha256:
            data["sha256"] = self.sha256
        return data

    @classmethod
    def from_json(cls, data: Any, path: Path | str) -> CorpusStage:
        _check(isinstance(data, dict) and _opt_str(data.get("path")) and _opt_str(data.get("sha256"))
               and isinstance(data.get("failed", []), list), path, "corpus needs 'path'")  # fmt: skip
        failed = [InputFailure.from_json(f, path) for f in data.get("failed", [])]
        return cls(data.get("path") or "corpus.parquet", data.get("sha256"), failed)


@dataclass
class GroupStage:
    """One encoder (spec and folder slug) or the teacher-student pair: what failed, what did not apply."""

    spec: str
    slug: str | None = None  # encoders only: the folder under encoders/
    errors: dict[str, StageError] = field(default_factory=dict)
    not_applicable: dict[str, str] = field(default_factory=dict)  # analysis -> why it does not apply

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"spec": self.spec}
        if self.slug is not None:
            data["slug"] = self.slug
        data["errors"] = {k: e.to_json() for k, e in self.errors.items()}
        if self.not_applicable:
            data["not_applicable"] = dict(self.not_applicable)
        return data

    @classmethod
    def from_json(cls, data: Any, path: Path | str, slug: bool) -> GroupStage:
        _check(isinstance(data, dict) and _str(data.get("spec")) and (not slug or _str(data.get("slug"))),
               path, "an encoder entry needs 'spec' and 'slug'" if slug else "pair needs 'spec'")  # fmt: skip
        return cls(data["spec"], data.get("slug"), _errors_from(data.get("errors"), path),
                   _reasons_from(data.get("not_applicable"), path))  # fmt: skip


@dataclass
class AuditRecord:
    """What an audit ran (config) and what each stage gave. encoders is None for a folder built step by step
    (no audit ran: every encoder folder in it is reported)."""

    config: dict[str, Any] = field(default_factory=dict)
    corpus: CorpusStage | None = None
    corpus_errors: dict[str, StageError] = field(default_factory=dict)
    corpus_not_applicable: dict[str, str] = field(default_factory=dict)
    encoders: list[GroupStage] | None = None
    pair: GroupStage | None = None
    check: GroupStage | None = None  # `audit --against DIR`: spec is DIR (anatomy.monitor)
    # "running": written when an audit starts, replaced by the complete record when it finishes; read back it
    # means that audit never finished (killed, or failed before its report), so the folder is a mixture
    state: str = COMPLETE

    @property
    def finished(self) -> bool:
        return self.state == COMPLETE

    @property
    def audited(self) -> bool:
        return self.encoders is not None

    def analyses(self) -> list[str] | None:
        """The analyses the audit ran (None: not an audit, or not recorded)."""
        names = self.config.get("analyses")
        return list(names) if isinstance(names, list) else None

    def stages_json(self) -> dict[str, Any]:
        stages: dict[str, Any] = {}
        if self.corpus is not None:
            stages["corpus"] = self.corpus.to_json()
        if self.corpus_errors or self.audited:
            stages["corpus_errors"] = {k: e.to_json() for k, e in self.corpus_errors.items()}
        if self.corpus_not_applicable:
            stages["corpus_not_applicable"] = dict(self.corpus_not_applicable)
        if self.encoders is not None:
            stages["encoders"] = [e.to_json() for e in self.encoders]
            stages["pair"] = self.pair.to_json() if self.pair else None
        elif self.pair is not None:
            stages["pair"] = self.pair.to_json()
        if self.check is not None:
            stages["check"] = self.check.to_json()
        return stages

    def to_json(self, counts: Mapping[str, int], findings: list[dict[str, Any]]) -> dict[str, Any]:
        state = {} if self.finished else {"state": self.state}  # a finished record reads as before
        return {"schema_version": AUDIT_SCHEMA_VERSION, **state, "config": self.config,
                "stages": self.stages_json(), "counts": dict(counts), "findings": findings}  # fmt: skip

    @classmethod
    def from_json(cls, data: Any, path: Path | str) -> AuditRecord:
        _check(isinstance(data, dict) and isinstance(data.get("stages", {}), dict)
               and isinstance(data.get("config", {}), dict), path, "expected a JSON object with 'stages'")  # fmt: skip
        stages = data.get("stages", {})
        encoders = stages.get("encoders")
        _check(isinstance(encoders, list | None), path, "encoders must be a list")
        corpus = stages.get("corpus")
        pair = stages.get("pair")
        check = stages.get("check")
        state = data.get("state", COMPLETE)
        _check(state in (COMPLETE, RUNNING), path, f"state must be {COMPLETE} or {RUNNING}")
        return cls(
            config=dict(data.get("config", {})),
            corpus=CorpusStage.from_json(corpus, path) if corpus is not None else None,
            corpus_errors=_errors_from(stages.get("corpus_errors"), path),
            corpus_not_applicable=_reasons_from(stages.get("corpus_not_applicable"), path),
            encoders=None if encoders is None else [GroupStage.from_json(e, path, True) for e in encoders],
            pair=GroupStage.from_json(pair, path, False) if pair is not None else None,
            check=GroupStage.from_json(check, path, False) if check is not None else None,
            state=state,
        )

    @classmethod
    def read(cls, out_dir: Path) -> AuditRecord:
        """The record a previous audit (or report) wrote in out_dir; an empty record where there is none."""
        from anatomy.io import read_json

        path = out_dir / "results" / "audit.json"
        return cls.from_json(read_json(path), path) if path.exists() else cls()


# ------------------------------------------------------------------------------------------- the report


@dataclass
class GroupRecord:
    """The results of one scope as the report shows them: the corpus analyses, an encoder, or the pair."""

    spec: str
    slug: str | None = None
    errors: dict[str, StageError] = field(default_factory=dict)
    not_applicable: dict[str, str] = field(default_factory=dict)
    results: dict[str, Result] = field(default_factory=dict)
    figures: dict[str, list[str]] = field(default_factory=dict)  # analysis -> paths relative to the folder


@dataclass
class Leftover:
    """A result in the folder that is not this audit's (another corpus, an analysis it did not run)."""

    path: str  # relative to the folder
    reason: str
    beside: list[str] = field(
        default_factory=list
    )  # what it wrote beside it: figures, artefacts (vocab.json)


@dataclass
class FolderRecord:
    """Everything an output folder holds for findings and the report."""

    corpus: dict[str, Any]  # anatomy.corpus.corpus.corpus_summary, plus path, files and failed inputs
    analyses: GroupRecord  # the corpus-scope analyses
    encoders: list[GroupRecord] = field(default_factory=list)
    pair: GroupRecord | None = None
    versions: dict[str, str] = field(default_factory=dict)
    ignored: list[Leftover] = field(default_factory=list)
    title: str | None = None
    problem: str | None = None  # why the audit's record does not describe the folder (killed, corpus changed)
