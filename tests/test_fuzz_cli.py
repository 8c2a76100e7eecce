"""Every subcommand on hostile inputs: exit 0, 1 or 2, never a traceback, nothing pre-existing changed unless
the command succeeded.

The commands are enumerated from the typer app itself (the `data` group and the generated analysis commands
included), so a new command is fuzzed without touching this file. Each command starts from a cheap base
invocation (encoder specs that fail fast: a missing sam3 checkpoint; a loopback URL nothing listens on); then
each of its options and arguments in turn is given each hostile value. Every case runs in a fresh copy of a
small workspace (a corpus, a point cloud, an audit folder, a file where a folder is expected, ...).

Three more classes, each generic over the commands:
- special files: a FIFO, /dev/zero and /dev/null (as links in the workspace, so nothing can ever replace the
  real devices) as every path-like argument, encoder specs included (sam3:FIFO, hf:FIFO, ...). Each command
  runs its cases in its own subprocess, each case under an alarm, the subprocess under a timeout and a memory
  limit, so a hang or an endless read fails the test (naming the case) instead of blocking it;
- symlinked lock files: every lock a command's base invocation takes (recorded through anatomy.locks) is
  replaced by a link to a victim file: the command refuses in one line and the victim is untouched;
- concurrent writers: two processes of a command into one output folder leave what one run leaves, and two
  audits of different corpora into one --out leave one corpus, never the union of both.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
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
    "cost": ["--out", "{ws}/out", "--teacher", MISSING_ENCODER, "--student", MISSING_ENCODER,
             "--corpus", "{ws}/corpus.parquet", "--quiet"],
    "cost-table": ["-e", MISSING_ENCODER, "--out", "{ws}/cost", "--quiet"],
    "audit": ["{ws}/corpus.parquet", "--out", "{ws}/aud", "--analysis", "tokens", "--quiet"],
    "specialise": ["{ws}/corpus.parquet", "--teacher", MISSING_ENCODER, "--out", "{ws}/spec", "--quiet"],
    "report": ["{ws}/done"],
    "check": ["{ws}/prompts.txt", "--against", "{ws}/adir", "--out", "{ws}/chk", "--quiet"],
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


def _kind(param) -> str:
    """number(s), path, choice or text, from the parameter's type (typer gives its name as a string)."""
    bare = param.bare_type()
    name = bare if isinstance(bare, str) else getattr(bare, "__name__", str(bare))
    name = (
        name.removesuffix(" | None").removeprefix("Optional[").removesuffix("]") if "None" in name else name
    )
    if name in ("int", "float"):
        return "number"
    if name in ("list[int]", "list[float]"):
        return "numbers"
    if name in ("Path", "pathlib.Path", "list[Path]"):
        return "path"
    if "Literal" in name:
        return "choice"
    return "text"


def _values(param) -> tuple[str, ...]:
    """The hostile values worth giving a parameter of this type (any value of another type is a usage error)."""
    kind = _kind(param)
    if kind in ("number", "numbers"):
        return NUMBERS
    if kind == "path" or param.param_type_name == "argument":  # arguments are inputs: every kind of bad file
        return (*PATHS, "markup text", "empty string") if kind == "path" else tuple(HOSTILE)
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


def _patch_for_fuzz(setattr_, setenv) -> None:
    """What every fuzz case runs under: no download retries, offline hubs, one click app, cheap figures."""
    import typer.testing

    import anatomy.datasets.fetch

    setattr_(anatomy.datasets.fetch, "RETRIES", 0)
    setenv("HF_HUB_OFFLINE", "1")
    setattr_(typer.testing, "_get_command", lambda _app: CLI)  # build the click app once, not per case


def _check_case(label: str, args: list[str], ws: Path, before: dict, result) -> list[str]:
    """The invariants every case keeps: exit 0, 1 or 2; no traceback; nothing changed unless it succeeded."""
    problems = []
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
    return problems


def _run(name: str, argv: list[str], ws: Path):
    args = [*name.split(), *(a.replace("{ws}", str(ws)) for a in argv)]
    return args, CliRunner().invoke(app, args)


