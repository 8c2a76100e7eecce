"""Issue 18 §3/§5 and issue 23, the classes: a run checks everything it can before the teacher cache, never
restarts silently over saved checkpoints, and two identical runs write byte-identical folders.

- every damaged --resume state (missing beside checkpoints, truncated, garbage, not a state, of another run,
  past the run's steps) is one line naming state.pt and the fix, exit 1, nothing changed, no teacher work;
  --restart is the explicit way to start over, and --resume --restart is a usage error;
- every bad --init (empty, unknown family, missing file, untrained, wrong shapes) and a student config too
  big for the machine is refused before the teacher cache exists;
- identical runs: every file of the folder byte-identical; measured timings only in timings.jsonl.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from test_distill_train import _cli_args, make_tiny_setup
from typer.testing import CliRunner

from anatomy.cli import app


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    return make_tiny_setup(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def finished(tiny, tmp_path_factory) -> dict:
    """Two finished runs of different seeds (each a source of a 'foreign' state for the other)."""
    root = tmp_path_factory.mktemp("runs")
    cache = root / "cache"
    for name, seed in (("a", 0), ("b", 1)):
        result = _invoke(_cli_args(tiny, root / name, cache, 6, save_every=3, seed=seed))
        assert result.exit_code == 0, result.output
    return {"root": root, "cache": cache}


def _invoke(args: list[str]):
    import torch

    torch.set_num_threads(1)
    return CliRunner().invoke(app, args)


def _hashes(run: Path) -> dict[str, str]:
    return {
        str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run.rglob("*"))
        if p.is_file() and "teacher_cache" not in p.parts
    }


def _truncate(state: Path, other: Path) -> None:
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 3])


def _garbage(state: Path, other: Path) -> None:
    state.write_bytes(b"\x00garbage" * 100)


def _missing(state: Path, other: Path) -> None:
    state.unlink()


def _not_a_state(state: Path, other: Path) -> None:
    import torch

    torch.save({"hello": 1}, state)


def _foreign(state: Path, other: Path) -> None:
    shutil.copyfile(other, state)


def _past_the_end(state: Path, other: Path) -> None:
    import torch

    payload = torch.load(state, weights_only=False)
    payload["step"] = 10_000
    torch.save(payload, state)


DAMAGE = {
    "missing": (_missing, "missing, but the run saved checkpoints"),
    "truncated": (_truncate, "state.pt"),
    "garbage": (_garbage, "state.pt"),
    "not a state": (_not_a_state, "not a distill state"),
    "another run's": (_foreign, "belongs to another run"),
    "past the run's steps": (_past_the_end, "is not a step of this run"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_resume_state_is_refused_before_any_work_and_changes_nothing(
    tiny, finished, tmp_path, case
):
    damage, message = DAMAGE[case]
    run = tmp_path / "run"
    shutil.copytree(finished["root"] / "a", run)
    state = run / "checkpoints" / "state.pt"
    damage(state, finished["root"] / "b" / "checkpoints" / "state.pt")
    before = _hashes(run)
    fresh_cache = tmp_path / "fresh-cache"  # the resume may name another cache folder: none is computed
    result = _invoke([*_cli_args(tiny, run, fresh_cache, 6, save_every=3), "--resume"])
    assert result.exit_code == 1, result.output
    assert message in result.output and str(state) in result.output.replace("\n", "")
    assert "--restart" in result.output and "Traceback" not in result.output
    first = result.output.strip().splitlines()[0]
    assert first.startswith("error:") and message in first
    assert _hashes(run) == before  # nothing rewritten, nothing restarted
    assert not fresh_cache.exists()  # refused before the teacher cache


def test_restart_is_explicit_and_exclusive_with_resume(tiny, finished, tmp_path):
    run = tmp_path / "a"  # the folder's name labels the training figure
    shutil.copytree(finished["root"] / "a", run)
    (run / "checkpoints" / "state.pt").unlink()
    args = _cli_args(tiny, run, finished["cache"], 6, save_every=3)
    plain = _invoke(args)  # without a flag, the saved checkpoints protect the run
    assert plain.exit_code == 1 and "already holds a run" in plain.output and "--restart" in plain.output
    both = _invoke([*args, "--resume", "--restart"])
    assert both.exit_code == 2 and "--restart" in both.output
    again = _invoke([*args, "--restart"])
    assert again.exit_code == 0, again.output
    assert (run / "checkpoints" / "state.pt").exists()
    # the restarted run is the same run from step 0: byte-identical to the original (timings aside)
    original = _hashes(finished["root"] / "a")
    restarted = _hashes(run)
    for name in ("timings.jsonl",):
        original.pop(name), restarted.pop(name)
    assert restarted == original


def test_identical_runs_write_byte_identical_folders(tiny, finished, tmp_path):
    """Issue 23: train.log held texts/s; now every file is the same bytes, timings live in timings.jsonl."""
    run = tmp_path / "a"  # another folder of the same name (the name labels the training figure)
    result = _invoke(_cli_args(tiny, run, finished["cache"], 6, save_every=3, seed=0))
    assert result.exit_code == 0, result.output
    first, second = _hashes(finished["root"] / "a"), _hashes(run)
    assert set(first) == set(second)
    assert "train.log" in first and "figures/training.png" in first and "metrics.jsonl" in first
    differing = sorted(k for k in first if first[k] != second[k])
    assert set(differing) <= {"timings.jsonl"}, differing
    log = (run / "train.log").read_text()
    assert "texts/s" not in log and "step 6 loss" in log
    rows = [json.loads(line) for line in (run / "timings.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 6 and rows[-1]["texts_per_s"] > 0


# ------------------------------------------------------------------------------------ --init and the student


def _write_student(path: Path, layers: int, width: int, heads: int, trained: bool = True) -> str:
    import torch

    from anatomy.encoders.student import StudentConfig, build_student, save_student

    torch.manual_seed(0)
    cfg = StudentConfig("custom", layers=layers, width=width, heads=heads, output_dim=24, context_length=16)
    save_student(build_student(cfg), cfg, path)
    return f"student:{path}"


def _bad_inits(tmp_path: Path) -> dict[str, tuple[str, int, str]]:
    """case -> (--init value, exit code, text the message holds)."""
    wide = _write_student(tmp_path / "wide", 1, 64, 2)
    deep = _write_student(tmp_path / "deep", 2, 32, 2)
    return {
        "empty": ("", 2, "--init"),
        "blank": ("   ", 2, "--init"),
        "unknown family": ("nosuch:thing", 1, "unknown encoder family 'nosuch'"),
        "missing file": (f"student:{tmp_path / 'absent'}", 1, "absent"),
        "untrained": ("litetext-s0", 1, "untrained"),
        "wrong width": (wide, 1, "shapes differ"),
        "wrong depth": (deep, 1, "has no place in the student"),
    }


def test_every_bad_init_is_refused_before_the_teacher_cache(tiny, tmp_path):
    for case, (value, code, message) in _bad_inits(tmp_path).items():
        out, cache = tmp_path / f"run-{len(case)}-{case[:4]}", tmp_path / f"cache-{case}"
        result = _invoke([*_cli_args(tiny, out, cache, 2), "--init", value])
        assert result.exit_code == code, (case, result.output)
        assert message in result.output and "Traceback" not in result.output, (case, result.output)
        assert not cache.exists(), f"{case}: the teacher cache was computed before the refusal"
        assert not (out / "checkpoints").exists(), case


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"layers": 2, "width": 1_000_000, "heads": 4}, "GiB to train"),
        ({"layers": 400, "width": 4096, "heads": 4}, "GiB to train"),
        ({"layers": 100_000, "width": 8, "heads": 2}, "at most 512"),
        ({"layers": 1, "width": 30, "heads": 4}, "not divisible by heads"),
        ({"layers": 0, "width": 32, "heads": 2}, "positive integer"),
        ({"layers": 1, "width": 32, "heads": 2, "recipe": ["s0"]}, "unknown recipe"),
        ([1, 2, 3], "JSON object"),
    ],
)
def test_a_student_config_that_cannot_train_is_refused_before_any_allocation(tiny, tmp_path, config, message):
    student = tmp_path / "student.json"
    student.write_text(json.dumps(config))
    cache = tmp_path / "cache"
    args = _cli_args(tiny, tmp_path / "run", cache, 2)
    args[args.index("--student") + 1] = str(student)
    result = _invoke(args)
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not cache.exists()


def test_the_size_estimate_counts_exactly_what_the_student_holds():
    """The preflight count (meta device, no storage) equals a built student's parameter count, and the
    config-only bound used before it never exceeds it."""
    from anatomy.distill.preflight import TRAIN_BYTES_PER_PARAM, plan_student, rough_params
    from anatomy.encoders.student import StudentConfig, build_student

    for arch in ("s0", "s1"):
        cfg = StudentConfig(f"litetext-{arch}", context_length=16, output_dim=512)
        plan = plan_student(arch, 16, 49_408, 512, "cpu")
        assert plan.n_params == sum(p.numel() for p in build_student(cfg).state_dict().values())
        assert plan.train_bytes == TRAIN_BYTES_PER_PARAM * plan.n_params
    cfg = StudentConfig("custom", layers=3, width=64, heads=4, context_length=16, output_dim=24)
    exact = sum(p.numel() for p in build_student(cfg).state_dict().values())
    assert 0.9 * exact < rough_params(cfg) <= exact


def test_an_absurd_context_is_a_usage_error_before_any_build(tiny, tmp_path):
    args = _cli_args(tiny, tmp_path / "run", tmp_path / "cache", 2)
    result = _invoke([*args, "--context", str(10**20)])
    assert result.exit_code == 2 and "--context" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"output_dim": 99}, "output_dim 99"),
        ({"tokenizer": "minilm"}, "tokenizer 'minilm'"),
        ({"vocab_size": 100}, "vocab_size 100"),
    ],  # fmt: skip
)
def test_a_student_config_that_overrides_what_follows_the_teacher_is_one_line(
    tiny, tmp_path, override, named
):
    """The student learns the teacher's outputs with its tokenizer: a JSON config setting another output
    width, tokenizer or vocabulary size is refused by name (not a shape traceback in the first step)."""
    student = tmp_path / "student.json"
    student.write_text(json.dumps({"layers": 1, "width": 32, "heads": 2, **override}), encoding="utf-8")
    args = _cli_args({**tiny, "student": str(student)}, tmp_path / "run", tmp_path / "cache", 2)
    result = _invoke(args)
    assert result.exit_code == 1 and named in result.output and "Traceback" not in result.output, (
        result.output
    )
    assert not (tmp_path / "run" / "checkpoints").exists()


def _student_json(tiny, tmp_path, extra: dict) -> list[str]:
    student = tmp_path / "student.json"
    student.write_text(json.dumps({"layers": 1, "width": 32, "heads": 2, **extra}), encoding="utf-8")
    return _cli_args({**tiny, "student": str(student)}, tmp_path / "run", tmp_path / "cache", 1)


def test_a_student_config_context_length_other_than_context_is_a_usage_error(tiny, tmp_path):
    """Never silently dropped: the run would record 8 and train 16."""
    result = _invoke(_student_json(tiny, tmp_path, {"context_length": 8}))
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    flat = " ".join(result.output.replace("│", " ").split())
    assert "--context" in flat and "is 16" in flat and "context_length 8" in flat
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run" / "checkpoints").exists()


def test_a_vocab_key_in_the_student_config_is_refused_before_any_work(tiny, tmp_path):
    result = _invoke(_student_json(tiny, tmp_path, {"vocab": "voc"}))
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    first = result.output.strip().splitlines()[0]
    assert first.startswith("error:") and "vocab" in first and "--vocab DIR" in result.output
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run" / "checkpoints").exists()


def test_the_other_known_student_config_keys_are_honoured(tiny, tmp_path):
    """architecture, recipe, mlp_ratio and a context_length equal to --context reach the checkpoint."""
    extra = {"architecture": "custom", "recipe": "custom", "mlp_ratio": 2, "context_length": 16}
    result = _invoke(_student_json(tiny, tmp_path, extra))
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run" / "checkpoints" / "latest" / "config.json").read_text())
    assert saved["mlp_ratio"] == 2 and saved["context_length"] == 16 and saved["architecture"] == "custom"


def test_resume_accepts_the_same_files_by_another_path(tiny, tmp_path, monkeypatch):
    """--resume compares the corpus and student JSON by identity, not by how their paths are spelled."""
    run, cache = tmp_path / "run", tmp_path / "cache"
    assert _invoke(_cli_args(tiny, run, cache, 1)).exit_code == 0
    corpus, student = Path(tiny["corpus"]), Path(tiny["student"])
    monkeypatch.chdir(corpus.parent)
    other = {**tiny, "corpus": corpus.name, "student": f"../{corpus.parent.name}/{student.name}"}
    result = _invoke([*_cli_args(other, run, cache, 1), "--resume"])
    assert result.exit_code == 0 and "different settings" not in result.output, result.output
    result = _invoke([*_cli_args(other, run, cache, 1, w_cos=3.0), "--resume"])
    assert result.exit_code == 1  # a real change is still refused
