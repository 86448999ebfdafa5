"""The bot process's Prometheus metrics (``meditron_*``); labels are fixed words, never an id or a text."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# Seconds: from a few milliseconds (storing an update) to minutes (an answer on a busy CPU).
FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SLOW = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
UPDATE_TYPES = ("message", "edited_message", "callback_query", "channel_post", "my_chat_member")

UPDATES = Counter("meditron_updates", "Updates handled (acked), by type; unparseable ones apart", ["type"])
WEBHOOK_REQUESTS = Counter(
    "meditron_webhook_requests",
    "Webhook requests by outcome: stored, duplicate, refused (secret), malformed, unavailable (Redis)",
    ["outcome"],
)
UPDATE_STORE_SECONDS = Histogram(
    "meditron_update_store_seconds", "Storing an incoming update in the update log", buckets=FAST
)
ACKNOWLEDGEMENT_SECONDS = Histogram(
    "meditron_acknowledgement_seconds", "A question received until its acknowledgement was sent", buckets=SLOW
)
DELIVERY_SECONDS = Histogram(
    "meditron_delivery_seconds", "An answer finished by a worker until it was sent to Telegram", buckets=SLOW
)
TELEGRAM_429 = Counter(
    "meditron_telegram_429", "Bot API calls answered 429 (flood control), by method", ["method"]
)
DANGER_SIGNS = Counter("meditron_danger_signs", "Questions with a danger sign, by rule", ["rule"])


def update_type(payload: dict[str, object] | None) -> str:
    """The update's kind among UPDATE_TYPES, else "other" (the label set stays fixed)."""
    for kind in UPDATE_TYPES:
        if payload and kind in payload:
            return kind
    return "other"