@pytest.mark.parametrize("name", sorted(BASE))
def test_hostile_inputs(name, template, tmp_path, monkeypatch):
    import anatomy.figures.style

    _patch_for_fuzz(monkeypatch.setattr, monkeypatch.setenv)
    command = COMMANDS[name]
    real_save = anatomy.figures.style.save_figure
    problems = []
    for i, (label, argv) in enumerate(_cases(name, command)):
        ws = tmp_path / f"case{i}"
        shutil.copytree(template, ws)
        monkeypatch.chdir(ws)
        before = _snapshot(ws)
        # figures are drawn in every case, but rendered to PNG only in the base case (rendering is the slow part)
        monkeypatch.setattr(
            anatomy.figures.style, "save_figure", real_save if label == "base" else _placeholder_png
        )
        args, result = _run(name, argv, ws)
        problems += _check_case(label, args, ws, before, result)
        shutil.rmtree(ws)
    assert not problems, "\n\n".join(problems)


# ------------------------------------------------------------------------------ special files (hangs)

SPECIALS = {"fifo": None, "zero": "/dev/zero", "null": "/dev/null"}  # workspace name -> link target
SPEC_PARAMS = {
    "encoder",
    "encoders",
    "teacher",
    "student",
    "init",
    "p_tokenizer",
}  # encoder specs: PREFIX:PATH
SPEC_PREFIXES = ("sam3", "hf", "student")
PATH_LISTS = {"p_held_out"}  # text options that are lists of files
CASE_ALARM_S = 30  # one case that takes longer is a hang
MEMORY_LIMIT = 8 << 30  # an endless read of /dev/zero fails with MemoryError instead of filling the machine


def _make_specials(ws: Path) -> None:
    for name, target in SPECIALS.items():
        if target is None:
            os.mkfifo(ws / name)
        else:
            (ws / name).symlink_to(target)


def _specials_intact(ws: Path) -> list[str]:
    broken = []
    if not stat.S_ISFIFO(os.lstat(ws / "fifo").st_mode):
        broken.append("the FIFO was replaced")
    for name, target in SPECIALS.items():
        if target is not None and (not (ws / name).is_symlink() or os.readlink(ws / name) != target):
            broken.append(f"the link to {target} was replaced")
        if target is not None and not stat.S_ISCHR(os.stat(target).st_mode):
            broken.append(f"{target} IS NO LONGER A DEVICE")
    return broken


def _special_cases(name: str, command) -> list[tuple[str, list[str]]]:
    """(label, argv): each special file as each parameter that can name a path (not numbers, not choices)."""
    base = BASE[name]
    cases = []
    for param in command.params:
        if getattr(param, "is_flag", False) or param.name in ("as_json", "quiet"):
            continue
        kind = _kind(param)
        if kind in ("number", "numbers", "choice"):
            continue
        if param.name in SPEC_PARAMS:  # an encoder spec names its files after the prefix
            values = ["{ws}/fifo", "sam3:{ws}/zero", *(f"{prefix}:{{ws}}/fifo" for prefix in SPEC_PREFIXES)]
        elif kind == "path" or param.param_type_name == "argument" or param.name in PATH_LISTS:
            values = [f"{{ws}}/{special}" for special in SPECIALS]
        else:  # any other text option (a name, a list, a URL): it must not open what it is given either
            values = ["{ws}/fifo"]
        for value in values:
            if param.param_type_name == "argument":
                argv = _replace_argument(name, base, param.name, value)
            else:
                argv = _replace_option(base, param.opts, value)
            cases.append((f"{param.name}={value.replace('{ws}/', '')}", argv))
    return cases


