"""The CLI's promises under hostile input (issue 11): user text printed as written, results that do not hang on
printing, option ranges as usage errors (exit 2) before any work, degenerate data as one line (exit 1)."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from anatomy.analysis import ANALYSES
from anatomy.cli import app
from tests.test_fuzz_cli import BASE, COMMANDS

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def flat(text: str) -> str:
    """A usage error's text without rich's panel and line wrapping."""
    return " ".join(re.sub("[│╭╮╰╯─]", " ", text).split())


def one_clear_line(result) -> str:
    """The error line (and at most a hint line), with no traceback."""
    assert (
        "Traceback" not in result.output
        and result.exception is None
        or isinstance(result.exception, SystemExit)
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error: "), result.output
    assert len(lines) <= 2 and all(line.startswith("  hint: ") for line in lines[1:]), result.stderr
    return lines[0]


@pytest.fixture
def corpus(tmp_path) -> Path:
    (tmp_path / "p.txt").write_text("a photo of a cat\na dog\nthe red car\n", encoding="utf-8")
    out = tmp_path / "c.parquet"
    assert invoke("ingest", "text", tmp_path / "p.txt", "--out", out).exit_code == 0
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------------- class 2: escaping


def test_markup_in_prompts_and_paths_is_printed_verbatim(tmp_path):
    folder = tmp_path / "run [" / "] x [bold]"  # the path reads ".../run [/] x [bold]/..."
    folder.mkdir(parents=True)
    data = folder / "[draft].jsonl"
    data.write_text('{"text": "bad [/] line"}\n{"text": "[draft]"}\nnot json [/] here\n', encoding="utf-8")
    out = folder / "c [draft].parquet"
    result = invoke("ingest", "text", data, "--out", out)
    assert result.exit_code == 0, result.output
    assert f"{data}: read 3, kept 2" in result.stdout  # the path with its brackets
    assert (
        "(e.g. [draft].jsonl:3, column 1: not json [/] here)" in result.stderr
    )  # a skipped line, as written
    assert f"{out}: 2 rows, 2 distinct prompts" in result.stdout
    shown = invoke("corpus", out)
    assert shown.exit_code == 0 and "[draft]" in shown.stdout and "c [draft].parquet" in shown.stdout
    assert invoke("corpus", out, "--json").exit_code == 0
    tokens = invoke("tokens", "--corpus", out, "--out", folder / "t [/]", "--context", "8")
    assert (
        tokens.exit_code == 0 and f"written: {folder / 't [/]' / 'results' / 'tokens.json'}" in tokens.stdout
    )
    assert "MarkupError" not in tokens.output + shown.output + result.output


def test_strict_load_error_lists_the_key_names(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    (tmp_path / "w [").mkdir()
    ckpt = tmp_path / "w [" / "] bad.safetensors"
    pos = "encoder.positional_embedding.pos_embed.pos_embed"
    save_file({pos: torch.zeros(1, 1, 16, 512), "encoder.extra[draft]": torch.zeros(1)}, str(ckpt))
    result = invoke("positions", "--out", tmp_path / "o", "--encoder", f"litetext-s0:{ckpt}")
    assert result.exit_code == 1
    line = one_clear_line(result)
    assert f"{ckpt}: checkpoint does not match" in line
    assert (
        "1 unexpected [encoder.extra[draft]]" in line and "missing [encoder.embedding_layer.weight, " in line
    )
    assert not (tmp_path / "o").exists()


def _ingest_subprocess(tmp_path: Path, **popen) -> subprocess.CompletedProcess:
    (tmp_path / "p.txt").write_text("a cat\n[draft] a dog\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "anatomy", "ingest", "text", "p.txt", "--out", "c.parquet"]
    return subprocess.run(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True, **popen, check=False)


def test_a_reader_that_went_away_does_not_change_the_result(tmp_path):
    from anatomy.corpus import load_corpus

    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to stdout now fails with EPIPE (a `| head` that already exited)
    try:
        done = _ingest_subprocess(tmp_path, stdout=write_end)
    finally:
        os.close(write_end)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Broken pipe" not in done.stderr
    assert sorted(load_corpus(tmp_path / "c.parquet")["prompt"]) == ["[draft] a dog", "a cat"]


def test_a_closed_stdout_does_not_change_the_result(tmp_path):
    from anatomy.corpus import load_corpus

    done = _ingest_subprocess(tmp_path, stdout=subprocess.DEVNULL, preexec_fn=lambda: os.close(1))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert len(load_corpus(tmp_path / "c.parquet")) == 2


def test_ingest_prints_long_prompt_warnings_on_stderr(tmp_path):
    from anatomy.corpus.corpus import LONG_PROMPT_CHARS

    (tmp_path / "p.txt").write_text("a cat\n" + "x" * (LONG_PROMPT_CHARS + 1) + "\n", encoding="utf-8")
    for extra in ([], ["--json"], ["--quiet"]):
        out = tmp_path / f"c{len(extra)}{extra[:1]}.parquet"
        result = invoke("ingest", "text", tmp_path / "p.txt", "--out", out, *extra)
        assert result.exit_code == 0
        assert "warning: " in result.stderr and "over 100,000 characters" in result.stderr
        assert "over 100,000" not in result.stdout or extra == ["--json"]  # JSON carries it in the report


def test_disk_errors_after_the_work_are_one_line(tmp_path, corpus, monkeypatch):
    import anatomy.corpus.corpus

    def full_disk(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(corpus))

    before = _files(tmp_path)
    monkeypatch.setattr(anatomy.corpus.corpus, "_write_corpus", full_disk)
    (tmp_path / "q.txt").write_text("a new prompt\n", encoding="utf-8")
    before = _files(tmp_path)
    result = invoke("ingest", "text", tmp_path / "q.txt", "--out", corpus)
    assert result.exit_code == 1
    assert one_clear_line(result) == f"error: {corpus}: No space left on device"
    assert _files(tmp_path) == before


# ------------------------------------------------------------------- class 6: option ranges (exit 2)


def _ranged_options() -> list[tuple[str, str, dict]]:
    """(command, flag, metadata) of every numeric Params field with a range, over the registered analyses."""
    import typing

    found = []
    for analysis in ANALYSES.values():
        hints = typing.get_type_hints(analysis.Params)
        for f in dataclasses.fields(analysis.Params):
            meta = f.metadata
            tp = hints[f.name]
            item = typing.get_args(tp)[0] if typing.get_origin(tp) is tuple else tp
            if item in (int, float) and (meta.get("min") is not None or meta.get("max") is not None):
                flag = "--" + (meta.get("flag") or f.name.replace("_", "-"))
                found.append((analysis.name, flag, {**meta, "type": item}))
    return found


RANGED = _ranged_options()


def _outside(meta: dict) -> st.SearchStrategy:
    lo, hi, is_int = meta.get("min"), meta.get("max"), meta["type"] is int
    options = []
    if lo is not None:
        below = lo if meta.get("min_open") else lo - (1 if is_int else 1e-9 * max(1.0, abs(lo)))
        options.append(
            st.integers(max_value=int(np.floor(below)))
            if is_int
            else st.floats(max_value=below, allow_nan=False)
        )
    if hi is not None:
        options.append(
            st.integers(min_value=int(hi) + 1) if is_int else st.floats(min_value=hi, exclude_min=True)
        )
    if not is_int:
        options.append(st.sampled_from([float("nan"), float("inf"), float("-inf")]))
    return st.one_of(options)


def test_every_analysis_has_ranged_options():
    assert {"tokens", "dims", "robustness", "agreement", "vocab"} <= {c for c, _, _ in RANGED}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A corpus and a point cloud the analysis commands read (never written by them)."""
    ws = tmp_path_factory.mktemp("inputs")
    (ws / "prompts.txt").write_text("a cat\na dog\nthe red car\n", encoding="utf-8")
    assert invoke("ingest", "text", ws / "prompts.txt", "--out", ws / "corpus.parquet").exit_code == 0
    np.save(ws / "points.npy", np.random.default_rng(0).normal(size=(30, 4)))
    return ws


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_analysis_options_outside_their_range_are_usage_errors(inputs, tmp_path_factory, data):
    command, flag, meta = data.draw(st.sampled_from(RANGED), label="option")
    value = data.draw(_outside(meta), label="value")
    out = tmp_path_factory.mktemp("ranges") / "out"
    before = _files(inputs)
    argv = [a.replace("{ws}/out", str(out)).replace("{ws}", str(inputs)) for a in BASE[command]]
    if meta["type"] is int:
        text = str(value)
    else:
        text = repr(value) if np.isfinite(value) else str(value)
    result = invoke(command, *argv, flag, text)
    assert result.exit_code == 2, (command, flag, text, result.output)
    assert flag in result.stderr and "Traceback" not in result.output
    assert not out.exists() and _files(inputs) == before  # nothing written


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    option=st.sampled_from(["--seed", "--sample"]),
    value=st.one_of(
        st.integers(max_value=-1), st.integers(min_value=2**32), st.sampled_from(["nan", "inf", "1.5"])
    ),
)
def test_audit_options_outside_their_range_are_usage_errors(tmp_path_factory, option, value):
    if option == "--sample" and isinstance(value, int) and value >= 2**32:
        value = 10  # --sample has no upper bound on the command: test its lower one
    ws = tmp_path_factory.mktemp("audit")
    result = invoke("audit", "builtin:imagenet-prompts", "--out", ws / "aud", option, str(value))
    assert result.exit_code == 2, result.output
    assert option in result.stderr
    assert not (ws / "aud").exists()


