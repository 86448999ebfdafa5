"""Results as a table (stdout), as JSON, as a results file; a progress bar with ETA (stderr)."""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from inference.evaluation.data import LETTERS
from inference.evaluation.results import EvalRun, Metric, ModelRun, QuestionResult, accuracy_counts
from inference.evaluation.stats import mcnemar, wilson_interval

FORMAT = "meditron-bot-eval/1"
MAX_BAD_LINES_LISTED = 100


def _is_right(result: QuestionResult) -> bool:
    """Letter-scoring metric."""
    return result.correct


def _is_right_norm(result: QuestionResult) -> bool:
    """Length-normalised metric."""
    return result.correct_norm


def _accuracy(results: Sequence[QuestionResult], metric: Metric) -> dict[str, Any]:
    """Questions, right answers, accuracy and its Wilson 95 % interval."""
    right, total = accuracy_counts(results, metric)
    low, high = wilson_interval(right, total)
    return {
        "questions": total,
        "correct": right,
        "accuracy": right / total if total else None,
        "ci95": [low, high],
    }


def _per_subject(results: Sequence[QuestionResult]) -> dict[str, Any]:
    """Accuracy per subject field, for files that have one."""
    groups: dict[str, list[QuestionResult]] = defaultdict(list)
    for result in results:
        if result.subject:
            groups[result.subject].append(result)
    return {name: _accuracy(group, _is_right) for name, group in sorted(groups.items())}


def model_summary(model: ModelRun, normalized: bool) -> dict[str, Any]:
    """Everything reported about one model (no per-question records)."""
    scored = model.scored
    tokens = [r.prompt_tokens for r in scored]
    return {
        "path": model.path,
        "file": Path(model.path).name,
        "sha256": model.sha256,
        "size_bytes": model.size_bytes,
        "architecture": model.architecture,
        **_accuracy(model.results, _is_right),
        "skipped": sum(1 for r in model.results if r.skipped),
        "normalized": _accuracy(model.results, _is_right_norm) if normalized else None,
        "per_subject": _per_subject(model.results),
        "letters_single_token": all(r.single_token for r in scored),
        "prompt_tokens_mean": sum(tokens) / len(tokens) if tokens else 0.0,
        "load_seconds": round(model.load_seconds, 3),
        "score_seconds": round(model.score_seconds, 3),
        "questions_per_second": model.questions_per_second,
    }


def compare(first: ModelRun, second: ModelRun) -> dict[str, Any]:
    """Paired comparison of two models on the questions both scored (McNemar)."""
    pairs = [
        (a, b)
        for a, b in zip(first.results, second.results, strict=True)
        if a.predicted is not None and b.predicted is not None
    ]
    only_first = sum(1 for a, b in pairs if a.correct and not b.correct)
    only_second = sum(1 for a, b in pairs if b.correct and not a.correct)
    test = mcnemar(only_first, only_second)
    n = len(pairs)
    difference = (sum(a.correct for a, _ in pairs) - sum(b.correct for _, b in pairs)) / n if n else 0.0
    verdict = (
        f"the difference is significant at the 5% level (exact McNemar p = {test.exact_p:.3g})"
        if test.significant()
        else f"no significant difference (exact McNemar p = {test.exact_p:.3g})"
    )
    return {
        "paired_questions": n,
        "both_right": sum(1 for a, b in pairs if a.correct and b.correct),
        "only_first_right": only_first,
        "only_second_right": only_second,
        "both_wrong": sum(1 for a, b in pairs if not a.correct and not b.correct),
        "accuracy_difference": difference,
        "mcnemar": {
            "exact_p": test.exact_p,
            "chi_square": test.chi_square,
            "chi_square_p": test.chi_square_p,
        },
        "significant_at_0.05": test.significant(),
        "verdict": verdict,
    }


def _data_summary(run: EvalRun) -> dict[str, Any]:
    """What was read and selected."""
    data = run.data
    return {
        "path": str(data.path),
        "sha256": data.sha256,
        "layouts": data.layouts,
        "cop_numbering": data.cop_numbering,
        "questions_in_file": len(data.questions),
        "questions_selected": run.selected,
        "limit": run.limit,
        "shuffle_seed": run.shuffle_seed,
        "bad_lines": len(data.bad_lines),
        "bad_line_details": [
            {"line": b.line, "reason": b.reason} for b in data.bad_lines[:MAX_BAD_LINES_LISTED]
        ],
    }


def summary(run: EvalRun) -> dict[str, Any]:
    """The JSON document printed by ``--json`` (no per-question records)."""
    models = run.models
    return {
        "format": FORMAT,
        "created_at": run.created_at,
        "data": _data_summary(run),
        "scoring": {
            "prompt": "Question: {question}\\nChoices:\\nA. {A}\\nB. {B}\\n...\\nAnswer:",
            "continuations": "' A', ' B', ... (log-likelihood; highest wins; prompt evaluated once)",
            "normalized": ("log-likelihood of ' ' + choice text per UTF-8 byte" if run.normalized else None),
        },
        "settings": run.settings,
        "models": [model_summary(m, run.normalized) for m in models],
        "comparison": compare(models[0], models[1]) if len(models) == 2 else None,
        "results_file": run.results_path,
    }


def _record(result: QuestionResult) -> dict[str, Any]:
    """One question's record in the results file."""
    return {
        "line": result.line,
        "id": result.qid,
        "subject": result.subject,
        "answer": LETTERS[result.answer],
        "predicted": LETTERS[result.predicted] if result.predicted is not None else None,
        "correct": result.correct,
        "logprobs": [round(x, 6) for x in result.logprobs],
        "predicted_norm": LETTERS[result.predicted_norm] if result.predicted_norm is not None else None,
        "skipped": result.skipped,
    }


