"""Finding the model file: MODEL_PATH, or the default Meditron file, pulled when missing."""

from __future__ import annotations

from pathlib import Path

from inference.download import HubFile, pull
from inference.errors import ModelNotFoundError
from inference.settings import InferenceSettings


def default_model_source(settings: InferenceSettings) -> HubFile:
    """The default model file on the Hub (MODEL_REPO, MODEL_FILE, HF_ENDPOINT, HF_TOKEN)."""
    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    return HubFile(
        settings.model_repo, settings.model_file, endpoint=settings.hf_endpoint or None, token=token or None
    )


def pull_default_model(settings: InferenceSettings, data_dir: Path) -> Path:
    """Download the default model into ``<data dir>/models`` (unless there) and check its sha256."""
    dest = data_dir / "models" / settings.model_file
    return pull(default_model_source(settings), dest, expected_sha256=settings.model_sha256)


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
    return pull_default_model(settings, data_dir)
