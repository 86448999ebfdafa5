"""Short-lived per-person state in Redis (not the streams), one small class per kind of key.

Keys live under ``<queue namespace>:field:``, expire on their own, and hold no Telegram ids in their
names (pseudonyms only); a held question carries its chat id like the question stream does.
/withdraw and /forget delete the user's held question; /forget also deletes the chosen language.
"""

from __future__ import annotations


def prefix(namespace: str) -> str:
    """The key prefix of this state under the queue namespace."""
    return f"{namespace}:field"
