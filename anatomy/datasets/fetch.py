"""Plain-HTTP downloads: resume, check the server's answers, give up on a stalled server. Standard library
only (urllib).

A download goes to TARGET.part beside its target, with TARGET.part.meta recording where it came from (URL,
ETag / Last-Modified, the full length). It is resumed from there with a Range request (after a dropped
connection within the same run, or on the next run after Ctrl-C), and the resumed bytes are used only when
the server answers 206 with a Content-Range that starts exactly where the .part ends and names the same
full length. A server that ignores Range (200), botches it (a wrong Content-Range) or says the .part is
longer than the file (416) makes the download start over; a .part with no .meta, of another URL or longer
than the file is discarded before asking. A body without a Content-Length is "close-delimited": it may have
been cut short, so the caller treats it as unverified until a recorded size and sha256 vouch for it.

Every download has an overall deadline and a minimum rate (Limits): a server that drips bytes is given up
with one line, and the .part is kept for a resume. The caller (sources.py) verifies the whole file from its
first byte (size, sha256) before moving it into place.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from anatomy.datasets.lock import CHUNK
from anatomy.datasets.paths import refuse_special
from anatomy.datasets.registry import DataError
from anatomy.errors import OptionError
from anatomy.io import file_sha256, write_json

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int | None], None]  # (label, bytes done, total or None)
RETRIES = 5
RESTARTS = 3  # how often one download may start over (range not honoured, .part of another file)
TIMEOUT_S = 60  # the socket timeout: no byte for this long is a dropped connection (retried)
RATE_WINDOW_S = 60.0  # the minimum rate is averaged over this many seconds
DEADLINE_S = 6 * 3600.0  # default overall deadline of one file (LVIS train, 350 MB, at 20 KB/s)
MIN_RATE = 1024  # default minimum rate, bytes per second
MAX_DEADLINE_S = 7 * 86400.0
USER_AGENT = "prompt-anatomy (https://github.com/; anatomy data fetch)"
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*$")


@dataclass(frozen=True)
class Limits:
    """How long one file may take, and how slowly it may arrive, before the fetch gives up on it."""

    deadline_s: float = DEADLINE_S
    min_rate: float = MIN_RATE  # bytes per second over RATE_WINDOW_S; 0 disables

    def check(self) -> Limits:
        if not 0 < self.deadline_s <= MAX_DEADLINE_S:
            raise OptionError("--deadline", f"{self.deadline_s:g} s is outside (0, {MAX_DEADLINE_S:g}]")
        if not 0 <= self.min_rate <= 1e10:
            raise OptionError("--min-rate", f"{self.min_rate:g} bytes/s is outside [0, 1e10]")
        return self


@dataclass(frozen=True)
class Download:
    sha256: str
    size: int
    resumed: bool  # some bytes came from an earlier response (a Range request)
    delimited: bool  # the server declared the full length (Content-Length or Content-Range)


class _GiveUp(Exception):
    """The deadline passed or the rate fell below the minimum: stop, keep the .part."""


def mirrored(url: str, base_url: str | None) -> str:
    """URL under a mirror laid out as BASE/HOST/PATH (what `wget -x` writes); unchanged without a base."""
    if not base_url:
        return url
    parts = urlsplit(url)
    query = f"?{parts.query}" if parts.query else ""
    return f"{base_url.rstrip('/')}/{parts.netloc}{parts.path}{query}"


def check_base_url(value: str) -> str:
    """A mirror root: http(s)://HOST[:PORT][/PREFIX] in plain ASCII without spaces; OptionError otherwise."""
    bad = [c for c in value if not 0x21 <= ord(c) <= 0x7E]
    if bad:
        raise OptionError(
            "--base-url",
            f"{value!r} contains {'a space' if bad[0].isspace() else repr(bad[0])}",
            "give a plain ASCII URL; percent-encode other characters (%20 for a space)",
        )
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        raise OptionError("--base-url", f"{value!r} has an invalid port") from None
    del port
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OptionError("--base-url", f"{value!r} must be http://HOST[:PORT][/PREFIX] or https://...")
    if parts.query or parts.fragment:
        raise OptionError("--base-url", f"{value!r}: a mirror root takes no query or fragment")
    return value


def redact(url: str) -> str:
    """The URL without its query (Roboflow puts the API key there)."""
    return url.split("?", 1)[0]