def _special_driver(name: str, template: Path, root: Path, report: Path) -> None:
    """Run in a subprocess: every special-file case of `name`, each under an alarm; one JSON line per case."""
    import faulthandler
    import resource
    import signal

    import anatomy.figures.style

    resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_LIMIT, MEMORY_LIMIT))

    def setenv(key, value):
        os.environ[key] = value

    _patch_for_fuzz(setattr, setenv)
    anatomy.figures.style.save_figure = _placeholder_png

    def hang(_signum, _frame):
        raise _Hang(f"no answer in {CASE_ALARM_S} s: it blocks on a special file")

    signal.signal(signal.SIGALRM, hang)
    with open(report, "a", encoding="utf-8") as out:
        for i, (label, argv) in enumerate(_special_cases(name, COMMANDS[name])):
            ws = root / f"case{i}"
            shutil.copytree(template, ws)
            _make_specials(ws)
            os.chdir(ws)
            out.write(json.dumps({"start": label}) + "\n")
            out.flush()
            before = _snapshot(ws)
            # a watchdog thread dumps every stack and ends the process if even the alarm cannot free it
            faulthandler.dump_traceback_later(CASE_ALARM_S * 3, exit=True)
            signal.setitimer(signal.ITIMER_REAL, CASE_ALARM_S, 1.0)  # fires again each second if swallowed
            try:
                args, result = _run(name, argv, ws)
                problems = _check_case(label, args, ws, before, result)
            except _Hang as err:
                problems = [f"{label}: anatomy {name} {' '.join(argv)}: {err}"]
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                faulthandler.cancel_dump_traceback_later()
            problems += _specials_intact(ws)
            out.write(json.dumps({"done": label, "problems": problems}) + "\n")
            out.flush()
            os.chdir(root)
            shutil.rmtree(ws)


class _Hang(BaseException):
    """Raised by the alarm; a BaseException so no `except Exception` (or OSError) in the code swallows it."""


@pytest.mark.parametrize("name", sorted(BASE))
def test_special_files_never_hang(name, template, tmp_path):
    cases = _special_cases(name, COMMANDS[name])
    if not cases:
        pytest.skip(f"`anatomy {name}` takes no path-like parameter")
    report = tmp_path / "report.jsonl"
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; import test_fuzz_cli as t; "
        "t._special_driver(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5]))"
    )
    (tmp_path / "cases").mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    argv = [sys.executable, "-c", code, str(Path(__file__).parent), name, str(template), str(tmp_path / "cases"),
            str(report)]  # fmt: skip
    timeout = 120 + CASE_ALARM_S * len(cases)
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc = None
    lines = (
        [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines()]
        if report.exists()
        else []
    )
    problems = [p for line in lines for p in line.get("problems", [])]
    started = [line["start"] for line in lines if "start" in line]
    finished = {line["done"] for line in lines if "done" in line}
    hung = [label for label in started if label not in finished]
    if proc is None:
        problems.append(f"the cases did not finish in {timeout} s; hung in: {hung or started[-1:]}")
    elif proc.returncode != 0:
        problems.append(f"driver exit {proc.returncode} in {hung}: {proc.stderr[-4000:]}")
    assert len(finished) == len(cases) or problems, "every case must report"
    assert not problems, "\n\n".join(problems)


# ------------------------------------------------------------------------------ symlinked lock files

VICTIM = b"a file some lock path links to: it must never be truncated or written\n"
MUST_LOCK = {"ingest", "embed"}  # so the test below is never vacuous (an audit that locks joins by itself)


@pytest.mark.parametrize("name", sorted(BASE))
def test_symlinked_lock_files_are_refused(name, template, tmp_path, monkeypatch):
    """Every lock the base invocation takes, in turn replaced by a link to a victim: one line, exit 1."""
    import anatomy.figures.style
    import anatomy.locks

    _patch_for_fuzz(monkeypatch.setattr, monkeypatch.setenv)
    monkeypatch.setattr(anatomy.figures.style, "save_figure", _placeholder_png)
    taken: list[Path] = []
    real_lock_path = anatomy.locks.lock_path
    monkeypatch.setattr(
        anatomy.locks, "lock_path", lambda p: taken.append(real_lock_path(p)) or real_lock_path(p)
    )
    probe = tmp_path / "probe"
    shutil.copytree(template, probe)
    monkeypatch.chdir(probe)
    _run(name, BASE[name], probe)
    locks = sorted({p.relative_to(probe) for p in taken if probe in p.parents})
    if not locks:
        assert name not in MUST_LOCK, (
            f"`anatomy {name}` writes in place and must take a lock; the probe saw none"
        )
        pytest.skip(f"the base invocation of `anatomy {name}` takes no lock")
    problems = []
    for i, lock in enumerate(locks):
        ws = tmp_path / f"case{i}"
        shutil.copytree(template, ws)
        monkeypatch.chdir(ws)
        victim = ws / "victim.bin"
        victim.write_bytes(VICTIM)
        (ws / lock).parent.mkdir(parents=True, exist_ok=True)
        (ws / lock).symlink_to(victim)
        args, result = _run(name, BASE[name], ws)
        where = f"{lock} -> victim: anatomy {' '.join(args)}"
        if victim.read_bytes() != VICTIM:
            problems.append(f"{where}: wrote through the link into its target")
        if result.exit_code != 1 or "not a regular file" not in result.output or "Traceback" in result.output:
            problems.append(
                f"{where}: exit {result.exit_code}, expected one refusal line\n{result.output[-600:]}"
            )
        if not (ws / lock).is_symlink():
            problems.append(f"{where}: the link was removed or replaced (the user should see what was there)")
    assert not problems, "\n\n".join(problems)