def test_audit_unknown_analysis_and_source_are_usage_errors(tmp_path):
    result = invoke("audit", "--out", tmp_path / "aud", "--analysis", "nope")
    assert result.exit_code == 2 and "unknown analysis: nope" in result.stderr
    result = invoke("audit", "--out", tmp_path / "aud", "--source", "bogus")
    assert result.exit_code == 2 and "bogus" in result.stderr
    assert not (tmp_path / "aud").exists()


# ------------------------------------------------------------------------ class 7: degenerate data (exit 1)

rng = np.random.default_rng(0)
POINTS = rng.normal(size=(20, 3))


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (np.zeros((0, 4)), "only 0 distinct point(s)"),
        (POINTS[:1], "only 1 distinct point(s)"),
        (POINTS[:2], "only 2 distinct point(s)"),
        (np.ones((30, 4)), "only 1 distinct point(s)"),
        (np.zeros((5, 0)), "the points have no coordinates"),
        (np.where(np.arange(20)[:, None] == 4, np.nan, POINTS), "1 row(s) hold NaN or inf (first: row 4)"),
        (np.where(np.arange(20)[:, None] == 2, np.inf, POINTS), "(first: row 2)"),
        (np.array([["a", "b"], ["c", "d"]]), "expected numbers"),
        (POINTS.astype(np.complex64) * 1j, "complex values"),
        (b"just some text\n", "not a NumPy .npy file"),
        (b"", "not a NumPy .npy file"),
    ],
)
def test_dims_on_degenerate_points_is_one_line(tmp_path, content, phrase):
    (tmp_path / "p [").mkdir()
    path = tmp_path / "p [" / "] points.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content)
    result = invoke("dims", "--embeddings", path, "--out", tmp_path / "o", "--n-boot", "0")
    assert result.exit_code == 1, result.output
    line = one_clear_line(result)
    assert line.startswith(f"error: {path}: ") and phrase in line
    assert not (tmp_path / "o").exists()


