"""The Docker files: the compose file as `docker compose config` renders it, and the Dockerfile's shape.

No Docker engine is needed: `docker compose config` only reads and interpolates the file. Where the
docker client or its compose plugin is missing, the compose tests are skipped; the text checks run always.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKER_DIR = ROOT / "docker"
COMPOSE_FILE = DOCKER_DIR / "compose.yaml"
DOCKERFILE = DOCKER_DIR / "Dockerfile"
IGNORE_FILE = DOCKER_DIR / "Dockerfile.dockerignore"
ENV_EXAMPLE = DOCKER_DIR / "env.example"

SECRETS = {
    "TELEGRAM_BOT_TOKEN": "123456:dummy-token-for-tests",
    "PSEUDONYM_KEY": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
    "POSTGRES_PASSWORD": "dummypassword",
}
OPTIONAL_SECRETS = ("HF_TOKEN",)
BUILD_TOOLS = ("build-essential", "cmake", "gcc", "g++", "make", "git")


def _compose_available() -> str | None:
    """Why the compose tests cannot run, or None when `docker compose` works."""
    if shutil.which("docker") is None:
        return "the docker client is not installed"
    try:
        result = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`docker compose version` could not run: {exc}"
    if result.returncode != 0:
        return "the docker compose plugin is not installed (`docker compose version` failed)"
    return None


_COMPOSE_MISSING = _compose_available()
if _COMPOSE_MISSING is not None and os.environ.get("REQUIRE_DOCKER_COMPOSE"):
    raise RuntimeError(f"REQUIRE_DOCKER_COMPOSE is set but {_COMPOSE_MISSING}")
needs_compose = pytest.mark.skipif(_COMPOSE_MISSING is not None, reason=str(_COMPOSE_MISSING))


def _compose(tmp_path: Path, variables: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`docker compose -f docker/compose.yaml ARGS` with only ``variables`` set (no docker/.env read)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in SECRETS and key not in OPTIONAL_SECRETS and not key.startswith("COMPOSE_")
    }
    env.update(variables)
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("", encoding="utf-8")
    return subprocess.run(
        ["docker", "compose", "--env-file", str(empty_env_file), "-f", str(COMPOSE_FILE), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def _rendered(tmp_path: Path, *profile: str) -> dict[str, Any]:
    """The compose file rendered to JSON with every secret set to a dummy value."""
    result = _compose(tmp_path, SECRETS, *profile, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


@needs_compose
def test_compose_renders_all_services(tmp_path: Path) -> None:
    services = _rendered(tmp_path)["services"]
    assert {"redis", "postgres", "migrate", "bot", "worker"} <= set(services)
    assert "model-pull" not in services  # only with --profile tools
    assert services["redis"]["image"].startswith("redis:7")
    assert services["postgres"]["image"].startswith("postgres:16")
    for name in ("migrate", "bot", "worker"):
        assert services[name]["build"]["dockerfile"] == "docker/Dockerfile"
        assert Path(services[name]["build"]["context"]) == ROOT
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["bot"]["command"] == ["bot"]
    assert services["worker"]["command"] == ["worker"]


@needs_compose
def test_compose_start_order(tmp_path: Path) -> None:
    services = _rendered(tmp_path)["services"]
    bot_deps = services["bot"]["depends_on"]
    assert bot_deps["redis"]["condition"] == "service_healthy"
    assert bot_deps["postgres"]["condition"] == "service_healthy"
    assert bot_deps["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("redis", "postgres", "bot", "worker"):
        assert services[name].get("healthcheck", {}).get("test"), name
    assert services["bot"]["restart"] == "unless-stopped"


@needs_compose
def test_worker_is_scalable_and_reads_the_model_read_only(tmp_path: Path) -> None:
    worker = _rendered(tmp_path)["services"]["worker"]
    assert "container_name" not in worker
    assert not worker.get("ports")
    mounts = {volume["target"]: volume for volume in worker["volumes"]}
    assert mounts["/models"]["source"] == "models"
    assert mounts["/models"]["read_only"] is True
    assert worker["environment"]["MODEL_PATH"] == "/models/Meditron3-Gemma2-2B.Q4_K_M.gguf"


@needs_compose
def test_model_pull_writes_into_the_models_volume(tmp_path: Path) -> None:
    services = _rendered(tmp_path, "--profile", "tools")["services"]
    pull = services["model-pull"]
    assert pull["command"] == ["model", "pull"]
    assert pull["profiles"] == ["tools"]
    mount = next(volume for volume in pull["volumes"] if volume["source"] == "models")
    # `model pull` writes to DATA_DIR/models/<file>; the worker reads /models/<file>.
    assert mount["target"] == f"{pull['environment']['DATA_DIR']}/models"
    assert not mount.get("read_only")
    assert "TELEGRAM_BOT_TOKEN" not in pull["environment"]


@needs_compose
def test_secrets_come_through(tmp_path: Path) -> None:
    services = _rendered(tmp_path)["services"]
    bot_env, worker_env = services["bot"]["environment"], services["worker"]["environment"]
    assert bot_env["TELEGRAM_BOT_TOKEN"] == SECRETS["TELEGRAM_BOT_TOKEN"]
    assert bot_env["PSEUDONYM_KEY"] == worker_env["PSEUDONYM_KEY"] == SECRETS["PSEUDONYM_KEY"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == SECRETS["POSTGRES_PASSWORD"]
    expected_url = f"postgresql://meditron:{SECRETS['POSTGRES_PASSWORD']}@postgres:5432/meditron"
    for name in ("migrate", "bot", "worker"):
        assert services[name]["environment"]["DATABASE_URL"] == expected_url
        assert services[name]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    # The worker never needs the bot token.
    assert "TELEGRAM_BOT_TOKEN" not in worker_env


@needs_compose
@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_refuses_a_missing_secret(tmp_path: Path, missing: str) -> None:
    variables = {key: value for key, value in SECRETS.items() if key != missing}
    result = _compose(tmp_path, variables, "config")
    assert result.returncode != 0
    assert missing in result.stderr
    for value in variables.values():
        assert value not in result.stderr


def test_compose_file_has_no_secret_defaults() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    for name in SECRETS:
        uses = re.findall(r"\$\{" + name + r"(:?[-?+]?)[^}]*\}", text)
        assert uses, name
        assert set(uses) == {":?"}, f"{name} must be required with ${{{name}:?...}}"
    assert re.findall(r"\$\{HF_TOKEN(:?[-?+]?)([^}]*)\}", text) in ([], [(":-", "")])
    assert not re.search(r"^\s*container_name\s*:", text, re.MULTILINE)


def test_env_example_lists_the_secrets_empty() -> None:
    values = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    )
    for name in (*SECRETS, *OPTIONAL_SECRETS):
        assert values.get(name) == "", name


def _stages(text: str) -> list[tuple[str, list[str]]]:
    """(FROM line, instructions) per stage; comments dropped, continuation lines joined."""
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    joined = re.sub(r"\\\n", " ", code)
    stages: list[tuple[str, list[str]]] = []
    for line in (raw.strip() for raw in joined.splitlines()):
        if not line:
            continue
        if line.upper().startswith("FROM "):
            stages.append((line, []))
        elif stages:
            stages[-1][1].append(line)
    return stages


def test_dockerfile_is_multi_stage_with_a_clean_runtime() -> None:
    stages = _stages(DOCKERFILE.read_text(encoding="utf-8"))
    assert len(stages) >= 2
    builder_from, builder = stages[0]
    _, runtime = stages[-1]
    assert "python:3.11-slim-bookworm" in DOCKERFILE.read_text(encoding="utf-8")
    assert " AS builder" in builder_from
    builder_runs = " ".join(line for line in builder if line.upper().startswith("RUN "))
    assert "build-essential" in builder_runs
    assert "pip wheel" in builder_runs
    runtime_runs = " ".join(line for line in runtime if line.upper().startswith("RUN "))
    for tool in BUILD_TOOLS:
        assert not re.search(rf"(?<![\w.-]){re.escape(tool)}(?![\w.-])", runtime_runs), tool
    assert "--no-index" in runtime_runs
    assert any(line.startswith("USER ") and "root" not in line for line in runtime)
    assert 'ENTRYPOINT ["meditron-bot"]' in runtime
    assert 'CMD ["run"]' in runtime
    assert any(line.startswith("ENV ") and "DATA_DIR=/data" in line for line in runtime)


def test_dockerfile_builds_llama_cpp_for_any_cpu() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r'ARG CMAKE_ARGS="[^"]*-DGGML_NATIVE=OFF', text)
    assert "-march=native" not in text.replace("(-march=native)", "")


def test_build_context_is_an_allow_list() -> None:
    lines = [
        line.strip()
        for line in IGNORE_FILE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert {"pyproject.toml", "bot", "inference", "storage", "migrations"} <= allowed
    assert not any(name.startswith((".env", ".venv", ".git", "tests", "docker")) for name in allowed)
