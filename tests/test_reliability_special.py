"""Special files are refused before they are opened (anatomy.io.check_path / open_regular: one place for the
CLI and the readers), and user text with control characters never splits an error over two lines."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from anatomy.cli import app
from anatomy.corpus import ingest
from anatomy.corpus.sources import SourceFile, detect_source
from anatomy.errors import InputError
from anatomy.io import check_path, file_sha256, open_regular, read_json, read_parquet


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "pipe.txt"
    os.mkfifo(path)
    return path


def _never_blocks(fn, *args):
    """Run fn in a thread; fail (instead of hanging the suite) when it does not return within 20 s."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = fn(*args)
        except BaseException as err:  # noqa: BLE001 - handed back to the test
            outcome["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(20)
    if thread.is_alive():
        with open(args[0], "wb"):  # a FIFO's reader is blocked: give it a writer (and EOF) so it ends
            pass
        pytest.fail(f"{fn.__name__} blocked on {args[0]}")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


@pytest.mark.parametrize("reader", [open_regular, file_sha256, read_json, read_parquet, check_path])
def test_library_readers_refuse_a_fifo_at_once(fifo, reader):
    with pytest.raises(InputError, match="is a FIFO") as info:
        _never_blocks(reader, fifo)
    assert "\n" not in info.value.message


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_devices_are_refused_directly_and_through_links(tmp_path, device):
    link = tmp_path / "looks-like-a.txt"
    link.symlink_to(device)
    for path in (Path(device), link):
        with pytest.raises(InputError, match="character device"):
            check_path(path)
        with pytest.raises(InputError, match="character device"):
            open_regular(path)
        with pytest.raises(InputError, match="character device"):
            SourceFile(str(path)).read_bytes()


def test_what_check_path_expects(tmp_path, fifo):
    regular = tmp_path / "a.txt"
    regular.write_text("x\n", encoding="utf-8")
    link = tmp_path / "link.txt"
    link.symlink_to(regular)
    assert check_path(regular) == regular and check_path(link) == link  # a link to a file is a file
    assert check_path(tmp_path, "dir") == tmp_path and check_path(tmp_path, "any") == tmp_path
    with pytest.raises(InputError, match="is a folder, expected a regular file"):
        check_path(tmp_path)
    with pytest.raises(InputError, match="is a file, expected a folder"):
        check_path(regular, "dir")
    with pytest.raises(InputError, match="FIFO"):
        check_path(fifo, "any")
    with pytest.raises(InputError, match="no such file"):
        check_path(tmp_path / "missing")
    assert check_path(tmp_path / "missing", missing_ok=True) == tmp_path / "missing"


def test_source_detection_and_ingest_refuse_a_fifo(tmp_path, fifo):
    with pytest.raises(InputError, match="FIFO"):
        _never_blocks(detect_source, fifo)
    with pytest.raises(InputError, match="FIFO"):
        _never_blocks(ingest, "text", [str(fifo)], tmp_path / "c.parquet")
    assert not (tmp_path / "c.parquet").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["corpus", "{fifo}"],
        ["ingest", "text", "{fifo}", "--out", "{tmp}/c.parquet"],
        ["ingest", "text", "{tmp}/ok.txt", "--out", "{fifo}"],
        ["tokens", "--corpus", "/dev/zero", "--out", "{tmp}/o"],
        ["report", "/dev/null"],
    ],
    ids=["corpus-arg", "ingest-input", "ingest-out", "tokens-corpus", "report-dir"],
)
def test_cli_refuses_special_files_in_one_line(tmp_path, fifo, args):
    (tmp_path / "ok.txt").write_text("a cat\n", encoding="utf-8")
    argv = [a.replace("{fifo}", str(fifo)).replace("{tmp}", str(tmp_path)) for a in args]
    result = _never_blocks(
        lambda _unblock: CliRunner().invoke(app, argv), fifo
    )  # fifo: unblocked if it hangs
    assert result.exit_code in (1, 2), result.output
    assert "Traceback" not in result.output
    assert any(word in result.output for word in ("FIFO", "character device", "not a directory"))
    assert os.path.exists(fifo) and not (tmp_path / "c.parquet").exists()


@pytest.mark.parametrize("spec", ["sam3:a\nb", "sam3:x\rthen\x1b[31mred", "nope\nline"])
def test_control_characters_in_a_spec_stay_on_one_line(tmp_path, spec):
    corpus = tmp_path / "p.txt"
    corpus.write_text("a cat\n", encoding="utf-8")
    CliRunner().invoke(app, ["ingest", "text", str(corpus), "--out", str(tmp_path / "c.parquet")])
    result = CliRunner().invoke(
        app, ["embed", "--corpus", str(tmp_path / "c.parquet"), "-e", spec, "--out", str(tmp_path / "e")]
    )
    assert result.exit_code == 1, result.output
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and any(e in error[0] for e in ("\\n", "\\r", "\\x1b")), result.stderr
    assert "\x1b" not in result.stderr and "\r" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2
