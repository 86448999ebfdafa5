"""Model download against a real local HTTP server: redirects, resume, checksums, errors, progress."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from inference import download
from inference.download import (
    TerminalProgress,
    hf_endpoint,
    hf_url,
    no_network_help,
    part_path,
    pull,
)
from inference.errors import DownloadError, ModelChecksumError
from inference.modelfile import sidecar_path

REPO = "QuantFactory/Meditron3-Gemma2-2B-GGUF"
FILENAME = "Meditron3-Gemma2-2B.Q4_K_M.gguf"
PAYLOAD = b"GGUF" + os.urandom(3 * 2**20 + 4321)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
DROP_AFTER = 2**20 + 17
TOKEN = "hf_secret_token_never_shown_123"


@dataclass
class Seen:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]
    status: int = 0
    sent: int = 0


@dataclass
class State:
    """What the server serves and what it saw."""

    payload: bytes
    redirect_target: str = ""
    requests: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on(self, path: str) -> list[Seen]:
        """Requests whose path is ``path``."""
        with self.lock:
            return [seen for seen in self.requests if seen.path == path]


class Handler(BaseHTTPRequestHandler):
    """Routes that behave like Hugging Face, its CDN, and a flaky network."""

    server: FakeHub

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""

    def do_GET(self) -> None:
        """Dispatch on the path."""
        seen = Seen(self.path, {k.lower(): v for k, v in self.headers.items()})
        with self.server.state.lock:
            self.server.state.requests.append(seen)
        route = self.path.split("?")[0]
        if route.endswith(f"/resolve/main/{FILENAME}"):
            self._redirect(seen, "/cdn/model.gguf")
        elif route == "/elsewhere/model.gguf":
            self._redirect(seen, self.server.state.redirect_target)
        elif route == "/cdn/model.gguf":
            self._serve(seen)
        elif route == "/drop/model.gguf":
            self._serve(seen, drop_after=DROP_AFTER)
        elif route == "/norange/model.gguf":
            self._serve(seen, ranges=False)
        elif route == "/badrange/model.gguf":
            self._serve_from_zero_as_206(seen)
        else:
            self._error(seen, route)

    def _redirect(self, seen: Seen, location: str) -> None:
        """Answer 302 like huggingface.co does towards its CDN."""
        seen.status = 302
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _requested_start(self) -> int | None:
        """Return N from ``Range: bytes=N-`` (the only form the client sends)."""
        value = self.headers.get("Range")
        if not value or not value.startswith("bytes=") or not value.endswith("-"):
            return None
        return int(value[len("bytes=") : -1])

    def _serve(self, seen: Seen, *, drop_after: int | None = None, ranges: bool = True) -> None:
        """Serve the payload, honouring a Range request; optionally drop the connection."""
        data = self.server.state.payload
        start = self._requested_start() if ranges else None
        if start is not None and start >= len(data):
            seen.status = 416
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = data[start or 0 :]
        seen.status = 206 if start is not None else 200
        self.send_response(seen.status)
        if start is not None:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if drop_after is not None:
            body = body[:drop_after]
            self.close_connection = True
        self.wfile.write(body)
        self.wfile.flush()
        seen.sent = len(body)

    def _serve_from_zero_as_206(self, seen: Seen) -> None:
        """A broken server: answers any Range with 206 but from byte 0."""
        data = self.server.state.payload
        seen.status = 206 if self.headers.get("Range") else 200
        self.send_response(seen.status)
        if seen.status == 206:
            self.send_header("Content-Range", f"bytes 0-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        seen.sent = len(data)

    def _error(self, seen: Seen, route: str) -> None:
        """401 / 403 / 500 on their routes, 404 with Hugging Face's error headers otherwise."""
        codes = {"/gated.gguf": 401, "/forbidden.gguf": 403, "/broken.gguf": 500}
        seen.status = codes.get(route, 404)
        self.send_response(seen.status)
        if seen.status == 404:
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("X-Error-Message", "Entry not found")
        body = b"error"
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FakeHub(ThreadingHTTPServer):
    """A threaded HTTP server on 127.0.0.1 with a shared State."""

    daemon_threads = True

    def __init__(self, state: State) -> None:
        """Bind to a free port."""
        super().__init__(("127.0.0.1", 0), Handler)
        self.state = state

    @property
    def url(self) -> str:
        """Base URL of this server."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    """A running FakeHub serving PAYLOAD."""
    server = FakeHub(State(PAYLOAD))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def other_hub() -> Iterator[FakeHub]:
    """A second server: another origin, like the Hugging Face CDN."""
    server = FakeHub(State(PAYLOAD))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass
class Recorder:
    """A Progress that remembers every call."""

    starts: list[tuple[int | None, int]] = field(default_factory=list)
    advanced: int = 0
    finished: int = 0

    def start(self, total: int | None, already: int) -> None:
        """Record the start."""
        self.starts.append((total, already))

    def advance(self, n: int) -> None:
        """Sum the bytes."""
        self.advanced += n

    def finish(self) -> None:
        """Count the finishes."""
        self.finished += 1


def _free_port() -> int:
    """Return a port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# ---------------------------------------------------------------- URLs and help text


