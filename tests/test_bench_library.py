"""``bench --library``: the synthetic library, both databases, the printed figures (no timing asserted)."""

from __future__ import annotations

import pytest

from bot.library.bench import DOCUMENTS, format_library, measure_retrieval, synthetic_documents
from bot.library.passages import MAX_PASSAGE_TOKENS


def test_synthetic_library_has_the_asked_size_and_passage_sizes() -> None:
    documents = synthetic_documents(10_000)
    assert len(documents) == DOCUMENTS and sum(len(d) for d in documents) == 10_000
    assert all(p.tokens <= MAX_PASSAGE_TOKENS * 1.5 for d in documents[:3] for p in d)
    assert synthetic_documents(200)[0][0] == synthetic_documents(200)[0][0]  # the same library each run


@pytest.mark.postgres
def test_retrieval_is_measured_on_sqlite_and_postgres(postgres_url: str) -> None:
    report = measure_retrieval(postgres_url, rounds=20, passages_total=500)
    assert set(report.databases) == {"sqlite", "postgresql"}
    for figures in report.databases.values():
        assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
        assert 0 < figures["grounded_share"] < 1  # the unrelated question finds nothing
    table = format_library(report)
    assert "sqlite" in table and "postgresql" in table and "500 passages" in table
