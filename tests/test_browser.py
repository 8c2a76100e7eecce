"""index.html in headless Chromium: every image loads, the console stays clean, and a screenshot is saved.

Chromium comes from the Debian package `chromium` (.ci/run installs it where it can); without it these
tests skip, saying so. A probe script is injected into a copy of the page (the report itself has no
scripts): it records console errors and failed resource loads from the start, and on `load` writes what it
saw into the DOM, which `--dump-dom` prints.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_report import audit_dir  # noqa: F401 - the same report fixture as test_report (tests/ is on sys.path)

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => {
  const t = e.target;
  window.__errors.push(t && t !== window ? 'failed to load ' + (t.tagName || '?') : 'error: ' + e.message);
}, true);
const origError = console.error;
console.error = (...a) => { window.__errors.push('console.error: ' + a.join(' ')); origError(...a); };
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const out = {images: imgs.length,
               loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
               errors: window.__errors};
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def chromium() -> str:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    pytest.skip(
        "headless browser test needs Chromium: `apt-get install -y chromium` (Debian); none found on PATH"
    )


def _run(args: list[str], timeout: int = 60) -> subprocess.CompletedProcess:
    base = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
    ]
    base += ["--disable-extensions", "--allow-file-access-from-files", "--virtual-time-budget=5000"]
    return subprocess.run(base + args, capture_output=True, text=True, timeout=timeout, check=False)


def probe(page: Path, tmp: Path) -> dict:
    """Load a copy of `page` with the probe injected; return {"images", "loaded", "errors"}."""
    text = page.read_text(encoding="utf-8")
    copy = page.with_name(f".probe-{page.name}")
    copy.write_text(text.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    try:
        proc = _run([f"--user-data-dir={tmp / 'profile'}", "--dump-dom", copy.resolve().as_uri()])
    finally:
        copy.unlink()
    match = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert match, f"probe did not report; chromium exit {proc.returncode}: {proc.stderr[-1500:]}"
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def screenshot(page: Path, png: Path, tmp: Path) -> Path:
    proc = _run(
        [
            f"--user-data-dir={tmp / 'profile-shot'}",
            f"--screenshot={png}",
            "--window-size=1200,2400",
            page.resolve().as_uri(),
        ]
    )
    assert png.exists() and png.stat().st_size > 10_000, f"no screenshot; chromium: {proc.stderr[-1500:]}"
    return png


def test_report_loads_every_image_without_console_errors(audit_dir, tmp_path):  # noqa: F811
    from anatomy.report.render import render

    root, record, findings = audit_dir
    page = render(root, record, findings)["html"]
    seen = probe(page, tmp_path)
    assert seen["images"] == 2
    assert seen["loaded"] == seen["images"]
    assert seen["errors"] == []
    shot = screenshot(page, root / "screenshot.png", tmp_path)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_probe_catches_a_broken_image(tmp_path):
    """The check above can fail: a missing image and a console error are both reported."""
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>'
        '<img src="nothing-here.png"><script>console.error("boom")</script></body></html>'
    )
    seen = probe(page, tmp_path)
    assert seen["images"] == 1 and seen["loaded"] == 0
    assert "failed to load IMG" in seen["errors"] and "console.error: boom" in seen["errors"]
