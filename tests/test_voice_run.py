"""Voice notes under ``meditron-bot run``: the supervised transcriber child (WHISPER_MODEL a CTranslate2
directory) hears a spoken question, is restarted after kill -9, and stops before the worker."""

from __future__ import annotations

import base64
import os
import signal
from pathlib import Path

import pytest

from bot.telegram import texts
from tests.support.consent import give_consent
from tests.support.telegram_stub import TelegramStub
from tests.support.voice import speech
from tests.test_run import _child_pid, _events, _line_of, _start

USER = 9_345_678


async def _heard(stub: TelegramStub, audio: bytes) -> str:
    """Send a voice note; return what the bot said it heard (once the answer came too)."""
    before = len(stub.calls)
    stub.push_voice(audio, duration=5, user_id=USER)
    heard = await stub.wait_for(
        "sendMessage", lambda c: "I heard" in c.params["text"], since=before, timeout=90
    )
    await stub.wait_for("sendMessage", lambda c: texts.REMINDER in c.params["text"], since=before, timeout=90)
    return str(heard[0].params["text"]).lower()


@pytest.mark.timeout(240)
async def test_run_transcribes_restarts_the_transcriber_and_stops_it_first(
    telegram_stub: TelegramStub,
    tiny_model_path: Path,
    whisper_model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A voice note is heard and answered; kill -9 of the transcriber: a new one hears the next note."""
    stub, data_dir = telegram_stub, tmp_path_factory.mktemp("run", numbered=True)
    extra = {"WHISPER_MODEL": str(whisper_model_dir), "TELEGRAM_FILE_URL": stub.file_url}
    extra["HYGIENE_INTERVAL_S"] = "50"  # the periodic rewrite would come too late to pass the check
    run = await _start(stub, data_dir, tiny_model_path, max_tokens=8, **extra)
    try:
        await run.wait_for_line("transcriber.ready")
        await give_consent(stub, USER, "service")
        seen = len(run.lines)
        note = speech("My child has a high fever and a cough.")
        assert "fever" in await _heard(stub, note)
        await run.wait_for_line("voice.aof_rewritten", since=seen)  # long before HYGIENE_INTERVAL_S
        aof = b"".join(p.read_bytes() for p in (data_dir / "redis").rglob("appendonly*") if p.is_file())
        assert aof and base64.b64encode(note)[100:160] not in aof  # the audio has left the disk too
        transcriber = await _child_pid(run, "transcriber")
        seen = len(run.lines)
        os.kill(transcriber, signal.SIGKILL)
        assert await _child_pid(run, "transcriber", since=seen) != transcriber
        await run.wait_for_line("transcriber.ready", since=seen)
        assert "diarrhea" in await _heard(
            stub, speech("How much water for diarrhoea?")
        )  # Whisper spells it so
    finally:
        os.killpg(run.process.pid, signal.SIGTERM)
        assert await run.stop(signal.SIGTERM) == 0, run.output
    exited = _events(run, "child.exited")
    assert [(e["child"], e["code"]) for e in exited] == [("transcriber", -9)]
    assert _line_of(run, "child.stopped", child="transcriber") < _line_of(
        run, "child.stopped", child="worker"
    )
    assert not _events(run, "voice.off")
