"""A worker process: load the model, then answer questions from the queue until stopped."""

from __future__ import annotations

import asyncio
import signal

import structlog

from inference.batch import BatchEngine
from inference.memory import check_memory
from inference.modelfile import file_sha256
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
    )
    log.info(
        "model.loaded",
        file=path.name,
        sha256=sha256[:16],
        n_ctx=engine.n_ctx,
        threads=settings.n_threads,
        max_sequences=settings.max_sequences,
    )
    return engine, sha256


async def serve(settings: InferenceSettings, storage: StorageSettings, redis_url: str) -> int:
    """Run one worker until SIGINT/SIGTERM; an unfinished question stays pending for the next start."""
    heartbeat_s = settings.heartbeat_interval(storage.queue_claim_idle_ms)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    redis = await connect(redis_url, attempts=5)
    engine, sha256 = await asyncio.to_thread(load_engine, settings, storage)
    queue = queue_from_settings(redis, storage)
    config = WorkerConfig(
        name=settings.worker_name,
        model_sha256=sha256,
        max_answer_tokens=settings.max_answer_tokens,
        temperature=settings.temperature,
        heartbeat_s=heartbeat_s,
        max_sequences=settings.max_sequences,
        prefix_reuse=settings.prefix_reuse,
    )
    worker = Worker(queue, engine, config)
    log.info("worker.heartbeat", heartbeat_s=heartbeat_s, claim_idle_ms=storage.queue_claim_idle_ms)
    try:
        await worker.run(stop)
    finally:
        engine.close()
        await redis.aclose()
        log.info("worker.stopped", answered=worker.answered, redis_outages=worker.redis.outages)
    return 1 if worker.engine_failed else 0
