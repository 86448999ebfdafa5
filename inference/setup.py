"""Finding the model file: MODEL_PATH, or the default Meditron file, pulled when missing."""

from __future__ import annotations

from pathlib import Path

from inference.download import TerminalProgress, hf_url, pull
from inference.errors import ModelNotFoundError
from inference.settings import InferenceSettings


def model_url(settings: InferenceSettings) -> str:
    """Download URL of the default model file."""
    return hf_url(settings.model_repo, settings.model_file, endpoint=settings.hf_endpoint)


def ensure_model(settings: InferenceSettings, data_dir: Path, *, allow_pull: bool = True) -> Path:
    """The model file's path; the default file is downloaded (and verified) if it is missing."""
    path = settings.resolved_model_path(data_dir)
    if path.is_file():
        return path
    if settings.model_path is not None or not allow_pull:
        raise ModelNotFoundError(
            path,
            f"model file {path} does not exist; "
            "set MODEL_PATH to a GGUF file or run `meditron-bot model pull`",
        )
    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    return pull(
        model_url(settings),
        path,
        expected_sha256=settings.model_sha256,
        token=token,
        progress=TerminalProgress(),
    )