# ------------------------------------------------------------------------------ concurrent writers

WRITERS = sorted(n for n, argv in BASE.items() if "--out" in argv)
CONCURRENT_TIMEOUT_S = 300


def _cli(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "anatomy", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    try:
        _, stderr = proc.communicate(timeout=CONCURRENT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
        return -9, f"no answer in {CONCURRENT_TIMEOUT_S} s\n{stderr}"
    return proc.returncode, stderr


def _outputs(ws: Path, before: set[str]) -> dict[str, str]:
    """What a run wrote (files new since `before`), with their digests; lock files excluded (they go)."""
    return {p: d for p, d in _snapshot(ws).items() if p not in before and not Path(p).name.endswith(".lock")}


@pytest.mark.parametrize("name", WRITERS)
def test_two_concurrent_writers_leave_what_one_leaves(name, template, tmp_path):
    """Two processes of the base invocation into one output (started together) leave the files and bytes one
    process leaves (run in the same folder, since outputs record their input paths)."""
    ws = tmp_path / "ws"
    args = [a.replace("{ws}", str(ws)) for a in (*name.split(), *BASE[name])]
    shutil.copytree(template, ws)
    before = set(_snapshot(ws))
    code, stderr = _finish(_cli(args, ws))
    if code != 0:
        pytest.skip(f"the base invocation of `anatomy {name}` fails before writing (exit {code})")
    alone = _outputs(ws, before)
    shutil.rmtree(ws)
    shutil.copytree(template, ws)
    procs = [_cli(args, ws) for _ in range(2)]
    for code, stderr in [_finish(proc) for proc in procs]:
        assert code == 0 and "Traceback" not in stderr, stderr[-1500:]
    together = _outputs(ws, before)
    assert sorted(together) == sorted(alone), "two writers left other files than one"
    differ = sorted(p for p in alone if together[p] != alone[p] and p not in RUN_SPECIFIC.get(name, ()))
    assert not differ, f"two concurrent writers left other bytes than one writer in {differ}"


RUN_SPECIFIC: dict[str, tuple[str, ...]] = {}  # files that record the run itself (timings) and differ anyway


def test_two_concurrent_audits_of_different_corpora_never_mix(tmp_path):
    """Two audits of different inputs into one --out: the folder holds one of the corpora, not their union
    (the audit's own fix is in anatomy/audit.py; this is the class test over real processes)."""
    import pandas as pd

    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("".join(f"alpha prompt {i}\n" for i in range(300)), encoding="utf-8")
    b.write_text("".join(f"beta prompt {i}\n" for i in range(300)), encoding="utf-8")
    want = {frozenset(f"{w} prompt {i}" for i in range(300)) for w in ("alpha", "beta")}
    for trial in range(2):
        out = tmp_path / f"aud{trial}"
        procs = [_cli(["audit", str(src), "--out", str(out), "--analysis", "tokens", "--quiet"], tmp_path)
                 for src in (a, b)]  # fmt: skip
        for code, stderr in (_finish(proc) for proc in procs):
            assert code in (0, 1) and "Traceback" not in stderr, stderr[-1500:]
        corpora = sorted(out.rglob("*.parquet"))
        for corpus in corpora:
            frame = pd.read_parquet(corpus)
            if "prompt" in frame and "source" in frame:
                prompts = frozenset(frame["prompt"])
                assert prompts in want, f"trial {trial}: {corpus.name} holds {len(prompts)} prompts, a union"
