"""Distill and ablate under hostile options and interrupted writers: every numeric option has a range checked
before any work (usage error, exit 2, nothing written), the same run writes the same bytes, a run that never
reached its first checkpoint blocks nothing, and stale temporaries or a corrupt state.pt are handled clearly.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_distill_train import _cli_args, _config, make_tiny_setup
from typer.testing import CliRunner

from anatomy.cli import app
from anatomy.errors import AnatomyError, OptionError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    return make_tiny_setup(tmp_path_factory.mktemp("tiny"))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


BAD_OPTIONS = [
    ("--steps", "0"),
    ("--steps", "-5"),
    ("--batch-size", "0"),
    ("--eval-every", "0"),
    ("--save-every", "0"),
    ("--context", "0"),
    ("--context", "1"),
    ("--lr", "0"),
    ("--lr", "-0.1"),
    ("--lr", "nan"),
    ("--lr", "inf"),
    ("--w-cos", "-1"),
    ("--clip", "nan"),
    ("--seed", "-1"),
    ("--limit", "1"),
    ("--dtype", "fp8"),
    ("--device", "nonsense"),
    ("--device", "cuda:99"),
]


@pytest.mark.parametrize(("option", "value"), BAD_OPTIONS)
def test_distill_refuses_out_of_range_options_before_any_work(tiny, tmp_path, option, value):
    out = tmp_path / "run"
    args = [a for a in _cli_args(tiny, out, tmp_path / "cache", 4) if a != "--quiet"]
    args = _replace(args, option, value)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, (option, value, result.output)
    assert option in result.output and "Traceback" not in result.output
    assert not out.exists() and not (tmp_path / "cache").exists()  # nothing written: a rerun is unblocked


def _replace(args: list[str], option: str, value: str) -> list[str]:
    if option in args:
        args = list(args)
        args[args.index(option) + 1] = value
        return args
    return [*args, option, value]


def test_cuda_without_a_gpu_is_a_usage_error(tiny, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: --device cuda is valid here")
    result = CliRunner().invoke(
        app, _replace(_cli_args(tiny, tmp_path / "run", tmp_path / "c", 4), "--device", "cuda")
    )
    assert result.exit_code == 2 and "CUDA is not available" in result.output
    assert not (tmp_path / "run").exists()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    key=st.sampled_from(
        ["steps", "batch_size", "eval_every", "save_every", "eval_size", "epochs", "log_every"]
    ),
    value=st.integers(max_value=0),
)
def test_integer_options_below_one_are_refused_by_the_config(key, value):
    from anatomy.distill.train import DistillConfig

    with pytest.raises(OptionError) as info:
        DistillConfig(**{key: value})
    assert info.value.option == "--" + key.replace("_", "-") and ">= 1" in info.value.message


@settings(max_examples=40, deadline=None)
@given(value=st.one_of(st.floats(max_value=0.0), st.just(math.inf), st.just(math.nan)))
def test_learning_rate_must_be_positive_and_finite(value):
    from anatomy.distill.train import DistillConfig

    with pytest.raises(OptionError, match=r"--lr: must be a finite number > 0"):
        DistillConfig(lr=value)


@pytest.fixture(scope="module")
def sam3_teacher(tmp_path_factory) -> str:
    """A small SAM3-layout teacher: causal, with a hard limit of 32 learned positions."""
    import torch

    from anatomy.encoders.checkpoints import save_state_dict
    from anatomy.encoders.sam3 import Sam3Config, Sam3Text, official_state_dict

    torch.manual_seed(0)
    module = Sam3Text(Sam3Config(width=64, layers=1, mlp_width=128, output_dim=24))
    path = tmp_path_factory.mktemp("sam3") / "sam3.pt"
    save_state_dict(official_state_dict(module), path)
    return f"sam3:{path}"


def test_context_beyond_the_teacher_is_a_usage_error_with_its_range_and_blocks_nothing(
    tiny, sam3_teacher, tmp_path
):
    out = tmp_path / "run"
    args = _replace(_cli_args(tiny, out, tmp_path / "cache", 4), "--teacher", sam3_teacher)
    result = CliRunner().invoke(app, _replace(args, "--context", "40"))  # the teacher has 32 positions
    assert result.exit_code == 2, result.output
    assert "--context" in result.output and "[2, 32]" in result.output
    again = CliRunner().invoke(app, _replace(args, "--context", "8"))  # the corrected rerun is not blocked
    assert again.exit_code == 0, again.output


def test_ablate_budget_and_device_are_checked_first(tiny, tmp_path):
    base = ["ablate", "--teacher", tiny["teacher"], "--student", tiny["student"], "--corpus", tiny["corpus"],
            "--out", str(tmp_path / "ab"), "--quiet"]  # fmt: skip
    for option, value in [("--budget", "0"), ("--batch-size", "0"), ("--lr", "nan"), ("--device", "tpu")]:
        result = CliRunner().invoke(app, [*base, option, value])
        assert result.exit_code == 2 and option in result.output, (option, result.output)
        assert not (tmp_path / "ab").exists()


def test_embed_device_and_dtype_are_usage_errors(tiny, tmp_path):
    for option, value in [
        ("--device", "gpu0"),
        ("--dtype", "fp16"),
        ("--batch-size", "0"),
        ("--context", "1"),
    ]:
        args = [
            "embed",
            "--corpus",
            tiny["corpus"],
            "--out",
            str(tmp_path / "emb"),
            "-e",
            tiny["teacher"],
            option,
            value,
        ]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and option in result.output, (option, result.output)
        assert not (tmp_path / "emb").exists()


def test_embed_context_beyond_the_encoder_names_its_range(sam3_teacher, tiny, tmp_path):
    args = [
        "embed",
        "--corpus",
        tiny["corpus"],
        "--out",
        str(tmp_path / "emb"),
        "-e",
        sam3_teacher,
        "--context",
        "33",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "--context" in result.output and "[2, 32]" in result.output, (
        result.output
    )


def test_identical_runs_write_identical_checkpoint_bytes(tiny, tmp_path):
    import torch

    from anatomy.distill.train import distill

    torch.set_num_threads(1)
    cfg = _config(tiny, steps=6, eval_every=3)
    distill(cfg, tmp_path / "a", device="cpu", cache_dir=tmp_path / "cache")
    distill(cfg, tmp_path / "b", device="cpu", cache_dir=tmp_path / "cache")
    for name in ("state.pt", "latest/model.safetensors", "best/model.safetensors"):
        a, b = tmp_path / "a" / "checkpoints" / name, tmp_path / "b" / "checkpoints" / name
        assert _sha(a) == _sha(b), name
    import zipfile

    assert {
        n.split("/")[0] for n in zipfile.ZipFile(tmp_path / "a" / "checkpoints" / "state.pt").namelist()
    } == {"archive"}


def test_a_run_stopped_before_its_first_checkpoint_blocks_neither_rerun_nor_resume(tiny, tmp_path):
    from anatomy.distill.train import distill

    run = tmp_path / "run"
    run.mkdir()
    # what a run killed after writing its config (and before any checkpoint) leaves behind
    (run / "config.json").write_text(json.dumps({"steps": 999, "lr": 5.0}))
    (run / "metrics.jsonl").write_text('{"step": 0, "eval_token_cosine": 0.1}\n')
    result = distill(_config(tiny, steps=4, eval_every=2), run, device="cpu", cache_dir=tmp_path / "cache")
    assert result["config"]["steps"] == 4
    assert [json.loads(r)["step"] for r in (run / "metrics.jsonl").read_text().splitlines()] == [0, 2, 4]
    # once a checkpoint exists, the run is protected, and --resume continues it
    with pytest.raises(AnatomyError, match="already holds a run"):
        distill(_config(tiny, steps=4, eval_every=2), run, device="cpu", cache_dir=tmp_path / "cache")
    again = distill(
        _config(tiny, steps=4, eval_every=2), run, resume=True, device="cpu", cache_dir=tmp_path / "cache"
    )
    assert again["config"]["steps"] == 4


def test_stale_temporaries_are_cleaned_and_a_corrupt_state_is_named(tiny, tmp_path):
    from anatomy.distill.train import distill

    cfg = _config(tiny, steps=4, eval_every=2, save_every=2)
    run, cache = tmp_path / "run", tmp_path / "cache"
    distill(cfg, run, device="cpu", cache_dir=cache, stop_after=2)  # "killed" after its first checkpoint
    ckpt = run / "checkpoints"
    stale = [
        ckpt / "latest" / ".model.k3j2x9.safetensors",
        ckpt / "best" / ".config.json.a1b2.tmp",
        ckpt / ".state.q8w7e6.pt",
        run / ".metrics.zz11.jsonl",
    ]
    for path in stale:
        path.write_bytes(b"half-written")
    keep = ckpt / "latest" / "notes.txt"
    keep.write_text("mine")
    distill(cfg, run, resume=True, device="cpu", cache_dir=cache)
    assert not any(p.exists() for p in stale) and keep.exists()

    state = ckpt / "state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])  # truncated by a full disk or a kill
    with pytest.raises(AnatomyError) as info:
        distill(cfg, run, resume=True, device="cpu", cache_dir=cache)
    assert str(state) in info.value.message and "truncated or corrupt" in info.value.message
    assert "\n" not in info.value.message
