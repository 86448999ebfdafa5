"""Model pulls: huggingface_hub's hf_hub_download, a sha256 check, the file placed where settings say.

hf_hub_download does the transfer: HF_ENDPOINT mirrors, the token, retries with back-off, resuming a
dropped connection, tqdm progress, and a file lock so that several pulls at once download once.
The file lands in the hub cache next to the destination (``<models dir>/.hf-cache``); its sha256 is
checked there and only a verified file is hard-linked (copied where links fail) to the destination
by an atomic rename, so a wrong or half-written file never sits at the destination.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx2  # huggingface_hub's HTTP client: its transport errors are what a dead network raises
from huggingface_hub import HfFileMetadata, get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from inference.errors import DownloadError, ModelChecksumError
from inference.modelfile import hash_stream, remember_sha256, verify

CACHE_DIR = ".hf-cache"
"""The hub cache, a folder of the destination's directory (same file system: the file is linked)."""
_UNREACHABLE = (httpx2.ConnectError, httpx2.TimeoutException, OfflineModeIsEnabled)


@dataclass(frozen=True)
class HubFile:
    """One file of a Hugging Face repository and how to reach it (``endpoint``, ``token``: None is
    HF_ENDPOINT or huggingface.co, HF_TOKEN or the token of ``hf auth login``)."""

    repo: str
    filename: str
    revision: str = "main"
    endpoint: str | None = None
    token: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The file's download URL."""
        return hf_hub_url(self.repo, self.filename, revision=self.revision, endpoint=self.endpoint)


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


def _explain(exc: Exception, url: str, timeout: float, token_given: bool) -> str:
    """One sentence on what went wrong (never the request, whose headers hold the token)."""
    if isinstance(exc, HfHubHTTPError):
        return _status_text(exc.response.status_code, token_given)
    host = httpx2.URL(url).host or url
    if isinstance(exc, httpx2.TimeoutException):
        reason = f"no answer within {timeout:g} s"
    elif isinstance(exc, httpx2.ConnectError):
        reason = f"cannot connect: {exc}"
    else:
        reason = str(exc) or type(exc).__name__
    return f"Download from {host} failed ({reason})."


def _published(source: HubFile, dest: Path, timeout: float) -> HfFileMetadata | str:
    """The Hub's metadata of the file, or (unreachable) why not: asked once, without retries.

    A machine with no network so gets the by-hand instructions at once; hf_hub_download would
    first back off for about 20 s. An HTTP error (401, 404...) raises DownloadError.
    """
    try:
        return get_hf_file_metadata(source.url, token=source.token, timeout=timeout)
    except _UNREACHABLE as exc:
        return _explain(exc, source.url, timeout, bool(source.token))
    except HfHubHTTPError as exc:
        reason = _explain(exc, source.url, timeout, bool(source.token))
    # Raised outside the except block: the HTTP error, whose request holds the token, is not chained.
    raise DownloadError(source.url, f"{reason}\n\n{no_network_help(source.url, dest)}")


def _check_before(meta: HfFileMetadata, url: str, dest: Path, expected: str | None) -> None:
    """Refuse before downloading: another published sha256 (a large file's ETag), or too little disk."""
    published = (meta.etag or "").lower()
    if expected and len(published) == 64 and published != expected:
        raise DownloadError(
            url, f"The file at {url} has sha256 {published}, not the expected {expected}: not downloaded."
        )
    free = shutil.disk_usage(dest.parent).free
    if meta.size is not None and free < meta.size:
        raise DownloadError(
            url,
            f"Not enough disk space in {dest.parent}: the model needs {meta.size / 1e6:.0f} MB, "
            f"only {free / 1e6:.0f} MB are free.",
        )


def _download(source: HubFile, dest: Path, offline: str | None, timeout: float) -> Path:
    """The file's path in the hub cache, downloaded unless it is there (``offline``: from the cache only)."""
    try:
        path = hf_hub_download(
            source.repo,
            source.filename,
            revision=source.revision,
            endpoint=source.endpoint,
            token=source.token,
            etag_timeout=timeout,
            cache_dir=dest.parent / CACHE_DIR,
            local_files_only=offline is not None,
        )
    except (HfHubHTTPError, httpx2.HTTPError, OSError) as exc:  # LocalEntryNotFoundError is an OSError
        reason = offline or _explain(exc, source.url, timeout, bool(source.token))
    else:
        return Path(path)
    again = "" if offline else "\nRunning `meditron-bot model pull` again starts it again."
    raise DownloadError(source.url, f"{reason}{again}\n\n{no_network_help(source.url, dest)}")


def _sha256(path: Path) -> str:
    """The sha256 of ``path`` (a file of the hub cache: no sidecar is written there)."""
    hasher = hashlib.sha256()
    hash_stream(path, hasher)
    return hasher.hexdigest()


def _forget(cached: Path) -> None:
    """Remove a file that failed its check from the hub cache (its snapshot link and its blob)."""
    blob = cached.resolve()
    cached.unlink(missing_ok=True)
    blob.unlink(missing_ok=True)


def _place(cached: Path, dest: Path) -> None:
    """Put the verified file at ``dest`` in one rename: a hard link to the cache's blob, else a copy."""
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.tmp")
    try:
        try:
            os.link(cached.resolve(), tmp)
        except OSError:
            shutil.copyfile(cached, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _already_there(dest: Path, expected_sha256: str | None) -> bool:
    """Return True when ``dest`` exists and (if a sha256 is expected) matches it."""
    if not dest.is_file():
        return False
    try:
        verify(dest, expected_sha256)
    except ModelChecksumError:
        return False
    return True


def pull(source: HubFile, dest: Path, *, expected_sha256: str | None, timeout: float = 10.0) -> Path:
    """Download ``source`` to ``dest`` unless a verified copy is there; return ``dest``.

    Raises DownloadError (with the by-hand instructions) or ModelChecksumError (nothing at ``dest``).
    """
    expected = expected_sha256.strip().lower() if expected_sha256 else None
    if _already_there(dest, expected):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    meta = _published(source, dest, timeout)
    if not isinstance(meta, str):
        _check_before(meta, source.url, dest, expected)
    cached = _download(source, dest, meta if isinstance(meta, str) else None, timeout)
    digest = _sha256(cached)
    if expected is not None and digest != expected:
        _forget(cached)
        raise ModelChecksumError(dest, expected, digest)
    _place(cached, dest)
    remember_sha256(dest, digest)
    return dest