def test_hf_url_and_endpoint() -> None:
    assert hf_url(REPO, FILENAME) == f"https://huggingface.co/{REPO}/resolve/main/{FILENAME}"
    assert (
        hf_url(REPO, FILENAME, endpoint="http://mirror.local/", revision="abc123")
        == f"http://mirror.local/{REPO}/resolve/abc123/{FILENAME}"
    )
    assert hf_endpoint({}) == "https://huggingface.co"
    assert hf_endpoint({"HF_ENDPOINT": "https://hf-mirror.example/"}) == "https://hf-mirror.example"


def test_no_network_help_says_what_to_do_by_hand(tmp_path: Path) -> None:
    text = no_network_help("https://example.org/m.gguf", tmp_path / "m.gguf")
    assert "could not be downloaded" in text
    assert "https://example.org/m.gguf" in text
    assert str(tmp_path / "m.gguf") in text
    assert "MODEL_PATH" in text
    assert "meditron-bot model verify" in text


# ---------------------------------------------------------------- successful downloads


def test_full_download_follows_redirect_verifies_and_renames(hub: FakeHub, tmp_path: Path) -> None:
    dest = tmp_path / "models" / FILENAME
    progress = Recorder()
    url = hf_url(REPO, FILENAME, endpoint=hub.url)
    assert pull(url, dest, expected_sha256=PAYLOAD_SHA, progress=progress) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not part_path(dest).exists()
    assert [s.status for s in hub.state.requests] == [302, 200]
    assert "range" not in hub.state.on("/cdn/model.gguf")[0].headers
    assert progress.starts == [(len(PAYLOAD), 0)]
    assert progress.advanced == len(PAYLOAD)
    assert progress.finished == 1
    # The sha256 computed while downloading is cached, so `model verify` does not re-hash.
    assert sidecar_path(dest).read_text().split()[2] == PAYLOAD_SHA


def test_existing_verified_file_is_not_downloaded_again(hub: FakeHub, tmp_path: Path) -> None:
    dest = tmp_path / FILENAME
    dest.write_bytes(PAYLOAD)
    assert pull(f"{hub.url}/cdn/model.gguf", dest, expected_sha256=PAYLOAD_SHA) == dest
    assert hub.state.requests == []


