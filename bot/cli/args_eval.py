"""Arguments of ``meditron-bot eval`` (argparse only: the handler is imported when the command runs)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _positive(text: str) -> int:
    """An integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """eval --data FILE [--model PATH] [--compare OTHER] [--limit N] [--shuffle-seed S] [--json] ..."""
    parser = sub.add_parser(
        "eval",
        help="multiple-choice accuracy of a model file (MedMCQA-style log-likelihood scoring)",
        description="Score multiple-choice questions (MedMCQA or generic JSON lines) with a GGUF file: "
        'the log-likelihood of " A".." D" after the prompt; accuracy with a Wilson 95% interval.',
    )
    parser.add_argument(
        "--data", required=True, help="JSON-lines question file, or 'examples' for the shipped examples"
    )
    parser.add_argument("--model", type=Path, help="GGUF file (default: MODEL_PATH or the default file)")
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="OTHER.gguf",
        help="also evaluate this file on the same questions; McNemar's paired test",
    )
    parser.add_argument(
        "--library",
        action="store_true",
        help="also evaluate the model with the passages the guideline library retrieves for each "
        "question (the bot's retrieval); McNemar's paired test against the model alone",
    )
    parser.add_argument("--limit", type=_positive, help="evaluate only the first N (after shuffling)")
    parser.add_argument("--shuffle-seed", type=int, metavar="S", help="shuffle the questions with seed S")
    parser.add_argument(
        "--normalized",
        action="store_true",
        help="also score the full choice texts, length-normalised (per byte)",
    )
    parser.add_argument(
        "--cop-base",
        choices=("auto", "0", "1"),
        default="auto",
        help="MedMCQA 'cop' numbering: 0 for 0-3, 1 for 1-4 (default: detect)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    parser.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        help="results file (default: DATA_DIR/evals/eval-<time>-<sha256>.json)",
    )
    parser.add_argument("--n-ctx", type=_positive, default=2048, help="scoring context in tokens (2048)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.set_defaults(handler="eval_cmd:run")
