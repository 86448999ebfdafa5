"""``meditron-bot bench``: figures of the worker against the plain path on this machine."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from inference.bench import BenchConfig, Progress, count_steps, format_table, run_bench
from inference.settings import InferenceSettings
from inference.synthetic import ensure_bench_model
from storage.settings import StorageSettings


def _model(args: argparse.Namespace, progress: Progress) -> Path:
    """--model, or the cached Gemma2-2B-shaped Q4_K_M file (written once)."""
    if args.model is not None:
        path: Path = args.model
        return path
    cache = StorageSettings().ensure_data_dir() / "bench"
    return ensure_bench_model(cache, progress=progress.note)


def _config(args: argparse.Namespace, model: Path) -> BenchConfig:
    """The engines' configuration: the worker's settings, overridden by the flags."""
    settings = InferenceSettings()
    return BenchConfig(
        model=model,
        n_threads=args.threads or settings.n_threads,
        n_ctx=args.ctx or settings.n_ctx,
        n_batch=args.batch or settings.n_batch,
        use_mmap=settings.use_mmap and not args.no_mmap,
        max_sequences=args.max_sequences or settings.max_sequences,
        answer_tokens=args.answer_tokens,
        counts=tuple(args.counts),
        conversations=not args.no_conversations,
        pool_mb=args.pool_mb,
        server=args.server,
    )


def transcription(args: argparse.Namespace) -> int:
    """The Whisper section: real-time factor and memory of WHISPER_MODEL (or --whisper-model)."""
    from inference.bench_voice import format_transcription, run_transcription_bench, spoken_question
    from inference.whisper_model import resolve_whisper_model

    settings = InferenceSettings()
    model_dir = resolve_whisper_model(
        args.whisper_model or settings.whisper_model, StorageSettings().data_dir
    )
    audio = args.audio.read_bytes() if args.audio else spoken_question()
    threads = args.threads or settings.whisper_threads
    report = run_transcription_bench(model_dir, audio, threads=threads, rounds=args.rounds)
    print(json.dumps(report.as_dict()) if args.json else format_transcription(report))
    return 0


def library(args: argparse.Namespace) -> int:
    """The library section: retrieval + prompt building p99 on 10,000 passages, first-token cost."""
    from bot.library.bench import format_library, measure_first_token, measure_retrieval

    storage = StorageSettings()
    postgres = args.postgres
    if postgres is None and storage.database_url is not None:
        configured = storage.database_url.get_secret_value()
        postgres = configured if configured.startswith("postgres") else None
    report = measure_retrieval(postgres)
    if not args.no_model:
        progress = Progress(0)
        config = _config(args, _model(args, progress))
        measure_first_token(report, config.model, config.n_threads, config.n_ctx)
    print(json.dumps(report.as_dict()) if args.json else format_library(report))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; a table (or one JSON object) on stdout, progress on stderr."""
    if args.transcription:
        return transcription(args)
    if args.library:
        return library(args)
    progress = Progress(0)
    model = _model(args, progress)
    config = _config(args, model)
    if args.against:
        from inference.bench_against import count_steps as against_steps
        from inference.bench_against import format_against, run_against

        progress.total = against_steps(config)
        against = run_against(config, args.against, progress)
        print(json.dumps(against.as_dict()) if args.json else format_against(against))
        return 0
    if args.paragraphs:
        from inference.bench_paragraphs import format_paragraphs, measure_paragraphs

        paragraphs = measure_paragraphs(config)
        print(json.dumps(paragraphs.as_dict()) if args.json else format_paragraphs(paragraphs))
        return 0
    if args.only_conversations:
        from inference.bench import conversation_steps, format_conversations, run_conversation_bench

        progress.total = conversation_steps(config)
        report = run_conversation_bench(config, progress)
        print(json.dumps(report.as_dict()) if args.json else format_conversations(report))
        return 0
    if args.cold_start:
        from inference.bench_cold import format_cold_start, measure_cold_start

        cold = measure_cold_start(config)
        print(json.dumps(cold.as_dict()) if args.json else format_cold_start(cold))
        return 0
    progress.total = count_steps(config)
    report = run_bench(config, progress)
    print(json.dumps(report.as_dict()) if args.json else format_table(report))
    return 0
