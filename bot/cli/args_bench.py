"""Arguments of ``meditron-bot bench`` (kept light: nothing heavy is imported here)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _counts(text: str) -> tuple[int, ...]:
    """A comma-separated list of positive integers."""
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("give positive numbers, e.g. 1,2,4,8")
    return counts


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """bench [--model PATH] [--json] [engine knobs]."""
    parser = sub.add_parser(
        "bench",
        help="measure the worker against the plain path on this machine",
        description="Time to first token, generation speed, questions answered together, peak memory "
        "and the memory-bandwidth bound, plain path vs worker. Without --model, a random-weight GGUF "
        "with the exact Gemma2-2B shapes (Q4_K_M) is written once into the data directory.",
    )
    parser.add_argument("--model", type=Path, help="GGUF file to measure (default: Gemma2-2B-shaped Q4_K_M)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--threads", type=int, help="llama.cpp threads (default: N_THREADS, physical cores)")
    parser.add_argument("--ctx", type=int, help="KV cache cells (default: N_CTX)")
    parser.add_argument("--batch", type=int, help="prompt batch size (default: N_BATCH)")
    parser.add_argument("--max-sequences", type=int, help="questions decoded at once (MAX_SEQUENCES)")
    parser.add_argument("--no-mmap", action="store_true", help="load the file into memory (Q4_0 repacking)")
    parser.add_argument("--answer-tokens", type=int, default=32, help="tokens per answer (default 32)")
    parser.add_argument(
        "--counts", type=_counts, default=(1, 2, 4, 8), help="questions arriving together (default 1,2,4,8)"
    )
    parser.add_argument(
        "--cold-start",
        action="store_true",
        help="only: a restarted worker on a saved instruction state against a warm one",
    )
    parser.add_argument(
        "--paragraphs",
        action="store_true",
        help="only: DELIVERY=paragraphs, when each question's first paragraph is finished against its "
        "whole answer (give --answer-tokens 384 for the issue's target; needs a real model's text)",
    )
    parser.add_argument(
        "--against",
        metavar="URL",
        help="also an OpenAI-compatible server (llama-server, Ollama, vLLM) on the same model, side by side",
    )
    library = parser.add_argument_group("guideline library")
    library.add_argument(
        "--library",
        action="store_true",
        help="only: retrieval + prompt building p99 on a 10,000-passage library (SQLite, and PostgreSQL "
        "when DATABASE_URL or --postgres names one), and the first-token cost of the passages",
    )
    library.add_argument(
        "--postgres", metavar="URL", help="PostgreSQL server for --library (a scratch database is made there)"
    )
    library.add_argument("--no-model", action="store_true", help="--library without the first-token part")
    voice = parser.add_argument_group("voice notes")
    voice.add_argument(
        "--transcription", action="store_true", help="measure Whisper instead: real-time factor and memory"
    )
    voice.add_argument("--whisper-model", help="faster-whisper name or CTranslate2 directory (WHISPER_MODEL)")
    voice.add_argument("--audio", type=Path, help="a recording to transcribe (default: espeak-ng speech)")
    voice.add_argument("--rounds", type=int, default=3, help="timed transcriptions (default 3)")
    parser.add_argument(
        "--no-conversations", action="store_true", help="skip the conversation (KV pool) section"
    )
    parser.add_argument(
        "--only-conversations",
        action="store_true",
        help="only: the conversation section (with --server, llama-server's side too)",
    )
    parser.add_argument("--pool-mb", type=int, default=256, help="KV pool budget for that section (MB)")
    parser.add_argument(
        "--server",
        type=Path,
        metavar="PATH",
        help="a llama-server binary: run the interleaved conversations on it too (same -np, -c, threads)",
    )
    parser.set_defaults(handler="bench_cmd:run")
