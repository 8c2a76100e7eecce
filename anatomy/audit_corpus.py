"""The corpus an audit reads: its raw inputs ingested into a fresh corpus in the audit's folder (never merged
into the one an earlier audit left), or one corpus .parquet given as it is, checked to be one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from anatomy.errors import AnatomyError, InputError
from anatomy.report.collect import display
from anatomy.report.record import InputFailure

DEFAULT_INPUT = "builtin:imagenet-prompts"


def build_corpus(
    given: Sequence[str],
    source: str | None,
    out_dir: Path,
    say: Callable[[str], None] = lambda _m: None,
    checked: bool = False,
) -> tuple[Path, list[InputFailure]]:
    """The corpus to audit, and the inputs that could not be read at all.

    An audit's corpus is exactly its inputs: raw inputs are ingested into a fresh corpus in a staging folder,
    which then replaces DIR/corpus.parquet and its manifest (a corpus left by an earlier audit is rebuilt,
    never merged into). Call it holding the folder's lock; checked: given_corpus(given) has already passed.
    """
    import os
    import shutil
    import tempfile

    inputs = list(given) or [DEFAULT_INPUT]
    parquet = _parquet_input(inputs) if checked else given_corpus(inputs)  # checked: given_corpus ran already
    if parquet is not None:
        return Path(parquet), []

    from anatomy.corpus import ingest
    from anatomy.corpus.corpus import manifest_path
    from anatomy.corpus.sources import ReadOptions, detect_source

    corpus = out_dir / "corpus.parquet"
    if corpus.exists():
        say(
            f"ingest: {corpus.name} is rebuilt from this audit's inputs (the corpus left in the folder is replaced)"
        )
    staging = Path(tempfile.mkdtemp(prefix=".corpus.staging.", dir=out_dir))
    try:
        staged = staging / corpus.name
        failed: list[InputFailure] = []
        groups: dict[str, list[str]] = {}  # source -> inputs, in the order given
        for spec in inputs:
            try:
                groups.setdefault(source or detect_source(spec), []).append(spec)
            except AnatomyError as err:
                failed.append(_failure(spec, err))
        for source, specs in groups.items():
            try:  # one call per source; if a file in it cannot be read, retry one by one to isolate it
                ingest(source, specs, staged, ReadOptions())
            except AnatomyError:
                for spec in specs:
                    try:
                        ingest(source, [spec], staged, ReadOptions())
                    except AnatomyError as err:
                        failed.append(_failure(spec, err))
        if not staged.exists():
            reasons = "; ".join(f"{f.input}: {f.error}" for f in failed)
            raise InputError(
                f"no prompts could be read from the inputs ({reasons})", "check the inputs and --source"
            )
        if manifest_path(staged).exists():
            os.replace(manifest_path(staged), manifest_path(corpus))
        else:
            manifest_path(corpus).unlink(missing_ok=True)
        os.replace(staged, corpus)  # the commit point
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return corpus, failed


def recorded_path(corpus: Path, out_dir: Path) -> str:
    """The corpus as the record names it: by name inside the folder, a given .parquet as the user gave it."""
    return corpus.name if corpus.parent == out_dir else str(corpus)


def _parquet_input(inputs: Sequence[str]) -> str | None:
    return next((i for i in inputs if i.endswith(".parquet")), None)


def given_corpus(given: Sequence[str]) -> Path | None:
    """The corpus .parquet the audit was given (checked to be one, a batch at a time), None for raw inputs."""
    inputs = list(given) or [DEFAULT_INPUT]
    parquet = [i for i in inputs if i.endswith(".parquet")]
    if not parquet:
        return None
    if len(inputs) > 1:
        raise InputError(
            f"a corpus Parquet file ({parquet[0]}) was given together with other inputs",
            "give either one corpus .parquet or raw prompt files",
        )
    from anatomy.corpus.schema import COUNT_COLUMN, STRING_COLUMNS
    from anatomy.corpus.stream import corpus_batches

    for _ in corpus_batches(parquet[0], [*STRING_COLUMNS, COUNT_COLUMN]):
        pass  # fails early, naming the file, if it is not a corpus (read a batch at a time)
    return Path(parquet[0])


def _failure(spec: str, err: AnatomyError) -> InputFailure:
    return InputFailure(display(spec), err.message, err.hint)