def full_document(run: EvalRun) -> dict[str, Any]:
    """The results file: the summary plus every question's record for each model."""
    document = summary(run)
    for entry, model in zip(document["models"], run.models, strict=True):
        entry["predictions"] = [_record(r) for r in model.results]
    return document


def write_results(path: Path, document: dict[str, Any]) -> Path:
    """Write ``document`` as JSON to ``path`` atomically (parent directories created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    partial.replace(path)
    return path


# ---------------------------------------------------------------------------------------------
# The table


def _percent(value: float | None) -> str:
    """``46.6%`` (or ``-`` for nothing)."""
    return "-" if value is None else f"{100 * value:.1f}%"


def _ci(entry: dict[str, Any]) -> str:
    """``42.1-51.0%``."""
    low, high = entry["ci95"]
    return f"{100 * low:.1f}-{100 * high:.1f}%"


def _header(run: EvalRun) -> list[str]:
    """Lines about the data and the scoring."""
    data = run.data
    layouts = ", ".join(f"{n} {name}" for name, n in sorted(data.layouts.items()))
    lines = [
        f"data: {data.path} (sha256 {data.sha256[:12]}): {len(data.questions)} questions ({layouts}), "
        f"{len(data.bad_lines)} bad lines skipped; evaluated {run.selected}"
        + (f" (--limit {run.limit})" if run.limit is not None else "")
        + (f" shuffled with seed {run.shuffle_seed}" if run.shuffle_seed is not None else "")
    ]
    if data.cop_numbering:
        lines.append(f"MedMCQA 'cop' numbering: {data.cop_numbering}")
    lines.append(
        'scoring: log-likelihood of " A", " B", ... after "Answer:" (the prompt evaluated once)'
        + ("; norm = length-normalised full choice text" if run.normalized else "")
    )
    return lines


def _model_rows(entries: Sequence[dict[str, Any]], normalized: bool) -> list[str]:
    """One row per model."""
    head = f"{'model':<44} {'accuracy':>8}  {'95% CI':<13} {'correct':>11} {'q/s':>7}"
    head += f" {'norm':>7}" if normalized else ""
    rows = [head + "  sha256"]
    for e in entries:
        row = (
            f"{e['file'][:44]:<44} {_percent(e['accuracy']):>8}  {_ci(e):<13} "
            f"{e['correct']:>5}/{e['questions']:<5} {e['questions_per_second']:>7.2f}"
        )
        row += f" {_percent(e['normalized']['accuracy']):>7}" if normalized else ""
        rows.append(row + f"  {e['sha256'][:16]}")
    return rows


def _column_name(index: int, count: int) -> str:
    """Per-subject column heading: "model 1", "model 2" (in table order) when comparing."""
    return f"model {index + 1}" if count > 1 else "accuracy (95% CI)"


def _subject_rows(entries: Sequence[dict[str, Any]]) -> list[str]:
    """Per-subject accuracy, one column per model."""
    subjects = sorted({name for e in entries for name in e["per_subject"]})
    if not subjects:
        return []
    rows = [
        "",
        f"{'subject':<32} {'n':>5}  "
        + "  ".join(f"{_column_name(i, len(entries)):<22}" for i in range(len(entries))),
    ]
    for name in subjects:
        cells = []
        for e in entries:
            s = e["per_subject"].get(name)
            cells.append(f"{_percent(s['accuracy']):>6} ({_ci(s)})" if s else "-")
        n = max(e["per_subject"].get(name, {}).get("questions", 0) for e in entries)
        rows.append(f"{name[:32]:<32} {n:>5}  " + "  ".join(f"{c:<22}" for c in cells))
    return rows


def _comparison_rows(comparison: dict[str, Any] | None) -> list[str]:
    """The McNemar paragraph."""
    if comparison is None:
        return []
    c = comparison
    return [
        "",
        f"paired on {c['paired_questions']} questions: both right {c['both_right']}, only model 1 "
        f"{c['only_first_right']}, only model 2 {c['only_second_right']}, both wrong {c['both_wrong']}; "
        f"difference {100 * c['accuracy_difference']:+.1f} points",
        c["verdict"],
    ]


def format_table(document: dict[str, Any], run: EvalRun) -> str:
    """The human-readable report printed on stdout."""
    entries = document["models"]
    lines = [
        *_header(run),
        "",
        *_model_rows(entries, run.normalized),
        *_subject_rows(entries),
        *_comparison_rows(document["comparison"]),
    ]
    skipped = [e for e in entries if e["skipped"]]
    for e in skipped:
        lines.append(f"{e['file']}: {e['skipped']} questions skipped (too long for the context)")
    if document["results_file"]:
        lines += ["", f"results: {document['results_file']}"]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Progress


class ProgressBar:
    """One model's run as a tqdm bar on stderr: questions done, rate and ETA."""

    def __init__(self, total: int, label: str, *, stream: TextIO | None = None) -> None:
        """Count ``total`` questions under ``label``; timing starts now."""
        bar_format = "{desc} [{bar:24}] {n_fmt}/{total_fmt} {percentage:3.0f}% {rate_fmt} ETA {remaining}"
        self._bar = tqdm(total=total, desc=label, unit="q", file=stream or sys.stderr, bar_format=bar_format)

    def update(self, done: int) -> None:
        """Report that ``done`` of ``total`` questions are finished (the bar closes at the end)."""
        self._bar.update(done - self._bar.n)
        if done >= self._bar.total:
            self._bar.close()
