"""``bench --library``: retrieval plus prompt building on a 10,000-passage library, and what passages
cost in time to first token.

The library is synthetic (random sentences over a Zipf-distributed vocabulary of 6,000 words with
the clinical words among them; 100 documents of 100 passages, about 100 tokens each) and
written into a scratch database: a SQLite file in a temporary folder and, with a PostgreSQL URL, a
scratch database created next to it (vacuumed and analysed once filled, as autovacuum does within a
minute of an import, so that it does not run during the rounds) and dropped afterwards. Each timed
round is what the bot does per question: ``retrieve`` (library version, word frequencies, index
search, passages, relevance) and ``build_prompt``.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from bot.flows.library import RetrievalLimits, retrieve
from bot.library.words import estimate_tokens
from inference.prompt import build_prompt
from storage.db import default_sqlite_url, make_engine, make_sessionmaker, normalize_url
from storage.migrate import upgrade_async
from storage.repositories.library import NewPassage, add_document

PASSAGES = 10_000
DOCUMENTS = 100
ROUNDS = 300
TARGET_P99_MS = 20.0
_WORD_TEXT = """
    fever cough diarrhoea dehydration malaria pneumonia breathing child infant newborn mother pregnant
    dose tablet syrup amoxicillin paracetamol zinc iron albendazole artemisinin vitamin oral rehydration
    salts weight kilogram referral danger sign convulsion lethargic vomiting rash measles burn wound
    tetanus snake bite malnutrition oedema appetite breastfeeding cord chlorhexidine blood pressure
    protein urine anaemia palms sputum tuberculosis sweats needle prophylaxis scabies permethrin clinic
    nurse volunteer facility ambulance hours days minutes twice daily
"""
_GLUE_TEXT = "the a of for with and in to every after before give check measure refer treat keep"
_WORDS, _GLUE = _WORD_TEXT.split(), _GLUE_TEXT.split()
QUESTIONS = [
    "How much ORS for a child with diarrhoea and some dehydration?",
    "What dose of amoxicillin for pneumonia in an infant?",
    "A pregnant woman has high blood pressure and protein in urine, what now?",
    "Fever and convulsion in a child, danger signs?",
    "How to treat a burn wound in a child?",
    "What is the capital of France?",
]


@dataclass
class LibraryBench:
    """The figures: per database p50/p99 of retrieval + prompt building, and the first-token cost."""

    passages: int = PASSAGES
    rounds: int = ROUNDS
    databases: dict[str, dict[str, float]] = field(default_factory=dict)
    ttft_without_s: float | None = None
    ttft_with_s: float | None = None
    passage_prompt_tokens: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values."""
        return asdict(self)


