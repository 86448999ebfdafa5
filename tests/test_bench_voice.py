"""``meditron-bot bench --transcription`` on Whisper tiny.en (the figures are printed, not asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.cli import main


def test_transcription_bench_prints_real_time_factor_and_memory(
    whisper_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["bench", "--transcription", "--whisper-model", str(whisper_model_dir), "--rounds", "1", "--json"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads(out)
    rtf, peak = report["real_time_factor"], report["peak_rss_bytes"] >> 20
    print(f"tiny.en: real-time factor {rtf}, peak RSS {peak} MiB")
    assert report["audio_s"] > 5 and rtf > 0
    assert report["peak_rss_bytes"] >= report["rss_loaded_bytes"] > report["rss_before_bytes"] > 0
    assert "child" in report["text"].lower() and "fever" in report["text"].lower()


def test_transcription_bench_without_the_model_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["bench", "--transcription", "--whisper-model", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "could not be downloaded" in err and "WHISPER_MODEL" in err and str(tmp_path) in err
