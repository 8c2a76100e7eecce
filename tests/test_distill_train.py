"""The distillation loop on a tiny teacher and student: it learns, resumes exactly, refuses what it should.

The teacher is itself a tiny random student saved to disk (`student:PATH`), so subprocess runs can name it
like any encoder, and everything runs on CPU in seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from anatomy.errors import AnatomyError

ROOT = Path(__file__).resolve().parent.parent

ADJECTIVES = ["red", "blue", "small", "large", "wooden", "striped", "old", "shiny"]
NOUNS = ["car", "dog", "cup", "chair", "boat", "lamp", "shoe", "kite", "bottle", "bench"]
PLACES = ["", "on the table", "left of the tree", "near a window"]


def make_tiny_setup(folder: Path) -> dict:
    """A 320-prompt corpus, a tiny random teacher (student:PATH, 24-d) and a tiny student JSON config."""
    import torch

    from anatomy.corpus import ingest
    from anatomy.encoders.student import StudentConfig, build_student, save_student

    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"a {a} {n} {p}".strip() for a in ADJECTIVES for n in NOUNS for p in PLACES]
    (folder / "prompts.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    corpus = folder / "corpus.parquet"
    ingest("text", [str(folder / "prompts.txt")], corpus)
    torch.manual_seed(123)
    cfg = StudentConfig("custom", layers=1, width=32, heads=2, output_dim=24, context_length=16)
    teacher = save_student(
        build_student(cfg), cfg, folder / "teacher", provenance={"note": "random test teacher"}
    )
    student = folder / "student.json"
    student.write_text(json.dumps({"layers": 1, "width": 32, "heads": 2}), encoding="utf-8")
    return {"corpus": str(corpus), "teacher": f"student:{teacher}", "student": str(student)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    return make_tiny_setup(tmp_path_factory.mktemp("tiny"))


def _config(tiny: dict, **overrides):
    from anatomy.distill.train import DistillConfig

    base = dict(
        teacher=tiny["teacher"],
        student=tiny["student"],
        corpus=tiny["corpus"],
        context=16,
        steps=30,
        batch_size=16,
        lr=0.1,
        eval_every=10,
        eval_size=32,
        seed=0,
        warmup_steps=3,
    )
    return DistillConfig(**{**base, **overrides})


def test_run_learns_and_writes_its_run_dir(tiny, tmp_path):
    import torch

    from anatomy.distill.train import distill
    from anatomy.encoders.registry import load

    torch.set_num_threads(1)
    result = distill(_config(tiny), tmp_path / "run", device="cpu")
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 10, 20, 30]
    assert set(rows[0]) == {"step", "eval_token_cosine", "eval_pooled_cosine", "eval_knn_overlap10"}
    assert rows[-1]["eval_token_cosine"] > rows[0]["eval_token_cosine"] + 0.2
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["steps"] == 30 and config["peak_lr"] == pytest.approx(0.1 * 16 / 512)
    assert config["student_arch"]["output_dim"] == 24 and config["n_eval"] == 32
    assert "step 30 loss" in (tmp_path / "run" / "train.log").read_text()
    # both checkpoints load as encoders; latest reproduces the held-out number the run reported
    latest = load(f"student:{tmp_path / 'run' / 'checkpoints' / 'latest'}", device="cpu")
    best = load(f"student:{tmp_path / 'run' / 'checkpoints' / 'best'}", device="cpu")
    assert latest.output_dim == 24 and best.trained
    assert result["eval"]["step"] == 30
    # the CLI refuses to overwrite the run, in one line and exit status 1
    from typer.testing import CliRunner

    from anatomy.cli import app

    cli = CliRunner().invoke(app, _cli_args(tiny, tmp_path / "run", tmp_path / "cache", 30))
    assert cli.exit_code == 1 and "already holds a run" in cli.output and "--resume" in cli.output


def _weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "checkpoints" / "latest" / "model.safetensors"))


def _cli(args: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "anatomy", *args], cwd=ROOT, env=env, **kwargs)


def _cli_args(tiny: dict, out: Path, cache: Path, steps: int, **extra) -> list[str]:
    args = [
        "distill",
        "--teacher",
        tiny["teacher"],
        "--student",
        tiny["student"],
        "--corpus",
        tiny["corpus"],
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        "--steps",
        str(steps),
        "--batch-size",
        "16",
        "--lr",
        "0.1",
        "--warmup-steps",
        "3",
        "--eval-every",
        "10",
        "--eval-size",
        "32",
        "--device",
        "cpu",
        "--quiet",
    ]
    for key, value in extra.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def test_sigkill_then_resume_ends_with_the_uninterrupted_weights(tiny, tmp_path):
    import torch

    from anatomy.distill.train import distill

    torch.set_num_threads(1)
    cache = tmp_path / "cache"
    steps = 40
    reference = tmp_path / "reference"
    distill(_config(tiny, steps=steps, save_every=10), reference, device="cpu", cache_dir=cache)

    killed = tmp_path / "killed"
    proc = _cli(_cli_args(tiny, killed, cache, steps, save_every=10), stderr=subprocess.PIPE)
    state = killed / "checkpoints" / "state.pt"
    deadline = time.monotonic() + 120
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    stopped_at = torch.load(state, weights_only=False)["step"]
    assert 0 < stopped_at < steps

    with pytest.raises(AnatomyError, match="already holds a run"):
        distill(_config(tiny, steps=steps, save_every=10), killed, device="cpu", cache_dir=cache)
    with pytest.raises(AnatomyError, match="different settings"):
        distill(
            _config(tiny, steps=steps, save_every=10, lr=0.2),
            killed,
            resume=True,
            device="cpu",
            cache_dir=cache,
        )

    resumed = _cli(
        _cli_args(tiny, killed, cache, steps, save_every=10) + ["--resume"], stderr=subprocess.PIPE
    )
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()
    a, b = _weights(reference), _weights(killed)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    rows_a = [json.loads(r) for r in (reference / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(r) for r in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows_b] == [r["step"] for r in rows_a] == [0, 10, 20, 30, 40]
    np.testing.assert_allclose(
        [r["eval_token_cosine"] for r in rows_b], [r["eval_token_cosine"] for r in rows_a], rtol=1e-5
    )
    assert f"resumed at step {stopped_at}" in (killed / "train.log").read_text()
    assert (killed / "figures" / "training.png").stat().st_size > 5000  # the CLI draws the held-out curve


def test_nan_loss_stops_naming_the_step(tiny, tmp_path):
    from anatomy.distill.train import distill

    with pytest.raises(AnatomyError, match=r"at step \d+") as info:
        distill(_config(tiny, lr=1e30, clip=0.0, warmup_steps=0), tmp_path / "run", device="cpu")
    assert "became" in info.value.message


def test_resume_without_a_run_and_bad_student_are_refused(tiny, tmp_path):
    from anatomy.distill.train import distill

    with pytest.raises(AnatomyError, match="nothing to resume"):
        distill(_config(tiny), tmp_path / "none", resume=True, device="cpu")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"layers": 2}))
    with pytest.raises(AnatomyError, match="lacks width, heads"):
        distill(_config(tiny, student=str(bad)), tmp_path / "run2", device="cpu")


def test_torchrun_two_gloo_processes_match_one_process(tiny, tmp_path):
    import torch

    from anatomy.distill.train import distill

    torch.set_num_threads(1)
    cache = tmp_path / "cache"
    single = tmp_path / "single"
    distill(_config(tiny, steps=6, eval_every=3), single, device="cpu", cache_dir=cache)
    double = tmp_path / "double"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "anatomy",
        *_cli_args(tiny, double, cache, 6, eval_every=3),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in (double / "train.log").read_text()
    a, b = _weights(single), _weights(double)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)


def test_recipe_defaults_schedule_and_decay_groups():
    import torch

    from anatomy.distill.train import DistillConfig, lr_at, param_groups, resolve

    meta = {"tokenizer": "clip", "vocab_size": 49408, "dim": 256}
    s0 = resolve(DistillConfig(student="s0"), n_train=1280, world=1, cache_meta=meta)
    assert (s0["w_cos"], s0["w_cons"], s0["lr"], s0["clip"], s0["batch_size"]) == (2.0, 0.1, 5e-3, 1.0, 128)
    assert s0["steps_per_epoch"] == 10 and s0["steps"] == 100 * 10 and s0["warmup_steps"] == 10 * 10
    assert s0["peak_lr"] == pytest.approx(5e-3 * 128 / 512)
    assert s0["student_arch"] == {
        "architecture": "litetext-s0",
        "vocab_size": 49408,
        "output_dim": 256,
        "tokenizer": "clip",
    }
    big = resolve(DistillConfig(student="l", batch_size=256), n_train=2560, world=2, cache_meta=meta)
    assert (big["w_cos"], big["w_cons"], big["lr"], big["clip"]) == (1.0, 0.05, 1e-3, 2.0)
    assert (
        big["steps"] == 60 * 10
        and big["warmup_steps"] == 5 * 10
        and big["peak_lr"] == pytest.approx(1e-3 / 2)
    )
    s1 = resolve(
        DistillConfig(student="s1", teacher="minilm"),
        1280,
        1,
        {"tokenizer": "hf:x", "vocab_size": 30522, "dim": 384},
    )
    assert (s1["w_cos"], s1["w_cons"], s1["lr"]) == (1.5, 0.1, 3e-3)
    assert s1["student_arch"]["tokenizer"] == "minilm" and s1["student_arch"]["output_dim"] == 384
    with pytest.raises(AnatomyError, match="not divisible"):
        resolve(DistillConfig(student="s0", batch_size=10), 1280, 3, meta)

    # linear warm-up to the peak, then a per-step cosine to zero
    assert lr_at(0, 1.0, 10, 110) == pytest.approx(0.1)
    assert lr_at(9, 1.0, 10, 110) == pytest.approx(1.0)
    assert lr_at(60, 1.0, 10, 110) == pytest.approx(0.5)
    assert lr_at(110, 1.0, 10, 110) == pytest.approx(0.0, abs=1e-12)

    module = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4), torch.nn.Embedding(5, 4))
    decay, no_decay = param_groups(module, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(module[0].weight), id(module[2].weight)}
    assert {id(p) for p in no_decay["params"]} == {
        id(module[0].bias),
        id(module[1].weight),
        id(module[1].bias),
    }
