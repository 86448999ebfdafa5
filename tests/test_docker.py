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
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
DOCKER_DIR = ROOT / "docker"
COMPOSE_FILE = DOCKER_DIR / "compose.yaml"
DOCKERFILE = DOCKER_DIR / "Dockerfile"
IGNORE_FILE = DOCKER_DIR / "Dockerfile.dockerignore"
ENV_EXAMPLE = DOCKER_DIR / "env.example"

APP_ROLE_SQL = DOCKER_DIR / "app-role.sql"

SECRETS = {
    "TELEGRAM_BOT_TOKEN": "123456:dummy-token-for-tests",
    "PSEUDONYM_KEY": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
    "POSTGRES_PASSWORD": "dummypassword",
    "APP_DB_PASSWORD": "dummyapppassword",
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
def test_the_voice_profile_adds_a_transcriber(tmp_path: Path) -> None:
    assert "transcriber" not in _rendered(tmp_path)["services"]  # voice notes are opt-in
    transcriber = _rendered(tmp_path, "--profile", "voice")["services"]["transcriber"]
    assert transcriber["command"] == ["transcriber"]
    assert transcriber["environment"]["WHISPER_MODEL"] == "small"
    assert {volume["target"] for volume in transcriber["volumes"]} == {"/data/models"}


@needs_compose
def test_compose_start_order(tmp_path: Path) -> None:
    services = _rendered(tmp_path)["services"]
    bot_deps = services["bot"]["depends_on"]
    assert bot_deps["redis"]["condition"] == "service_healthy"
    assert bot_deps["postgres"]["condition"] == "service_healthy"
    assert bot_deps["app-role"]["condition"] == "service_completed_successfully"  # after migrate
    assert services["app-role"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
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
    for name in ("bot", "worker"):
        assert services[name]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    # The worker never needs the bot token.
    assert "TELEGRAM_BOT_TOKEN" not in worker_env


@needs_compose
def test_only_the_migration_steps_use_the_owner_and_the_bot_logs_in_as_the_app_role(tmp_path: Path) -> None:
    """migrate and app-role connect as the owner; the bot as APP_DB_USER; the worker has no database."""
    services = _rendered(tmp_path)["services"]
    owner, owner_password = "meditron", SECRETS["POSTGRES_PASSWORD"]
    assert services["postgres"]["environment"]["POSTGRES_USER"] == owner
    migrate_url = make_url(services["migrate"]["environment"]["DATABASE_URL"])
    assert (migrate_url.username, migrate_url.password, migrate_url.host) == (
        owner,
        owner_password,
        "postgres",
    )
    role = services["app-role"]
    assert role["image"] == services["postgres"]["image"]
    assert (role["environment"]["PGUSER"], role["environment"]["PGPASSWORD"]) == (owner, owner_password)
    assert role["environment"]["APP_DB_PASSWORD"] == SECRETS["APP_DB_PASSWORD"]
    mount = next(volume for volume in role["volumes"] if volume["target"] == "/app-role.sql")
    assert Path(mount["source"]) == APP_ROLE_SQL and mount["read_only"] is True
    assert role["command"][-2:] == ["-f", "/app-role.sql"] and "ON_ERROR_STOP=1" in role["command"]
    assert role["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    bot = services["bot"]
    bot_url = make_url(bot["environment"]["DATABASE_URL"])
    assert (bot_url.username, bot_url.password) == (
        role["environment"]["APP_DB_USER"],
        SECRETS["APP_DB_PASSWORD"],
    )
    assert bot_url.username == "meditron_bot" != owner and owner_password not in str(bot["environment"])
    assert bot["depends_on"]["app-role"]["condition"] == "service_completed_successfully"
    worker_env = services["worker"]["environment"]
    assert "DATABASE_URL" not in worker_env and owner_password not in str(worker_env)
    users = {name: make_url(s["environment"]["DATABASE_URL"]).username
             for name, s in services.items() if "DATABASE_URL" in s.get("environment", {})}  # fmt: skip
    assert users == {"migrate": owner, "bot": "meditron_bot"}


@needs_compose
def test_app_db_user_can_be_renamed(tmp_path: Path) -> None:
    """APP_DB_USER names the login in the bot's URL and in the role step alike."""
    result = _compose(tmp_path, {**SECRETS, "APP_DB_USER": "field_bot"}, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert make_url(services["bot"]["environment"]["DATABASE_URL"]).username == "field_bot"
    assert services["app-role"]["environment"]["APP_DB_USER"] == "field_bot"


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


def _psql_env(url: str, app_user: str) -> dict[str, str]:
    """libpq variables for the owner at ``url``, and the app-role step's two variables."""
    parsed = make_url(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(
        PGHOST=parsed.host or "127.0.0.1",
        PGPORT=str(parsed.port or 5432),
        PGUSER=parsed.username or "postgres",
        PGDATABASE=str(parsed.database),
        APP_DB_USER=app_user,
        APP_DB_PASSWORD="app-" + uuid.uuid4().hex,
    )
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    return env


def _app_role_step(url: str, app_user: str) -> subprocess.CompletedProcess[str]:
    """docker/app-role.sql run exactly as the compose `app-role` service runs it."""
    command = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(APP_ROLE_SQL)]
    return subprocess.run(
        command, env=_psql_env(url, app_user), capture_output=True, text=True, timeout=60, check=False
    )


async def _as_app_user(url: str, app_user: str) -> tuple[str, list[str]]:
    """As the login role: migrate (a no-op), record a question (the bot's writes); then try to tamper.

    Returns the role's attributes line and the error of each tampering statement.
    """
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from storage.db import make_engine, make_sessionmaker
    from storage.migrate import upgrade_async
    from tests.test_consent_storage import seed

    app_url = make_url(url).set(username=app_user, password=None).render_as_string(hide_password=False)
    await upgrade_async(app_url)  # what `meditron-bot bot` does at start
    engine = make_engine(app_url)
    sessions, errors = make_sessionmaker(engine), []
    try:
        await seed(sessions, questions=1)  # users, consent, questions, answers, feedback, audit rows
        async with sessions.begin() as session:
            attributes = (await session.execute(text(
                "SELECT u.rolsuper::text || u.rolcreaterole::text || u.rolcreatedb::text || "
                "string_agg(g.rolname, ',') FROM pg_roles u JOIN pg_auth_members m ON m.member = u.oid "
                "JOIN pg_roles g ON g.oid = m.roleid WHERE u.rolname = current_user "
                "GROUP BY u.rolsuper, u.rolcreaterole, u.rolcreatedb"
            ))).scalar_one()  # fmt: skip
        for statement in ("UPDATE audit_events SET payload = '{}'", "DELETE FROM audit_events",
                          "TRUNCATE audit_events", "DELETE FROM consent_events"):  # fmt: skip
            try:
                async with sessions.begin() as session:
                    await session.execute(text(statement))
            except DBAPIError as exc:
                errors.append(str(exc.orig))
    finally:
        await engine.dispose()
    return attributes, errors


@pytest.mark.postgres
@pytest.mark.skipif(shutil.which("psql") is None, reason="psql is not installed")
async def test_the_app_login_made_like_compose_cannot_change_the_audit_log(fresh_postgres_url: str) -> None:
    """Owner migrates; app-role.sql makes the login; as it the bot's writes work, tampering is refused."""
    from sqlalchemy import text

    from storage.db import make_engine
    from storage.migrate import upgrade_async

    app_user = f"test_app_{uuid.uuid4().hex[:12]}"
    await upgrade_async(fresh_postgres_url)  # the `migrate` step, as the owner
    try:
        first, again = (
            _app_role_step(fresh_postgres_url, app_user),
            _app_role_step(fresh_postgres_url, app_user),
        )
        assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
        attributes, errors = await _as_app_user(fresh_postgres_url, app_user)
        assert attributes == "falsefalsefalsemeditron_app"
        assert len(errors) == 4 and all("permission denied" in error for error in errors), errors
        owner = _app_role_step(fresh_postgres_url, make_url(fresh_postgres_url).username or "postgres")
        assert owner.returncode != 0 and "must not be the database owner" in owner.stderr
    finally:
        engine = make_engine(fresh_postgres_url)
        try:
            async with engine.begin() as connection:
                await connection.execute(text(f'DROP ROLE IF EXISTS "{app_user}"'))
        finally:
            await engine.dispose()


WEBHOOK = {
    "WEBHOOK_URL": "https://bot.example.org/telegram",
    "WEBHOOK_DOMAIN": "bot.example.org",
    "WEBHOOK_SECRET": "dummy-webhook-secret",
}
GRAFANA_DIR = DOCKER_DIR / "grafana"


@needs_compose
def test_webhook_profile_runs_two_replicas_behind_the_proxy(tmp_path: Path) -> None:
    result = _compose(tmp_path, SECRETS | WEBHOOK, "--profile", "webhook", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    services = config["services"]
    replica = services["bot-webhook"]
    assert replica["deploy"]["replicas"] == 2
    assert replica["command"] == ["bot", "--webhook-url", WEBHOOK["WEBHOOK_URL"], "--listen", "0.0.0.0:8443"]
    assert replica["environment"]["WEBHOOK_SECRET_FILE"] == "/run/secrets/webhook_secret"
    assert "WEBHOOK_SECRET" not in replica["environment"]
    assert [s["source"] for s in replica["secrets"]] == ["webhook_secret"]
    assert replica["environment"]["DATABASE_URL"] == services["bot"]["environment"]["DATABASE_URL"]
    assert "ports" not in replica  # only the proxy is reachable from outside
    assert services["webhook-proxy"]["environment"]["WEBHOOK_DOMAIN"] == WEBHOOK["WEBHOOK_DOMAIN"]
    assert WEBHOOK["WEBHOOK_SECRET"] not in result.stdout.replace(WEBHOOK["WEBHOOK_URL"], "")


@needs_compose
def test_profiles_add_nothing_by_default(tmp_path: Path) -> None:
    services = _rendered(tmp_path)["services"]
    assert not {"bot-webhook", "webhook-proxy", "prometheus", "grafana"} & set(services)


@needs_compose
def test_monitoring_profile_scrapes_every_process_and_listens_locally(tmp_path: Path) -> None:
    services = _rendered(tmp_path, "--profile", "monitoring")["services"]
    for name in ("prometheus", "grafana"):
        assert all(port.get("host_ip") == "127.0.0.1" for port in services[name]["ports"]), name
    for name in ("bot", "worker"):
        assert services[name]["environment"]["METRICS_PORT"] == "9100"
        assert services[name]["environment"]["METRICS_HOST"] == "0.0.0.0"


def test_prometheus_scrapes_the_metrics_port_of_the_app_services() -> None:
    import yaml

    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    scrape = yaml.safe_load((DOCKER_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    (sd,) = scrape["scrape_configs"][0]["dns_sd_configs"]
    assert str(sd["port"]) == compose["x-app"]["environment"]["METRICS_PORT"]
    app_services = {
        name
        for name, service in compose["services"].items()
        if service.get("image", "").startswith("meditron")
    }
    assert set(sd["names"]) == app_services - {"migrate", "model-pull"}


def _defined_metrics() -> set[str]:
    """Every meditron_* metric the processes define (bot, storage, inference)."""
    import importlib

    from prometheus_client import REGISTRY

    for module in ("bot.metrics", "storage.metrics", "inference.metrics"):
        importlib.import_module(module)
    return {m.name for m in REGISTRY.collect() if m.name.startswith("meditron_")}


def test_the_dashboard_shows_every_metric_and_only_defined_ones() -> None:
    dashboard = json.loads((GRAFANA_DIR / "meditron.json").read_text(encoding="utf-8"))
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {
        re.sub(r"_(total|bucket|count|sum)$", "", name)
        for e in exprs
        for name in re.findall(r"meditron_\w+", e)
    }
    defined = _defined_metrics()
    assert used == defined, (used - defined, defined - used)
    sources = {panel["datasource"]["uid"] for panel in dashboard["panels"]}
    provisioned = (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yaml").read_text(
        encoding="utf-8"
    )
    assert sources == {"meditron-prometheus"} and "uid: meditron-prometheus" in provisioned
