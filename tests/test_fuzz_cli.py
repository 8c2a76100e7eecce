"""Every subcommand on hostile inputs: exit 0, 1 or 2, never a traceback, nothing pre-existing changed unless
the command succeeded.

The commands are enumerated from the typer app itself (the `data` group and the generated analysis commands
included), so a new command is fuzzed without touching this file. Each command starts from a cheap base
invocation (encoder specs that fail fast: a missing sam3 checkpoint; a loopback URL nothing listens on); then
each of its options and arguments in turn is given each hostile value. Every case runs in a fresh copy of a
small workspace (a corpus, a point cloud, an audit folder, a file where a folder is expected, ...).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import typer.main
from typer.testing import CliRunner

from anatomy.cli import app

MISSING_ENCODER = "sam3:missing-checkpoint.pt"  # fails at load, before any model is built

# Hostile values; "{ws}" is the case's workspace.
HOSTILE = {
    "empty file": "{ws}/empty.txt",
    "binary garbage": "{ws}/garbage.bin",
    "garbage named .parquet": "{ws}/garbage.parquet",
    "text named .npy": "{ws}/text.npy",
    "directory": "{ws}/adir",
    "nonexistent path": "{ws}/nope/missing.parquet",
    "existing file": "{ws}/existing.out",
    "huge number": "100000000000000000000000000000",
    "negative": "-5",
    "zero": "0",
    "nan": "nan",
    "inf": "inf",
    "markup text": "[/] [draft] [bold]ünï☃ ",
    "empty string": "",
}

# The cheap base invocation of each command (paths relative to the workspace).
BASE = {
    "ingest": ["text", "{ws}/prompts.txt", "--out", "{ws}/new.parquet"],
    "corpus": ["{ws}/corpus.parquet"],
    "encoders": ["--context", "16", "--json"],
    "embed": ["--corpus", "{ws}/corpus.parquet", "--encoder", MISSING_ENCODER, "--quiet"],
    "analyses": ["--names"],
    "tokens": ["--out", "{ws}/out", "--corpus", "{ws}/corpus.parquet", "--context", "8", "--quiet"],
    "vocab": ["--out", "{ws}/out", "--corpus", "{ws}/corpus.parquet", "--quiet"],
    "positions": ["--out", "{ws}/out", "--encoder", MISSING_ENCODER, "--quiet"],
    "spectrum": ["--out", "{ws}/out", "--encoder", MISSING_ENCODER, "--corpus", "{ws}/corpus.parquet"],
    "dims": ["--out", "{ws}/out", "--embeddings", "{ws}/points.npy", "--n-boot", "2", "--quiet"],
    "robustness": ["--out", "{ws}/out", "--encoder", MISSING_ENCODER, "--corpus", "{ws}/corpus.parquet"],
    "agreement": ["--out", "{ws}/out", "--teacher", MISSING_ENCODER, "--student", MISSING_ENCODER,
                  "--corpus", "{ws}/corpus.parquet"],
    "distill": ["--corpus", "{ws}/corpus.parquet", "--out", "{ws}/run", "--teacher", MISSING_ENCODER,
                "--quiet"],
    "export": ["{ws}/adir", "--format", "litetext", "--out", "{ws}/student.pt"],
    "ablate": ["--corpus", "{ws}/corpus.parquet", "--out", "{ws}/abl", "--teacher", MISSING_ENCODER,
               "--quiet"],
    "cost": ["-e", MISSING_ENCODER, "--out", "{ws}/cost", "--quiet"],
    "audit": ["{ws}/corpus.parquet", "--out", "{ws}/aud", "--analysis", "tokens", "--quiet"],
    "specialise": ["{ws}/corpus.parquet", "--teacher", MISSING_ENCODER, "--out", "{ws}/spec", "--quiet"],
    "report": ["{ws}/done"],
    "data fetch": ["lvis-v1-train", "--out", "{ws}/raw", "--base-url", "http://127.0.0.1:9", "--quiet"],
    "data list": ["--out", "{ws}/raw"],
    "data inputs": ["--data", "{ws}/raw"],
    "data ingest": ["--out", "{ws}/new.parquet", "--data", "{ws}/raw", "--quiet"],
}  # fmt: skip

PROMPTS = "a photo of a cat\na dog on a sofa\nbad [/] line\n[draft]\nthe red car\na bird\n"


def _commands() -> dict[str, object]:
    found = {}

    def walk(command, path):
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, [*path, name])
        else:
            found[" ".join(path)] = command

    walk(CLI, [])
    return found


CLI = typer.main.get_command(app)
COMMANDS = _commands()


def test_every_command_has_a_base_invocation():
    assert set(COMMANDS) == set(BASE), "add the new command's cheap base invocation to BASE"


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("fuzz-template")
    runner = CliRunner()
    (ws / "prompts.txt").write_text(PROMPTS, encoding="utf-8")
    result = runner.invoke(
        app, ["ingest", "text", str(ws / "prompts.txt"), "--out", str(ws / "corpus.parquet")]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["tokens", "--corpus", str(ws / "corpus.parquet"), "--out", str(ws / "done"),
                                 "--context", "8", "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    (ws / "empty.txt").write_bytes(b"")
    (ws / "garbage.bin").write_bytes(np.random.default_rng(0).bytes(512))
    (ws / "garbage.parquet").write_bytes(np.random.default_rng(1).bytes(512))
    (ws / "text.npy").write_text("not an array\n", encoding="utf-8")
    (ws / "adir").mkdir()
    (ws / "adir" / "keep.txt").write_text("keep me\n", encoding="utf-8")
    (ws / "existing.out").write_text("pre-existing output\n", encoding="utf-8")
    np.save(ws / "points.npy", np.random.default_rng(2).normal(size=(30, 4)))
    (ws / "raw").mkdir()
    return ws


def _placeholder_png(fig, path):
    """save_figure without the rendering: the figure was built; an atomic placeholder file stands for it."""
    from anatomy.io import atomic_write

    with atomic_write(Path(path)) as handle:
        handle.write(b"placeholder figure")
    return Path(path)


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


NUMBERS = ("huge number", "negative", "zero", "nan", "inf", "markup text", "empty string")
PATHS = tuple(k for k in HOSTILE if k.endswith(("file", "garbage", ".parquet", ".npy", "directory", "path")))


def _values(param) -> tuple[str, ...]:
    """The hostile values worth giving a parameter of this type (any value of another type is a usage error)."""
    bare = param.bare_type()
    if bare in (int, float):
        return NUMBERS
    if bare is Path or param.param_type_name == "argument":  # arguments are inputs: every kind of bad file
        return (*PATHS, "markup text", "empty string") if bare is Path else tuple(HOSTILE)
    # a string option (a spec, a name, a list): text, files and numbers where text is expected
    return ("markup text", "empty string", "nonexistent path", "directory", "existing file", "huge number",
            "negative", "nan")  # fmt: skip


def _cases(name: str, command) -> list[tuple[str, list[str]]]:
    """(label, argv) for the base invocation and every (parameter, hostile value) pair."""
    base = BASE[name]
    cases = [("base", base)]
    for param in command.params:
        if getattr(param, "is_flag", False) or param.name in ("as_json", "quiet"):
            continue
        for label in _values(param):
            value = HOSTILE[label]
            if param.param_type_name == "argument":
                argv = _replace_argument(name, base, param.name, value)
            else:
                argv = _replace_option(base, param.opts, value)
            cases.append((f"{param.name}={label}", argv))
    return cases


def _replace_option(base: list[str], opts: list[str], value: str) -> list[str]:
    argv = list(base)
    for i, token in enumerate(argv):
        if token in opts:
            argv[i + 1] = value
            return argv
    return [*argv, opts[0], value]


def _replace_argument(name: str, base: list[str], param: str, value: str) -> list[str]:
    index = {("ingest", "paths"): 1}.get((name, param), 0)
    argv = list(base)
    if argv and not argv[index].startswith("-"):
        argv[index] = value
        return argv
    return [value, *argv]


@pytest.mark.parametrize("name", sorted(BASE))
def test_hostile_inputs(name, template, tmp_path, monkeypatch):
    import anatomy.datasets.fetch
    import anatomy.figures.style

    monkeypatch.setattr(anatomy.datasets.fetch, "RETRIES", 0)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import typer.testing

    command = COMMANDS[name]
    monkeypatch.setattr(
        typer.testing, "_get_command", lambda _app: CLI
    )  # build the click app once, not per case
    real_save = anatomy.figures.style.save_figure
    fast_save = _placeholder_png
    runner = CliRunner()
    problems = []
    for i, (label, argv) in enumerate(_cases(name, command)):
        ws = tmp_path / f"case{i}"
        shutil.copytree(template, ws)
        monkeypatch.chdir(ws)
        before = _snapshot(ws)
        # figures are drawn in every case, but rendered to PNG only in the base case (rendering is the slow part)
        monkeypatch.setattr(anatomy.figures.style, "save_figure", real_save if label == "base" else fast_save)
        args = [*name.split(), *(a.replace("{ws}", str(ws)) for a in argv)]
        result = runner.invoke(app, args)
        output = result.output
        where = f"{label}: anatomy {' '.join(args)}"
        if result.exit_code not in (0, 1, 2):
            problems.append(f"{where}: exit {result.exit_code}\n{output[-800:]}")
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            problems.append(f"{where}: raised {type(result.exception).__name__}: {result.exception}")
        if "Traceback" in output:
            problems.append(f"{where}: traceback\n{output[-800:]}")
        if result.exit_code != 0:
            after = _snapshot(ws)
            changed = sorted(p for p, digest in before.items() if after.get(p) != digest)
            if changed:
                problems.append(f"{where}: exit {result.exit_code} but changed {changed}\n{output[-400:]}")
        if label == "base" and result.exit_code not in (0, 1):
            problems.append(f"{where}: the base invocation is a usage error\n{output[-800:]}")
        shutil.rmtree(ws)
    assert not problems, "\n\n".join(problems)
