"""What every command shares: the consoles, the error handling, and the options spelled once.

Results and tables go to stdout, progress and messages to stderr. Console markup is off: prompts, paths and
key names are user data and are printed as they are (a prompt "bad [/] line" prints as written); styles come
from rich Text objects built here. A user mistake (AnatomyError) is printed in one or two lines and exits 1;
usage errors (bad option values, unknown choices) exit 2, as typer's own do.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import sys
from pathlib import Path
from typing import IO, Annotated, cast

import typer
from rich.console import Console
from rich.text import Text

from anatomy.errors import AnatomyError, OptionError
from anatomy.layout import no_empty_folders_on_failure  # noqa: F401  (re-exported for the commands)


class _Stream(io.TextIOBase):
    """sys.stdout or sys.stderr as it is at each write, where a failed write is dropped, not raised.

    A command commits its data before it prints; a reader that went away (`| head`, a closed stdout) must
    not turn that success into a traceback or an exit status of 1. After a broken pipe the descriptor is
    pointed at /dev/null so the interpreter's final flush is quiet too.
    """

    def __init__(self, name: str):
        self._name = name

    @property
    def _target(self):
        return getattr(sys, self._name)

    def write(self, text: str) -> int:
        try:
            if self._target is not None:
                self._target.write(text)
        except (OSError, ValueError) as error:  # BrokenPipeError, EIO, "I/O operation on closed file"
            self._drop(error)
        return len(text)

    def flush(self) -> None:
        try:
            if self._target is not None:
                self._target.flush()
        except (OSError, ValueError) as error:
            self._drop(error)

    def _drop(self, error: Exception) -> None:
        if isinstance(error, BrokenPipeError):
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), self._target.fileno())
            except (OSError, ValueError, AttributeError):
                pass

    def isatty(self) -> bool:
        try:
            return bool(self._target.isatty())
        except (OSError, ValueError, AttributeError):
            return False

    def fileno(self) -> int:
        if self._target is None:
            raise io.UnsupportedOperation("no stream")
        return self._target.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]  # read-only: it follows the stream of the moment
        return getattr(self._target, "encoding", None) or "utf-8"


stdout, stderr = _Stream("stdout"), _Stream("stderr")
out = Console(file=cast(IO[str], stdout), markup=False, highlight=False, soft_wrap=True)  # results: stdout
err = Console(
    file=cast(IO[str], stderr), markup=False, highlight=False, soft_wrap=True
)  # messages and progress: stderr

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print machine-readable JSON on stdout instead of tables.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or notices on stderr.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder (results/ and figures/ inside).")]
CorpusOpt = Annotated[
    Path,
    typer.Option("--corpus", "-c", dir_okay=False, help="Corpus Parquet file (from `anatomy ingest`)."),
]  # fmt: skip  (a missing file is a data error, exit 1 naming it: the library says so, not a usage box)


def check_out_dir(path: Path | None, option: str = "--out") -> None:
    """An output folder that is an existing file is a usage error, found before any work (exit 2)."""
    if path is not None and path.exists() and not path.is_dir():
        raise typer.BadParameter(f"{path} exists and is not a directory", param_hint=option)


def one_line(text: str) -> str:
    """`text` with control characters escaped (a newline in a spec prints as \\n), so a message stays one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def fail(message: str, hint: str | None = None) -> None:
    err.print(Text.assemble(("error: ", "bold red"), one_line(message)))
    if hint:
        err.print(Text(f"  hint: {one_line(hint)}"))


