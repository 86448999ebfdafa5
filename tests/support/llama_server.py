"""A real llama.cpp ``llama-server`` on the tiny model (built from the pinned sdist by .ci/llama-server.sh).

The binary is LLAMA_SERVER, else the path the build script caches it at. Outside CI a missing binary
skips the test with the reason printed; in CI (CI=true) it fails: CI builds it before the tests.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from inference.bench_server import serving

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
MODEL_ALIAS = "tiny-gemma2"
START_TIMEOUT_S = 60.0


def cached_binary() -> Path:
    """Where .ci/llama-server.sh keeps the binary it built (keyed by version and the AVX2 flags)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "meditron-bot" / f"llama-server-{LLAMA_CPP_PYTHON_VERSION}-avx2" / "llama-server"


def find_binary() -> Path | None:
    """LLAMA_SERVER, else the cached build; None when neither is an executable file."""
    named = os.environ.get("LLAMA_SERVER")
    for candidate in (Path(named) if named else None, cached_binary()):
        if candidate is not None and candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def llama_server_binary() -> Path:
    """The llama-server binary; skipped outside CI when there is none, a failure in CI."""
    binary = find_binary()
    if binary is None:
        reason = (
            f"no llama-server binary: set LLAMA_SERVER or build it with `bash .ci/llama-server.sh` "
            f"(cached at {cached_binary()})"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must build llama-server first: {reason}")
        print(f"\nskipping: {reason}", file=sys.__stderr__)  # shown whatever pytest captures
        pytest.skip(reason)
    return binary


@contextlib.contextmanager
def running_llama_server(
    binary: Path, model: Path, log: Path, *extra: str, port: int | None = None
) -> Iterator[str]:
    """llama-server on 127.0.0.1 serving ``model`` as ``tiny-gemma2`` (2 slots); its URL until exit."""
    port = port or free_port()
    args = [
        str(binary), "-m", str(model), "--alias", MODEL_ALIAS,
        "--host", "127.0.0.1", "--port", str(port), "-c", "4096", "-np", "2", "-t", "2",
        "--no-webui", "--metrics", *extra,
    ]  # fmt: skip
    with log.open("w+b") as out, serving(args, port, out, START_TIMEOUT_S) as (url, _pid):
        yield url


@pytest.fixture(scope="session")
def llama_server_url(
    llama_server_binary: Path, tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A llama-server on the tiny model, shared by the session's tests."""
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with running_llama_server(llama_server_binary, tiny_model_path, log) as url:
        yield url
