"""Prometheus metrics counted where storage does the work (``meditron_*``; labels are fixed words only)."""

from __future__ import annotations

from prometheus_client import Counter

QUESTIONS_ENQUEUED = Counter("meditron_questions_enqueued", "Questions put on the queue for a worker")
DEAD_LETTERS = Counter(
    "meditron_dead_letters",
    "Questions moved to the dead-letter stream: malformed, or delivered too often",
    ["reason"],
)
CONSENT_CHANGES = Counter(
    "meditron_consent_changes", "Consent changes recorded, by scope and new value", ["scope", "value"]
)