def _vocabulary(rng: random.Random) -> tuple[list[str], list[float]]:
    """Words with Zipf weights, as in real text: function words first, then 6,000 other words among
    which the clinical words are spread (rank 40 to 3,000), so no content word is in every passage."""
    others = [
        "".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(rng.randint(2, 4)))
        for _ in range(6_000)
    ]
    for index, word in enumerate(_WORDS):
        others.insert(40 + index * (2_960 // len(_WORDS)), word)
    vocabulary = _GLUE + others
    return vocabulary, [1.0 / (rank + 1) ** 1.07 for rank in range(len(vocabulary))]


def _sentence(rng: random.Random, vocabulary: tuple[list[str], list[float]]) -> str:
    """A random sentence of 8 to 16 words drawn from ``vocabulary``."""
    words = rng.choices(vocabulary[0], weights=vocabulary[1], k=rng.randint(8, 16))
    return " ".join(words).capitalize() + "."


def synthetic_documents(passages_total: int = PASSAGES, seed: int = 13) -> list[list[NewPassage]]:
    """``DOCUMENTS`` documents sharing ``passages_total`` passages (about 100 tokens a passage)."""
    rng = random.Random(seed)  # noqa: S311 (synthetic text, not secrets)
    vocabulary = _vocabulary(rng)
    documents = []
    for _ in range(DOCUMENTS):
        passages = []
        for number in range(max(1, passages_total // DOCUMENTS)):
            body = " ".join(_sentence(rng, vocabulary) for _ in range(4))
            section = f"{rng.choice(_WORDS).title()} › {rng.choice(_WORDS)} {number}"
            passages.append(NewPassage(section, None, body, estimate_tokens(body)))
        documents.append(passages)
    return documents


async def _fill(url: str, passages_total: int = PASSAGES) -> None:
    """Migrate ``url`` and store the synthetic library."""
    await upgrade_async(url)
    engine = make_engine(url)
    try:
        for number, passages in enumerate(synthetic_documents(passages_total)):
            async with make_sessionmaker(engine).begin() as session:
                await add_document(
                    session, title=f"Synthetic guideline {number}", source=f"synthetic-{number}.md",
                    format="markdown", language="en", sha256=f"{number:064x}", passages=passages,
                )  # fmt: skip
    finally:
        await engine.dispose()


async def _time_rounds(url: str, rounds: int) -> dict[str, float]:
    """p50, p99 and max (ms) of retrieve + build_prompt, one session per question as the bot does."""
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    timings, grounded = [], 0
    try:
        for number in range(rounds + 10):
            question = QUESTIONS[number % len(QUESTIONS)]
            started = time.perf_counter()
            async with sessions() as session:
                grounding = await retrieve(session, question, "en", RetrievalLimits())
            build_prompt(question, "en", grounding.passages)
            elapsed = (time.perf_counter() - started) * 1000
            if number >= 10:  # the first rounds warm the connection pool and the caches
                timings.append(elapsed)
                grounded += bool(grounding.passages)
    finally:
        await engine.dispose()
    ordered = sorted(timings)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
        "max_ms": round(ordered[-1], 2),
        "grounded_share": round(grounded / len(ordered), 2),
    }


async def _on_postgres(url: str, rounds: int, passages_total: int) -> dict[str, float]:
    """The rounds on a scratch database created on the server of ``url`` (dropped afterwards)."""
    admin_url = normalize_url(url)
    name = f"meditron_bench_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    scratch = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        await _fill(scratch, passages_total)
        settled = create_async_engine(scratch, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:  # what autovacuum does within a minute of an import: not timed, and not during the rounds
            async with settled.connect() as connection:
                await connection.execute(text("VACUUM ANALYZE"))
        finally:
            await settled.dispose()
        return await _time_rounds(scratch, rounds)
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


def measure_retrieval(
    postgres_url: str | None, rounds: int = ROUNDS, passages_total: int = PASSAGES
) -> LibraryBench:
    """Retrieval + prompt building on SQLite (always) and PostgreSQL (with a URL)."""
    report = LibraryBench(passages=passages_total, rounds=rounds)
    with tempfile.TemporaryDirectory(prefix="meditron-library-bench-") as folder:
        url = default_sqlite_url(Path(folder))
        asyncio.run(_fill(url, passages_total))
        report.databases["sqlite"] = asyncio.run(_time_rounds(url, rounds))
    if postgres_url:
        report.databases["postgresql"] = asyncio.run(_on_postgres(postgres_url, rounds, passages_total))
    return report


def measure_first_token(
    report: LibraryBench, model: Path, n_threads: int, n_ctx: int, rounds: int = 2
) -> None:
    """Time to first token after the reused instruction prefix, with three passages and without."""
    from inference.batch import BatchEngine
    from storage.queue import Passage

    rng = random.Random(7)  # noqa: S311
    vocabulary = _vocabulary(rng)
    passages = tuple(
        Passage(
            id=n,
            title="Synthetic guideline",
            section=f"Section {n}",
            text=" ".join(_sentence(rng, vocabulary) for _ in range(5)),
        )
        for n in range(3)
    )  # about LIBRARY_MAX_TOKENS in all
    question = QUESTIONS[0]
    with BatchEngine(model, n_ctx=n_ctx, n_threads=n_threads, max_sequences=1) as batch:
        from inference.prompt import preamble_prompt

        batch.set_prefix(preamble_prompt())
        plain, grounded = build_prompt(question), build_prompt(question, "en", passages)
        report.passage_prompt_tokens = len(batch.tokenize(grounded)) - len(batch.tokenize(plain))
        without: list[float] = []
        with_: list[float] = []
        for number in range(rounds):  # interleaved, best of each: a busy CPU is mostly noise
            for prompt, sink in ((f"{plain} ", without), (f"{grounded} ", with_)):
                result = batch.generate(prompt.replace("Question:", f"Question {number}:"), max_tokens=1)
                sink.append((result.first_token_at or result.finished_at) - result.started_at)
        report.ttft_without_s, report.ttft_with_s = min(without), min(with_)


def format_library(report: LibraryBench) -> str:
    """The figures as a short table."""
    lines = [f"Library retrieval + prompt building ({report.passages} passages, {report.rounds} questions)"]
    for name, figures in report.databases.items():
        verdict = "ok" if figures["p99_ms"] < TARGET_P99_MS else f"over the {TARGET_P99_MS:.0f} ms target"
        lines.append(
            f"  {name:<10} p50 {figures['p50_ms']:7.2f} ms   p99 {figures['p99_ms']:7.2f} ms   "
            f"max {figures['max_ms']:7.2f} ms   grounded {figures['grounded_share']:.0%}   ({verdict})"
        )
    if report.ttft_with_s is not None and report.ttft_without_s is not None:
        extra = report.ttft_with_s - report.ttft_without_s
        lines.append(
            f"First token after the reused prefix: {report.ttft_without_s:.2f} s without passages, "
            f"{report.ttft_with_s:.2f} s with 3 ({report.passage_prompt_tokens} more prompt tokens): "
            f"+{extra:.2f} s"
        )
    return "\n".join(lines)
