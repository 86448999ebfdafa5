"""Finding the Whisper model: WHISPER_MODEL as a CTranslate2 directory, or a faster-whisper model name
downloaded with huggingface_hub into ``<data dir>/models/.hf-cache`` (offline: by-hand instructions).

faster-whisper (CTranslate2, about 30 MB of a process) is imported only to look a name up, so a bot
process that never resolves a name never loads it."""

from __future__ import annotations

from pathlib import Path

import httpx2
from huggingface_hub.errors import HfHubHTTPError

from inference.download import CACHE_DIR
from inference.errors import DownloadError, ModelNotFoundError

REQUIRED_FILES = ("model.bin", "config.json")


def is_model_dir(path: Path) -> bool:
    """Whether ``path`` looks like a CTranslate2 Whisper model (model.bin and config.json inside)."""
    return path.is_dir() and all((path / name).is_file() for name in REQUIRED_FILES)


def _repo(name: str) -> str:
    """The Hub repository of a model name (``small``) or id (``Systran/faster-whisper-small``)."""
    from faster_whisper import available_models

    if "/" in name:
        return name
    if name not in available_models():
        raise ModelNotFoundError(
            Path(name),
            f"WHISPER_MODEL={name!r} is neither a directory nor a faster-whisper model name "
            f"({', '.join(available_models())})",
        )
    return f"faster-whisper {name}"


def no_network_help(name: str, cache: Path) -> str:
    """Instructions for installing the Whisper model by hand."""
    return (
        f"The Whisper model {name!r} could not be downloaded.\n"
        "To install it by hand: on a machine with internet access, run\n"
        f"    python -c \"import faster_whisper; print(faster_whisper.download_model('{name}'))\"\n"
        "copy the directory it prints (model.bin, config.json, tokenizer.json, vocabulary.*) to this\n"
        "machine and set WHISPER_MODEL to that directory (or copy the Hub cache it used to\n"
        f"    {cache})"
    )


def resolve_whisper_model(setting: str, data_dir: Path, *, allow_download: bool = True) -> Path:
    """The model directory for WHISPER_MODEL; a name is looked up in the cache, downloaded if allowed.

    Raises ModelNotFoundError (a path that is no model, an unknown name, not cached with no download
    allowed) or DownloadError (with the by-hand instructions).
    """
    path = Path(setting).expanduser()
    if is_model_dir(path):
        return path
    if path.is_absolute() or setting.startswith("."):
        raise ModelNotFoundError(path, f"WHISPER_MODEL={setting}: no CTranslate2 model (model.bin) there")
    from faster_whisper import download_model

    repo = _repo(setting)
    cache = data_dir / "models" / CACHE_DIR
    try:
        found = download_model(setting, cache_dir=str(cache), local_files_only=not allow_download)
    except (HfHubHTTPError, httpx2.HTTPError, OSError, ValueError) as exc:
        if not allow_download:
            raise ModelNotFoundError(
                path,
                f"the Whisper model {setting!r} is not downloaded; run `meditron-bot model pull-whisper`",
            ) from None
        reason = type(exc).__name__
        raise DownloadError(
            repo, f"Download failed ({reason}).\n\n{no_network_help(setting, cache)}"
        ) from None
    return Path(found)
