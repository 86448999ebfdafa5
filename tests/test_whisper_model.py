"""WHISPER_MODEL: a CTranslate2 directory is used as it is; a name is looked up in the data directory's
hub cache (downloaded only when allowed); anything else is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.errors import DownloadError, ModelNotFoundError
from inference.whisper_model import resolve_whisper_model


def test_a_model_directory_is_used_as_it_is(whisper_model_dir: Path, tmp_path: Path) -> None:
    assert resolve_whisper_model(str(whisper_model_dir), tmp_path, allow_download=False) == whisper_model_dir


def test_a_directory_without_a_model_and_an_unknown_name_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no CTranslate2 model"):
        resolve_whisper_model(str(tmp_path), tmp_path)
    with pytest.raises(ModelNotFoundError, match="neither a directory nor a faster-whisper model name"):
        resolve_whisper_model("enormous", tmp_path)


def test_a_name_not_downloaded_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`run` asks without a download (voice notes off, and why); the transcriber's download fails
    offline with the by-hand instructions."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="model pull-whisper"):
        resolve_whisper_model("small", tmp_path, allow_download=False)
    with pytest.raises(DownloadError, match="could not be downloaded") as caught:
        resolve_whisper_model("small", tmp_path)
    assert str(tmp_path / "models" / ".hf-cache") in str(caught.value)