def part_paths(target: Path) -> tuple[Path, Path]:
    return target.with_name(target.name + ".part"), target.with_name(target.name + ".part.meta")


def discard(target: Path) -> None:
    for path in part_paths(target):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _read_meta(meta_path: Path) -> dict | None:
    refuse_special(meta_path)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return meta if isinstance(meta, dict) else None


def _stale_part(target: Path, url: str, expected_size: int | None) -> str | None:
    """Why the .part beside target cannot be resumed (None: it can, or there is none)."""
    part, meta_path = part_paths(target)
    refuse_special(part)
    if not part.exists():
        return None
    meta = _read_meta(meta_path)
    have = part.stat().st_size
    if meta is None or meta.get("url") != redact(url):
        return "it has no record of its URL or is of another URL"
    total = meta.get("total")
    for limit in (total, expected_size):
        if isinstance(limit, int) and have > limit:
            return f"it holds {have:,} bytes, more than the file's {limit:,}"
    return None


def _content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """(first, last, total) of a Content-Range header; None where absent or '*'."""
    match = _CONTENT_RANGE.match(value or "")
    if not match:
        return None, None, None
    first, last, total = match.groups()
    return (
        int(first) if first else None,
        int(last) if last else None,
        int(total) if total and total != "*" else None,
    )


def _length(response) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


