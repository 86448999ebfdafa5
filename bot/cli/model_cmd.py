"""``model pull | verify | info``: the model file."""

from __future__ import annotations

import argparse
from pathlib import Path

from inference.modelfile import format_info, read_info, verify
from inference.settings import InferenceSettings
from inference.setup import pull_default_model
from storage.settings import StorageSettings


def _settings() -> tuple[InferenceSettings, Path]:
    """Inference settings and the data directory."""
    return InferenceSettings(), StorageSettings().ensure_data_dir()


def pull_model(_: argparse.Namespace) -> int:
    """Download the default model into the data directory (tqdm progress on stderr)."""
    dest = pull_default_model(*_settings())
    print(f"{dest}: downloaded and verified")
    return 0


def pull_whisper(_: argparse.Namespace) -> int:
    """Download the Whisper model of WHISPER_MODEL into the data directory's hub cache (unless there)."""
    from inference.whisper_model import resolve_whisper_model

    settings, data_dir = _settings()
    print(f"{resolve_whisper_model(settings.whisper_model, data_dir)}: Whisper model ready")
    return 0


def verify_model(args: argparse.Namespace) -> int:
    """Check the sha256 (against the published one for the default file)."""
    settings, data_dir = _settings()
    path: Path = args.path or settings.resolved_model_path(data_dir)
    expected = settings.model_sha256 if path.name == settings.model_file else None
    digest = verify(path, expected)
    print(
        f"{path}: sha256 {digest} {'matches the published file' if expected else '(no reference to compare)'}"
    )
    return 0


def info_model(args: argparse.Namespace) -> int:
    """Print what the GGUF file says about itself."""
    settings, data_dir = _settings()
    print(format_info(read_info(args.path or settings.resolved_model_path(data_dir))))
    return 0
