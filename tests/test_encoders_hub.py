"""Issue 18 §4, the class: a hub model (hf:ORG/NAME, open_clip:hf-hub:ORG/NAME, an open_clip tag) is looked
up in the cache with the hub switched off first; when it is not cached and the hub is offline
(HF_HUB_OFFLINE, or no connection) the error is one line at once, said once: no download is attempted,
no retry warning is printed. When the hub answers, the download runs with the hub switched on."""

from __future__ import annotations

import logging
import socket

import pytest
from typer.testing import CliRunner

from anatomy.encoders import hub
from anatomy.errors import EncoderError


@pytest.fixture
def online_user(monkeypatch):
    """The user did not set HF_HUB_OFFLINE; probes are asked afresh."""
    monkeypatch.setattr(hub, "USER_OFFLINE", "")
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    hub.unreachable_reason.cache_clear()
    yield
    hub.unreachable_reason.cache_clear()


@pytest.fixture
def closed_endpoint(online_user, monkeypatch):
    """HF_ENDPOINT on a loopback port nobody listens on: connection refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    return port


@pytest.fixture
def open_endpoint(online_user, monkeypatch):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
    yield
    server.close()


def _recording_fetch(calls: list, result=None):
    import huggingface_hub.constants as constants

    def fetch():
        calls.append(constants.HF_HUB_OFFLINE)
        if result is None or constants.HF_HUB_OFFLINE:
            raise FileNotFoundError("not in the cache")
        return result

    return fetch


def test_cached_model_never_reaches_for_the_hub(online_user):
    import huggingface_hub.constants as constants

    seen = []

    def fetch():
        seen.append(constants.HF_HUB_OFFLINE)
        return "snapshot"

    assert hub.from_cache_or_hub("hf:org/name", fetch, "hint") == "snapshot"
    assert seen == [True]  # one call, with the hub switched off


@pytest.mark.parametrize("how", ["HF_HUB_OFFLINE", "unreachable"])
def test_not_cached_and_offline_is_one_line_without_a_download(how, closed_endpoint, monkeypatch, caplog):
    if how == "HF_HUB_OFFLINE":
        monkeypatch.setattr(hub, "USER_OFFLINE", "1")
    calls: list = []
    with caplog.at_level(logging.DEBUG), pytest.raises(EncoderError) as caught:
        hub.from_cache_or_hub("hf:org/name", _recording_fetch(calls, "downloaded"), "the hint")
    assert calls == [True]  # only the cache was asked
    message = caught.value.message
    assert message.startswith("hf:org/name: not in the Hugging Face cache") and "offline" in message
    assert "\n" not in message and caught.value.hint == "the hint"
    if how == "unreachable":
        assert f"127.0.0.1:{closed_endpoint}" in message
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_reachable_hub_downloads_with_the_hub_switched_on(open_endpoint):
    calls: list = []
    assert hub.from_cache_or_hub("hf:org/name", _recording_fetch(calls, "downloaded"), "hint") == "downloaded"
    assert calls == [True, False]  # the cache first, then the hub


def test_a_failed_download_is_one_line(open_endpoint):
    def fetch():
        raise OSError("connection reset\nwith details on a second line")

    with pytest.raises(EncoderError) as caught:
        hub.from_cache_or_hub("open_clip:hf-hub:org/name", fetch, "hint")
    assert "cannot download it (connection reset" in caught.value.message and "\n" not in caught.value.message


def test_the_probe_names_the_proxy_when_one_is_set(online_user, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert hub._endpoint() == ("proxy.invalid", 3128)
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.setenv("HF_ENDPOINT", "https://mirror.example")
    assert hub._endpoint() == ("mirror.example", 443)


@pytest.mark.parametrize(
    "spec",
    ["open_clip:hf-hub:nobody/absent", "open_clip:ViT-B-32:laion2b_s34b_b79k", "hf:nobody/absent-model"],
)
def test_cli_offline_is_one_error_line_and_no_warning(spec, closed_endpoint, tmp_path, monkeypatch):
    """End to end through the real open_clip / huggingface_hub code: nothing is retried, nothing printed twice."""
    from huggingface_hub import constants

    from anatomy.cli import app

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    result = CliRunner().invoke(app, ["positions", "-e", spec, "--out", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and "not in the Hugging Face cache, and offline" in errors[0], result.output
    assert not any("WARNING" in line or "thrown while requesting" in line for line in lines), result.output
