"""The worker's Prometheus metrics (``meditron_*``); labels are fixed words, never an id or a text."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)

QUEUE_WAIT_SECONDS = Histogram(
    "meditron_queue_wait_seconds", "A question enqueued until a worker took it", buckets=SECONDS
)
FIRST_TOKEN_SECONDS = Histogram(
    "meditron_first_token_seconds", "A question taken until its first generated token", buckets=SECONDS
)
GENERATION_SECONDS = Histogram(
    "meditron_generation_seconds", "A question taken until its answer was finished", buckets=SECONDS
)
TOKENS = Counter("meditron_tokens", "Tokens of published answers: prompt and completion", ["kind"])
ANSWERS = Counter("meditron_answers", "Answers published, by status (ok, failed)", ["status"])
BACKEND_RETRIES = Counter(
    "meditron_backend_retries",
    "Requests to the model server (INFERENCE_URL) sent again: rate_limited (429), unavailable (503), "
    "unreachable (connection refused)",
    ["reason"],
)
FOLLOW_UPS_ROUTED = Counter(
    "meditron_follow_ups_routed",
    "Follow-ups handed to the worker that answered the conversation's previous turn (its KV state)",
)
BATCH_OCCUPANCY = Gauge("meditron_batch_occupancy", "Questions this worker is answering now")
BATCH_SLOTS = Gauge("meditron_batch_slots", "Questions this worker answers at once at most")
TRANSCRIPTIONS = Counter(
    "meditron_transcriptions",
    "Voice notes transcribed, by outcome (ok, silent, not_audio, too_long, failed)",
    ["status"],
)
TRANSCRIPTION_SECONDS = Histogram(
    "meditron_transcription_seconds",
    "Whisper's time for one voice note (decode and transcribe)",
    buckets=SECONDS,
)
