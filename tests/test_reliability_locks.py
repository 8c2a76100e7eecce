"""Lock files are never followed or written through (a symlink, FIFO or device in their place is refused with
one line, its target untouched), and the lock-wait notice is silenced by --quiet."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from anatomy.cli import app
from anatomy.errors import AnatomyError
from anatomy.locks import lock_path, locked

ROOT = Path(__file__).resolve().parent.parent
VICTIM = b"precious data that is not a lock\n"


def _place(kind: str, lock: Path, victim: Path) -> None:
    if kind == "symlink":
        lock.symlink_to(victim)
    elif kind == "dangling symlink":
        lock.symlink_to(victim.parent / "not-yet-there")
    elif kind == "fifo":
        os.mkfifo(lock)
    else:  # a link to a device
        lock.symlink_to("/dev/null")


KINDS = ["symlink", "dangling symlink", "fifo", "device"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_lock_path_that_is_not_a_regular_file_is_refused(tmp_path, kind):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(VICTIM)
    out = tmp_path / "c.parquet"
    _place(kind, lock_path(out), victim)
    with pytest.raises(AnatomyError, match="not a regular file") as info, locked(out, timeout=1):
        pytest.fail("the lock was taken through a link")
    assert "\n" not in info.value.message
    assert victim.read_bytes() == VICTIM  # never truncated, no pid written into it
    assert not (tmp_path / "not-yet-there").exists()  # a dangling link does not create its target
    assert os.path.lexists(lock_path(out))  # and the link itself is left for the user to inspect


@pytest.mark.parametrize("kind", KINDS)
def test_ingest_refuses_a_symlinked_lock_with_one_line(tmp_path, kind):
    victim = tmp_path / "victim.parquet"
    victim.write_bytes(VICTIM)
    src = tmp_path / "p.txt"
    src.write_text("a cat\n", encoding="utf-8")
    out = tmp_path / "c.parquet"
    _place(kind, lock_path(out), victim)
    result = CliRunner().invoke(app, ["ingest", "text", str(src), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "not a regular file" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 2
    assert victim.read_bytes() == VICTIM and not out.exists()


def _holder(out: Path, seconds: float) -> subprocess.Popen:
    code = (
        "import time; from anatomy.locks import locked\n"
        f"with locked({str(out)!r}):\n    print('held', flush=True); time.sleep({seconds})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize("quiet", [True, False])
def test_the_lock_wait_notice_obeys_quiet(tmp_path, quiet):
    src = tmp_path / "p.txt"
    src.write_text("a cat\n", encoding="utf-8")
    out = tmp_path / "c.parquet"
    holder = _holder(out, 1.5)
    try:
        start = time.monotonic()
        args = ["ingest", "text", str(src), "--out", str(out), *(["--quiet"] if quiet else [])]
        result = CliRunner().invoke(app, args)
        waited = time.monotonic() - start
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 0, result.output
    assert waited > 0.5  # it did wait for the holder
    assert ("waiting" in result.stderr) is not quiet, result.stderr
    if quiet:
        assert result.stderr == ""