@pytest.fixture
def audit_dir(tmp_path, corpus) -> Path:
    out = tmp_path / "done"
    assert invoke("tokens", "--corpus", corpus, "--out", out, "--context", "8", "--quiet").exit_code == 0
    assert invoke("report", out).exit_code == 0
    return out


@pytest.mark.parametrize(
    "record",
    [b"[1, 2]", b'"text"', b"null", b"{broken", b"\xff\xfe\x00garbage", b'{"stages": []}',
     b'{"stages": {"encoders": 5}}', b'{"stages": {"encoders": [{"spec": "x"}]}}',
     b'{"stages": {"corpus_errors": {"tokens": "boom"}}}', b'{"stages": {}, "config": [1]}'],
)  # fmt: skip
def test_report_on_a_bad_audit_record_is_one_line(audit_dir, record):
    (audit_dir / "results" / "audit.json").write_bytes(record)
    before = _files(audit_dir)
    result = invoke("report", audit_dir)
    assert result.exit_code == 1
    assert "audit.json" in one_clear_line(result)
    assert _files(audit_dir) == before


def test_report_on_an_empty_or_missing_folder_is_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke("report", empty)
    assert result.exit_code == 1 and "nothing to report" in one_clear_line(result)
    assert list(empty.iterdir()) == []
    result = invoke("report", tmp_path / "missing")
    assert result.exit_code == 1 and "not a directory" in one_clear_line(result)
    (tmp_path / "file").write_text("x")
    assert invoke("report", tmp_path / "file").exit_code == 1


