"""Shared fixtures: the real data folder (skipped with a reason where absent).

The folder is ANATOMY_DATA when set (`make test DATA=...` sets it), else ../shared/data beside the checkout.
The run's header says which folder the tests use and how many tests skip for want of it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("ANATOMY_DATA") or ROOT.parent / "shared" / "data").resolve()
# Files of the shared layout the tests read; a folder without them (an official `data/raw`) is not it.
_MARKERS = ("lvis/lvis_v1_categories.json", "refcoco", "v3det/category_name_13204_v3det_2023_v1.txt")

# Tests run on 2 CPU cores; keep torch from oversubscribing them when pytest-xdist runs two workers.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def _data_present() -> bool:
    return all((SHARED_DATA / m).exists() for m in _MARKERS)


def _absent_reason() -> str:
    return (
        f"real data folder {SHARED_DATA} is absent or not in the shared layout "
        "(set ANATOMY_DATA or `make test DATA=...` to a folder laid out as ../shared/data)"
    )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not _data_present():
        pytest.skip(_absent_reason())
    return SHARED_DATA


def pytest_sessionstart(session) -> None:
    """Say once, before any test runs (also with -q and under xdist), which data folder this run reads."""
    if hasattr(session.config, "workerinput"):  # an xdist worker: the controller says it
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        state = "present" if _data_present() else _absent_reason() + "; the tests that need it skip"
        reporter.write_line(f"real data: {SHARED_DATA} ({state})")


def pytest_terminal_summary(terminalreporter) -> None:
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if str(SHARED_DATA) in str(r.longrepr)]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} tests skipped: the real data folder {SHARED_DATA} is absent"
        )
