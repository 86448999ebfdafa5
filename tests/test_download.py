"""Model pulls: the real hf_hub_download against a small local server that answers like the Hub."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from inference.download import CACHE_DIR, HubFile, no_network_help, pull
from inference.errors import DownloadError, ModelChecksumError
from inference.modelfile import sidecar_path
from inference.settings import InferenceSettings
from inference.setup import pull_default_model

REPO = "QuantFactory/Meditron3-Gemma2-2B-GGUF"
FILENAME = "Meditron3-Gemma2-2B.Q4_K_M.gguf"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
PAYLOAD = b"GGUF" + os.urandom(12 * 2**20)  # more than hf_hub_download's 10 MiB write chunk
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
TOKEN = "hf_secret_token_never_shown_123"


class Hub(ThreadingHTTPServer):
    """HEAD and GET on /{repo}/resolve/main/{file} with the Hub's headers; Range; one dropped body."""

    daemon_threads = True

    def __init__(self) -> None:
        """Bind to a free port on 127.0.0.1, serving PAYLOAD with its sha256 as ETag."""
        super().__init__(("127.0.0.1", 0), _Handler)
        self.payload, self.etag, self.status = PAYLOAD, PAYLOAD_SHA, 200
        self.drop_after: int | None = None
        self.seen: list[tuple[str, dict[str, str], int]] = []  # (method, headers, body bytes sent)

    @property
    def url(self) -> str:
        """The endpoint (HF_ENDPOINT) of this server."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def gets(self) -> list[tuple[dict[str, str], int]]:
        """Headers and body size of every GET."""
        return [(headers, sent) for method, headers, sent in self.seen if method == "GET"]


class _Handler(BaseHTTPRequestHandler):
    server: Hub

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""

    def do_HEAD(self) -> None:
        """Metadata only."""
        self._answer(body=False)

    def do_GET(self) -> None:
        """The file, from the Range start if one is asked for."""
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        hub = self.server
        headers = {k.lower(): v for k, v in self.headers.items()}
        status = hub.status if self.path == f"/{REPO}/resolve/main/{FILENAME}" else 404
        start = int(headers.get("range", "bytes=0-").removeprefix("bytes=").rstrip("-"))
        data = hub.payload[start:] if status == 200 else b""
        self.send_response(206 if status == 200 and start else status)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("X-Linked-Etag", f'"{hub.etag}"')
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(hub.payload) - 1}/{len(hub.payload)}")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body and hub.drop_after is not None:
            data, hub.drop_after = data[: hub.drop_after], None  # the connection drops, once
        if body:
            self.wfile.write(data)
        hub.seen.append((self.command, headers, len(data) if body else 0))


@pytest.fixture
def hub() -> Iterator[Hub]:
    """A running Hub."""
    server = Hub()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _source(hub: Hub | None, token: str | None = None) -> HubFile:
    """The default file on ``hub``; None: on a port of 127.0.0.1 where nothing listens."""
    if hub is not None:
        return HubFile(REPO, FILENAME, endpoint=hub.url, token=token)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return HubFile(REPO, FILENAME, endpoint=f"http://127.0.0.1:{port}", token=token)


def test_full_download_is_verified_and_lands_at_the_destination(hub: Hub, tmp_path: Path) -> None:
    dest = tmp_path / "models" / FILENAME
    assert pull(_source(hub), dest, expected_sha256=PAYLOAD_SHA) == dest
    assert dest.read_bytes() == PAYLOAD
    assert dest.samefile(next((tmp_path / "models" / CACHE_DIR).rglob(f"blobs/{PAYLOAD_SHA}")))
    assert [sent for _, sent in hub.gets()] == [len(PAYLOAD)]
    # The sha256 computed after the download is cached, so `model verify` does not re-hash.
    assert sidecar_path(dest).read_text().split()[2] == PAYLOAD_SHA
    # A verified file is not fetched again, and a damaged one is replaced.
    assert pull(_source(hub), dest, expected_sha256=PAYLOAD_SHA) == dest
    dest.unlink()
    dest.write_bytes(b"damaged")
    pull(_source(hub), dest, expected_sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD
    assert len(hub.gets()) == 1  # the second time, from the hub cache


def test_three_pulls_at_once_download_once(hub: Hub, tmp_path: Path) -> None:
    dest = tmp_path / "models" / FILENAME
    errors: list[BaseException] = []

    def one() -> None:
        try:
            pull(_source(hub), dest, expected_sha256=PAYLOAD_SHA)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert dest.read_bytes() == PAYLOAD
    assert len(hub.gets()) == 1  # hf_hub_download's file lock: the others waited and found the file
    assert [p.name for p in dest.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_content_that_does_not_match_is_refused_and_not_kept(hub: Hub, tmp_path: Path) -> None:
    hub.payload = b"GGUF" + os.urandom(len(PAYLOAD) - 4)  # served under the expected sha256
    dest = tmp_path / "models" / FILENAME
    with pytest.raises(ModelChecksumError) as info:
        pull(_source(hub), dest, expected_sha256=PAYLOAD_SHA)
    assert (info.value.expected, info.value.actual) == (PAYLOAD_SHA, hashlib.sha256(hub.payload).hexdigest())
    assert "damaged or another file" in str(info.value)
    assert not dest.exists()
    assert [p for p in (dest.parent / CACHE_DIR).rglob("blobs/*")] == []  # the next pull starts afresh


def test_another_published_sha256_is_refused_before_downloading(hub: Hub, tmp_path: Path) -> None:
    dest = tmp_path / "models" / FILENAME
    wrong = "0" * 64
    with pytest.raises(DownloadError, match=f"has sha256 {PAYLOAD_SHA}, not the expected {wrong}"):
        pull(_source(hub), dest, expected_sha256=wrong)
    assert hub.gets() == []
    assert not dest.exists()


def test_a_dropped_connection_is_resumed_with_a_range_request(hub: Hub, tmp_path: Path) -> None:
    hub.drop_after = 11 * 2**20
    dest = tmp_path / "models" / FILENAME
    pull(_source(hub), dest, expected_sha256=PAYLOAD_SHA)
    (first, dropped), (resumed, rest) = hub.gets()
    assert "range" not in first and dropped == 11 * 2**20
    written = int(resumed["range"].removeprefix("bytes=").rstrip("-"))  # what reached the file before
    assert 0 < written <= dropped and rest == len(PAYLOAD) - written
    assert dest.read_bytes() == PAYLOAD


@pytest.mark.parametrize(("status", "says"), [(401, "HF_TOKEN"), (403, "not been granted"), (404, "check")])
def test_http_errors_say_what_to_do(hub: Hub, tmp_path: Path, status: int, says: str) -> None:
    hub.status = status
    dest = tmp_path / "models" / FILENAME
    with pytest.raises(DownloadError, match=f"HTTP {status}") as info:
        pull(_source(hub), dest, expected_sha256=PAYLOAD_SHA)
    assert says in str(info.value)
    assert no_network_help(_source(hub).url, dest) in str(info.value)
    assert not dest.exists()


def test_offline_gives_the_by_hand_instructions(tmp_path: Path) -> None:
    dest = tmp_path / "models" / FILENAME
    source = _source(None)
    with pytest.raises(DownloadError) as info:
        pull(source, dest, expected_sha256=PAYLOAD_SHA)
    text = str(info.value)
    assert info.value.url == source.url == f"{source.endpoint}/{REPO}/resolve/main/{FILENAME}"
    assert "cannot connect" in text
    for needed in ("could not be downloaded", source.url, str(dest), "MODEL_PATH", "model verify"):
        assert needed in text
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert not dest.exists()


def test_hf_token_is_sent_and_never_logged(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("MODEL_SHA256", PAYLOAD_SHA)
    settings = InferenceSettings()
    assert pull_default_model(settings, tmp_path).read_bytes() == PAYLOAD
    assert {headers["authorization"] for _, headers, _ in hub.seen} == {f"Bearer {TOKEN}"}
    assert TOKEN not in repr(_source(hub, TOKEN))
    hub.status = 401
    with pytest.raises(DownloadError, match="the token in HF_TOKEN was not accepted") as info:
        pull(_source(hub, TOKEN), tmp_path / "other.gguf", expected_sha256=None)
    assert info.value.__cause__ is None and info.value.__context__ is None
    out, err = capfd.readouterr()
    assert TOKEN not in out + err + caplog.text + str(info.value)
