"""A worker process: load the model (or connect to INFERENCE_URL), then answer questions until stopped."""

from __future__ import annotations

import asyncio
import threading

import structlog

from inference import metrics
from inference.backend import Backend
from inference.batch import BatchEngine
from inference.memory import check_memory
from inference.modelfile import file_sha256
from inference.prefix_state import prefix_state_key, prefix_state_path
from inference.prompt import PROMPT_VERSION, preamble_prompt
from inference.remote import RemoteEngine
from inference.settings import InferenceSettings
from inference.setup import ensure_model
from inference.worker import Worker, WorkerConfig
from storage.queue import queue_from_settings
from storage.queue.connection import connect
from storage.settings import StorageSettings

log = structlog.get_logger("inference.serve")


def load_engine(settings: InferenceSettings, storage: StorageSettings) -> tuple[BatchEngine, str]:
    """Find (or pull), hash, check the memory budget of, and load the model; blocking."""
    path = ensure_model(settings, storage.ensure_data_dir())
    sha256 = file_sha256(path)
    if settings.memory_guard:
        plan = check_memory(
            path, n_ctx=settings.n_ctx, n_batch=settings.n_batch, max_sequences=settings.max_sequences
        )
        log.info("memory.planned", needed_mib=plan.total // 2**20, kv_mib=plan.kv_bytes // 2**20)
    engine = BatchEngine(
        path,
        n_ctx=settings.n_ctx,
        n_threads=settings.n_threads,
        n_batch=settings.n_batch,
        use_mmap=settings.use_mmap,
        max_sequences=settings.max_sequences,
        pool_slots=settings.kv_pool_slots,
        pool_bytes=settings.kv_pool_mb << 20,
    )
    log.info(
        "model.loaded",
        file=path.name,
        sha256=sha256[:16],
        n_ctx=engine.n_ctx,
        threads=settings.n_threads,
        max_sequences=settings.max_sequences,
        kv_pool_mb=settings.kv_pool_mb,
    )
    return engine, sha256


async def connect_backend(settings: InferenceSettings, stop: asyncio.Event) -> tuple[RemoteEngine, str]:
    """The model server at INFERENCE_URL, once it lists its models; the model name the records carry."""
    assert settings.inference_url is not None
    key = settings.inference_api_key
    engine = RemoteEngine(
        settings.inference_url,
        api_key=key.get_secret_value() if key else None,
        model=settings.inference_model,
        max_sequences=settings.max_sequences,
        timeout_s=settings.inference_timeout_s,
        n_ctx=settings.n_ctx,
    )
    try:
        model = await engine.connect(stop)
    except BaseException:
        await engine.aclose()
        raise
    log.info(
        "backend.connected", model=model, max_sequences=settings.max_sequences,
        n_ctx=engine.n_ctx, tokenizer=engine.tokenizer,
    )  # fmt: skip
    return engine, model


async def serve(
    settings: InferenceSettings,
    storage: StorageSettings,
    redis_url: str,
    stop: asyncio.Event,
    loaded: threading.Event,
) -> int:
    """Load the model (``loaded`` is set then), answer until ``stop``; the exit code."""
    heartbeat_s = settings.heartbeat_interval(storage.queue_claim_idle_ms)
    redis = await connect(redis_url, attempts=5)
    engine: Backend
    if settings.inference_url:
        engine, model = await connect_backend(settings, stop)
    else:
        engine, model = await asyncio.to_thread(load_engine, settings, storage)
    metrics.BATCH_SLOTS.set(settings.max_sequences)
    loaded.set()
    queue = queue_from_settings(redis, storage)
    state = None
    if not settings.inference_url and settings.prefix_reuse:
        key = prefix_state_key(
            model_sha256=model, prompt_version=PROMPT_VERSION, prefix=preamble_prompt(),
            n_ctx=settings.n_ctx, max_sequences=settings.max_sequences,
        )  # fmt: skip
        state = prefix_state_path(storage.ensure_data_dir(), key)
    config = WorkerConfig(
        name=settings.worker_name,
        model_sha256=model,
        max_answer_tokens=settings.max_answer_tokens,
        temperature=settings.temperature,
        heartbeat_s=heartbeat_s,
        max_sequences=settings.max_sequences,
        prefix_reuse=settings.prefix_reuse,
        prefix_state=state,
    )
    worker = Worker(queue, engine, config)
    log.info("worker.heartbeat", heartbeat_s=heartbeat_s, claim_idle_ms=storage.queue_claim_idle_ms)
    try:
        await worker.run(stop)
    finally:
        if isinstance(engine, RemoteEngine):
            await engine.aclose()
        else:
            engine.close()
        await redis.aclose()
        log.info("worker.stopped", answered=worker.answered, redis_outages=worker.redis.outages)
    return 1 if worker.engine_failed else 0