def _out_commands() -> list[str]:
    return sorted(name for name, cmd in COMMANDS.items() if any("--out" in p.opts for p in cmd.params))


@pytest.mark.parametrize("name", _out_commands())
def test_out_pointing_at_an_existing_file(name, tmp_path, monkeypatch):
    """Every command with --out, given a file where it writes: one clear line, exit 1 or 2, the file kept."""
    import anatomy.datasets.fetch

    monkeypatch.setattr(anatomy.datasets.fetch, "RETRIES", 0)
    monkeypatch.chdir(tmp_path)
    ws = tmp_path
    (ws / "prompts.txt").write_text("a cat\na dog\nthe car\n", encoding="utf-8")
    assert invoke("ingest", "text", ws / "prompts.txt", "--out", ws / "corpus.parquet").exit_code == 0
    np.save(ws / "points.npy", rng.normal(size=(30, 4)))
    (ws / "adir").mkdir()
    (ws / "raw").mkdir()
    target = ws / "existing.out"
    target.write_text("keep me\n", encoding="utf-8")
    before = _files(ws)
    argv = [a.replace("{ws}", str(ws)) for a in BASE[name]]
    i = argv.index("--out") if "--out" in argv else None
    argv = (
        [*argv[:i], "--out", str(target), *argv[i + 2 :]] if i is not None else [*argv, "--out", str(target)]
    )
    result = invoke(*name.split(), *argv)
    assert result.exit_code in (1, 2), result.output
    assert "Traceback" not in result.output
    if name == "ingest":  # --out names the corpus file: a file that is not a corpus is refused, named
        assert "existing.out" in result.stderr
    elif name not in ("data ingest", "export"):  # a file --out, given with inputs that fail first
        assert "exists and is not a directory" in flat(result.stderr), result.stderr  # the box may wrap
        assert result.exit_code == 2  # found before any work (before an encoder is loaded)
    assert _files(ws) == before


# ------------------------------------------------------------------------------- class 9: exit codes