def guarded(fn):
    """Turn AnatomyError into a short message and exit 1 (and a library OSError, e.g. a full disk, likewise)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            check_path_params(kwargs)
            with _notices_silenced(bool(kwargs.get("quiet"))), _stopped_cleanly():
                return fn(*args, **kwargs)
        except OptionError as error:  # an option outside its range, found by the library before any work
            detail = one_line(error.detail + (f" ({error.hint})" if error.hint else ""))
            raise typer.BadParameter(detail, param_hint=error.option) from None
        except AnatomyError as error:
            fail(error.message, error.hint)
            raise typer.Exit(1) from None
        except OSError as error:
            where = f"{error.filename}: " if getattr(error, "filename", None) else ""
            fail(
                f"{where}{error.strerror or error}", "check the path, its permissions and the free disk space"
            )
            raise typer.Exit(1) from None

    return wrapper


@contextlib.contextmanager
def _stopped_cleanly():
    """Ctrl-C and SIGTERM (`kill`, `timeout`) end a command by an exception raised where it stands, so context
    managers and finally blocks run and temporary files, spill folders and locks go (SIGTERM's default action
    kills the process on the spot); the command then exits 130 / 143 with one line, whatever a library made
    of the exception on its way (DuckDB turns it into "Query interrupted"). Handlers installed by others
    (torchrun's) are left alone."""
    import signal
    import threading

    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def stop(signum, frame):
        caught.append(signum)
        raise KeyboardInterrupt

    previous = {s: signal.getsignal(s) for s, default in defaults.items() if signal.getsignal(s) is default}
    for s in previous:
        signal.signal(s, stop)
    try:
        yield
    except BaseException:
        if not caught:
            raise
        fail(f"stopped by {signal.Signals(caught[0]).name}")
        raise typer.Exit(128 + caught[0]) from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _drop_notice(record: logging.LogRecord) -> bool:
    return not getattr(record, "notice", False)


@contextlib.contextmanager
def _notices_silenced(quiet: bool):
    """Under --quiet, log records marked as notices (extra={"notice": True}, e.g. a lock wait) are dropped;
    warnings about the data itself still print."""
    handlers = list(logging.getLogger().handlers) if quiet else []
    for handler in handlers:
        handler.addFilter(_drop_notice)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(_drop_notice)


def check_path_params(kwargs: dict) -> None:
    """Every path option or argument that exists must be a regular file or a folder (anatomy.io.check_path):
    a FIFO, a device or a socket is a usage error (exit 2) found before the command opens anything, so no
    command blocks on one."""
    try:  # typer >= 0.29 runs its own copy of click
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover - older typer on click
        from click import get_current_context  # type: ignore[no-redef]

    from anatomy.errors import InputError
    from anatomy.io import check_path

    ctx = get_current_context(silent=True)
    params = {p.name: p for p in ctx.command.params} if ctx is not None else {}
    for name, value in kwargs.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for item in values:
            if not isinstance(item, Path):
                continue
            try:
                check_path(item, "any", missing_ok=True)
            except InputError as error:
                param = params.get(name)
                hint = param.opts[0] if param is not None and param.opts else name
                raise typer.BadParameter(one_line(error.message), param_hint=hint) from None


def echo(text: str = "", nl: bool = True) -> None:
    """Plain text on stdout (no console wrapping), dropped silently if stdout is gone."""
    stdout.write(text + ("\n" if nl else ""))
    stdout.flush()


def print_table(table, console: Console | None = None) -> None:
    """A rich Table on stdout, whole: where the console is not a terminal (piped to a file or another program)
    rich would squeeze it into 80 columns and cut cells with an ellipsis, so it is printed at its natural width.
    On a terminal it fits the terminal as usual."""
    from rich.measure import Measurement

    console = console or out
    if console.is_terminal:
        console.print(table)
        return
    natural = Measurement.get(console, console.options.update_width(1_000_000), table).maximum
    wide = Console(file=console.file, width=max(console.width, natural), markup=False, highlight=False,
                   color_system=None)  # fmt: skip
    wide.print(table)


def print_json(data) -> None:
    from anatomy.io import dumps_json

    echo(dumps_json(data), nl=False)


def say(quiet: bool):
    """A progress callback for library code: one dim line on stderr per message (silent when quiet)."""
    if quiet:
        return lambda _message: None
    return lambda message: err.print(Text(str(message), style="dim"))


def progress_bar(quiet: bool):
    """A rich progress bar on stderr (a no-op context when quiet)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
        TimeRemainingColumn(), console=err, disable=quiet, transient=True,
    )  # fmt: skip


def check_device(device: str | None) -> str | None:
    """cpu, cuda, cuda:N or mps, and cuda only where a GPU is there (usage error, exit 2, otherwise)."""
    from anatomy.encoders.device import check_device as check

    try:
        return check(device)
    except OptionError as error:
        raise typer.BadParameter(
            error.detail + (f" ({error.hint})" if error.hint else ""), param_hint="--device"
        ) from None


DEVICE_HELP = "cpu, cuda, cuda:N or mps (default: cuda when available, else cpu)."


def _device_callback(value: str | None) -> str | None:
    return check_device(value)


# --device, declared once for every command that runs a model: checked while the options are parsed, so a
# device this machine lacks is a usage error (exit 2) in every command, before any work.
DeviceOpt = Annotated[str | None, typer.Option("--device", help=DEVICE_HELP, callback=_device_callback)]