class _Clock:
    """The overall deadline and the minimum rate of one download."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.start = time.monotonic()
        self.deadline = self.start + limits.deadline_s

    def socket_timeout(self) -> float:
        return max(0.05, min(TIMEOUT_S, self.deadline - time.monotonic()))

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def window(self, done: int) -> list[float]:
        return [time.monotonic(), float(done)]

    def tick(self, window: list[float], done: int) -> None:
        """Give up when past the deadline, or when a full window averaged less than the minimum rate."""
        now = time.monotonic()
        if now >= self.deadline:
            raise _GiveUp(f"not finished within the --deadline of {self.limits.deadline_s:g} s")
        span = now - window[0]
        if self.limits.min_rate and span >= RATE_WINDOW_S:
            rate = (done - window[1]) / span
            if rate < self.limits.min_rate:
                raise _GiveUp(
                    f"{rate:,.1f} bytes/s over the last {span:.0f} s, below the --min-rate of "
                    f"{self.limits.min_rate:,.0f}"
                )
            window[:] = [now, float(done)]


def download(
    url: str,
    target: Path,
    progress: Progress | None = None,
    label: str = "",
    *,
    expected_size: int | None = None,
    limits: Limits = Limits(),
) -> Download:
    """Fetch url into target.part (resuming what is there, when the server honours the range) and return
    the sha256 and size of the whole file, hashed from its first byte.

    The caller verifies and then moves the .part into place. Connection drops are retried with a Range
    request from where the file stopped; expected_size (from the lock file) lets a close-delimited body that
    ended early count as a drop. DataError when the server refuses, the retries run out, or the deadline or
    minimum rate is not met (the .part is kept for a resume then)."""
    import urllib.error
    import urllib.request

    part, meta_path = part_paths(target)
    part.parent.mkdir(parents=True, exist_ok=True)
    stale = _stale_part(target, url, expected_size)
    if stale:
        log.warning("%s: discarding %s: %s", redact(url), part.name, stale)
        discard(target)
    clock = _Clock(limits)
    failures = restarts = 0
    ranges = True  # False once the server has failed to honour a Range request: start over instead
    resumed = False
    delimited = True

    def restart(reason: str) -> None:
        nonlocal restarts, resumed
        restarts += 1
        if restarts > RESTARTS:
            raise DataError(
                f"{redact(url)}: download started over {RESTARTS} times ({reason}); nothing kept",
                "the server or mirror answers inconsistently; try again later or use another --base-url",
            )
        log.warning("%s: %s; starting over", redact(url), reason)
        discard(target)
        resumed = False

    while True:
        have = part.stat().st_size if part.exists() else 0
        if have and not ranges:
            restart("the server does not honour Range requests")
            have = 0
        meta = _read_meta(meta_path) if have else None
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        if have:
            request.add_header("Range", f"bytes={have}-")
            etag = (meta or {}).get("etag")  # If-Range takes a strong validator only (RFC 9110 13.1.5)
            strong = etag if isinstance(etag, str) and not etag.startswith("W/") else None
            validator = strong or (meta or {}).get("last_modified")
            if validator:
                request.add_header("If-Range", validator)
        try:
            with urllib.request.urlopen(request, timeout=clock.socket_timeout()) as response:
                status, length = response.status, _length(response)
                total: int | None
                if have and status == 206:
                    first, last, total = _content_range(response.headers.get("Content-Range"))
                    known = (meta or {}).get("total")
                    sane = (
                        first == have
                        and total is not None
                        and (last is None or last == total - 1)
                        and (known is None or known == total)
                        and (length is None or length == total - have)
                    )
                    if not sane:
                        ranges = False
                        restart(
                            f"asked for bytes {have}-, the server sent Content-Range "
                            f"{response.headers.get('Content-Range')!r}"
                        )
                        continue
                    mode, delimited = "ab", True
                elif status == 200:
                    same = (meta or {}).get("etag") == response.headers.get("ETag") is not None
                    if have and request.has_header("If-range") and not same:  # If-Range: the file changed
                        restart("the file changed since the .part was started (If-Range answered 200)")
                        have = 0
                    elif have:
                        ranges = False
                        restart("the server ignored the Range request (200, the whole file)")
                        have = 0
                    total, mode = length, "wb"
                    delimited = length is not None
                    write_json(
                        meta_path,
                        {
                            "url": redact(url),
                            "etag": response.headers.get("ETag"),
                            "last_modified": response.headers.get("Last-Modified"),
                            "total": total,
                        },
                    )
                else:
                    raise DataError(f"{redact(url)}: unexpected HTTP {status} answer", "try again later")
                done = have
                with open(part, mode) as handle:
                    window = clock.window(done)
                    while block := response.read1(CHUNK):
                        handle.write(block)
                        done += len(block)
                        if progress:
                            progress(label, done, total)
                        clock.tick(window, done)
                if have and done > have:
                    resumed = True
                limit = total if total is not None else expected_size
                if limit is not None and done < limit:
                    raise ConnectionError(f"connection closed at {done:,} of {limit:,} bytes")
                if limit is not None and done > limit:
                    discard(target)
                    raise DataError(
                        f"{redact(url)}: the server sent {done:,} bytes, more than the {limit:,} expected; "
                        "nothing kept",
                        "the file changed upstream or the mirror serves another file",
                    )
            break
        except urllib.error.HTTPError as err:
            if err.code == 416 and have:  # Range past the end: whole if the file is exactly this long
                _, _, total = _content_range(err.headers.get("Content-Range"))
                known = (meta or {}).get("total")
                if total == have and known in (None, have):
                    resumed = True
                    break
                restart(f"the server refused the range (416, file length {total}); the .part is not of it")
                continue
            hint = "check the URL or --base-url mirror" if err.code == 404 else "try again later"
            raise DataError(f"{redact(url)}: HTTP {err.code} {err.reason}", hint) from None
        except _GiveUp as stop:
            kept = part.stat().st_size if part.exists() else 0
            raise DataError(
                f"{redact(url)}: gave up: {stop}; {kept:,} bytes kept in {part.name}",
                "rerun to resume; raise --deadline or lower --min-rate for a slow link, or use --base-url",
            ) from None
        except (
            urllib.error.URLError,
            ConnectionError,
            TimeoutError,
            OSError,
            http.client.HTTPException,
        ) as err:
            failures += 1
            reason = getattr(err, "reason", err)
            if failures > RETRIES or clock.expired():
                when = f"after {RETRIES} retries" if failures > RETRIES else "at the --deadline"
                raise DataError(
                    f"{redact(url)}: download failed {when} ({reason})",
                    f"rerun to resume from {part.name}; or fetch through a mirror with --base-url",
                ) from None
            log.info("%s: %s; resuming (try %d of %d)", redact(url), reason, failures, RETRIES)
            time.sleep(min(0.2 * failures, 2.0, max(0.0, clock.deadline - time.monotonic())))
    return Download(file_sha256(part), part.stat().st_size, resumed, delimited)


def finish(target: Path) -> None:
    """Move a verified .part into place and drop its .meta."""
    part, meta_path = part_paths(target)
    os.replace(part, target)
    meta_path.unlink(missing_ok=True)
