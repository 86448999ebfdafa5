"""``meditron-bot eval``: multiple-choice accuracy of a model file, with the file's sha256 recorded."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from bot.errors import BotError
from inference.evaluation.data import QuestionFile, read_questions, resolve_data_path
from inference.evaluation.report import ProgressBar, format_table, full_document, summary, write_results
from inference.evaluation.results import EvalRun
from inference.evaluation.run import EvalOptions, Progress, run_eval
from inference.settings import InferenceSettings
from storage.settings import StorageSettings

MAX_BAD_LINES_SHOWN = 20


def _options(args: argparse.Namespace, settings: InferenceSettings, data_dir: Path) -> EvalOptions:
    """EvalOptions from the command line and the environment (N_THREADS, N_BATCH, USE_MMAP)."""
    return EvalOptions(
        data=resolve_data_path(args.data),
        model=args.model or settings.resolved_model_path(data_dir),
        compare=args.compare,
        limit=args.limit,
        shuffle_seed=args.shuffle_seed,
        normalized=args.normalized,
        cop_base=args.cop_base,
        n_ctx=args.n_ctx,
        n_batch=settings.n_batch,
        n_threads=settings.n_threads,
        use_mmap=settings.use_mmap,
    )


def _report_bad_lines(data: QuestionFile) -> None:
    """Name the skipped lines on stderr (the first few; all are in the results file)."""
    for bad in data.bad_lines[:MAX_BAD_LINES_SHOWN]:
        print(f"{data.path}:{bad.line}: skipped: {bad.reason}", file=sys.stderr)
    if len(data.bad_lines) > MAX_BAD_LINES_SHOWN:
        print(f"... and {len(data.bad_lines) - MAX_BAD_LINES_SHOWN} more bad lines", file=sys.stderr)


def _bar(total: int, label: str) -> Progress:
    """A progress bar on stderr for one model's run."""
    return ProgressBar(total, f"eval {label}").update


def _results_path(args: argparse.Namespace, run: EvalRun, data_dir: Path) -> Path:
    """--output, or a new file under DATA_DIR/evals named by time and the model's sha256."""
    if args.output is not None:
        return Path(args.output)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return data_dir / "evals" / f"eval-{stamp}-{run.models[0].sha256[:12]}.json"


def _with_library(options: EvalOptions, data: QuestionFile) -> EvalOptions:
    """The options with each question's passages, retrieved as the bot retrieves them (--library)."""
    from bot.cli.database import database_url, prepare_database
    from bot.library.grounding import ground_questions

    url = database_url(StorageSettings())
    prepare_database(url)
    version, grounding = asyncio.run(ground_questions(url, data.questions))
    if not version:
        raise BotError("the guideline library is empty: add documents with `meditron-bot library add`")
    return replace(options, grounding=grounding, library_version=version)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table (or JSON) on stdout, write the results file."""
    settings = InferenceSettings()
    data_dir = StorageSettings().ensure_data_dir()
    options = _options(args, settings, data_dir)
    if args.library and options.compare is not None:
        print(
            "meditron-bot: error: --library compares the model with itself; drop --compare", file=sys.stderr
        )
        return 2
    data = read_questions(options.data, cop_base=options.cop_base)
    _report_bad_lines(data)
    if args.library:
        options = _with_library(options, data)
    evaluation = run_eval(options, data=data, progress=None if args.no_progress else _bar)
    path = _results_path(args, evaluation, data_dir)
    evaluation = replace(evaluation, results_path=str(path))
    write_results(path, full_document(evaluation))
    document = summary(evaluation)
    print(
        json.dumps(document, indent=1, ensure_ascii=False)
        if args.json
        else format_table(document, evaluation)
    )
    return 0
