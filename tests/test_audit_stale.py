"""A report never presents results of one corpus as those of another (hostile-user sweep of the audit, items 1,
3, 4, 6 and 8): every result is checked against the corpus file the folder holds now; an audit writes a
"running" record when it starts and its complete record last, so a killed audit is reported as such; a given
corpus that changed after its audit is reported as changed; what a left-out result wrote beside it is named;
usage errors come before any folder is made; audit and specialise never share a folder.

Toy corpus analyses (no encoder) keep it fast: each counts the corpus rows it was given."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from anatomy.analysis import ANALYSES, register
from anatomy.analysis.base import Analysis, Inputs, Need, Result, param, sample_param, seed_param
from anatomy.audit import AuditConfig, finish, run_audit
from anatomy.cli import app
from anatomy.corpus import ingest
from anatomy.corpus.sources import ReadOptions
from anatomy.findings import Finding


@dataclass(frozen=True)
class NoParams:
    pass


@dataclass
class Rows(Result):
    rows: int


class _Rows(Analysis[NoParams, Rows]):
    Params = NoParams
    Result = Rows
    needs = frozenset({Need.CORPUS})
    interrupt = (
        False  # set by a test: compute raises KeyboardInterrupt (a kill, as far as the audit can tell)
    )

    def compute(self, inputs: Inputs, params: NoParams) -> Rows:
        from anatomy.corpus import load_corpus

        if self.interrupt:
            raise KeyboardInterrupt
        return Rows(len(load_corpus(inputs.need_corpus())))

    def findings(self, result: Rows, section: str) -> list[Finding]:
        return [
            Finding("info", section, f"{self.name}.rows", f"{self.name} counted {result.rows}", result.rows)
        ]

    def figures(self, result: Rows) -> dict:
        import matplotlib.figure

        fig = matplotlib.figure.Figure(figsize=(1, 1))
        fig.add_subplot().bar([0], [result.rows])
        return {"bars": fig}

    def write_artefacts(self, result: Rows, folder: Path) -> None:  # like vocab's DIR/vocab.json
        (folder / f"{self.name}.json").write_text(json.dumps({"rows": result.rows}))


@pytest.fixture()
def toys():
    made = {}
    for name in ("stalea", "staleb"):
        made[name] = register(type(name.title(), (_Rows,), {"name": name, "title": name})())
    try:
        yield made
    finally:
        for name in made:
            ANALYSES.pop(name, None)


def _prompts(path: Path, words: list[str]) -> Path:
    path.write_text("\n".join(f"a photo of a {w}" for w in words) + "\n")
    return path


def _values(result) -> dict:
    return {f.key: f.value for f in result.findings}


def _leftovers(result) -> dict:
    return {f.value: f.message for f in result.findings if f.key == "report.leftover"}


def test_a_killed_audit_is_reported_as_such_and_its_fresh_results_kept(toys, tmp_path):
    out = tmp_path / "out"
    a = _prompts(tmp_path / "a.txt", ["dog", "cat", "car", "zebra", "bowl"])
    b = _prompts(tmp_path / "b.txt", ["apple", "pear", "plum"])
    first = run_audit(AuditConfig(inputs=(str(a),), analyses=("stalea", "staleb")), out)
    assert _values(first)["staleb.rows"] == 5 and (out / "index.html").exists()

    toys["staleb"].interrupt = True  # the second audit dies after stalea, before staleb and its record
    with pytest.raises(KeyboardInterrupt):
        run_audit(AuditConfig(inputs=(str(b),), analyses=("stalea", "staleb")), out)
    toys["staleb"].interrupt = False
    record = json.loads((out / "results" / "audit.json").read_text())
    assert record["state"] == "running"  # the old record is not left looking valid ...
    assert not (out / "index.html").exists() and not (out / "report.md").exists()  # ... nor its report

    rebuilt = finish(out)
    got = _values(rebuilt)
    assert got["corpus.size"] == 3 and got["stalea.rows"] == 3  # the fresh result, on the corpus now here
    assert "staleb.rows" not in got  # the first audit's, computed on the old corpus
    assert "another corpus" in _leftovers(rebuilt)["results/staleb.json"]
    assert "report.stale_record" in got
    assert "did not finish" in (out / "report.md").read_text()
    # a report does not turn the record complete: the next one still says so
    assert "report.stale_record" in _values(finish(out))
    # the next complete audit clears it
    done = run_audit(AuditConfig(inputs=(str(b),), analyses=("stalea", "staleb")), out)
    assert "report.stale_record" not in _values(done) and _values(done)["staleb.rows"] == 3
    assert "state" not in json.loads((out / "results" / "audit.json").read_text())


def test_a_given_corpus_that_changed_after_the_audit_is_not_mixed_with_its_results(toys, tmp_path):
    corpus = tmp_path / "Cm.parquet"
    ingest("text", [str(_prompts(tmp_path / "a.txt", ["dog", "cat", "car", "zebra"]))], corpus, ReadOptions())
    out = tmp_path / "D"
    audited = run_audit(AuditConfig(inputs=(str(corpus),), analyses=("stalea",)), out)
    assert _values(audited)["stalea.rows"] == 4
    ingest("text", [str(_prompts(tmp_path / "more.txt", ["plum", "pear"]))], corpus, ReadOptions())

    rebuilt = finish(out)
    got = _values(rebuilt)
    assert got["corpus.size"] == 6  # the corpus as it is now ...
    assert "stalea.rows" not in got  # ... and not the numbers of the 4 prompts the audit saw
    assert "changed since" in _leftovers(rebuilt)["results/stalea.json"]
    assert "has changed since the audit" in next(f.message for f in rebuilt.findings
                                                 if f.key == "report.stale_record")  # fmt: skip
    saved = json.loads((out / "results" / "corpus.json").read_text())
    assert saved["distinct_prompts"] == 6  # the summary beside the results says what the report shows


def test_a_left_out_result_names_what_it_wrote_beside_it(toys, tmp_path):
    out = tmp_path / "out"
    run_audit(AuditConfig(inputs=(str(_prompts(tmp_path / "a.txt", ["dog", "cat"])),),
                          analyses=("stalea", "staleb")), out)  # fmt: skip
    assert (out / "staleb.json").exists()  # the artefact, like DIR/vocab.json
    second = run_audit(AuditConfig(inputs=(str(_prompts(tmp_path / "b.txt", ["plum"])),),
                                   analyses=("stalea",)), out)  # fmt: skip
    message = _leftovers(second)["results/staleb.json"]
    assert "staleb.json" in message.split("beside it:")[1] and "figures/staleb_bars.png" in message


def test_teacher_without_student_is_a_usage_error_before_any_work(tmp_path):
    out = tmp_path / "never"
    for args in (["--teacher", "minilm"], ["--student", "minilm"]):
        result = CliRunner().invoke(app, ["audit", "builtin:imagenet-prompts", *args, "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert "--teacher" in result.output and "--student" in result.output
        assert not out.exists()


def test_no_stage_failure_names_a_command_that_does_not_exist():
    import re

    from anatomy.cli import app as cli_app
    from anatomy.report.collect import collect_findings
    from anatomy.report.record import FolderRecord, GroupRecord, StageError

    commands = {c.name for c in cli_app.registered_commands}
    boom = StageError("boom")
    record = FolderRecord({}, GroupRecord("the corpus", errors={"tokens": boom, "nosuch": boom}),
                          pair=GroupRecord("s vs t", errors={"pair": boom, "agreement": boom}))  # fmt: skip
    actions = [f.action for f in collect_findings(record)]
    assert len(actions) == 4
    named = [m for a in actions for m in re.findall(r"`anatomy (?:-v )?([\w-]+)", a)]
    assert named and set(named) <= commands, actions


def test_audit_and_check_leave_no_folder_after_a_usage_error_or_missing_input(tmp_path):
    result = CliRunner().invoke(
        app, ["audit", str(tmp_path / "nonexist.parquet"), "--out", str(tmp_path / "y")]
    )
    assert result.exit_code == 1 and not (tmp_path / "y").exists()
    result = CliRunner().invoke(
        app, ["audit", str(tmp_path / "nonexist.txt"), "--out", str(tmp_path / "z" / "a")]
    )
    assert result.exit_code == 1 and not (tmp_path / "z").exists()
    deployment = tmp_path / "deployed"
    ingest("text", [str(_prompts(tmp_path / "p.txt", ["dog", "cat"]))], deployment / "corpus.parquet")
    (deployment / "results").mkdir()
    (deployment / "results" / "audit.json").write_text(json.dumps({"config": {}, "stages": {}}))
    log = _prompts(tmp_path / "log.txt", ["dog"])
    result = CliRunner().invoke(app, ["check", str(log), "--count-column", "n", "--against", str(deployment),
                                      "--out", str(tmp_path / "x5")])  # fmt: skip
    assert result.exit_code == 2 and not (tmp_path / "x5").exists()


def test_audit_report_and_specialise_refuse_each_others_folder(tmp_path):
    bill = tmp_path / "spec"
    (bill / "stages").mkdir(parents=True)
    (bill / "bill.json").write_text("{}")
    (bill / "index.html").write_text("the bill")
    prompts = str(_prompts(tmp_path / "p.txt", ["dog", "cat"]))
    for args in (["audit", prompts, "-a", "tokens", "--out", str(bill)], ["report", str(bill)]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1 and "specialise" in result.output, result.output
    assert (bill / "index.html").read_text() == "the bill" and not (bill / "results").exists()

    audit = tmp_path / "audit"
    (audit / "results").mkdir(parents=True)
    (audit / "results" / "audit.json").write_text(json.dumps({"config": {}, "stages": {}}))
    result = CliRunner().invoke(app, ["specialise", prompts, "--out", str(audit), "-q"])
    assert result.exit_code == 1 and "anatomy audit" in result.output, result.output
    assert not (audit / "stages").exists()


def test_check_refuses_an_audit_folder_that_is_a_mixture(tmp_path):
    """`check --against DIR` reads what DIR deployed: not from a killed audit, nor a vocab.json of another corpus."""
    from anatomy.errors import InputError
    from anatomy.io import file_sha256
    from anatomy.monitor.record import read_deployment

    folder = tmp_path / "audit"
    ingest("text", [str(_prompts(tmp_path / "p.txt", ["dog", "cat"]))], folder / "corpus.parquet")
    (folder / "results").mkdir()
    record = {"config": {}, "stages": {"corpus": {"path": "corpus.parquet", "failed": []}}}
    (folder / "results" / "audit.json").write_text(json.dumps({**record, "state": "running"}))
    with pytest.raises(InputError, match="did not finish"):
        read_deployment(folder)
    (folder / "results" / "audit.json").write_text(json.dumps(record))
    (folder / "vocab.json").write_text(json.dumps({"corpus": {"name": "old.parquet", "sha256": "0" * 64}}))
    with pytest.raises(InputError, match="another run left it there"):
        read_deployment(folder)
    ours = {"corpus": {"name": "corpus.parquet", "sha256": file_sha256(folder / "corpus.parquet")}}
    (folder / "vocab.json").write_text(json.dumps(ours))
    assert read_deployment(folder).vocab == folder / "vocab.json"


# Sweep 2 item 3: a killed rerun with other options (--sample/--seed) on the same corpus: the first audit's
# results are not shown as the rerun's, and the reason says which parameters differ.


@dataclass(frozen=True)
class SampledParams:
    sample: int = sample_param(100, "Prompts.")
    seed: int = seed_param()
    k: int = param(3, "Neighbours.")


class _Sampled(_Rows):
    Params = SampledParams  # type: ignore[assignment]


@pytest.fixture()
def sampled():
    made = {}
    for name in ("sampleda", "sampledb"):
        made[name] = register(type(name.title(), (_Sampled,), {"name": name, "title": name})())
    try:
        yield made
    finally:
        for name in made:
            ANALYSES.pop(name, None)


def test_a_killed_rerun_with_other_parameters_does_not_show_the_old_results_as_its_own(sampled, tmp_path):
    out = tmp_path / "out"
    a = _prompts(tmp_path / "a.txt", ["dog", "cat", "car"])
    names = ("sampleda", "sampledb")
    first = run_audit(AuditConfig(inputs=(str(a),), analyses=names, overrides={"sample": 50, "seed": 1}), out)
    assert _values(first)["sampledb.rows"] == 3
    assert "report.leftover" not in _values(first)  # its own results match what it asked for

    sampled["sampledb"].interrupt = True  # the rerun dies after sampleda
    with pytest.raises(KeyboardInterrupt):
        run_audit(AuditConfig(inputs=(str(a),), analyses=names, overrides={"sample": 60, "seed": 2}), out)
    sampled["sampledb"].interrupt = False

    rebuilt = finish(out)  # `anatomy report`: the same corpus, so only the parameters tell them apart
    got = _values(rebuilt)
    assert got["sampleda.rows"] == 3  # the rerun's
    assert "sampledb.rows" not in got  # the first audit's (sample 50, seed 1)
    reason = _leftovers(rebuilt)["results/sampledb.json"]
    assert (
        "other parameters" in reason
        and "sample 50, the audit's 60" in reason
        and "seed 1, the audit's 2" in reason
    )
    assert "k " not in reason.split("parameters:")[1]  # only what differs
    assert "report.stale_record" in got

    # a rerun without options asks for the defaults: sample 60 / seed 2 results are not those either
    sampled["sampledb"].interrupt = True
    with pytest.raises(KeyboardInterrupt):
        run_audit(AuditConfig(inputs=(str(a),), analyses=names), out)
    sampled["sampledb"].interrupt = False
    assert "sample 50, the audit's 100" in _leftovers(finish(out))["results/sampledb.json"]
