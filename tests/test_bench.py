"""``meditron-bot bench`` end to end on the tiny model (the figures are printed, not asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.cli import main


def test_bench_json_on_the_tiny_model(
    tiny_model_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("N_CTX", "2048")
    args = ["--json", "--counts", "1,2", "--answer-tokens", "4", "--threads", "1"]
    code = main(["bench", "--model", str(tiny_model_path), *args])
    out, err = capsys.readouterr()
    assert code == 0
    report = json.loads(out)
    assert report["model_bytes"] == tiny_model_path.stat().st_size
    assert report["prefix_tokens"] > 200
    assert set(report["together_plain_s"]) == set(report["together_worker_s"]) == {"1", "2"}
    for key in ("ttft_plain_s", "ttft_worker_s", "generation_worker_tps", "generation_bare_tps"):
        assert report[key] > 0
    assert report["peak_rss_worker_bytes"] > report["model_bytes"]
    assert report["read_bandwidth_bps"] > 0
    assert "peak RSS <= model + 700 MB" in report["targets"]
    assert "[" in err and "done" in err  # the progress bar went to stderr
    conversation = report["conversation"]
    assert set(conversation["ttft_cached_s"]) == {"0", "500", "1500"}
    assert conversation["pool_bytes"]["1500"] > conversation["pool_bytes"]["500"] > 0
    assert conversation["history_tokens"]["1500"] >= 1500 and conversation["history_tokens"]["0"] == 0
    assert (
        conversation["interleaved"]["conversations"] == 16
        and conversation["interleaved"]["cached_pool_hits"] > 0
    )


def test_bench_table_on_the_tiny_model(tiny_model_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "--counts",
        "2",
        "--answer-tokens",
        "3",
        "--ctx",
        "1024",
        "--threads",
        "1",
        "--max-sequences",
        "2",
    ]
    code = main(["bench", "--model", str(tiny_model_path), *args])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "time to first token" in out
    assert "2 question(s) arriving together" in out
    assert "memory bandwidth bound" in out
    assert "targets:" in out
    assert "conversations on 2 sequences" in out and "from the pool" in out


def test_bench_refuses_a_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--model", str(tmp_path / "none.gguf")]) == 2
    assert "not found" in capsys.readouterr().err


def test_bench_runs_the_interleaved_conversations_on_llama_server(
    llama_server_binary: Path, tiny_model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``bench --only-conversations --server PATH``: llama-server started with the worker's -np/-c
    answers the same 16 conversations; both sides' follow-up figures and issue 12's two targets are
    reported, and nothing else is measured."""
    args = ["--json", "--counts", "1", "--answer-tokens", "4", "--threads", "1", "--ctx", "4096"]
    args += ["--max-sequences", "2", "--only-conversations", "--server", str(llama_server_binary)]
    code = main(["bench", "--model", str(tiny_model_path), *args])
    out, err = capsys.readouterr()
    assert code == 0, err[-2000:]
    report = json.loads(out)
    inter = report["conversation"]["interleaved"]
    assert inter["server_options"].startswith("-np 2 -c 4096 -t 1 -b 512")
    assert 0 < inter["server_ttft_mean_s"] <= inter["server_ttft_max_s"] < inter["server_round_s"] + 1e-6
    assert inter["server_peak_rss_bytes"] > 0
    names = " | ".join(report["targets"])
    assert "follow-up after 1500 history tokens" in names and "sooner than llama-server" in names
    assert len(report["targets"]) == 2 and report["ttft_plain_s"] == 0  # the other sections did not run


def test_first_paragraph_is_timed_when_its_blank_line_arrives() -> None:
    """The --paragraphs callback notes the moment Paragraphs finds the first paragraph, and only once."""
    from inference.bench_paragraphs import FirstParagraph, ParagraphFigures

    first = FirstParagraph()
    first("Wash hands first.\n")
    assert first.at is None  # one line break ends no paragraph
    first("Wash hands first.\n\nGive")
    noted = first.at
    assert noted is not None
    first("Wash hands first.\n\nGive ORS.\n\nRefer")
    assert first.at == noted
    assert ParagraphFigures(10, 8.0, 2.0).share == 0.25
    assert ParagraphFigures(10, 8.0, None).share == 1.0  # no early paragraph: one message


def test_bench_paragraphs_times_every_question(
    tiny_model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``bench --paragraphs --json``: each of the bench's questions answered to the token budget and timed."""
    from inference.bench import QUESTIONS

    args = ["--paragraphs", "--json", "--answer-tokens", "24", "--threads", "1", "--ctx", "2048"]
    code = main(["bench", "--model", str(tiny_model_path), *args])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["answer_tokens"] == 24 and report["target"] == 0.35
    assert len(report["answers"]) == len(QUESTIONS)
    for answer in report["answers"]:
        assert answer["tokens"] == 24 and answer["whole_s"] > 0
        assert answer["first_paragraph_s"] is None or 0 < answer["first_paragraph_s"] <= answer["whole_s"]
    assert 0 < report["median_share"] <= 1.0