@pytest.mark.parametrize(
    "args",
    [
        ["ingest", "bogus", "x.txt", "--out", "c.parquet"],  # unknown source
        ["ingest", "text", "x.txt"],  # missing required option
        ["positions", "--out", "o", "--rows", "bogus"],  # invalid choice
        ["export", "run", "--format", "bogus", "--out", "s.pt"],  # unknown export format
        ["export", "run", "--format", "litetext", "--out", "s.pt", "--checkpoint", "oldest"],
        ["distill", "--corpus", "c.parquet", "--out", "r", "--dtype", "fp8"],
        ["data", "fetch", "no-such-dataset", "--out", "raw"],
        ["tokens", "--corpus", "c.parquet"],  # missing --out
        ["analyses", "--scope", "bogus"],
        ["embed", "--corpus", "c.parquet", "--dtype", "int3"],
    ],
)
def test_usage_errors_exit_2(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.parquet").write_bytes(b"")
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.parquet"]


def test_data_errors_exit_1(tmp_path, corpus):
    assert invoke("corpus", tmp_path / "missing.parquet").exit_code == 1
    (tmp_path / "garbage.parquet").write_bytes(b"PAR1 not really")
    assert invoke("corpus", tmp_path / "garbage.parquet").exit_code == 1
    assert invoke("export", tmp_path, "--format", "litetext", "--out", tmp_path / "s.pt").exit_code == 1
    # a format the CLI accepts but this build may not write yet: a clear data-side error, not a traceback
    result = invoke("export", tmp_path, "--format", "onnx", "--out", tmp_path / "s.onnx")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert json.loads(invoke("corpus", corpus, "--json").stdout)["distinct_prompts"] == 3


def test_sigterm_ends_a_command_like_ctrl_c(tmp_path):
    """SIGTERM (kill, timeout) raises where the command stands, so cleanups run (a spill folder, a lock), and
    the command exits 143 with one line even when a library turned the interrupt into its own error."""
    import signal
    import threading

    import duckdb
    import typer

    from anatomy.cli.common import guarded

    left = tmp_path / "spill"

    def long_query():
        left.mkdir()
        try:
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
            duckdb.connect().execute("SELECT count(*) FROM range(10000000000) a")  # interrupted
        finally:
            left.rmdir()

    with pytest.raises(typer.Exit) as stopped:
        guarded(long_query)()
    assert stopped.value.exit_code == 143 and not left.exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


def test_options_that_cannot_hold_together_are_usage_errors(tmp_path):
    """A rule across values (most repeats below one round's) and a name no analysis has are refused, not
    silently ignored or answered with an empty list."""
    few = invoke(
        "cost-table", "-e", "minilm", "--repeats", "2", "--max-repeats", "1", "--out", tmp_path / "o"
    )
    assert few.exit_code == 2 and "--max-repeats" in few.output and not (tmp_path / "o").exists()
    unknown = invoke("analyses", "--param", "nonexist")
    assert unknown.exit_code == 2 and "no analysis has a parameter 'nonexist'" in " ".join(
        unknown.output.split()
    )
    assert invoke("analyses", "--param", "n_boot", "--names").output.split() == ["dims", "agreement"]


def test_a_missing_corpus_is_a_data_error_and_pair_analyses_need_their_pair(tmp_path):
    """A missing file is exit 1 with one line naming it (not a usage box), whatever command reads it, and no
    output folder is left; an analysis asked for by name that needs --teacher/--student is exit 2, not skipped."""
    for argv in (["tokens", "-c", tmp_path / "none.parquet", "--out", tmp_path / "a"],
                 ["vocab", "-c", tmp_path / "none.parquet", "--out", tmp_path / "b"],
                 ["dims", "--embeddings", tmp_path / "none.npy", "--out", tmp_path / "c"]):  # fmt: skip
        result = invoke(*argv)
        assert result.exit_code == 1 and result.output.startswith("error:") and "none." in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    (tmp_path / "p.txt").write_text("a dog\n")
    pair = invoke("audit", tmp_path / "p.txt", "-a", "agreement", "--out", tmp_path / "au")
    assert pair.exit_code == 2 and "--teacher" in pair.output and not (tmp_path / "au").exists()
    assert "-c" in invoke("distill", "--help").output  # every command that reads a corpus takes -c
