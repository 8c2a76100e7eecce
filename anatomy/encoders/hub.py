"""Hugging Face hub downloads for encoder weights, cache first: offline is known at once and said once.

A hub model (an `hf:ORG/NAME` id, an open_clip `hf-hub:` repository or pretrained tag) is looked up in the
Hugging Face cache first, with the hub switched off, so a cached model never touches the network. Only
when it is not cached does the hub matter: with HF_HUB_OFFLINE set, or when a quick connection to the hub
fails, the error is one line at once, instead of half a minute of retries and every warning twice.

    path = from_cache_or_hub("hf:org/name", lambda: snapshot_download("org/name", ...), HINT)
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar
from urllib.parse import urlparse

from anatomy.errors import EncoderError

T = TypeVar("T")
# the user's own switch, read when this module is first imported, before any module sets HF_HUB_OFFLINE
# for its local-directory loads (anatomy.encoders.hf does)
USER_OFFLINE = (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or "").strip()
PROBE_TIMEOUT_S = 3.0
_TRUE = ("1", "true", "yes", "on")


def user_offline() -> bool:
    return USER_OFFLINE.lower() in _TRUE


def _endpoint(url: str | None = None) -> tuple[str, int]:
    """(host, port) a request to `url` (default: the hub) goes to first: the proxy when one is set."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if proxy:
        parsed = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        return parsed.hostname or "", parsed.port or 3128
    parsed = urlparse(url or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)


@functools.cache
def unreachable_reason(url: str | None = None) -> str | None:
    """Why `url` (default: the hub) cannot be reached (a failed name lookup or connection), or None; asked
    once a process. The probe runs in a thread, so a name lookup that hangs (getaddrinfo has no timeout)
    costs at most PROBE_TIMEOUT_S."""
    host, port = _endpoint(url)
    if not host:
        return "no hub endpoint"
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
                outcome.append(None)
        except OSError as error:
            outcome.append(f"{host}:{port}: {error.strerror or type(error).__name__}")

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(PROBE_TIMEOUT_S + 0.5)
    return outcome[0] if outcome else f"{host}:{port}: no answer within {PROBE_TIMEOUT_S:g} s"


@contextlib.contextmanager
def hub_mode(offline: bool) -> Iterator[None]:
    """huggingface_hub with its offline switch set to `offline` (it reads the environment once, at import),
    and its per-retry warnings kept off the console: the one error line says what failed."""
    import huggingface_hub.constants as constants

    saved = constants.HF_HUB_OFFLINE
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    constants.HF_HUB_OFFLINE = offline
    hub_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved
        hub_log.setLevel(level)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def from_cache_or_hub(
    what: str,
    fetch: Callable[[], T],
    hint: str,
    cached: Callable[[], T] | None = None,
    url: str | None = None,
) -> T:
    """fetch() from the cache alone (or `cached()`, for downloads outside the hub); if that fails, fetch()
    from the network only when it is online and `url` (default: the hub) answers.

    Every failure is one EncoderError line naming `what` (what the user asked for) and why."""
    try:
        if cached is not None:
            return cached()
        with hub_mode(offline=True):
            return fetch()
    except Exception as cached_error:  # not cached (LocalEntryNotFoundError and friends): ask the hub
        cache_miss = _first_line(cached_error)
    if user_offline():
        raise EncoderError(
            f"{what}: not in the Hugging Face cache, and the hub is offline (HF_HUB_OFFLINE)", hint
        )
    reason = unreachable_reason(url)
    if reason is not None:
        raise EncoderError(
            f"{what}: not in the Hugging Face cache, and offline: the hub is unreachable ({reason})", hint
        )
    try:
        with hub_mode(offline=False), _quiet_prints():
            return fetch()
    except Exception as error:  # huggingface_hub / urllib raise many types; the user needs one line
        raise EncoderError(
            f"{what}: cannot download it ({_first_line(error)}; cache: {cache_miss})", hint
        ) from None


@contextlib.contextmanager
def _quiet_prints() -> Iterator[None]:
    """open_clip prints some download failures itself before raising: keep them off stdout (our error says it)."""
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        yield
