"""Resumable, verified model downloads (Hugging Face or any mirror) with plain-text progress."""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TextIO

import httpx

from inference.errors import DownloadError, ModelChecksumError
from inference.modelfile import hash_stream, remember_sha256, verify

DEFAULT_ENDPOINT = "https://huggingface.co"
USER_AGENT = "meditron-bot/0.1"
PART_SUFFIX = ".part"


class Progress(Protocol):
    """Receives download progress; ``already`` is what a resumed .part file held."""

    def start(self, total: int | None, already: int) -> None:
        """Called once the size is known (``total`` is None when the server does not say)."""

    def advance(self, n: int) -> None:
        """Called after ``n`` more bytes were written."""

    def finish(self) -> None:
        """Called when the transfer ends, successfully or not."""


def hf_url(repo: str, filename: str, *, endpoint: str = DEFAULT_ENDPOINT, revision: str = "main") -> str:
    """Return the download URL of ``filename`` in the Hugging Face repo ``repo``."""
    return f"{endpoint.rstrip('/')}/{repo}/resolve/{revision}/{filename}"


def hf_endpoint(environ: Mapping[str, str] | None = None) -> str:
    """Return ``HF_ENDPOINT`` from the environment (a mirror), else huggingface.co."""
    env = os.environ if environ is None else environ
    return (env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def part_path(dest: Path) -> Path:
    """Return the path of the partial download kept next to ``dest``."""
    return dest.with_suffix(dest.suffix + PART_SUFFIX)


def no_network_help(url: str, dest: Path) -> str:
    """Return the instructions for installing the model file by hand."""
    return (
        "The model could not be downloaded.\n"
        "To install it by hand: on a machine with internet access, download\n"
        f"    {url}\n"
        "and copy the file to\n"
        f"    {dest}\n"
        "(or set MODEL_PATH to a GGUF file you already have), then run\n"
        "    meditron-bot model verify"
    )


# ---------------------------------------------------------------- error messages


def _resume_note(dest: Path) -> str:
    """Say that a partial download is kept, when there is one."""
    part = part_path(dest)
    if part.is_file() and part.stat().st_size > 0:
        return (
            f"\nThe partial download is kept in {part}; running `meditron-bot model pull` again resumes it."
        )
    return ""


def _network_error(url: str, dest: Path, exc: Exception, timeout: float) -> DownloadError:
    """Build the DownloadError for a connection, DNS or timeout failure."""
    host = httpx.URL(url).host or url
    if isinstance(exc, httpx.TimeoutException):
        reason = f"no answer within {timeout:g} s"
    elif isinstance(exc, httpx.ConnectError):
        reason = f"cannot connect: {exc}"
    else:
        reason = str(exc) or type(exc).__name__
    return DownloadError(
        url, f"Download from {host} failed ({reason}).{_resume_note(dest)}\n\n" + no_network_help(url, dest)
    )


def _status_text(status: int, token_given: bool) -> str:
    """Explain an HTTP error status in terms a field team can act on."""
    if status == 401:
        hint = (
            "the token in HF_TOKEN was not accepted"
            if token_given
            else "set HF_TOKEN to an access token of an account that may read it"
        )
        return (
            "The server refused the download (HTTP 401 Unauthorized): the repository is gated "
            f"or private, or its name is wrong; {hint}."
        )
    if status == 403:
        return (
            "The server refused access (HTTP 403 Forbidden): the repository is gated and this "
            "account has not been granted access (accept the licence on the model page), "
            "or the token lacks read permission."
        )
    if status == 404:
        return (
            "The file was not found (HTTP 404 Not Found): check the repository name, "
            "the file name and the revision."
        )
    return f"The server answered HTTP {status}."


def _http_error(url: str, dest: Path, resp: httpx.Response, token_given: bool) -> DownloadError:
    """Build the DownloadError for an HTTP error response."""
    text = _status_text(resp.status_code, token_given)
    server_says = resp.headers.get("X-Error-Message")
    if server_says:
        text += f" The server says: {server_says}"
    return DownloadError(url, f"{text}\n\n{no_network_help(url, dest)}")


# ---------------------------------------------------------------- transfer


def _content_range(resp: httpx.Response) -> tuple[int | None, int | None]:
    """Parse ``Content-Range: bytes start-end/total`` into (start, total)."""
    value = resp.headers.get("Content-Range", "")
    unit, _, spec = value.partition(" ")
    if unit.lower() != "bytes" or "/" not in spec:
        return None, None
    span, _, total_text = spec.partition("/")
    start_text = span.partition("-")[0]
    start = int(start_text) if start_text.isdigit() else None
    total = int(total_text) if total_text.isdigit() else None
    return start, total


def _body_length(resp: httpx.Response) -> int | None:
    """Return the Content-Length of ``resp`` if it is a plain number."""
    value = resp.headers.get("Content-Length", "")
    return int(value) if value.isdigit() else None


def _check_space(url: str, directory: Path, needed: int | None) -> None:
    """Fail early when the disk cannot hold the rest of the download."""
    if needed is None:
        return
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise DownloadError(
            url,
            f"Not enough disk space in {directory}: the download needs {needed / 1e6:.0f} MB "
            f"more, only {free / 1e6:.0f} MB are free.",
        )


class _Transfer:
    """One download attempt into the .part file, hashing as it writes."""

    def __init__(self, url: str, dest: Path, token_given: bool, progress: Progress | None) -> None:
        """Remember where to write and whom to tell."""
        self.url = url
        self.dest = dest
        self.part = part_path(dest)
        self.token_given = token_given
        self.progress = progress
        self.hasher: Any = hashlib.sha256()

    def run(self, client: httpx.Client) -> bool:
        """Download (resuming a .part); return False when the part had to be discarded."""
        have = self.part.stat().st_size if self.part.is_file() else 0
        self.hasher = hashlib.sha256()
        if have:
            hash_stream(self.part, self.hasher)
        headers = {"Range": f"bytes={have}-"} if have else {}
        with client.stream("GET", self.url, headers=headers) as resp:
            if resp.status_code == 416 and have:
                return self._range_not_satisfiable(resp, have)
            if resp.status_code >= 400:
                raise _http_error(self.url, self.dest, resp, self.token_given)
            start, total = _content_range(resp)
            if resp.status_code == 206 and start != have:
                self.part.unlink()
                return False
            if resp.status_code != 206:
                have, total = 0, _body_length(resp)
                self.hasher = hashlib.sha256()
            self._write(resp, have, total)
        return True

    def _range_not_satisfiable(self, resp: httpx.Response, have: int) -> bool:
        """Treat the part as complete, unless the server says the file has another size."""
        _, total = _content_range(resp)
        if total is not None and total != have:
            self.part.unlink()
            return False
        return True

    def _write(self, resp: httpx.Response, have: int, total: int | None) -> None:
        """Stream the body into the .part file (appending when ``have`` > 0)."""
        _check_space(self.url, self.part.parent, None if total is None else total - have)
        done = have
        if self.progress is not None:
            self.progress.start(total, have)
        try:
            with self.part.open("ab" if have else "wb") as f:
                for chunk in resp.iter_bytes():  # as received: nothing is held back on a drop
                    f.write(chunk)
                    self.hasher.update(chunk)
                    done += len(chunk)
                    if self.progress is not None:
                        self.progress.advance(len(chunk))
                f.flush()
                os.fsync(f.fileno())
        finally:
            if self.progress is not None:
                self.progress.finish()
        if total is not None and done != total:
            raise DownloadError(
                self.url,
                f"The download stopped after {done:,} of {total:,} bytes.{_resume_note(self.dest)}",
            )


def _already_there(dest: Path, expected_sha256: str | None) -> bool:
    """Return True when ``dest`` exists and (if a sha256 is expected) matches it."""
    if not dest.is_file():
        return False
    try:
        verify(dest, expected_sha256)
    except ModelChecksumError:
        return False
    return True


def _transfer(transfer: _Transfer, token: str | None, timeout: float) -> tuple[DownloadError | None, str]:
    """Run the transfer (twice at most); return a network error, if any, and the sha256."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with httpx.Client(follow_redirects=True, timeout=timeout, headers=headers) as client:
            if not (transfer.run(client) or transfer.run(client)):
                raise DownloadError(
                    transfer.url, "The server sent another byte range than the one asked for."
                )
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return _network_error(transfer.url, transfer.dest, exc, timeout), ""
    except OSError as exc:
        return DownloadError(transfer.url, f"Cannot write {transfer.part}: {exc}"), ""
    return None, str(transfer.hasher.hexdigest())


def pull(
    url: str,
    dest: Path,
    *,
    expected_sha256: str | None,
    token: str | None = None,
    progress: Progress | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), check its sha256, rename; return dest."""
    if _already_there(dest, expected_sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    transfer = _Transfer(url, dest, bool(token), progress)
    error, digest = _transfer(transfer, token, timeout)
    if error is not None:
        # Raised here, not inside the except block: the httpx exception (and the request
        # headers it holds, token included) is not chained to what callers print.
        raise error
    expected = None if expected_sha256 is None else expected_sha256.strip().lower()
    if expected is not None and digest != expected:
        transfer.part.unlink(missing_ok=True)
        raise ModelChecksumError(dest, expected, digest)
    os.replace(transfer.part, dest)
    remember_sha256(dest, digest)
    return dest


# ---------------------------------------------------------------- progress display


def _fmt_eta(seconds: float) -> str:
    """Format a duration as ``1h02m``, ``3m05s`` or ``12s``."""
    if not math.isfinite(seconds):
        return "--"
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class TerminalProgress:
    """Progress on stderr: one updating line on a terminal, else a line every 10 %."""

    UNKNOWN_STEP = 100 * 2**20  # without a total, log every 100 MiB when not on a terminal

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        label: str = "model",
        clock: Callable[[], float] = time.monotonic,
        interval: float = 0.2,
    ) -> None:
        """Write to ``stream`` (stderr by default), redrawing at most every ``interval`` s."""
        self._stream = stream
        self._label = label
        self._clock = clock
        self._interval = interval
        self._total: int | None = None
        self._already = 0
        self._done = 0
        self._t0 = 0.0
        self._last_draw = -math.inf
        self._next_mark = 0
        self._width = 0
        self._emitted_at = -1

    @property
    def stream(self) -> TextIO:
        """The stream written to."""
        return self._stream if self._stream is not None else sys.stderr

    def _is_tty(self) -> bool:
        """Return True when the stream is an interactive terminal."""
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    def start(self, total: int | None, already: int) -> None:
        """Begin a transfer of ``total`` bytes of which ``already`` are on disk."""
        self._total, self._already, self._done = total, already, already
        self._t0 = self._clock()
        self._last_draw = -math.inf
        self._next_mark = self._mark_after(already)
        self._emitted_at = -1
        if already:
            self._emit(f"{self._label}: resuming at {already / 1e6:.1f} MB")

    def _mark_after(self, done: int) -> int:
        """Return the byte count at which the next non-terminal line is due."""
        if self._total:
            tenth = done * 10 // self._total + 1
            return -(-self._total * tenth // 10)
        return (done // self.UNKNOWN_STEP + 1) * self.UNKNOWN_STEP

    def advance(self, n: int) -> None:
        """Account for ``n`` more bytes and redraw when due."""
        self._done += n
        if self._is_tty():
            if self._clock() - self._last_draw >= self._interval:
                self._draw()
        elif self._done >= self._next_mark:
            self._next_mark = self._mark_after(self._done)
            self._emit(self.line())
            self._emitted_at = self._done

    def finish(self) -> None:
        """Draw the final state and end the line."""
        if self._is_tty():
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
        elif self._emitted_at != self._done:
            self._emit(self.line())

    def line(self) -> str:
        """Return the status text: percentage, MB done/total, MB/s and ETA."""
        elapsed = max(self._clock() - self._t0, 1e-9)
        rate = (self._done - self._already) / elapsed
        done_mb = self._done / 1e6
        if not self._total:
            return f"{self._label}: {done_mb:.1f} MB  {rate / 1e6:.1f} MB/s"
        pct = min(100, self._done * 100 // self._total)
        eta = (self._total - self._done) / rate if rate > 0 else math.inf
        return (
            f"{self._label}: {pct:3d}%  {done_mb:.1f}/{self._total / 1e6:.1f} MB  "
            f"{rate / 1e6:.1f} MB/s  ETA {_fmt_eta(eta)}"
        )

    def _draw(self) -> None:
        """Rewrite the terminal line in place."""
        text = self.line()
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)
        self._last_draw = self._clock()

    def _emit(self, text: str) -> None:
        """Write one complete line."""
        self.stream.write(text + "\n")
        self.stream.flush()
