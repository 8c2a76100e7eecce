"""`anatomy audit` end to end on a small real corpus with the real offline encoder (minilm).

One audit with an unreadable input and an encoder that cannot load (both reported, the rest completes), a
rerun into another folder (byte-identical outputs), and an audit of the resulting corpus with a teacher and a
student (agreement). Prompts: ImageNet class names in CLIP templates, as shipped inside open_clip.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from anatomy.audit import DEFAULT_ENCODER, DEFAULT_INPUT, AuditConfig
from anatomy.cli import app
from anatomy.errors import InputError
from anatomy.layout import slug
from anatomy.report.collect import collect
from anatomy.report.record import AuditRecord

SAMPLE = 120


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    root = tmp_path_factory.mktemp("inputs")
    names = IMAGENET_CLASSNAMES[:100]
    lines = [f"a photo of a {n}." for n in names] + [f"{n}" for n in names[:60]] + ["", "   "]
    (root / "prompts.txt").write_text("\n".join(lines) + "\n")
    (root / "broken.json").write_text('{"categories": [ {"name": "dog"')  # truncated JSON
    return {
        "prompts": root / "prompts.txt",
        "broken": root / "broken.json",
        "missing": root / "no-such-sam3.pt",
    }


def audit(args: list[str]) -> tuple[int, dict]:
    result = CliRunner().invoke(app, ["audit", *args, "--json", "--quiet", "--sample", str(SAMPLE)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def run_a(inputs, out: Path) -> tuple[int, dict]:
    return audit(
        [
            str(inputs["prompts"]),
            str(inputs["broken"]),
            "-e",
            "minilm",
            "-e",
            f"sam3:{inputs['missing']}",
            "--out",
            str(out),
        ]
    )


@pytest.fixture(scope="module")
def first(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("audit-a")
    code, data = run_a(inputs, out)
    return out, code, data


def by_key(data: dict, key: str) -> list[dict]:
    return [f for f in data["findings"] if f["key"] == key]


def test_defaults_are_the_builtin_corpus_and_minilm():
    assert DEFAULT_INPUT == "builtin:imagenet-prompts" and DEFAULT_ENCODER == "minilm"
    assert AuditConfig().encoder_specs() == ["minilm"]
    assert AuditConfig(teacher="sam3:a.pt", student="student:b").encoder_specs() == ["sam3:a.pt", "student:b"]
    assert slug("sam3:/x/y/sam3.pt") == "sam3-sam3" and slug("open_clip:ViT-B-32") == "open_clip-ViT-B-32"


def test_overrides_reach_the_marked_fields_only_and_are_checked_first():
    """--sample/--seed reach exactly the fields marked for them (sample_param/seed_param); NAME.FIELD one field."""
    import dataclasses

    from anatomy.analysis import ANALYSES
    from anatomy.analysis.base import audit_fields

    cfg = AuditConfig(overrides={"sample": 120, "seed": 3, "tokens.contexts": (8, 16)})
    assert cfg.params_for(ANALYSES["tokens"]).contexts == (8, 16)
    for analysis in ANALYSES.values():
        params = cfg.params_for(analysis)
        marked = audit_fields(analysis.Params)
        for f in dataclasses.fields(params):
            expected = {"sample": 120, "seed": 3}.get(marked.get(f.name, ""), f.default)
            if f.name == "contexts" and analysis.name == "tokens":
                continue
            assert getattr(params, f.name) == expected, (analysis.name, f.name)
    assert audit_fields(ANALYSES["dims"].Params) == {"sample": "sample", "seed": "seed"}
    assert [a.name for a in AuditConfig(analyses=("dims", "tokens")).selected()] == ["tokens", "dims"]
    with pytest.raises(InputError, match="unknown analysis: nope"):
        AuditConfig(analyses=("nope",)).selected()
    with pytest.raises(InputError, match="--seed"):
        AuditConfig(overrides={"seed": -1}).params_for(ANALYSES["dims"])
    with pytest.raises(InputError, match="n_boot"):  # not an audit option: say so instead of ignoring it
        AuditConfig(overrides={"n_boot": 5}).params_for(ANALYSES["dims"])
    with pytest.raises(InputError, match="no parameter 'bogus'"):
        AuditConfig(overrides={"dims.bogus": 5}).params_for(ANALYSES["dims"])


def test_failures_are_reported_and_the_rest_completes(first):
    out, code, data = first
    assert code == 1  # a failure finding makes the exit status 1, after everything was written
    (unreadable,) = by_key(data, "corpus.unreadable")
    assert unreadable["mark"] == "fail" and "broken.json" in unreadable["message"]
    (load,) = by_key(data, "encoder.load")
    assert load["section"] == "encoder:sam3-no-such-sam3" and "no-such-sam3.pt" in load["message"]
    (skipped,) = by_key(data, "corpus.skipped")  # the two blank lines
    assert skipped["value"] == 2
    # everything else ran: tokens and every minilm analysis
    assert by_key(data, "tokens.context") and by_key(data, "tokens.vocab_unused")
    (dims,) = by_key(data, "dims.intrinsic")
    assert dims["section"] == "encoder:minilm" and 1 < dims["value"] < 384
    for name in ("positions", "spectrum", "dims"):
        assert (out / "encoders" / "minilm" / "results" / f"{name}.json").exists()
    assert not (out / "encoders" / "sam3-no-such-sam3" / "results").exists()
    assert data["counts"]["fail"] == 2


def test_outputs_and_report(first):
    out, _, data = first
    assert (out / "results" / "tokens.json").exists() and (out / "corpus.parquet").exists()
    audit_json = json.loads((out / "results" / "audit.json").read_text())
    assert audit_json["findings"] == data["findings"]  # --json and audit.json carry the same findings
    assert audit_json["stages"]["encoders"][1]["errors"]["load"]["error"]
    page = (out / "index.html").read_text()
    md = (out / "report.md").read_text()
    for text in ("no-such-sam3.pt", "broken.json", "Encoder minilm", "paper"):
        assert text in page and text in md
    figures = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert figures and page.count('<img src="data:image/png;base64,') == len(figures)
    record = collect(out)  # rebuilt from the folder alone: the same corpus, results and recorded errors
    assert record.corpus["distinct_prompts"] == 160
    assert record.encoders[1].errors["load"].error


def test_rerun_is_byte_identical(inputs, first, tmp_path):
    out_a, _, _ = first
    out_b = tmp_path / "audit-b"
    run_a(inputs, out_b)

    def files(root: Path) -> dict[str, bytes]:
        keep = lambda p: p.suffix in (".json", ".png", ".md", ".html", ".txt", ".parquet")  # noqa: E731
        return {
            p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file() and keep(p)
        }

    a, b = files(out_a), files(out_b)
    assert sorted(a) == sorted(b)
    differ = [name for name in a if a[name] != b[name]]
    assert differ == []


def test_report_command_rebuilds_the_same_report(first):
    out, _, _ = first
    before = (out / "index.html").read_bytes(), (out / "report.md").read_bytes()
    result = CliRunner().invoke(app, ["report", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"]["fail"] == 2  # errors recorded by the audit are kept
    assert ((out / "index.html").read_bytes(), (out / "report.md").read_bytes()) == before


def test_corpus_parquet_with_teacher_and_student_gives_agreement(first, tmp_path):
    out, _, _ = first
    code, data = audit(
        [str(out / "corpus.parquet"), "--teacher", "minilm", "--student", "minilm", "--out", str(tmp_path)]
    )
    assert code == 0, data["findings"]
    (agree,) = by_key(data, "agreement.token_cosine")
    assert agree["mark"] == "ok" and agree["value"] == pytest.approx(
        1.0, abs=1e-5
    )  # an encoder agrees with itself
    assert (tmp_path / "pair" / "results" / "agreement.json").exists()  # teacher-student results: DIR/pair
    assert not (tmp_path / "corpus.parquet").exists()  # a given corpus is used in place


def test_unknown_inputs_only_is_an_error(tmp_path):
    bad = tmp_path / "x.unknown"
    bad.write_text("?")
    result = CliRunner().invoke(app, ["audit", str(bad), "--out", str(tmp_path / "o"), "--quiet"])
    assert result.exit_code == 1
    assert "no prompts could be read" in result.stderr and "x.unknown" in result.stderr


def test_collect_keeps_to_what_the_audit_ran(tmp_path):
    """A folder left from an earlier run is not part of this audit; a step-by-step folder shows everything."""
    import numpy as np

    from anatomy.analysis.dims import DimsEntry, DimsResult
    from anatomy.io import write_json

    points = np.random.default_rng(0).standard_normal((40, 3))
    old = DimsResult("old.npy", DimsEntry.of(points, seed=0, n_boot=0), {}, {})
    write_json(tmp_path / "encoders" / "old" / "results" / "dims.json", old.to_json())
    (tmp_path / "encoders" / "old" / "spec.txt").write_text("hf:old-model\n")
    step_by_step = collect(tmp_path)
    assert [e.spec for e in step_by_step.encoders] == ["hf:old-model"]
    assert step_by_step.encoders[0].results["dims"] == old  # read back typed
    assert collect(tmp_path, AuditRecord(encoders=[])).encoders == []
