"""``meditron-bot bench --transcription``: Whisper's real-time factor and memory on this machine.

The recording is a spoken field question made with espeak-ng and encoded as Telegram encodes voice
notes (ffmpeg: Opus, mono, 48 kHz OGG), or any audio file given with ``--audio``. It is transcribed
as the transcriber does (in memory, int8, voice-activity filter): once to warm up, then ``rounds``
times; the real-time factor is transcription time over audio length (below 1: faster than speech).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from inference.bench import QUESTIONS, _proc_status, load_average, reset_peak_rss
from inference.errors import InferenceError
from inference.transcribe import Transcriber

OPUS = ["-c:a", "libopus", "-b:a", "32k", "-ac", "1", "-ar", "48000", "-f", "ogg", "pipe:1"]


def spoken_question(text: str = QUESTIONS[0]) -> bytes:
    """``text`` spoken by espeak-ng, as a Telegram-like voice note (InferenceError without the tools)."""
    missing = [tool for tool in ("espeak-ng", "ffmpeg") if shutil.which(tool) is None]
    if missing:
        raise InferenceError(
            f"{' and '.join(missing)} not found: install them (Debian: apt-get install espeak-ng ffmpeg) "
            "or pass --audio FILE"
        )
    wav = subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "140", "--stdout", text],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    ffmpeg = ["ffmpeg", "-loglevel", "error", "-nostdin", "-f", "wav", "-i", "pipe:0", *OPUS]
    return subprocess.run(ffmpeg, input=wav, capture_output=True, check=True, timeout=120).stdout


@dataclass
class TranscriptionReport:
    """Figures of one transcription bench (seconds, bytes)."""

    model: str
    threads: int
    audio_s: float
    audio_bytes: int
    load_s: float
    transcribe_s: float  # the median of the timed rounds
    real_time_factor: float
    rss_before_bytes: int
    rss_loaded_bytes: int
    peak_rss_bytes: int
    text: str
    load_average: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON-able data."""
        return asdict(self)


def run_transcription_bench(
    model_dir: Path, audio: bytes, *, threads: int, rounds: int = 3, max_seconds: float = 600.0
) -> TranscriptionReport:
    """Load the model, transcribe ``audio`` once to warm up and ``rounds`` times timed."""
    rss_before = _proc_status("VmRSS")
    started = time.perf_counter()
    transcriber = Transcriber(model_dir, threads=threads)
    load_s = time.perf_counter() - started
    rss_loaded = _proc_status("VmRSS")
    reset_peak_rss()
    heard = transcriber.transcribe(audio, max_seconds=max_seconds)
    if heard.status != "ok":
        raise InferenceError(f"the recording was not transcribed ({heard.status})")
    times = []
    for _ in range(max(1, rounds)):
        started = time.perf_counter()
        transcriber.transcribe(audio, max_seconds=max_seconds)
        times.append(time.perf_counter() - started)
    median = sorted(times)[len(times) // 2]
    return TranscriptionReport(
        model="/".join(model_dir.parts[-2:]), threads=threads, audio_s=round(heard.audio_s, 3),
        audio_bytes=len(audio),
        load_s=round(load_s, 3), transcribe_s=round(median, 3),
        real_time_factor=round(median / heard.audio_s, 4), rss_before_bytes=rss_before,
        rss_loaded_bytes=rss_loaded, peak_rss_bytes=_proc_status("VmHWM"), text=heard.text,
        load_average=load_average(),
    )  # fmt: skip


def format_transcription(report: TranscriptionReport) -> str:
    """The report as a short table."""
    mib = 2**20
    rows = [
        ("model", report.model),
        ("threads", str(report.threads)),
        ("audio", f"{report.audio_s:.1f} s ({report.audio_bytes / 1000:.0f} kB OGG/Opus)"),
        ("load", f"{report.load_s:.2f} s"),
        ("transcription (median)", f"{report.transcribe_s:.2f} s"),
        ("real-time factor", f"{report.real_time_factor:.3f} (below 1: faster than speech)"),
        ("RSS: model loaded", f"{(report.rss_loaded_bytes - report.rss_before_bytes) / mib:.0f} MiB more"),
        ("peak RSS (process)", f"{report.peak_rss_bytes / mib:.0f} MiB"),
        ("load average", report.load_average),
        ("heard", report.text[:100]),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)