def test_existing_damaged_file_is_replaced(hub: FakeHub, tmp_path: Path) -> None:
    dest = tmp_path / FILENAME
    dest.write_bytes(b"damaged")
    pull(f"{hub.url}/cdn/model.gguf", dest, expected_sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD
    assert len(hub.state.on("/cdn/model.gguf")) == 1


def test_without_expected_sha256_the_download_is_kept(hub: FakeHub, tmp_path: Path) -> None:
    dest = tmp_path / "any.gguf"
    pull(f"{hub.url}/cdn/model.gguf", dest, expected_sha256=None)
    assert dest.read_bytes() == PAYLOAD


# ---------------------------------------------------------------- resume


def test_interrupted_download_resumes_with_a_range_request(hub: FakeHub, tmp_path: Path) -> None:
    dest = tmp_path / FILENAME
    with pytest.raises(DownloadError) as info:
        pull(f"{hub.url}/drop/model.gguf", dest, expected_sha256=PAYLOAD_SHA)
    part = part_path(dest)
    assert part.stat().st_size == DROP_AFTER
    assert not dest.exists()
    assert str(part) in str(info.value)
    assert "resumes it" in str(info.value)

    progress = Recorder()
    pull(f"{hub.url}/cdn/model.gguf", dest, expected_sha256=PAYLOAD_SHA, progress=progress)
    (resumed,) = hub.state.on("/cdn/model.gguf")
    assert resumed.headers["range"] == f"bytes={DROP_AFTER}-"
    assert resumed.status == 206
    assert resumed.sent == len(PAYLOAD) - DROP_AFTER
    assert progress.starts == [(len(PAYLOAD), DROP_AFTER)]
    assert progress.advanced == len(PAYLOAD) - DROP_AFTER
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == PAYLOAD_SHA
    assert not part.exists()


def test_resume_through_the_redirect_keeps_the_range(hub: FakeHub, tmp_path: Path) -> None:
    dest = tmp_path / FILENAME
    part_path(dest).write_bytes(PAYLOAD[:1000])
    pull(hf_url(REPO, FILENAME, endpoint=hub.url), dest, expected_sha256=PAYLOAD_SHA)
    (cdn,) = hub.state.on("/cdn/model.gguf")
    assert (cdn.headers["range"], cdn.status, cdn.sent) == ("bytes=1000-", 206, len(PAYLOAD) - 1000)
    assert dest.read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_from_zero(hub: FakeHub, tmp_path: Path) -> None:
    dest = tmp_path / FILENAME
    part_path(dest).write_bytes(b"x" * 5000)  # would corrupt the file if appended to
    pull(f"{hub.url}/norange/model.gguf", dest, expected_sha256=PAYLOAD_SHA)
    (seen,) = hub.state.on("/norange/model.gguf")
    assert (seen.headers["range"], seen.status) == ("bytes=5000-", 200)
    assert dest.read_bytes() == PAYLOAD


def test_wrong_content_range_discards_the_part_and_restarts(hub: FakeHub, tmp_path: Path) -> None:
    dest = tmp_path / FILENAME
    part_path(dest).write_bytes(b"y" * 700)
    pull(f"{hub.url}/badrange/model.gguf", dest, expected_sha256=PAYLOAD_SHA)
    seen = hub.state.on("/badrange/model.gguf")
    assert [(s.headers.get("range"), s.status) for s in seen] == [("bytes=700-", 206), (None, 200)]
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_gets_416_and_is_verified(hub: FakeHub, tmp_path: Path) -> None:
    dest = tmp_path / FILENAME
    part_path(dest).write_bytes(PAYLOAD)
    pull(f"{hub.url}/cdn/model.gguf", dest, expected_sha256=PAYLOAD_SHA)
    (seen,) = hub.state.on("/cdn/model.gguf")
    assert (seen.status, seen.sent) == (416, 0)
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_with_wrong_content_is_deleted(hub: FakeHub, tmp_path: Path) -> None:
    dest = tmp_path / FILENAME
    part_path(dest).write_bytes(os.urandom(len(PAYLOAD)))
    with pytest.raises(ModelChecksumError) as info:
        pull(f"{hub.url}/cdn/model.gguf", dest, expected_sha256=PAYLOAD_SHA)
    assert info.value.expected == PAYLOAD_SHA
    assert not part_path(dest).exists()
    assert not dest.exists()


# ---------------------------------------------------------------- checksum and HTTP errors


def test_wrong_expected_sha256_raises_and_leaves_no_file(hub: FakeHub, tmp_path: Path) -> None:
    dest = tmp_path / FILENAME
    wrong = "0" * 64
    with pytest.raises(ModelChecksumError) as info:
        pull(f"{hub.url}/cdn/model.gguf", dest, expected_sha256=wrong)
    assert (info.value.expected, info.value.actual) == (wrong, PAYLOAD_SHA)
    assert not dest.exists()
    assert not part_path(dest).exists()


def test_404_says_check_the_names_and_how_to_install_by_hand(hub: FakeHub, tmp_path: Path) -> None:
    dest = tmp_path / FILENAME
    url = f"{hub.url}/missing.gguf"
    with pytest.raises(DownloadError) as info:
        pull(url, dest, expected_sha256=PAYLOAD_SHA)
    text = str(info.value)
    assert info.value.url == url
    assert "HTTP 404" in text
    assert "check the repository name" in text
    assert "Entry not found" in text
    assert no_network_help(url, dest) in text
    assert not dest.exists()
    assert not part_path(dest).exists()


def test_401_says_gated_or_private_and_mentions_hf_token(hub: FakeHub, tmp_path: Path) -> None:
    dest = tmp_path / FILENAME
    with pytest.raises(DownloadError) as info:
        pull(f"{hub.url}/gated.gguf", dest, expected_sha256=PAYLOAD_SHA)
    text = str(info.value)
    assert "HTTP 401" in text
    assert "gated or private" in text
    assert "HF_TOKEN" in text
    assert "MODEL_PATH" in text


def test_403_says_access_not_granted(hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 403") as info:
        pull(f"{hub.url}/forbidden.gguf", tmp_path / FILENAME, expected_sha256=None)
    assert "not been granted access" in str(info.value)


def test_server_error_is_a_download_error(hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 500"):
        pull(f"{hub.url}/broken.gguf", tmp_path / FILENAME, expected_sha256=None)


# ---------------------------------------------------------------- no network


def test_unreachable_server_gives_manual_instructions(tmp_path: Path) -> None:
    dest = tmp_path / "models" / FILENAME
    url = f"http://127.0.0.1:{_free_port()}/{REPO}/resolve/main/{FILENAME}"
    with pytest.raises(DownloadError) as info:
        pull(url, dest, expected_sha256=PAYLOAD_SHA, timeout=5)
    text = str(info.value)
    assert info.value.url == url
    assert "could not be downloaded" in text
    assert url in text
    assert str(dest) in text
    assert "MODEL_PATH" in text
    assert "meditron-bot model verify" in text
    assert not dest.exists()


def test_silent_server_times_out_as_download_error(tmp_path: Path) -> None:
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with pytest.raises(DownloadError, match=r"no answer within 0\.3 s") as info:
            pull(f"http://127.0.0.1:{port}/m.gguf", tmp_path / "m.gguf", expected_sha256=None, timeout=0.3)
    assert "MODEL_PATH" in str(info.value)


def test_not_enough_disk_space_fails_before_writing(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = download.shutil.disk_usage

    def tiny_disk(path: str | Path) -> object:
        usage = real(path)
        return type(usage)(usage.total, usage.used, 1000)

    monkeypatch.setattr(download.shutil, "disk_usage", tiny_disk)
    dest = tmp_path / FILENAME
    with pytest.raises(DownloadError, match="Not enough disk space"):
        pull(f"{hub.url}/cdn/model.gguf", dest, expected_sha256=PAYLOAD_SHA)
    assert not dest.exists()
    assert not part_path(dest).exists()


def test_unwritable_part_file_is_a_download_error(hub: FakeHub, tmp_path: Path) -> None:
    dest = tmp_path / FILENAME
    part_path(dest).mkdir()  # the .part path cannot be opened as a file
    with pytest.raises(DownloadError, match="Cannot write") as info:
        pull(f"{hub.url}/cdn/model.gguf", dest, expected_sha256=PAYLOAD_SHA)
    assert str(part_path(dest)) in str(info.value)
    assert not dest.exists()


# ---------------------------------------------------------------- token handling


def test_token_is_sent_as_bearer(hub: FakeHub, tmp_path: Path) -> None:
    pull(f"{hub.url}/cdn/model.gguf", tmp_path / "a.gguf", expected_sha256=None, token=TOKEN)
    pull(f"{hub.url}/cdn/model.gguf", tmp_path / "b.gguf", expected_sha256=None)
    with_token, without = hub.state.on("/cdn/model.gguf")
    assert with_token.headers["authorization"] == f"Bearer {TOKEN}"
    assert "authorization" not in without.headers


def test_token_is_not_forwarded_to_another_origin(hub: FakeHub, other_hub: FakeHub, tmp_path: Path) -> None:
    hub.state.redirect_target = f"{other_hub.url}/cdn/model.gguf"
    dest = tmp_path / FILENAME
    pull(f"{hub.url}/elsewhere/model.gguf", dest, expected_sha256=PAYLOAD_SHA, token=TOKEN)
    assert hub.state.on("/elsewhere/model.gguf")[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert "authorization" not in other_hub.state.on("/cdn/model.gguf")[0].headers
    assert dest.read_bytes() == PAYLOAD


def test_token_never_appears_in_errors(hub: FakeHub, tmp_path: Path) -> None:
    errors: list[BaseException] = []
    for url in (f"{hub.url}/gated.gguf", f"http://127.0.0.1:{_free_port()}/m.gguf"):
        with pytest.raises(DownloadError) as info:
            pull(url, tmp_path / FILENAME, expected_sha256=None, token=TOKEN)
        errors.append(info.value)
    assert hub.state.on("/gated.gguf")[0].headers["authorization"] == f"Bearer {TOKEN}"
    for error in errors:
        assert TOKEN not in str(error)
        assert TOKEN not in repr(error.args)
        assert "the token in HF_TOKEN was not accepted" in str(error) or "cannot connect" in str(error)
        # No chained httpx exception (whose request carries the header) rides along.
        assert error.__cause__ is None
        assert error.__context__ is None


# ---------------------------------------------------------------- progress display


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        """Start at zero."""
        self.now = 0.0

    def __call__(self) -> float:
        """Return the current time."""
        return self.now


class FakeTty(io.StringIO):
    """A StringIO that claims to be a terminal."""

    def isatty(self) -> bool:
        """Pretend to be interactive."""
        return True


def test_terminal_progress_without_tty_writes_a_line_every_ten_percent() -> None:
    out = io.StringIO()
    clock = FakeClock()
    bar = TerminalProgress(out, label="model", clock=clock)
    bar.start(10_000_000, 0)
    for _ in range(40):
        clock.now += 0.25
        bar.advance(250_000)
    bar.finish()
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == [f"{p}%" for p in range(10, 101, 10)]
    assert lines[4] == "model:  50%  5.0/10.0 MB  1.0 MB/s  ETA 5s"
    assert "\r" not in out.getvalue()


def test_terminal_progress_reports_a_resume() -> None:
    out = io.StringIO()
    clock = FakeClock()
    bar = TerminalProgress(out, clock=clock)
    bar.start(1_000_000, 600_000)
    clock.now = 2.0
    bar.advance(400_000)
    bar.finish()
    lines = out.getvalue().splitlines()
    assert lines[0] == "model: resuming at 0.6 MB"
    assert lines[1:] == ["model: 100%  1.0/1.0 MB  0.2 MB/s  ETA 0s"]


def test_terminal_progress_on_a_tty_redraws_one_line() -> None:
    out = FakeTty()
    clock = FakeClock()
    bar = TerminalProgress(out, clock=clock, interval=1.0)
    bar.start(300_000_000, 0)
    for _ in range(30):
        clock.now += 0.5
        bar.advance(10_000_000)
    bar.finish()
    text = out.getvalue()
    assert text.endswith("\n")
    assert text.count("\n") == 1
    draws = text.split("\r")[1:]
    assert 15 <= len(draws) <= 17  # throttled to one redraw per second, plus the final one
    assert draws[-1].rstrip() == "model: 100%  300.0/300.0 MB  20.0 MB/s  ETA 0s"


def test_terminal_progress_without_total_logs_every_100_mib() -> None:
    out = io.StringIO()
    clock = FakeClock()
    bar = TerminalProgress(out, clock=clock)
    bar.start(None, 0)
    for _ in range(25):
        clock.now += 1.0
        bar.advance(10 * 2**20)
    bar.finish()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # at 100 MiB, 200 MiB, and the final 250 MiB
    assert lines[-1] == "model: 262.1 MB  10.5 MB/s"


def test_terminal_progress_defaults_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    bar = TerminalProgress(clock=FakeClock())
    bar.start(100, 0)
    bar.advance(100)
    bar.finish()
    captured = capsys.readouterr()
    assert "100%" in captured.err
    assert captured.out == ""
